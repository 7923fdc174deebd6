-- Campaign terms with their effective period closed: a version applies from its
-- valid_from until its valid_to or the next version's valid_from, whichever comes first.
-- Conversions join here to find "the terms in force at conversion time".
-- A what-if scenario (vars what_if__*, pipelines/what_if.py) replaces one campaign's payable
-- model and/or window here, in every version of its terms: everything downstream is the
-- production logic, unchanged.
{%- set scenario_campaign = var('what_if__campaign_id') %}
{%- set scenario_model = var('what_if__attribution_model') %}
{%- set scenario_window = var('what_if__window_days') | int %}
{%- if scenario_campaign and not modules.re.fullmatch('[A-Za-z0-9_-]{1,64}', scenario_campaign) %}
    {{ exceptions.raise_compiler_error('what_if__campaign_id is not an id: ' ~ scenario_campaign) }}
{%- endif %}
{%- if scenario_model not in ['', 'first_click', 'last_click', 'linear', 'time_decay', 'position_based', 'data_driven'] %}
    {{ exceptions.raise_compiler_error('what_if__attribution_model is not a model: ' ~ scenario_model) }}
{%- endif %}
{%- if scenario_window < 0 or scenario_window > 365 %}
    {{ exceptions.raise_compiler_error('what_if__window_days must be 0..365: ' ~ scenario_window) }}
{%- endif %}

with

terms as (
    select * from {{ ref('stg_rastro__campaigns') }}
),

final as (
    select
        tenant_id,
        campaign_id,
        terms_version,
        campaign_status,
        valid_from,
        least(
            ifNull(valid_to, toDateTime64('2299-12-31 00:00:00', 3, 'UTC')),
            leadInFrame(valid_from, 1, toDateTime64('2299-12-31 00:00:00', 3, 'UTC')) over (
                partition by tenant_id, campaign_id order by terms_version
                rows between current row and 1 following
            )
        ) as valid_until,
        {%- if scenario_campaign and scenario_model %}
        if(campaign_id = '{{ scenario_campaign }}', '{{ scenario_model }}', attribution_model)
            as payable_model,
        {%- else %}
        attribution_model as payable_model,
        {%- endif %}
        {%- if scenario_campaign and scenario_window %}
        if(campaign_id = '{{ scenario_campaign }}', {{ scenario_window }},
           if(attribution_window_days = 0, {{ var('attribution__default_window_days') }}, attribution_window_days))
            as window_days,
        {%- else %}
        if(attribution_window_days = 0, {{ var('attribution__default_window_days') }}, attribution_window_days)
            as window_days,
        {%- endif %}
        if(attribution_half_life_days = 0, {{ var('attribution__default_half_life_days') }}, attribution_half_life_days)
            as half_life_days,
        hold_days,
        commission_rules,
        -- Conflict rules with their defaults (docs/attribution.md).
        JSONExtractString(conflict_rules, 'coupon') as coupon_setting,
        if(coupon_setting in ('wins', 'click', 'touch'), coupon_setting, 'wins') as coupon_rule,
        ifNull(JSONExtract(conflict_rules, 'exclude_paid_traffic', 'Nullable(Bool)'), true)
            as exclude_paid_traffic,
        ifNull(JSONExtract(conflict_rules, 'exclude_velocity', 'Nullable(Bool)'), true)
            as exclude_velocity,
        JSONExtractString(conflict_rules, 'self_referral') != 'allow' as exclude_self_referral,
        JSONExtract(conflict_rules, 'affiliate_priorities', 'Map(String, Int64)')
            as affiliate_priorities
    from terms
)

select * except (coupon_setting) from final
