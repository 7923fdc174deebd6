-- Every commission rule can be applied exactly as written (docs/attribution.md, section 4).
-- A malformed rule must never quietly pay 0 or more than meant: this test fails the build,
-- and dbt skips everything downstream (commissions, ledger) until the terms are fixed.
select
    tenant_id,
    campaign_id,
    terms_version,
    rule_index,
    rule_id,
    arrayStringConcat(invalid_reasons, '; ') as reasons,
    rule_json
from {{ ref('int_commission_rules__parsed') }}
where is_valid = 0
