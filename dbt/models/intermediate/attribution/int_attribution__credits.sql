-- Each conversion credited on its own (not a renewal), per model and affiliate: the
-- journey's touch shares summed per affiliate, with the campaign of its latest touch, or
-- 100% to an affiliate the source named. Renewals inherit these in fct_attributions.
{%- set models = ['first_click', 'last_click', 'linear', 'time_decay', 'position_based', 'data_driven'] %}

with

conversions as (
    select * from {{ ref('int_conversions__current') }}
),

terms as (
    select * from {{ ref('int_campaign_terms__in_force') }}
),

affiliate_shares as (
    -- Per conversion and affiliate: every rule-based model's share, its touches and the
    -- campaign of its latest one.
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        count() as touches,
        min(touched_at) as first_touched_at,
        argMax(campaign_id, (touched_at, touch_id)) as campaign_id,
        argMax(campaign_terms_version, (touched_at, touch_id)) as campaign_terms_version,
        argMax(touch_type, (touched_at, touch_id)) as via,
        any(payable_model) as payable_model,
        sum(first_click_share) as first_click_share,
        sum(last_click_share) as last_click_share,
        sum(linear_share) as linear_share,
        sum(time_decay_share) as time_decay_share,
        sum(position_based_share) as position_based_share
    from {{ ref('int_attribution__touch_shares') }}
    group by tenant_id, conversion_id, affiliate_id
),

journey_credits as (
    select
        affiliate_shares.tenant_id as tenant_id,
        affiliate_shares.conversion_id as conversion_id,
        model,
        affiliate_shares.affiliate_id as affiliate_id,
        share,
        affiliate_shares.campaign_id as campaign_id,
        affiliate_shares.campaign_terms_version as campaign_terms_version,
        affiliate_shares.touches as touches,
        affiliate_shares.first_touched_at as first_touched_at,
        affiliate_shares.via as via,
        model = affiliate_shares.payable_model as is_payable
    from affiliate_shares
    left join {{ ref('int_attribution__data_driven') }} as data_driven
        on data_driven.conversion_id = affiliate_shares.conversion_id
        and data_driven.affiliate_id = affiliate_shares.affiliate_id
    array join
        {{ models | tojson | replace('"', "'") }} as model,
        [
            {%- for model in models[:-1] %}
            affiliate_shares.{{ model }}_share,
            {%- endfor %}
            ifNull(data_driven.share, 0)
        ] as share
    -- An affiliate with no share under a model (first click for a later toucher) has no row.
    where share > 0
),

named_credits as (
    -- The source named the affiliate (manual or API credit): 100% under every model, under
    -- the terms of that affiliate's campaign in force at the conversion.
    select
        conversions.tenant_id as tenant_id,
        conversions.conversion_id as conversion_id,
        model,
        conversions.named_affiliate_id as affiliate_id,
        1.0 as share,
        terms.campaign_id as campaign_id,
        terms.terms_version as campaign_terms_version,
        toUInt64(0) as touches,
        conversions.converted_at as first_touched_at,
        'named' as via,
        model = terms.payable_model as is_payable
    from conversions
    inner join (
        select tenant_id, affiliate_id, min(campaign_id) as campaign_id
        from {{ ref('stg_rastro__links') }}
        group by tenant_id, affiliate_id
    ) as affiliate_campaigns
        on affiliate_campaigns.tenant_id = conversions.tenant_id
        and affiliate_campaigns.affiliate_id = conversions.named_affiliate_id
    inner join terms
        on terms.tenant_id = conversions.tenant_id and terms.campaign_id = affiliate_campaigns.campaign_id
    array join {{ models | tojson | replace('"', "'") }} as model
    where conversions.named_affiliate_id != ''
      and terms.valid_from <= conversions.converted_at and conversions.converted_at < terms.valid_until
),

final as (
    select * from journey_credits
    where conversion_id not in (select conversion_id from named_credits)
    union all
    select * from named_credits
)

select * from final
