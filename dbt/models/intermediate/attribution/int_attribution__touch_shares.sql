-- The rule-based models' share of each journey touch (docs/attribution.md, "The models"),
-- one column per model. Every model is computed for every conversion, so merchants can
-- compare and replay; the data-driven model is per affiliate (int_attribution__data_driven).
{%- set first = var('attribution__position_first_share') %}
{%- set last = var('attribution__position_last_share') %}

with

journeys as (
    select
        *,
        -- time_decay: a touch one half-life older than another weighs half as much.
        exp2(
            -dateDiff('millisecond', touched_at, converted_at) / (half_life_days * 86400000.0)
        ) as decay_weight,
        sum(decay_weight) over (partition by conversion_id) as decay_total
    from {{ ref('int_attribution__journeys') }}
),

final as (
    select
        tenant_id,
        conversion_id,
        touch_id,
        touch_type,
        touched_at,
        affiliate_id,
        campaign_id,
        campaign_terms_version,
        payable_model,
        toFloat64(position = 1) as first_click_share,
        toFloat64(position = touch_count) as last_click_share,
        1.0 / touch_count as linear_share,
        decay_weight / decay_total as time_decay_share,
        multiIf(
            touch_count = 1, 1.0,
            touch_count = 2, 0.5,
            position = 1, {{ first }},
            position = touch_count, {{ last }},
            -- rounded: 1 - 0.4 - 0.4 is 0.19999999999999996 in binary floating point
            round(1.0 - {{ first }} - {{ last }}, 9) / (touch_count - 2)
        ) as position_based_share
    from journeys
)

select * from final
