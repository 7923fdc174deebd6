-- Tag and pixel events as landed (page views, identify, lead).
select
    tenant_id,
    event_id,
    ts as occurred_at,
    type as event_type,
    click_id,
    cookie_id,
    customer_id,
    email_hash,
    consent,
    ip_hash,
    user_agent
from {{ source('rastro', 'page_events') }} final
