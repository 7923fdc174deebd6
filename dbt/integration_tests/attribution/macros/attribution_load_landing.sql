{#-
    attribution_load_landing(): insert the attribution story's seed rows into Rastro's
    landing tables (created by `rastro migrate` in the target database), typed as the
    ingest job writes them. Run after `dbt seed`, before a build:
        dbt run-operation attribution_load_landing

    The story is written in June to October 2026 (../README.md). The landing tables clear
    personal columns (cookie, customer, email hash) 13 months after each row's ts, and the
    story attributes through them, so every time moves forward by the whole days since
    2026-11-01 (0 until then): the story keeps ending in the past few weeks, and nothing it
    pins depends on calendar dates, only on their differences.
-#}
{% macro attribution_load_landing() %}
    {%- set shift_days = run_query(
        "select toInt64(greatest(0, dateDiff('day', toDate('2026-11-01'), today())))"
    ).columns[0].values()[0] | int -%}
    {%- set utc = "(parseDateTime64BestEffort({}, 3, 'UTC') + toIntervalDay(" ~ shift_days ~ "))" -%}
    {%- set loads = {
        'campaigns': [
            'tenant_id, campaign_id, terms_version, name, status, valid_from, valid_to,'
            ~ ' attribution_window_days, attribution_model, hold_days, attribution_half_life_days,'
            ~ ' commission_rules, conflict_rules, created_at, updated_at, version',
            "tenant_id, campaign_id, terms_version, name, status, " ~ utc.format('valid_from') ~ ","
            ~ " if(ifNull(valid_to, '') = '', null, " ~ utc.format('ifNull(valid_to, valid_from)') ~ "),"
            ~ " attribution_window_days, attribution_model, 30, attribution_half_life_days,"
            ~ " '[]', conflict_rules, " ~ utc.format('valid_from') ~ ", " ~ utc.format('valid_from')
            ~ ", 1",
        ],
        'affiliates': [
            'tenant_id, id, display_name, status, segment, email_hash, created_at, updated_at, version',
            "tenant_id, id, id, status, '', email_hash, " ~ utc.format("'2026-06-01'") ~ ", "
            ~ utc.format("'2026-06-01'") ~ ", 1",
        ],
        'links': [
            'tenant_id, id, kind, code, affiliate_id, campaign_id, status, created_at, updated_at, version',
            "tenant_id, id, kind, code, affiliate_id, campaign_id, status, "
            ~ utc.format("'2026-06-01'") ~ ", " ~ utc.format("'2026-06-01'") ~ ", 1",
        ],
        'clicks': [
            'tenant_id, ts, event_id, click_id, source, link_id, link_code, affiliate_id, campaign_id,'
            ~ ' campaign_terms_version, cookie_id, is_bot, paid_click_markers, velocity_flags, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, click_id, 'redirect', ifNull(link_id, ''),"
            ~ " link_code, ifNull(affiliate_id, ''), ifNull(campaign_id, ''), campaign_terms_version,"
            ~ " ifNull(cookie_id, ''), toBool(is_bot), cast(paid_click_markers, 'Array(String)'),"
            ~ " cast(velocity_flags, 'Array(String)'), " ~ utc.format('ts'),
        ],
        'page_events': [
            'tenant_id, ts, event_id, type, cookie_id, customer_id, email_hash, consent, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, type, ifNull(cookie_id, ''),"
            ~ " ifNull(customer_id, ''), ifNull(email_hash, ''), consent, " ~ utc.format('ts'),
        ],
        'identity_links': [
            'tenant_id, ts, event_id, left_kind, left_id, right_kind, right_id, source, consent, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, left_kind, left_id, right_kind, right_id,"
            ~ " source, consent, " ~ utc.format('ts'),
        ],
        'conversions': [
            'tenant_id, ts, event_id, conversion_id, order_id, version, amount_minor, net_minor,'
            ~ ' currency, coupon_codes, click_id, cookie_id, customer_id, email_hash, is_new_customer,'
            ~ ' affiliate_id, source, subscription_id, renewal_number, received_at',
            "tenant_id, " ~ utc.format('ts') ~ ", event_id, conversion_id, order_id, 1, amount_minor,"
            ~ " net_minor, 'BRL', cast(coupon_codes, 'Array(String)'), ifNull(click_id, ''),"
            ~ " ifNull(cookie_id, ''), ifNull(customer_id, ''), ifNull(email_hash, ''), true,"
            ~ " ifNull(affiliate_id, ''), 's2s', ifNull(subscription_id, ''), renewal_number, "
            ~ utc.format('ts'),
        ],
    } -%}
    {%- for table, load in loads.items() %}
        {%- set sql -%}
            insert into {{ target.schema }}.{{ table }} ({{ load[0] }})
            select {{ load[1] }}
            from {{ ref('attribution_landing__' ~ table) }}
        {%- endset %}
        {% do run_query(sql) %}
    {%- endfor %}
    {{ log('attribution_load_landing: the story landed in ' ~ target.schema ~ ', '
           ~ shift_days ~ ' day(s) later than written', info=True) }}
{% endmacro %}
