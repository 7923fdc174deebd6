-- The person behind each conversion: the smallest person key among its identifiers
-- (click anchor, cookie, customer, email hash), which the conversion itself joins in the
-- graph. An order whose identifiers joined nothing keeps its first identifier's node as
-- its key, so the clicks of that browser still meet it (int_touchpoints__candidates).
with

conversions as (
    select * from {{ ref('int_conversions__current') }}
),

nodes as (
    select
        conversions.conversion_id as conversion_id,
        arrayFilter(
            (node, id) -> id != '',
            [
                coalesce(anchors.anchor_node, {{ identity_node("'click'", 'conversions.click_id', 'conversions.tenant_id') }}),
                {{ identity_node("'cookie'", 'conversions.cookie_id', 'conversions.tenant_id') }},
                {{ identity_node("'customer'", 'conversions.customer_id', 'conversions.tenant_id') }},
                {{ identity_node("'email_hash'", 'conversions.email_hash', 'conversions.tenant_id') }}
            ],
            [conversions.click_id, conversions.cookie_id, conversions.customer_id, conversions.email_hash]
        ) as identifier_nodes
    from conversions
    left join {{ ref('int_identity__click_anchors') }} as anchors
        on anchors.click_node = {{ identity_node("'click'", 'conversions.click_id', 'conversions.tenant_id') }}
),

graph_persons as (
    select nodes.conversion_id as conversion_id, min(persons.person_key) as person_key
    from nodes
    array join identifier_nodes as node
    inner join {{ ref('int_identity__persons') }} as persons on persons.node = node
    group by nodes.conversion_id
),

final as (
    select
        conversions.tenant_id as tenant_id,
        conversions.conversion_id as conversion_id,
        conversions.converted_at as converted_at,
        conversions.email_hash as email_hash,
        conversions.coupon_codes as coupon_codes,
        conversions.renewal_number > 0 and conversions.subscription_id != '' as is_renewal,
        coalesce(graph_persons.person_key, nodes.identifier_nodes[1]) as person_key
    from conversions
    inner join nodes on nodes.conversion_id = conversions.conversion_id
    left join graph_persons on graph_persons.conversion_id = conversions.conversion_id
)

select * from final
