-- fct_commissions of the ledger story equals ledger_expected__fct_commissions exactly: every
-- row missing from either side is returned (side = missing | unexpected).
{{ config(tags=['ledger_integration']) }}

with

actual as (
    select
        commission_id,
        campaign_id,
        campaign_terms_version,
        arrayStringConcat(rule_ids, ' ') as rule_ids,
        toString(gross_amount) as gross_amount,
        commission_minor,
        toString(hold_until) as hold_until
    from {{ ref('fct_commissions') }}
    where tenant_id = 'it-ledger'
),

expected as (
    select
        commission_id,
        campaign_id,
        campaign_terms_version,
        ifNull(rule_ids, '') as rule_ids,
        gross_amount,
        commission_minor,
        hold_until
    from {{ ref('ledger_expected__fct_commissions') }}
)

select 'missing' as side, * from (select * from expected except select * from actual)
union all
select 'unexpected' as side, * from (select * from actual except select * from expected)
