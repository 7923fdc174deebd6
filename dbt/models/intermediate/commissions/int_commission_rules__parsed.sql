-- Commission rules flattened from each terms version's JSON (docs/attribution.md, section 4),
-- typed, with their position and specificity. A rule that cannot be read exactly is kept
-- with is_valid = 0 and its reasons, never silently read as 0: it prices nothing, and the
-- test assert_commission_rules_are_valid fails the build (so nothing downstream runs).
{{
    config(
        order_by='(tenant_id, campaign_id, terms_version, rule_index)',
    )
}}

{%- set known_fields = [
    'id', 'type', 'rate', 'amount_minor', 'base', 'segment', 'affiliate_id', 'category',
    'min_order_minor', 'new_customers_only', 'recurring_months', 'tiers', 'cap_minor',
    'countries', 'product_ids', 'coupon_codes',
] -%}
{#- A rate is a plain decimal fraction with at most 9 decimals (the Decimal(18, 9) it is
    read into): "0.10", "1", never "1e-1" or "10%". -#}
{%- set decimal_pattern = "'^[0-9]+([.][0-9]{1,9})?$'" -%}

{#- SQL templates (@j: a JSON expression, @f: a field name). A rate's text is the string, or a
    number's own JSON text: read exactly, never through a float. A count is a JSON integer >= 0. -#}
{%- set decimal_text = "multiIf(JSONType(@j, '@f') = 'String', JSONExtractString(@j, '@f'), "
    ~ "JSONType(@j, '@f') in ('Int64', 'UInt64', 'Double'), JSONExtractRaw(@j, '@f'), '')" -%}
{%- set is_count = "(JSONType(@j, '@f') in ('Int64', 'UInt64') and JSONExtractInt(@j, '@f') >= 0)" -%}
{#- A condition list (countries, product_ids, coupon_codes) is a non-empty array of non-empty
    strings: an empty list would match nothing, and a number would be read as ''. -#}
{%- set is_string_list = "(JSONType(@j, '@f') = 'Array' and notEmpty(JSONExtractArrayRaw(@j, '@f')) "
    ~ "and arrayAll(e -> JSONType(e) = 'String' and JSONExtractString(e) != '', JSONExtractArrayRaw(@j, '@f')))" -%}

with

terms as (
    select tenant_id, campaign_id, terms_version, commission_rules
    from {{ ref('stg_rastro__campaigns') }}
),

malformed_terms as (
    -- commission_rules that is not a JSON array would otherwise yield no rules at all.
    select tenant_id, campaign_id, terms_version
    from terms
    where not (isValidJSON(commission_rules) and JSONType(commission_rules) = 'Array')
),

elements as (
    select
        tenant_id,
        campaign_id,
        terms_version,
        toUInt32(rule_index) as rule_index,
        rule
    from terms
    array join
        JSONExtractArrayRaw(commission_rules) as rule,
        arrayEnumerate(JSONExtractArrayRaw(commission_rules)) as rule_index
),

read as (
    select
        tenant_id,
        campaign_id,
        terms_version,
        rule_index,
        rule as rule_json,
        JSONExtractString(rule, 'id') as rule_id,
        JSONExtractString(rule, 'type') as rule_type,
        {{ decimal_text | replace('@j', 'rule') | replace('@f', 'rate') }} as rate_text,
        if(match(rate_text, {{ decimal_pattern }}), toDecimal64OrNull(rate_text, 9), null) as rate,
        if({{ is_count | replace('@j', 'rule') | replace('@f', 'amount_minor') }}, JSONExtractInt(rule, 'amount_minor'), null) as amount_minor,
        if(JSONHas(rule, 'base'), JSONExtractString(rule, 'base'), 'net') as base,
        JSONExtractString(rule, 'segment') as segment,
        JSONExtractString(rule, 'affiliate_id') as affiliate_id,
        JSONExtractString(rule, 'category') as category,
        JSONExtractInt(rule, 'min_order_minor') as min_order_minor,
        toUInt8(JSONExtractBool(rule, 'new_customers_only')) as new_customers_only,
        toUInt32(JSONExtractUInt(rule, 'recurring_months')) as recurring_months,
        if({{ is_count | replace('@j', 'rule') | replace('@f', 'cap_minor') }}, JSONExtractInt(rule, 'cap_minor'), null) as cap_minor,
        -- Conditions on the order. Countries and coupon codes compare upper-cased (as the
        -- customer's country and coupon touches do); product ids exactly.
        arrayMap(code -> upper(code), JSONExtract(rule, 'countries', 'Array(String)')) as countries,
        JSONExtract(rule, 'product_ids', 'Array(String)') as product_ids,
        arrayMap(code -> upper(code), JSONExtract(rule, 'coupon_codes', 'Array(String)')) as coupon_codes,
        JSONExtractArrayRaw(rule, 'tiers') as tiers_json,
        arrayMap(tier -> {{ decimal_text | replace('@j', 'tier') | replace('@f', 'rate') }}, tiers_json) as tier_rate_texts,
        arrayMap(tier -> toUInt32(JSONExtractUInt(tier, 'min_monthly_conversions')), tiers_json)
            as tier_minimums,
        -- Every condition of a tier read strictly; one bad tier invalidates the rule.
        arrayAll(
            (tier, rate_text) ->
                JSONType(tier) = 'Object'
                and length(JSONExtractKeys(tier)) = 2
                and {{ is_count | replace('@j', 'tier') | replace('@f', 'min_monthly_conversions') }}
                and match(rate_text, {{ decimal_pattern }})
                and toDecimal64OrZero(rate_text, 9) <= 1,
            tiers_json, tier_rate_texts
        ) as tiers_readable,
        count() over (partition by tenant_id, campaign_id, terms_version, rule_id) as rules_with_this_id,
        arrayFilter(
            reason -> reason != '',
            [
                if(JSONType(rule) != 'Object', 'not a JSON object', ''),
                if(JSONType(rule, 'id') != 'String' or rule_id = '', 'id must be a non-empty string', ''),
                if(rule_id != '' and rules_with_this_id > 1, 'id is not unique in the terms', ''),
                if(rule_type not in ('percent', 'flat'), 'type must be percent or flat', ''),
                if(rule_type = 'percent' and (rate is null or rate > 1),
                    'a percent rule needs rate, a decimal fraction between 0 and 1 as a string', ''),
                if(rule_type = 'percent' and JSONHas(rule, 'amount_minor'), 'a percent rule has no amount_minor', ''),
                if(rule_type = 'flat' and amount_minor is null,
                    'a flat rule needs amount_minor, a non-negative integer', ''),
                if(rule_type = 'flat' and (JSONHas(rule, 'rate') or JSONHas(rule, 'tiers')),
                    'a flat rule has no rate or tiers', ''),
                if(JSONHas(rule, 'base') and base not in ('net', 'amount'), 'base must be net or amount', ''),
                {%- for field in ['segment', 'affiliate_id', 'category'] %}
                if(JSONHas(rule, '{{ field }}') and (JSONType(rule, '{{ field }}') != 'String' or JSONExtractString(rule, '{{ field }}') = ''),
                    '{{ field }} must be a non-empty string', ''),
                {%- endfor %}
                {%- for field in ['min_order_minor', 'recurring_months', 'cap_minor'] %}
                if(JSONHas(rule, '{{ field }}') and not {{ is_count | replace('@j', 'rule') | replace('@f', field) }},
                    '{{ field }} must be a non-negative integer', ''),
                {%- endfor %}
                if(JSONHas(rule, 'new_customers_only') and JSONType(rule, 'new_customers_only') != 'Bool',
                    'new_customers_only must be true or false', ''),
                {%- for field in ['countries', 'product_ids', 'coupon_codes'] %}
                if(JSONHas(rule, '{{ field }}') and not {{ is_string_list | replace('@j', 'rule') | replace('@f', field) }},
                    '{{ field }} must be a non-empty array of non-empty strings', ''),
                {%- endfor %}
                if(notEmpty(arrayFilter(code -> not match(code, '^[A-Z]{2}$'), countries)),
                    'countries must be ISO 3166-1 alpha-2 codes ("BR")', ''),
                if(JSONHas(rule, 'tiers') and (JSONType(rule, 'tiers') != 'Array' or not tiers_readable),
                    'tiers must be an array of {"min_monthly_conversions": n, "rate": "0.xx"}', ''),
                if(length(arrayDistinct(tier_minimums)) != length(tier_minimums),
                    'two tiers have the same min_monthly_conversions', ''),
                -- A misspelt condition ("new_customer_only") would otherwise be ignored and pay
                -- more than the merchant meant.
                if(
                    JSONType(rule) = 'Object'
                    and notEmpty(arrayFilter(key -> key not in {{ known_fields | tojson | replace('"', "'") }}, JSONExtractKeys(rule))),
                    concat('unknown field(s): ', arrayStringConcat(
                        arrayFilter(key -> key not in {{ known_fields | tojson | replace('"', "'") }}, JSONExtractKeys(rule)), ', ')),
                    ''
                )
            ]
        ) as invalid_reasons
    from elements
),

rules as (
    select
        tenant_id,
        campaign_id,
        terms_version,
        rule_index,
        rule_id,
        toLowCardinality(rule_type) as rule_type,
        rate,
        amount_minor,
        toLowCardinality(base) as base,
        segment,
        affiliate_id,
        category,
        min_order_minor,
        new_customers_only,
        recurring_months,
        cast(
            arraySort(
                tier -> tier.1,
                arrayZip(tier_minimums, arrayMap(text -> toDecimal64OrZero(text, 9), tier_rate_texts))
            ),
            'Array(Tuple(min_monthly_conversions UInt32, rate Decimal(18, 9)))'
        ) as tiers,
        cap_minor,
        countries,
        product_ids,
        coupon_codes,
        -- affiliate_id beats segment beats neither (both: the most specific of all).
        toUInt8(2 * (affiliate_id != '') + (segment != '')) as specificity,
        toUInt8(empty(invalid_reasons)) as is_valid,
        invalid_reasons,
        rule_json
    from read
),

unreadable_terms as (
    select
        tenant_id,
        campaign_id,
        terms_version,
        toUInt32(0) as rule_index,
        '' as rule_id,
        toLowCardinality('') as rule_type,
        cast(null as Nullable(Decimal(18, 9))) as rate,
        cast(null as Nullable(Int64)) as amount_minor,
        toLowCardinality('net') as base,
        '' as segment,
        '' as affiliate_id,
        '' as category,
        toInt64(0) as min_order_minor,
        toUInt8(0) as new_customers_only,
        toUInt32(0) as recurring_months,
        cast([], 'Array(Tuple(min_monthly_conversions UInt32, rate Decimal(18, 9)))') as tiers,
        cast(null as Nullable(Int64)) as cap_minor,
        cast([], 'Array(String)') as countries,
        cast([], 'Array(String)') as product_ids,
        cast([], 'Array(String)') as coupon_codes,
        toUInt8(0) as specificity,
        toUInt8(0) as is_valid,
        ['commission_rules is not a JSON array'] as invalid_reasons,
        '' as rule_json
    from malformed_terms
),

final as (
    select * from rules
    union all
    select * from unreadable_terms
)

select * from final
