{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        engine='MergeTree()',
        order_by='(affiliate_id, ordered_at, order_id)',
        partition_by='toYYYYMM(ordered_at)',
    )
}}

with

order_versions as (
    select * from {{ ref('stg_shop__orders') }}
    {% if is_incremental() %}
    -- Each version carries the whole order, so only orders changed since the last build
    -- need their row replaced (delete+insert on order_id).
    where updated_at > (select max(updated_at) from {{ this }})
    {% endif %}
),

latest as (
    -- An order can change several times between two builds: its newest version wins.
    select * from order_versions
    order by updated_at desc
    limit 1 by order_id
),

final as (
    select
        order_id,
        affiliate_id,
        order_amount,
        order_status,
        ordered_at,
        updated_at,
        -- Which build wrote the row: shows that a later build replaced only changed orders.
        '{{ invocation_id }}' as dbt_invocation_id
    from latest
)

select * from final
