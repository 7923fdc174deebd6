-- Manual and rule decisions on commissions (approve, reject, hold, release).
select
    tenant_id,
    decision_id,
    commission_id,
    decision,
    reason,
    decided_by,
    decided_at
from {{ source('rastro', 'commission_decisions') }} final
