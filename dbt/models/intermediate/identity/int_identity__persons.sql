-- Connected components of the identity graph by label propagation: every node starts with
-- its own hash as label, and each round takes the smallest label among itself and its
-- neighbours (the self-loops in int_identity__edges make that one join). After
-- `identity__max_hops` rounds, every node within that many hops of its component's
-- smallest node carries it: the person key. assert_identity_converged checks that no edge
-- still joins two keys.
{%- set rounds = var('identity__max_hops') %}

with

edges as (
    select tenant_id, from_node, to_node from {{ ref('int_identity__edges') }}
),

labels_0 as (
    -- Round 1 directly: the smallest neighbour (self included) of each node.
    select from_node as node, min(to_node) as label
    from edges
    group by from_node
),

{% for round in range(1, rounds) %}
labels_{{ round }} as (
    -- Nodes hash the tenant in: joining on the node alone never crosses tenants. The
    -- tenant is carried only by the last round.
    select
        {% if round == rounds - 1 %}any(edges.tenant_id) as tenant_id,{% endif %}
        edges.from_node as node,
        min(previous.label) as label
    from edges
    inner join labels_{{ round - 1 }} as previous on previous.node = edges.to_node
    group by edges.from_node
),
{% endfor %}

final as (
    select tenant_id, node, label as person_key
    from labels_{{ rounds - 1 }}
)

select * from final
