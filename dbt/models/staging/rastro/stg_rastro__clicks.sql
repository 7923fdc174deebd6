-- Clicks as landed, one row per event (a repeat click within the hour shares its click_id).
-- FINAL hides replayed copies the engine has not merged away yet.
select
    tenant_id,
    event_id,
    click_id,
    ts as clicked_at,
    source as click_source,
    link_id,
    affiliate_id,
    campaign_id,
    campaign_terms_version,
    landing_url,
    cookie_id,
    ip_hash,
    user_agent,
    is_bot,
    is_head,
    is_preview,
    paid_click_markers,
    velocity_flags
from {{ source('rastro', 'clicks') }} final
