-- One row per version of a campaign's terms (deleted versions hidden).
select
    tenant_id,
    campaign_id,
    terms_version,
    status as campaign_status,
    valid_from,
    valid_to,
    attribution_model,
    attribution_window_days,
    attribution_half_life_days,
    hold_days,
    commission_rules,
    conflict_rules
from {{ source('rastro', 'campaigns') }} final
where not is_deleted
