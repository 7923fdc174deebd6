-- fct_ledger_entries of the ledger story equals ledger_expected__fct_ledger_entries exactly,
-- including which build appended each entry (builds numbered by their recorded_at).
{{ config(tags=['ledger_integration']) }}

with

actual as (
    select
        toUInt32(dense_rank() over (order by recorded_at)) as build,
        commission_id,
        toString(entry_type) as entry_type,
        toString(effective_at) as effective_at,
        earned_delta_minor,
        pending_delta_minor,
        approved_delta_minor,
        paid_delta_minor,
        rejected_delta_minor,
        source_id
    from {{ ref('fct_ledger_entries') }}
    where tenant_id = 'it-ledger'
),

expected as (
    select
        build,
        commission_id,
        entry_type,
        effective_at,
        earned_delta_minor,
        pending_delta_minor,
        approved_delta_minor,
        paid_delta_minor,
        rejected_delta_minor,
        source_id
    from {{ ref('ledger_expected__fct_ledger_entries') }}
)

select 'missing' as side, * from (select * from expected except select * from actual)
union all
select 'unexpected' as side, * from (select * from actual except select * from expected)
