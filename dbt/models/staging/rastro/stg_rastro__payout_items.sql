-- Commissions paid, one row per commission in a payout.
select
    tenant_id,
    payout_id,
    commission_id,
    affiliate_id,
    amount_minor as paid_minor,
    currency,
    method as payout_method,
    paid_at
from {{ source('rastro', 'payout_items') }} final
