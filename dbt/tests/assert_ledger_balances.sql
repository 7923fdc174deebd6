-- The ledger balances: every entry moves earned exactly as much as it moves pending,
-- approved and paid together, and each commission's entries add up to its replayed state
-- (a commission no longer replayed, to nothing earned, pending or rejected).
with

unbalanced_entries as (
    select
        'entry' as failure,
        commission_id,
        entry_id,
        earned_delta_minor as ledger_earned,
        pending_delta_minor + approved_delta_minor + paid_delta_minor as buckets,
        toInt64(0) as expected_earned
    from {{ ref('fct_ledger_entries') }}
    where earned_delta_minor != pending_delta_minor + approved_delta_minor + paid_delta_minor
),

ledger as (
    select
        tenant_id,
        commission_id,
        sum(earned_delta_minor) as earned,
        sum(pending_delta_minor) as pending,
        sum(approved_delta_minor) as approved,
        sum(paid_delta_minor) as paid,
        sum(rejected_delta_minor) as rejected
    from {{ ref('fct_ledger_entries') }}
    group by tenant_id, commission_id
),

replayed as (
    select *
    from {{ ref('int_commission_events__replayed') }}
    where is_latest = 1
),

unbalanced_commissions as (
    select
        'commission' as failure,
        ledger.commission_id as commission_id,
        '' as entry_id,
        ledger.earned as ledger_earned,
        ledger.pending + ledger.approved + ledger.paid as buckets,
        ifNull(replayed.earned_minor, 0) as expected_earned
    from ledger
    left join replayed
        on replayed.tenant_id = ledger.tenant_id and replayed.commission_id = ledger.commission_id
    where ledger.earned != ifNull(replayed.earned_minor, 0)
        or ledger.pending != ifNull(replayed.pending_minor, 0)
        or ledger.approved != ifNull(replayed.approved_minor, -ledger.paid)
        or ledger.paid != ifNull(replayed.paid_minor, ledger.paid)
        or ledger.rejected != ifNull(replayed.rejected_minor, 0)
)

select * from unbalanced_entries
union all
select * from unbalanced_commissions
