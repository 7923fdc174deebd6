-- Affiliates, latest version.
select
    tenant_id,
    id as affiliate_id,
    status as affiliate_status,
    segment,
    email_hash,
    payout_fingerprint
from {{ source('rastro', 'affiliates') }} final
