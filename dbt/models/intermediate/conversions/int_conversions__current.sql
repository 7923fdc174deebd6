-- The current state of each order: its highest version. Refunds and cancellations are not
-- applied here (they are ledger events); corrections of the order itself are.
with

versions as (
    select * from {{ ref('stg_rastro__conversions') }}
),

current as (
    select *
    from versions
    order by order_version desc, received_at desc
    limit 1 by tenant_id, order_id
),

final as (
    select * except (event_id, received_at) from current
)

select * from final
