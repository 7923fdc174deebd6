-- Every pair of identifiers seen together (docs/attribution.md, "Identity"), both
-- directions, plus a self-loop per node so that one join per round of label propagation
-- (int_identity__persons) also keeps a node's own label. A click id stands for its anchor
-- (int_identity__click_anchors): the browser's tracking cookie when it had one.
with

page_events as (
    select * from {{ ref('stg_rastro__page_events') }}
),

conversions as (
    select * from {{ ref('int_conversions__current') }}
),

identity_links as (
    select * from {{ ref('stg_rastro__identity_links') }}
    where consent != 'denied'
),

{% if var('identity__use_device_signature') %}
devices as (
    -- A browser's signature, only where consent was granted. One device shows a new cookie
    -- now and then (Safari's 7-day cap, a private window): a signature showing more than
    -- `identity__device_max_cookies_per_day` cookies in one day is a shared address (an
    -- office, a carrier's NAT) with a common user agent, and joins nobody.
    select
        tenant_id,
        hex(cityHash64(ip_hash, user_agent)) as device_id,
        cookie_id,
        toDate(occurred_at) as day
    from page_events
    where consent = 'granted' and ip_hash != '' and user_agent != '' and cookie_id != ''
    group by tenant_id, device_id, cookie_id, day
),

device_edges as (
    select distinct
        tenant_id, 'device' as left_kind, device_id as left_id, 'cookie' as right_kind, cookie_id as right_id
    from (
        select
            *,
            max(cookies_that_day) over (partition by tenant_id, device_id) as most_cookies_in_a_day
        from (
            select *, count() over (partition by tenant_id, device_id, day) as cookies_that_day
            from devices
        )
    )
    where most_cookies_in_a_day <= {{ var('identity__device_max_cookies_per_day') }}
),
{% endif %}

pairs as (
    -- A page event: its identifiers pairwise, around the cookie.
    select tenant_id, left_kind, left_id, right_kind, right_id
    from page_events
    array join
        ['click', 'cookie', 'cookie', 'customer'] as left_kind,
        [click_id, cookie_id, cookie_id, customer_id] as left_id,
        ['cookie', 'customer', 'email_hash', 'email_hash'] as right_kind,
        [cookie_id, customer_id, email_hash, email_hash] as right_id
    where left_id != '' and right_id != ''

    union all

    -- A conversion: each identifier it carries linked to the first present one.
    select tenant_id, left_kind, left_id, right_kind, right_id
    from (
        select
            tenant_id,
            arrayFilter(
                (kind, id) -> id != '',
                ['click', 'cookie', 'customer', 'email_hash'],
                [click_id, cookie_id, customer_id, email_hash]
            ) as kinds,
            arrayFilter(id -> id != '', [click_id, cookie_id, customer_id, email_hash]) as ids
        from conversions
        where length(ids) >= 2
    )
    array join
        arrayPopFront(kinds) as right_kind,
        arrayPopFront(ids) as right_id,
        arrayResize([kinds[1]], length(kinds) - 1, kinds[1]) as left_kind,
        arrayResize([ids[1]], length(ids) - 1, ids[1]) as left_id

    union all

    select tenant_id, left_kind, left_id, right_kind, right_id
    from identity_links
    where left_id != '' and right_id != ''

    {% if var('identity__use_device_signature') %}
    union all

    select tenant_id, left_kind, left_id, right_kind, right_id
    from device_edges
    {% endif %}
),

anchors as (
    select click_node, anchor_node from {{ ref('int_identity__click_anchors') }}
),

nodes as (
    select
        pairs.tenant_id as tenant_id,
        {{ identity_node('pairs.left_kind', 'pairs.left_id', 'pairs.tenant_id') }} as raw_left,
        {{ identity_node('pairs.right_kind', 'pairs.right_id', 'pairs.tenant_id') }} as raw_right,
        coalesce(left_anchor.anchor_node, raw_left) as left_node,
        coalesce(right_anchor.anchor_node, raw_right) as right_node
    from pairs
    left join anchors as left_anchor on left_anchor.click_node = raw_left
    left join anchors as right_anchor on right_anchor.click_node = raw_right
),

final as (
    -- One pass over the pairs: each edge both ways, and each end's self-loop.
    select distinct tenant_id, edge.1 as from_node, edge.2 as to_node
    from nodes
    array join [
        (left_node, right_node), (right_node, left_node),
        (left_node, left_node), (right_node, right_node)
    ] as edge
)

select * from final
