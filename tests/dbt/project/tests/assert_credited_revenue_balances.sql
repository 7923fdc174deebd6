-- The revenue credited to affiliates adds up to the non-reversed orders, to the cent:
-- no order is lost or counted twice on the way from fct_orders to dim_affiliates.
with

credited as (
    select sum(credited_revenue) as total from {{ ref('dim_affiliates') }}
),

ordered as (
    select sumIf(order_amount, order_status != 'reversed') as total from {{ ref('fct_orders') }}
)

select
    credited.total as credited_total,
    ordered.total as ordered_total
from credited
cross join ordered
where credited.total != ordered.total
