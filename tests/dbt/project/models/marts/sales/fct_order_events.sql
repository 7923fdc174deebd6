{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine='MergeTree()',
        order_by='(order_id, updated_at)',
        partition_by='toYYYYMM(updated_at)',
    )
}}

with

order_versions as (
    select * from {{ ref('stg_shop__orders') }}
    {% if is_incremental() %}
    -- The landing table only grows and a version is never re-stamped, so what is newer
    -- than the newest version already here is exactly what is new.
    where updated_at > (select max(updated_at) from {{ this }})
    {% endif %}
),

final as (
    select
        order_id,
        affiliate_id,
        order_amount,
        order_status,
        ordered_at,
        updated_at,
        -- Which build wrote the row: shows that a later build appended and kept the rest.
        '{{ invocation_id }}' as dbt_invocation_id
    from order_versions
)

select * from final
