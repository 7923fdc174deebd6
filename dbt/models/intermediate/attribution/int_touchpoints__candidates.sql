-- Every candidate touch of every conversion (renewals excluded: they inherit): the clicks
-- whose person is the conversion's, up to the conversion's time, and the affiliate
-- coupons on the order. A click's person is its anchor's component (its tracking cookie's,
-- or its own click id's), or the anchor itself when the graph never saw it.
with

conversions as (
    select * from {{ ref('int_conversions__persons') }}
    where not is_renewal and person_key != 0
),

converting_persons as (
    -- The identifiers of converting persons only: the right side of the click lookup.
    select node, person_key
    from {{ ref('int_identity__persons') }}
    where person_key in (select person_key from conversions)
),

clicks as (
    select
        clicks.tenant_id as tenant_id,
        clicks.click_id as click_id,
        clicks.clicked_at as clicked_at,
        clicks.affiliate_id as affiliate_id,
        clicks.campaign_id as campaign_id,
        clicks.is_bot or clicks.is_head or clicks.is_preview as is_bot,
        notEmpty(clicks.paid_click_markers) as is_paid_traffic,
        arrayExists(flag -> startsWith(flag, 'ip_'), clicks.velocity_flags) as is_ip_velocity,
        {{ click_anchor('clicks.click_id', 'clicks.cookie_id', 'clicks.tenant_id') }} as anchor_node,
        coalesce(persons.person_key, anchor_node) as person_key
    from {{ ref('stg_rastro__clicks') }} as clicks
    left join converting_persons as persons on persons.node = anchor_node
    where person_key in (select person_key from conversions)
),

click_touches as (
    -- A click id reused by repeat clicks is one touch, at its latest time before the
    -- conversion (the visitor's last click on that link), with that click's attributes.
    select
        conversions.tenant_id as tenant_id,
        conversions.conversion_id as conversion_id,
        any(conversions.converted_at) as converted_at,
        any(conversions.email_hash) as buyer_email_hash,
        any(conversions.person_key) as person_key,
        concat('click:', clicks.click_id) as touch_id,
        'click' as touch_type,
        max(clicks.clicked_at) as touched_at,
        argMax(clicks.affiliate_id, clicks.clicked_at) as affiliate_id,
        argMax(clicks.campaign_id, clicks.clicked_at) as campaign_id,
        argMax(clicks.is_bot, clicks.clicked_at) as is_bot,
        argMax(clicks.is_paid_traffic, clicks.clicked_at) as is_paid_traffic,
        argMax(clicks.is_ip_velocity, clicks.clicked_at) as is_ip_velocity
    from conversions
    inner join clicks on clicks.person_key = conversions.person_key
    where clicks.clicked_at <= conversions.converted_at
    group by conversions.tenant_id, conversions.conversion_id, clicks.click_id
),

coupon_touches as (
    select
        orders.tenant_id as tenant_id,
        orders.conversion_id as conversion_id,
        orders.converted_at as converted_at,
        orders.email_hash as buyer_email_hash,
        orders.person_key as person_key,
        concat('coupon:', links.code_key) as touch_id,
        'coupon' as touch_type,
        orders.converted_at as touched_at,
        links.affiliate_id as affiliate_id,
        links.campaign_id as campaign_id,
        false as is_bot,
        false as is_paid_traffic,
        false as is_ip_velocity
    from (
        select *, upper(arrayJoin(arrayDistinct(coupon_codes))) as code_key
        from {{ ref('int_conversions__persons') }}
        where not is_renewal and notEmpty(coupon_codes)
    ) as orders
    inner join {{ ref('stg_rastro__links') }} as links
        on links.tenant_id = orders.tenant_id and links.code_key = orders.code_key
    where links.link_kind = 'coupon'
),

final as (
    select * from click_touches
    union all
    select * from coupon_touches
)

select * from final
