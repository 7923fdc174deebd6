-- Each affiliate's balances per currency, from the ledger: what it earned, where that money is
-- (pending, approved - payable now -, paid) and what it lost (rejected, reversed).
-- earned = pending + approved + paid; a negative approved is owed back (a clawback) and is
-- offset from the next payout.
{{
    config(
        order_by='(tenant_id, affiliate_id, currency)',
    )
}}

with

entries as (
    select * from {{ ref('fct_ledger_entries') }}
),

final as (
    select
        tenant_id,
        affiliate_id,
        currency,
        uniqExact(commission_id) as commissions,
        sumIf(earned_delta_minor, entry_type = 'accrual') as accrued_minor,
        sumIf(earned_delta_minor, entry_type = 'correction') as corrected_minor,
        -sumIf(earned_delta_minor, entry_type in ('reversal', 'clawback')) as reversed_minor,
        sum(rejected_delta_minor) as rejected_minor,
        sum(earned_delta_minor) as earned_minor,
        sum(pending_delta_minor) as pending_minor,
        sum(approved_delta_minor) as approved_minor,
        sum(paid_delta_minor) as paid_minor,
        max(effective_at) as last_entry_at
    from entries
    group by tenant_id, affiliate_id, currency
)

select * from final
