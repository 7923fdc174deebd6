-- Every candidate touch of every conversion, judged: eligible (exclusion_reason = '') or
-- excluded for the first reason that applies (docs/attribution.md, "Touchpoints").
with

touches as (
    select * from {{ ref('int_touchpoints__candidates') }}
),

terms as (
    select * from {{ ref('int_campaign_terms__in_force') }}
),

touch_terms as (
    -- The terms of each touch's campaign in force at the conversion.
    select
        touches.tenant_id as tenant_id,
        touches.conversion_id as conversion_id,
        touches.touch_id as touch_id,
        terms.terms_version as terms_version,
        terms.campaign_status as campaign_status,
        terms.window_days as window_days,
        terms.exclude_paid_traffic as exclude_paid_traffic,
        terms.exclude_velocity as exclude_velocity,
        terms.exclude_self_referral as exclude_self_referral
    from touches
    inner join terms
        on terms.tenant_id = touches.tenant_id and terms.campaign_id = touches.campaign_id
    where terms.valid_from <= touches.converted_at and touches.converted_at < terms.valid_until
    order by terms.terms_version desc
    limit 1 by touches.tenant_id, touches.conversion_id, touches.touch_id
),

affiliate_persons as (
    -- The person an affiliate's own email belongs to, if it ever appeared in the graph.
    select affiliates.tenant_id as tenant_id, affiliates.affiliate_id as affiliate_id,
           affiliates.email_hash as email_hash, affiliates.affiliate_status as affiliate_status,
           persons.person_key as person_key
    from {{ ref('stg_rastro__affiliates') }} as affiliates
    left join {{ ref('int_identity__persons') }} as persons
        on persons.node = {{ identity_node("'email_hash'", 'affiliates.email_hash', 'affiliates.tenant_id') }}
),

judged as (
    select
        touches.tenant_id as tenant_id,
        touches.conversion_id as conversion_id,
        touches.converted_at as converted_at,
        touches.person_key as person_key,
        touches.touch_id as touch_id,
        touches.touch_type as touch_type,
        touches.touched_at as touched_at,
        touches.affiliate_id as affiliate_id,
        touches.campaign_id as campaign_id,
        touch_terms.terms_version as campaign_terms_version,
        touch_terms.window_days as window_days,
        multiIf(
            touches.is_bot, 'bot',
            touches.affiliate_id = '', 'unknown_link',
            touch_terms.terms_version is null, 'no_terms',
            -- A coupon is used at the conversion: it earns only if its campaign's terms in
            -- force then are active. (A click earns if its link worked when clicked.)
            touches.touch_type = 'coupon' and touch_terms.campaign_status != 'active',
                'inactive_campaign',
            touches.touched_at < touches.converted_at - toIntervalDay(touch_terms.window_days),
                'outside_window',
            touches.is_paid_traffic and touch_terms.exclude_paid_traffic, 'paid_hijack',
            touches.is_ip_velocity and touch_terms.exclude_velocity, 'velocity',
            touch_terms.exclude_self_referral
                and affiliate_persons.email_hash != ''
                and (affiliate_persons.email_hash = touches.buyer_email_hash
                     or affiliate_persons.person_key = touches.person_key),
                'self_referral',
            affiliate_persons.affiliate_status in ('suspended', 'rejected'), 'affiliate_inactive',
            ''
        ) as exclusion_reason
    from touches
    left join touch_terms
        on touch_terms.tenant_id = touches.tenant_id
        and touch_terms.conversion_id = touches.conversion_id
        and touch_terms.touch_id = touches.touch_id
    left join affiliate_persons
        on affiliate_persons.tenant_id = touches.tenant_id
        and affiliate_persons.affiliate_id = touches.affiliate_id
)

select * from judged
