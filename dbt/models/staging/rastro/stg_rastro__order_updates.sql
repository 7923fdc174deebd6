-- Refunds, cancellations and chargebacks as landed.
select
    tenant_id,
    event_id,
    update_id,
    order_id,
    ts as updated_at,
    kind as update_kind,
    amount_minor,
    currency
from {{ source('rastro', 'order_updates') }} final
