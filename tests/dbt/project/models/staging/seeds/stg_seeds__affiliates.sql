with

source as (
    select * from {{ ref('affiliates') }}
),

renamed as (
    select
        affiliate_id,
        trim(affiliate_name) as affiliate_name,
        joined_on,
        min_payout
    from source
)

select * from renamed
