-- Each conversion's journey: its eligible touches after the governing campaign's conflict
-- rules (coupon vs click, affiliate priorities), numbered in time order. The governing
-- campaign is the campaign of the last eligible touch; its terms in force at the
-- conversion give the payable model and the time-decay half-life.
with

eligible as (
    select * from {{ ref('int_touchpoints__evaluated') }}
    where exclusion_reason = ''
),

terms as (
    select * from {{ ref('int_campaign_terms__in_force') }}
),

governing as (
    select
        tenant_id,
        conversion_id,
        argMax(campaign_id, (touched_at, touch_id)) as governing_campaign_id,
        argMax(campaign_terms_version, (touched_at, touch_id)) as governing_terms_version,
        countIf(touch_type = 'coupon') > 0 as has_coupon,
        countIf(touch_type = 'click') > 0 as has_click
    from eligible
    group by tenant_id, conversion_id
),

with_rules as (
    select
        eligible.tenant_id as tenant_id,
        eligible.conversion_id as conversion_id,
        eligible.converted_at as converted_at,
        eligible.touch_id as touch_id,
        eligible.touch_type as touch_type,
        eligible.touched_at as touched_at,
        eligible.affiliate_id as affiliate_id,
        eligible.campaign_id as campaign_id,
        eligible.campaign_terms_version as campaign_terms_version,
        governing.governing_campaign_id as governing_campaign_id,
        governing.governing_terms_version as governing_terms_version,
        terms.payable_model as payable_model,
        terms.half_life_days as half_life_days,
        multiIf(
            terms.coupon_rule = 'wins' and governing.has_coupon, eligible.touch_type = 'coupon',
            terms.coupon_rule = 'click' and governing.has_click, eligible.touch_type = 'click',
            true
        ) as kept_by_coupon_rule,
        terms.affiliate_priorities[eligible.affiliate_id] as priority
    from eligible
    inner join governing
        on governing.tenant_id = eligible.tenant_id and governing.conversion_id = eligible.conversion_id
    inner join terms
        on terms.tenant_id = governing.tenant_id
        and terms.campaign_id = governing.governing_campaign_id
        and terms.terms_version = governing.governing_terms_version
),

prioritised as (
    select
        *,
        max(priority) over (partition by tenant_id, conversion_id) as top_priority
    from with_rules
    where kept_by_coupon_rule
),

final as (
    select
        tenant_id,
        conversion_id,
        converted_at,
        touch_id,
        touch_type,
        touched_at,
        affiliate_id,
        campaign_id,
        campaign_terms_version,
        governing_campaign_id,
        governing_terms_version,
        payable_model,
        half_life_days,
        row_number() over (
            partition by tenant_id, conversion_id order by touched_at, touch_id
        ) as position,
        count() over (partition by tenant_id, conversion_id) as touch_count
    from prioritised
    where priority = top_priority
)

select * from final
