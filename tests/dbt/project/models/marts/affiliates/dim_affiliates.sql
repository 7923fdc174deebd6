-- A few rows per affiliate: sorted by its key and not partitioned (a partition per month
-- would only multiply tiny parts).
{{ config(order_by='affiliate_id') }}

with

affiliates as (
    select * from {{ ref('stg_seeds__affiliates') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

order_totals as (
    select
        affiliate_id,
        count() as order_count,
        -- A reversed order earns nothing.
        sumIf(order_amount, order_status != 'reversed') as credited_revenue,
        max(ordered_at) as last_ordered_at
    from orders
    group by affiliate_id
),

joined as (
    select
        affiliates.affiliate_id as affiliate_id,
        affiliates.affiliate_name as affiliate_name,
        affiliates.joined_on as joined_on,
        affiliates.min_payout as min_payout,
        -- join_use_nulls (profile) makes an affiliate without orders NULL here.
        ifNull(order_totals.order_count, 0) as order_count,
        ifNull(order_totals.credited_revenue, toDecimal128(0, 2)) as credited_revenue,
        -- NULL, not 1970-01-01, for an affiliate that never sold.
        order_totals.last_ordered_at as last_ordered_at
    from affiliates
    left join order_totals on affiliates.affiliate_id = order_totals.affiliate_id
)

select * from joined
