{#- The identity graph's node for an identifier: a 64-bit hash of (tenant, kind, id), so
    every join in the graph is on one UInt64 instead of strings (the tenant is in the hash:
    nodes never meet across tenants). -#}
{% macro identity_node(kind, id_column, tenant_column='tenant_id') -%}
    cityHash64({{ tenant_column }}, {{ kind }}, {{ id_column }})
{%- endmacro %}

{#- A click's anchor: the node standing for the click in the graph. A click that carried
    the tracking host's cookie is that cookie (all that browser's clicks are one node);
    a cookieless click is its own click id. -#}
{% macro click_anchor(click_id_column, cookie_id_column, tenant_column='tenant_id') -%}
    if(
        {{ cookie_id_column }} != '',
        {{ identity_node("'cookie'", cookie_id_column, tenant_column) }},
        {{ identity_node("'click'", click_id_column, tenant_column) }}
    )
{%- endmacro %}

{#- A fingerprint of a set of affiliate ids (an array of distinct strings): the wrapping sum
    of their hashes, equal to sum(distinct cityHash64(affiliate_id)) over the same ids. -#}
{% macro set_fingerprint(array_expression) -%}
    arraySum(arrayMap(member -> cityHash64(member), {{ array_expression }}))
{%- endmacro %}
