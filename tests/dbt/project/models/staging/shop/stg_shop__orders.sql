-- Renaming and typing only: every later model reads orders through here.
with

source as (
    select * from {{ source('shop', 'raw_orders') }}
),

renamed as (
    select
        order_id,
        toUInt32(affiliate_id) as affiliate_id,
        toDecimal64(amount, 2) as order_amount,
        lower(status) as order_status,
        ordered_at,
        updated_at
    from source
)

select * from renamed
