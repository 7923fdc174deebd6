-- Why each conversion was (or was not) credited: its person, its candidate touches, the
-- exclusions by reason, the journey kept and the payable outcome. The audit trail a
-- merchant reads when asking "why did this affiliate get this order?".
with

conversions as (
    select * from {{ ref('int_conversions__current') }}
),

touches as (
    select
        tenant_id,
        conversion_id,
        any(person_key) as person_key,
        count() as candidate_touches,
        countIf(exclusion_reason = '') as eligible_touches,
        sumMapIf(map(exclusion_reason, toUInt64(1)), exclusion_reason != '') as excluded_by_reason
    from {{ ref('int_touchpoints__evaluated') }}
    group by tenant_id, conversion_id
),

journeys as (
    select
        tenant_id,
        conversion_id,
        count() as journey_touches,
        any(governing_campaign_id) as governing_campaign_id,
        any(governing_terms_version) as governing_terms_version,
        any(payable_model) as payable_model
    from {{ ref('int_attribution__journeys') }}
    group by tenant_id, conversion_id
),

payable as (
    select
        tenant_id,
        conversion_id,
        any(model) as payable_model,
        any(via) as via,
        arraySort(groupArray(affiliate_id)) as payable_affiliate_ids
    from {{ ref('fct_attributions') }}
    where is_payable = 1
    group by tenant_id, conversion_id
),

final as (
    select
        conversions.tenant_id as tenant_id,
        conversions.conversion_id as conversion_id,
        conversions.order_id as order_id,
        conversions.converted_at as converted_at,
        conversions.conversion_kind as conversion_kind,
        conversions.renewal_number as renewal_number,
        touches.person_key as person_key,
        ifNull(touches.candidate_touches, 0) as candidate_touches,
        ifNull(touches.eligible_touches, 0) as eligible_touches,
        ifNull(journeys.journey_touches, 0) as journey_touches,
        ifNull(touches.excluded_by_reason, map()) as excluded_by_reason,
        journeys.governing_campaign_id as governing_campaign_id,
        journeys.governing_terms_version as governing_terms_version,
        coalesce(payable.payable_model, journeys.payable_model) as payable_model,
        ifNull(payable.payable_affiliate_ids, []) as payable_affiliate_ids,
        multiIf(
            payable.via in ('named', 'renewal'), payable.via,
            notEmpty(payable_affiliate_ids), 'attributed',
            'unattributed'
        ) as attribution_status
    from conversions
    left join touches
        on touches.tenant_id = conversions.tenant_id and touches.conversion_id = conversions.conversion_id
    left join journeys
        on journeys.tenant_id = conversions.tenant_id and journeys.conversion_id = conversions.conversion_id
    left join payable
        on payable.tenant_id = conversions.tenant_id and payable.conversion_id = conversions.conversion_id
)

select * from final
