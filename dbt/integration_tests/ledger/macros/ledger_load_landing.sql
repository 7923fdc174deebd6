{#-
    ledger_load_landing(batch): insert the ledger story's seed rows of one batch into Rastro's
    landing tables (created by `rastro migrate` in the target database), typed as the ingest
    job writes them. Run after `dbt seed`, before the build that should see the batch:
        dbt run-operation ledger_load_landing --args '{batch: 1}'
-#}
{% macro ledger_load_landing(batch) %}
    {%- set utc = "parseDateTime64BestEffort(toString({}), 3, 'UTC')" -%}
    {%- set loads = {
        'campaigns': [
            'tenant_id, campaign_id, terms_version, name, status, valid_from, valid_to,'
            ~ ' attribution_model, hold_days, commission_rules, conflict_rules, created_at, updated_at,'
            ~ ' version',
            "tenant_id, campaign_id, toUInt32(terms_version), name, status, "
            ~ utc.format('valid_from') ~ ", if(ifNull(valid_to, '') = '', null, "
            ~ utc.format('valid_to') ~ "), attribution_model, toUInt16(hold_days),"
            ~ " commission_rules, conflict_rules, " ~ utc.format('valid_from') ~ ", "
            ~ utc.format('valid_from') ~ ", toUInt64(batch)",
        ],
        'affiliates': [
            'tenant_id, id, display_name, status, segment, email_hash, created_at, updated_at, version',
            "tenant_id, id, id, status, ifNull(segment, ''), email_hash,"
            ~ " toDateTime64('2024-01-01', 3, 'UTC'), toDateTime64('2024-01-01', 3, 'UTC'), toUInt64(batch)",
        ],
        'links': [
            'tenant_id, id, kind, code, affiliate_id, campaign_id, status, created_at, updated_at, version',
            "tenant_id, id, kind, code, affiliate_id, campaign_id, status,"
            ~ " toDateTime64('2024-01-01', 3, 'UTC'), toDateTime64('2024-01-01', 3, 'UTC'), toUInt64(batch)",
        ],
        'clicks': [
            'tenant_id, ts, event_id, click_id, source, link_id, affiliate_id, campaign_id,'
            ~ ' campaign_terms_version, cookie_id, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, click_id, 'redirect', link_id,"
            ~ " affiliate_id, campaign_id, toUInt32(campaign_terms_version), cookie_id, "
            ~ utc.format('ts'),
        ],
        'conversions': [
            'tenant_id, ts, event_id, conversion_id, order_id, version, amount_minor, net_minor,'
            ~ ' currency, line_items, coupon_codes, click_id, cookie_id, customer_id, is_new_customer, source,'
            ~ ' subscription_id, renewal_number, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, conversion_id, order_id,"
            ~ " toUInt64(version), toInt64(amount_minor), toInt64(net_minor), currency,"
            ~ " cast(line_items, 'Array(Tuple(sku String, product_id String, category String,"
            ~ " quantity UInt32, amount_minor Int64))'), cast(coupon_codes, 'Array(String)'),"
            ~ " ifNull(click_id, ''), ifNull(cookie_id, ''),"
            ~ " customer_id, toBool(is_new_customer), 's2s', ifNull(subscription_id, ''),"
            ~ " toUInt32(renewal_number), " ~ utc.format('ts'),
        ],
        'order_updates': [
            'tenant_id, ts, event_id, update_id, order_id, kind, amount_minor, currency, source, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, update_id, order_id, kind,"
            ~ " toInt64(amount_minor), currency, 'api', " ~ utc.format('ts'),
        ],
        'commission_decisions': [
            'tenant_id, decision_id, commission_id, decision, decided_by, decided_at',
            "tenant_id, decision_id, commission_id, decision, decided_by, " ~ utc.format('decided_at'),
        ],
        'payout_items': [
            'tenant_id, payout_id, commission_id, affiliate_id, amount_minor, currency, method, paid_at',
            "tenant_id, payout_id, commission_id, affiliate_id, toInt64(amount_minor), currency,"
            ~ " method, " ~ utc.format('paid_at'),
        ],
    } -%}
    {%- for table, load in loads.items() %}
        {%- set sql -%}
            insert into {{ target.schema }}.{{ table }} ({{ load[0] }})
            select {{ load[1] }}
            from {{ ref('ledger_landing__' ~ table) }}
            where batch = {{ batch | int }}
        {%- endset %}
        {% do run_query(sql) %}
    {%- endfor %}
    {{ log('ledger_load_landing: batch ' ~ batch ~ ' landed in ' ~ target.schema, info=True) }}
{% endmacro %}
