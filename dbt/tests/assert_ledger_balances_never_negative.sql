-- After every run, no commission has a negative pending, paid or rejected balance (approved
-- may be negative: a clawback owed back).
with

per_run as (
    select
        tenant_id,
        commission_id,
        recorded_at,
        sum(pending_delta_minor) as pending,
        sum(paid_delta_minor) as paid,
        sum(rejected_delta_minor) as rejected
    from {{ ref('fct_ledger_entries') }}
    group by tenant_id, commission_id, recorded_at
),

balances as (
    select
        tenant_id,
        commission_id,
        recorded_at,
        sum(pending) over after_run as pending_balance,
        sum(paid) over after_run as paid_balance,
        sum(rejected) over after_run as rejected_balance
    from per_run
    window after_run as (
        partition by tenant_id, commission_id
        order by recorded_at
        rows between unbounded preceding and current row
    )
)

select *
from balances
where pending_balance < 0 or paid_balance < 0 or rejected_balance < 0
