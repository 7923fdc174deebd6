-- A reversal never exceeds what it reverses: per commission, reversals and clawbacks take
-- back at most what accruals and upward corrections added, and none of them adds to earned.
select
    tenant_id,
    commission_id,
    -sumIf(earned_delta_minor, entry_type in ('reversal', 'clawback')) as reversed,
    sumIf(earned_delta_minor, entry_type = 'accrual')
        + sumIf(earned_delta_minor, entry_type = 'correction' and earned_delta_minor > 0) as accrued,
    maxIf(earned_delta_minor, entry_type in ('reversal', 'clawback')) as largest_reversal_delta
from {{ ref('fct_ledger_entries') }}
group by tenant_id, commission_id
having reversed > accrued or largest_reversal_delta > 0
