-- The anchor of every click id that was seen again (on a landing page, an order or an
-- identity link): its tracking cookie's node, or its own when it carried none. Events
-- that mention a click id join the graph through its anchor, so the graph holds one node
-- per browser instead of one per click (docs/attribution.md, "Identity").
with

mentioned as (
    select {{ identity_node("'click'", 'click_id') }} as click_node
    from {{ ref('stg_rastro__page_events') }} where click_id != ''
    union all
    select {{ identity_node("'click'", 'click_id') }}
    from {{ ref('int_conversions__current') }} where click_id != ''
    union all
    select {{ identity_node("'click'", 'left_id') }}
    from {{ ref('stg_rastro__identity_links') }} where left_kind = 'click'
    union all
    select {{ identity_node("'click'", 'right_id') }}
    from {{ ref('stg_rastro__identity_links') }} where right_kind = 'click'
),

final as (
    -- Repeat clicks share a click id and a browser: any row's cookie will do.
    select
        tenant_id,
        {{ identity_node("'click'", 'click_id') }} as click_node,
        {{ click_anchor('click_id', 'max(cookie_id)') }} as anchor_node
    from {{ ref('stg_rastro__clicks') }}
    where {{ identity_node("'click'", 'click_id') }} in (select click_node from mentioned)
    group by tenant_id, click_id
)

select * from final
