-- Identity edges sent explicitly (identify, login, API).
select
    tenant_id,
    ts as observed_at,
    left_kind,
    left_id,
    right_kind,
    right_id,
    consent
from {{ source('rastro', 'identity_links') }} final
