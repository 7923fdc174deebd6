-- What each payable credit earns under the current facts (docs/attribution.md, section 4):
-- the rules' amounts for the whole order, summed, times the affiliate's share, rounded half
-- to even to the minor unit. A credit no rule prices keeps its row with 0 and no rule ids,
-- so "why did this sale earn nothing?" has an answer. The ledger (fct_ledger_entries) books
-- these amounts and every change to them.
{{
    config(
        order_by='(tenant_id, conversion_id, affiliate_id)',
        partition_by='toYYYYMM(converted_at)',
    )
}}

with

payable as (
    select *
    from {{ ref('fct_attributions') }}
    where is_payable = 1 and share > 0
),

orders as (
    select tenant_id, conversion_id, amount_minor, net_minor, renewal_number
    from {{ ref('int_conversions__current') }}
),

terms as (
    select tenant_id, campaign_id, terms_version, hold_days
    from {{ ref('stg_rastro__campaigns') }}
),

rule_lines as (
    -- The rules that priced each credit, in their order in the terms.
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        any(prior_monthly_conversions) as prior_monthly_conversions,
        arraySort(
            line -> line.1,
            groupArray(
                (rule_index, rule_id, category, base_minor, effective_rate,
                 tier_min_monthly_conversions, is_capped, rule_amount)
            )
        ) as lines,
        sum(rule_amount) as gross_amount
    from {{ ref('int_commissions__priced') }}
    group by tenant_id, conversion_id, affiliate_id
),

joined as (
    select
        payable.tenant_id as tenant_id,
        payable.conversion_id as conversion_id,
        payable.order_id as order_id,
        payable.affiliate_id as affiliate_id,
        payable.converted_at as converted_at,
        payable.campaign_id as campaign_id,
        toUInt32(ifNull(payable.campaign_terms_version, 0)) as campaign_terms_version,
        toLowCardinality(payable.model) as attribution_model,
        toLowCardinality(payable.via) as via,
        payable.share as share,
        payable.currency as currency,
        orders.amount_minor as order_amount_minor,
        orders.net_minor as order_net_minor,
        orders.renewal_number as renewal_number,
        rule_lines.prior_monthly_conversions as prior_monthly_conversions,
        ifNull(rule_lines.lines, []) as lines,
        ifNull(rule_lines.gross_amount, toDecimal128(0, 9)) as gross_amount,
        -- Terms without hold_days (no campaign): the default hold of 30 days.
        ifNull(terms.hold_days, 30) as hold_days
    from payable
    inner join orders
        on orders.tenant_id = payable.tenant_id
        and orders.conversion_id = payable.conversion_id
    left join rule_lines
        on rule_lines.tenant_id = payable.tenant_id
        and rule_lines.conversion_id = payable.conversion_id
        and rule_lines.affiliate_id = payable.affiliate_id
    left join terms
        on terms.tenant_id = payable.tenant_id
        and terms.campaign_id = payable.campaign_id
        and terms.terms_version = payable.campaign_terms_version
),

final as (
    select
        concat(conversion_id, ':', affiliate_id) as commission_id,
        tenant_id,
        conversion_id,
        order_id,
        affiliate_id,
        converted_at,
        campaign_id,
        campaign_terms_version,
        attribution_model,
        via,
        share,
        currency,
        order_amount_minor,
        order_net_minor,
        renewal_number,
        toUInt32(ifNull(prior_monthly_conversions, 0)) as prior_monthly_conversions,
        arrayMap(line -> line.2, lines) as rule_ids,
        arrayMap(line -> line.3, lines) as rule_categories,
        arrayMap(line -> line.4, lines) as rule_bases_minor,
        arrayMap(line -> line.5, lines) as rule_rates,
        arrayMap(line -> line.6, lines) as rule_tiers_reached,
        arrayMap(line -> line.7, lines) as rule_capped,
        arrayMap(line -> line.8, lines) as rule_amounts,
        toDecimal128(gross_amount, 9) as gross_amount,
        -- The share as the shortest decimal that reads back as the same Float64 (0.3, not
        -- 0.2999...), so a share meant as a round fraction rounds as a person would expect.
        toDecimal256(toString(share), 18) as share_decimal,
        toDecimal256(gross_amount, 9) * share_decimal as commission_exact,
        toInt64(roundBankers(commission_exact, 0)) as commission_minor,
        toUInt16(hold_days) as hold_days,
        converted_at + toIntervalDay(hold_days) as hold_until
    from joined
)

select * except (share_decimal) from final
