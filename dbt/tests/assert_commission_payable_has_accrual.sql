-- Every commission the ledger's clock has reached and that earns something has its accrual
-- in the ledger (a commission of 0 has none until it earns).
with

due as (
    select tenant_id, commission_id, amount_minor
    from {{ ref('int_commission_events__replayed') }}
    where source_kind = 'accrual' and amount_minor != 0
),

accrued as (
    select tenant_id, commission_id
    from {{ ref('fct_ledger_entries') }}
    where entry_type = 'accrual'
)

select due.*
from due
left anti join accrued
    on accrued.tenant_id = due.tenant_id and accrued.commission_id = due.commission_id
