-- The commission ledger: append-only (docs/attribution.md, section 5). A run appends
--   1. the entries of events not recorded yet (their entry_id is not in the table), as the
--      replay under the current facts computes them (int_commission_events__replayed), and
--   2. per commission, one correction for whatever the recorded entries no longer match: the
--      replay's final buckets less what the recorded and the new entries add up to (an order
--      corrected, an attribution moved; a commission that disappeared is corrected to 0).
-- So after every run each commission's entries sum to its replayed state, and nothing written
-- is ever changed. full_refresh = false: `dbt build --full-refresh` cannot wipe the history.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        order_by='(tenant_id, commission_id, effective_at, entry_id)',
        partition_by='toYYYYMM(effective_at)',
    )
}}

{%- set as_of = var('ledger__as_of') -%}
{%- set as_of_sql = "parseDateTime64BestEffort('" ~ as_of ~ "', 3, 'UTC')" if as_of else "now64(3, 'UTC')" %}
{%- set buckets = ['earned', 'pending', 'approved', 'paid', 'rejected'] %}

with

clock as (
    select {{ as_of_sql }} as as_of
),

replayed as (
    select * from {{ ref('int_commission_events__replayed') }}
),

recorded as (
    {%- if is_incremental() %}
    select
        tenant_id, commission_id, affiliate_id, conversion_id, currency, entry_id,
        {%- for bucket in buckets %}
        {{ bucket }}_delta_minor,
        {%- endfor %}
        -- The ledger only moves forward: replaying an earlier clock would undo recorded entries.
        throwIf(
            effective_at > (select as_of from clock),
            'ledger__as_of is earlier than entries already in fct_ledger_entries'
        ) as clock_went_back
    from {{ this }}
    {%- else %}
    -- First run: nothing recorded yet.
    select
        tenant_id, commission_id, affiliate_id, conversion_id, currency, entry_id,
        {%- for bucket in buckets %}
        {{ bucket }}_delta_minor,
        {%- endfor %}
        0 as clock_went_back
    from replayed
    where 0
    {%- endif %}
),

new_events as (
    -- Events the ledger has not recorded, when they move anything.
    select replayed.*
    from replayed
    left anti join recorded
        on recorded.tenant_id = replayed.tenant_id
        and recorded.commission_id = replayed.commission_id
        and recorded.entry_id = replayed.entry_id
    where earned_delta_minor != 0
        or pending_delta_minor != 0
        or approved_delta_minor != 0
        or paid_delta_minor != 0
        or rejected_delta_minor != 0
),

booked as (
    -- Per commission: the recorded entries and the new ones together.
    select
        tenant_id,
        commission_id,
        any(affiliate_id) as affiliate_id,
        any(conversion_id) as conversion_id,
        any(currency) as currency,
        count() as entries,
        {%- for bucket in buckets %}
        sum({{ bucket }}_delta_minor) as {{ bucket }}_minor{{ ',' if not loop.last }}
        {%- endfor %}
    from (
        select tenant_id, commission_id, affiliate_id, conversion_id, currency,
            {%- for bucket in buckets %}
            {{ bucket }}_delta_minor{{ ',' if not loop.last }}
            {%- endfor %}
        from recorded
        union all
        select tenant_id, commission_id, affiliate_id, conversion_id, currency,
            {%- for bucket in buckets %}
            {{ bucket }}_delta_minor{{ ',' if not loop.last }}
            {%- endfor %}
        from new_events
    )
    group by tenant_id, commission_id
),

targets as (
    -- Each commission's buckets after its last event, as the replay computes them.
    select *
    from replayed
    where is_latest = 1
),

corrections as (
    -- Paid is never corrected (it is money that left, booked by its payment): the
    -- difference lands in earned, pending, approved and rejected.
    select
        assumeNotNull(coalesce(targets.tenant_id, booked.tenant_id)) as tenant_id,
        assumeNotNull(coalesce(targets.commission_id, booked.commission_id)) as commission_id,
        assumeNotNull(coalesce(targets.affiliate_id, booked.affiliate_id)) as affiliate_id,
        assumeNotNull(coalesce(targets.conversion_id, booked.conversion_id)) as conversion_id,
        assumeNotNull(coalesce(targets.currency, booked.currency)) as currency,
        toInt64(ifNull(targets.earned_minor, 0) - ifNull(booked.earned_minor, 0)) as earned_delta_minor,
        toInt64(ifNull(targets.pending_minor, 0) - ifNull(booked.pending_minor, 0)) as pending_delta_minor,
        earned_delta_minor - pending_delta_minor as approved_delta_minor,
        toInt64(0) as paid_delta_minor,
        toInt64(ifNull(targets.rejected_minor, 0) - ifNull(booked.rejected_minor, 0)) as rejected_delta_minor,
        concat('after-', toString(ifNull(booked.entries, 0))) as source_id
    from targets
    full outer join booked
        on booked.tenant_id = targets.tenant_id
        and booked.commission_id = targets.commission_id
    where earned_delta_minor != 0 or pending_delta_minor != 0 or rejected_delta_minor != 0
),

entries as (
    select
        entry_id, tenant_id, commission_id, affiliate_id, conversion_id, currency,
        entry_type, effective_at, source_id,
        {%- for bucket in buckets %}
        {{ bucket }}_delta_minor{{ ',' if not loop.last }}
        {%- endfor %}
    from new_events

    union all

    select
        lower(hex(MD5(concat(tenant_id, '|', commission_id, '|correction|', source_id)))) as entry_id,
        tenant_id, commission_id, affiliate_id, conversion_id, currency,
        'correction' as entry_type,
        (select as_of from clock) as effective_at,
        source_id,
        {%- for bucket in buckets %}
        {{ bucket }}_delta_minor{{ ',' if not loop.last }}
        {%- endfor %}
    from corrections
),

final as (
    select
        entry_id,
        toLowCardinality(tenant_id) as tenant_id,
        commission_id,
        affiliate_id,
        conversion_id,
        toLowCardinality(currency) as currency,
        toLowCardinality(entry_type) as entry_type,
        toDateTime64(assumeNotNull(effective_at), 3, 'UTC') as effective_at,
        {%- for bucket in buckets %}
        toInt64({{ bucket }}_delta_minor) as {{ bucket }}_delta_minor,
        {%- endfor %}
        source_id,
        now64(3, 'UTC') as recorded_at,
        toString('{{ invocation_id }}') as dbt_invocation_id
    from entries
    -- The clock check must run even when nothing is new.
    where (select max(clock_went_back) from recorded) = 0
)

select * from final
