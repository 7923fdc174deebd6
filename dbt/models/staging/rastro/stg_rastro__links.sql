-- Attribution keys: tracked links and coupon codes (codes compared upper-cased).
select
    tenant_id,
    id as link_id,
    kind as link_kind,
    code,
    upper(code) as code_key,
    affiliate_id,
    campaign_id,
    status as link_status
from {{ source('rastro', 'links') }} final
where not is_deleted
