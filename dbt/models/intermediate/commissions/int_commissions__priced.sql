-- Which rules price each payable credit, on what base, at what rate (docs/attribution.md,
-- section 4): each line of the order goes to the applicable line rule (category or products)
-- that targets it most narrowly, and each such rule prices the sum of its lines; then the most
-- specific applicable rule without a category or products prices the rest of the order.
-- Amounts here are for the whole order, before the affiliate's share (the cap is per
-- conversion); fct_commissions applies the share and rounds.
{{
    config(
        order_by='(tenant_id, conversion_id, affiliate_id, rule_index)',
        partition_by='toYYYYMM(converted_at)',
    )
}}

with

payable as (
    -- Only the governing campaign's payable model earns; an affiliate without share has no row.
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        converted_at,
        campaign_id,
        campaign_terms_version
    from {{ ref('fct_attributions') }}
    where is_payable = 1 and share > 0
),

counted as (
    -- Tiers count the affiliate's payable conversions in the campaign in the same calendar
    -- month (UTC) strictly before this one: rank() - 1 leaves out conversions at the same instant.
    select
        *,
        toUInt32(
            rank() over (
                partition by tenant_id, affiliate_id, campaign_id, toStartOfMonth(converted_at, 'UTC')
                order by converted_at
            ) - 1
        ) as prior_monthly_conversions
    from payable
),

orders as (
    select
        tenant_id,
        conversion_id,
        amount_minor,
        net_minor,
        is_new_customer,
        renewal_number,
        country,
        coupon_codes,
        line_items
    from {{ ref('int_conversions__current') }}
),

affiliates as (
    select tenant_id, affiliate_id, segment
    from {{ ref('stg_rastro__affiliates') }}
),

rules as (
    select *
    from {{ ref('int_commission_rules__parsed') }}
    where is_valid = 1
),

applicable as (
    -- Every rule of the credited touch's campaign terms whose conditions all hold.
    select
        counted.tenant_id as tenant_id,
        counted.conversion_id as conversion_id,
        counted.affiliate_id as affiliate_id,
        counted.converted_at as converted_at,
        counted.campaign_id as campaign_id,
        counted.campaign_terms_version as campaign_terms_version,
        counted.prior_monthly_conversions as prior_monthly_conversions,
        orders.amount_minor as order_amount_minor,
        orders.net_minor as order_net_minor,
        rules.rule_index as rule_index,
        rules.rule_id as rule_id,
        rules.rule_type as rule_type,
        rules.rate as rate,
        rules.amount_minor as flat_amount_minor,
        rules.base as base,
        rules.category as category,
        lower(rules.category) as category_key,
        rules.product_ids as product_ids,
        -- A line rule prices only the lines it selects; any other rule prices the rest.
        toUInt8(rules.category != '' or notEmpty(rules.product_ids)) as is_line_rule,
        rules.tiers as tiers,
        rules.cap_minor as cap_minor,
        rules.specificity as specificity,
        orders.line_items as line_items
    from counted
    inner join orders
        on orders.tenant_id = counted.tenant_id
        and orders.conversion_id = counted.conversion_id
    inner join rules
        on rules.tenant_id = counted.tenant_id
        and rules.campaign_id = counted.campaign_id
        and rules.terms_version = counted.campaign_terms_version
    left join affiliates
        on affiliates.tenant_id = counted.tenant_id
        and affiliates.affiliate_id = counted.affiliate_id
    where (rules.segment = '' or rules.segment = ifNull(affiliates.segment, ''))
        and (rules.affiliate_id = '' or rules.affiliate_id = counted.affiliate_id)
        and orders.amount_minor >= rules.min_order_minor
        and (rules.new_customers_only = 0 or orders.is_new_customer)
        -- A renewal n earns only under a rule with recurring_months >= n.
        and orders.renewal_number <= rules.recurring_months
        -- The customer's country; an order without one matches no country rule.
        and (empty(rules.countries) or has(rules.countries, upper(orders.country)))
        -- Coupon codes compare case-insensitively, as coupon touches do.
        and (empty(rules.coupon_codes) or hasAny(rules.coupon_codes, arrayMap(code -> upper(code), orders.coupon_codes)))
),

line_claims as (
    -- Each line goes to the line rule that targets it most narrowly: a rule naming products
    -- before a category rule, then the most specific, then the earlier in the array.
    -- Categories compare case-insensitively ("Electronics" is "electronics"); a product id
    -- is the line's product_id or its sku, exactly.
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        rule_index,
        line_number,
        line.amount_minor as line_amount_minor
    from applicable
    array join line_items as line, arrayEnumerate(line_items) as line_number
    where is_line_rule = 1
        and (category_key = '' or lower(line.category) = category_key)
        and (empty(product_ids) or has(product_ids, line.product_id) or has(product_ids, line.sku))
    order by notEmpty(product_ids) desc, specificity desc, rule_index
    limit 1 by tenant_id, conversion_id, affiliate_id, line_number
),

line_totals as (
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        rule_index,
        sum(line_amount_minor) as lines_minor
    from line_claims
    group by tenant_id, conversion_id, affiliate_id, rule_index
),

lines_priced as (
    -- A line rule that selects no line of the order (or lost all of them to narrower rules)
    -- prices nothing, a flat one included.
    select
        applicable.*,
        if(notEmpty(applicable.product_ids), 'product', 'category') as priced_part,
        greatest(line_totals.lines_minor, 0) as base_minor
    from applicable
    inner join line_totals
        on line_totals.tenant_id = applicable.tenant_id
        and line_totals.conversion_id = applicable.conversion_id
        and line_totals.affiliate_id = applicable.affiliate_id
        and line_totals.rule_index = applicable.rule_index
),

priced_lines_totals as (
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        sum(base_minor) as priced_lines_minor,
        toUInt8(1) as has_priced_lines
    from lines_priced
    group by tenant_id, conversion_id, affiliate_id
),

rest_rule as (
    select *
    from applicable
    where is_line_rule = 0
    order by specificity desc, rule_index
    limit 1 by tenant_id, conversion_id, affiliate_id
),

rest_priced as (
    -- The rest of the base: the order's net or amount less the lines priced by line rules,
    -- never below 0. When line rules took all of it, the rest rule prices nothing (a flat
    -- rule included); an order without priced lines always gets its rest rule.
    select
        rest_rule.*,
        'rest' as priced_part,
        greatest(
            if(rest_rule.base = 'amount', rest_rule.order_amount_minor, rest_rule.order_net_minor)
                - ifNull(priced_lines_totals.priced_lines_minor, 0),
            0
        ) as base_minor
    from rest_rule
    left join priced_lines_totals
        on priced_lines_totals.tenant_id = rest_rule.tenant_id
        and priced_lines_totals.conversion_id = rest_rule.conversion_id
        and priced_lines_totals.affiliate_id = rest_rule.affiliate_id
    where base_minor > 0 or ifNull(priced_lines_totals.has_priced_lines, 0) = 0
),

priced as (
    select * from lines_priced
    union all
    select * from rest_priced
),

final as (
    select
        tenant_id,
        conversion_id,
        affiliate_id,
        converted_at,
        campaign_id,
        campaign_terms_version,
        rule_index,
        rule_id,
        rule_type,
        toLowCardinality(priced_part) as priced_part,
        category,
        toInt64(base_minor) as base_minor,
        prior_monthly_conversions,
        -- The highest tier whose minimum the prior conversions reach replaces the rate.
        arrayFilter(tier -> tier.min_monthly_conversions <= prior_monthly_conversions, tiers)
            as tiers_reached,
        if(
            notEmpty(tiers_reached),
            tiers_reached[-1].min_monthly_conversions,
            null
        ) as tier_min_monthly_conversions,
        if(
            rule_type = 'percent',
            if(notEmpty(tiers_reached), tiers_reached[-1].rate, assumeNotNull(rate)),
            null
        ) as effective_rate,
        -- Exact: Int64 x Decimal(18, 9) in Decimal(38, 9); never Float64.
        if(
            rule_type = 'percent',
            toDecimal128(base_minor, 0) * assumeNotNull(effective_rate),
            toDecimal128(assumeNotNull(flat_amount_minor), 9)
        ) as uncapped_amount,
        cap_minor,
        toUInt8(cap_minor is not null and uncapped_amount > toDecimal128(assumeNotNull(cap_minor), 9))
            as is_capped,
        toDecimal128(
            if(is_capped = 1, toDecimal128(assumeNotNull(cap_minor), 9), uncapped_amount), 9
        ) as rule_amount
    from priced
)

select * except (tiers_reached) from final
