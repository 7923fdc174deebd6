-- Label propagation ran enough rounds: no edge joins two different persons. A failure
-- means a component is wider than `identity__max_hops`: raise it.
select edges.tenant_id, edges.from_node, edges.to_node
from {{ ref('int_identity__edges') }} as edges
inner join {{ ref('int_identity__persons') }} as from_person
    on from_person.node = edges.from_node
inner join {{ ref('int_identity__persons') }} as to_person
    on to_person.node = edges.to_node
where from_person.person_key != to_person.person_key
