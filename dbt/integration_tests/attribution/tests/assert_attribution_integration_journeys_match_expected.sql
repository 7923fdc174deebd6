-- fct_conversion_journeys of the attribution story equals
-- attribution_expected__fct_conversion_journeys exactly: every row missing from either side
-- is returned (side = missing | unexpected).
{{ config(tags=['attribution_integration']) }}

with

actual as (
    select
        order_id,
        toUInt64(candidate_touches) as candidate_touches,
        toUInt64(eligible_touches) as eligible_touches,
        toUInt64(journey_touches) as journey_touches,
        arrayStringConcat(
            arrayMap((reason, touches) -> concat(reason, '=', toString(touches)),
                     mapKeys(mapSort(excluded_by_reason)), mapValues(mapSort(excluded_by_reason))),
            ' '
        ) as excluded_by_reason,
        ifNull(governing_campaign_id, '') as governing_campaign_id,
        ifNull(toString(governing_terms_version), '') as governing_terms_version,
        ifNull(payable_model, '') as payable_model,
        arrayStringConcat(payable_affiliate_ids, ' ') as payable_affiliate_ids,
        attribution_status
    from {{ ref('fct_conversion_journeys') }}
    where tenant_id = 'it-attr'
),

expected as (
    select
        order_id,
        candidate_touches,
        eligible_touches,
        journey_touches,
        ifNull(excluded_by_reason, '') as excluded_by_reason,
        ifNull(governing_campaign_id, '') as governing_campaign_id,
        ifNull(governing_terms_version, '') as governing_terms_version,
        ifNull(payable_model, '') as payable_model,
        ifNull(payable_affiliate_ids, '') as payable_affiliate_ids,
        attribution_status
    from {{ ref('attribution_expected__fct_conversion_journeys') }}
)

select 'missing' as side, * from (select * from expected except select * from actual)
union all
select 'unexpected' as side, * from (select * from actual except select * from expected)
