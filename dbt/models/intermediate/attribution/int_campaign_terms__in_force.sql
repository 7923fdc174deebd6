-- Campaign terms with their effective period closed: a version applies from its
-- valid_from until its valid_to or the next version's valid_from, whichever comes first.
-- Conversions join here to find "the terms in force at conversion time".
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
        attribution_model as payable_model,
        if(attribution_window_days = 0, {{ var('attribution__default_window_days') }}, attribution_window_days)
            as window_days,
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
