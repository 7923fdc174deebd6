-- fct_attributions of the attribution story equals attribution_expected__fct_attributions
-- exactly (shares to 9 decimal places): every row missing from either side is returned
-- (side = missing | unexpected).
{{ config(tags=['attribution_integration']) }}

with

actual as (
    select
        order_id,
        model,
        affiliate_id,
        campaign_id,
        toUInt32(ifNull(campaign_terms_version, 0)) as campaign_terms_version,
        -- Through an 18-place decimal: rounding a Float64 to 9 places is not exact.
        toDecimal64(round(toDecimal128(share, 18), 9), 9) as share,
        credited_amount_minor,
        credited_net_minor,
        is_payable,
        via
    from {{ ref('fct_attributions') }}
    where tenant_id = 'it-attr'
),

expected as (
    select
        order_id,
        model,
        affiliate_id,
        campaign_id,
        campaign_terms_version,
        share,
        credited_amount_minor,
        credited_net_minor,
        is_payable,
        via
    from {{ ref('attribution_expected__fct_attributions') }}
)

select 'missing' as side, * from (select * from expected except select * from actual)
union all
select 'unexpected' as side, * from (select * from actual except select * from expected)
