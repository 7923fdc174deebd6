-- Every event of every commission up to the ledger's clock (var ledger__as_of), replayed under
-- the current facts: the commission's buckets after each event, and the entry it implies
-- (docs/attribution.md, section 5). fct_ledger_entries appends the entries not yet recorded
-- and a correction for whatever the recorded ones no longer match.
--
-- The state after an event is a function of what happened up to it:
--   reversed  the largest reversal target so far (refunds: amount x cumulative refunded /
--             order amount, capped at 1; cancellation or chargeback: all of it)
--   paid      the sum of payout items so far
--   rejected  the last approve/reject decision is a reject
--   held      the last hold/release/approve decision is a hold
--   approved  not rejected, and paid, or not held and (an approve decision or the hold ended)
-- and the buckets follow (earned = pending + approved + paid, always):
--   earned    0 if rejected, else amount - reversed
--   rejected  amount - reversed if rejected, else 0 (what rejection keeps from the affiliate)
--   approved  earned - paid when approved or when that is negative (a clawback: owed back,
--             offset from the next payout), else 0
--   pending   earned - paid - approved
{{
    config(
        order_by='(tenant_id, commission_id, event_seq)',
        partition_by='toYYYYMM(effective_at)',
    )
}}

{%- set as_of = var('ledger__as_of') -%}
{%- set as_of_sql = "parseDateTime64BestEffort('" ~ as_of ~ "', 3, 'UTC')" if as_of else "now64(3, 'UTC')" %}

with

clock as (
    select {{ as_of_sql }} as as_of
),

commissions as (
    -- Commissions of conversions that happened by the ledger's clock, at their current amount.
    select
        tenant_id,
        commission_id,
        conversion_id,
        order_id,
        affiliate_id,
        currency,
        converted_at,
        hold_until,
        order_amount_minor,
        commission_minor as amount_minor
    from {{ ref('fct_commissions') }}
    where converted_at <= (select as_of from clock)
),

payouts as (
    select *
    from {{ ref('stg_rastro__payout_items') }}
    where paid_at <= (select as_of from clock)
),

orphan_commissions as (
    -- A commission paid but no longer earned (its attribution moved, its order vanished):
    -- the payment is still money that left, so it is replayed at amount 0.
    select
        payouts.tenant_id as tenant_id,
        payouts.commission_id as commission_id,
        splitByChar(':', payouts.commission_id)[1] as conversion_id,
        '' as order_id,
        any(payouts.affiliate_id) as affiliate_id,
        any(payouts.currency) as currency,
        min(payouts.paid_at) as converted_at,
        min(payouts.paid_at) as hold_until,
        toInt64(0) as order_amount_minor,
        toInt64(0) as amount_minor
    from payouts
    left anti join commissions
        on commissions.tenant_id = payouts.tenant_id
        and commissions.commission_id = payouts.commission_id
    group by payouts.tenant_id, payouts.commission_id
),

all_commissions as (
    select * from commissions
    union all
    select * from orphan_commissions
),

order_updates as (
    -- Per order update: how much of the order is taken back so far (updates in time order).
    select
        tenant_id,
        order_id,
        event_id,
        updated_at,
        update_kind,
        sum(if(update_kind = 'refund', amount_minor, 0)) over order_so_far as refunded_minor,
        max(update_kind in ('cancellation', 'chargeback')) over order_so_far as is_cancelled
    from {{ ref('stg_rastro__order_updates') }}
    where update_kind in ('refund', 'cancellation', 'chargeback')
        and updated_at <= (select as_of from clock)
    window order_so_far as (
        partition by tenant_id, order_id
        order by updated_at, event_id
        rows between unbounded preceding and current row
    )
),

decisions as (
    select *
    from {{ ref('stg_rastro__commission_decisions') }}
    where decision in ('approve', 'reject', 'hold', 'release')
        and decided_at <= (select as_of from clock)
),

reversal_targets as (
    -- What a commission has lost after each update of its order: amount x min(refunded, order
    -- amount) / order amount, rounded half to even exactly (Int128 quotient and remainder);
    -- a cancellation or a chargeback takes the rest, as does any refund of a zero order.
    select
        all_commissions.tenant_id as tenant_id,
        all_commissions.commission_id as commission_id,
        greatest(order_updates.updated_at, all_commissions.converted_at) as effective_at,
        order_updates.event_id as event_id,
        toInt128(all_commissions.amount_minor)
            * least(greatest(order_updates.refunded_minor, 0), all_commissions.order_amount_minor) as numerator,
        toInt128(greatest(all_commissions.order_amount_minor, 1)) as denominator,
        intDiv(numerator, denominator) as quotient,
        numerator - quotient * denominator as remainder,
        toInt64(
            if(
                order_updates.is_cancelled or all_commissions.order_amount_minor <= 0,
                if(order_updates.is_cancelled or order_updates.refunded_minor > 0, all_commissions.amount_minor, 0),
                quotient + if(2 * remainder > denominator or (2 * remainder = denominator and quotient % 2 = 1), 1, 0)
            )
        ) as reversal_target_minor
    from all_commissions
    inner join order_updates
        on order_updates.tenant_id = all_commissions.tenant_id
        and order_updates.order_id = all_commissions.order_id
),

events as (
    -- event_rank orders events at the same instant: the accrual first, a refund before a
    -- decision, the end of the hold, then a payment.
    select
        tenant_id, commission_id, converted_at as effective_at, 0 as event_rank,
        'accrual' as source_kind, conversion_id as source_id, '' as decision,
        toInt64(0) as reversal_target_minor, toInt64(0) as paid_minor
    from all_commissions

    union all

    select
        tenant_id, commission_id, effective_at, 1,
        'order_update', event_id, '',
        reversal_target_minor, toInt64(0)
    from reversal_targets

    union all

    select
        all_commissions.tenant_id, all_commissions.commission_id,
        greatest(decisions.decided_at, all_commissions.converted_at), 2,
        'decision', decisions.decision_id, decisions.decision,
        toInt64(0), toInt64(0)
    from all_commissions
    inner join decisions
        on decisions.tenant_id = all_commissions.tenant_id
        and decisions.commission_id = all_commissions.commission_id

    union all

    select
        tenant_id, commission_id, hold_until, 3,
        'hold_end', 'hold_end', '',
        toInt64(0), toInt64(0)
    from all_commissions
    where hold_until <= (select as_of from clock)

    union all

    select
        all_commissions.tenant_id, all_commissions.commission_id,
        greatest(payouts.paid_at, all_commissions.converted_at), 4,
        'payout', payouts.payout_id, '',
        toInt64(0), payouts.paid_minor
    from all_commissions
    inner join payouts
        on payouts.tenant_id = all_commissions.tenant_id
        and payouts.commission_id = all_commissions.commission_id
),

states as (
    -- What has happened up to and including each event.
    select
        events.*,
        row_number() over so_far as event_seq,
        max(reversal_target_minor) over so_far as reversed_so_far,
        sum(paid_minor) over so_far as paid_so_far,
        argMaxIf(decision, (effective_at, event_rank, source_id), decision in ('approve', 'reject'))
            over so_far as last_verdict,
        argMaxIf(decision, (effective_at, event_rank, source_id), decision in ('hold', 'release', 'approve'))
            over so_far as last_hold_decision,
        max(source_kind = 'hold_end') over so_far as hold_ended
    from events
    window so_far as (
        partition by tenant_id, commission_id
        order by effective_at, event_rank, source_id
        rows between unbounded preceding and current row
    )
),

buckets as (
    select
        states.*,
        all_commissions.affiliate_id as affiliate_id,
        all_commissions.conversion_id as conversion_id,
        all_commissions.currency as currency,
        all_commissions.amount_minor as amount_minor,
        last_verdict = 'reject' as is_rejected,
        not is_rejected
            and (paid_so_far > 0 or (last_hold_decision != 'hold' and (last_verdict = 'approve' or hold_ended)))
            as is_approved,
        least(reversed_so_far, all_commissions.amount_minor) as reversed_minor,
        if(is_rejected, 0, all_commissions.amount_minor - reversed_minor) as earned_minor,
        if(is_rejected, all_commissions.amount_minor - reversed_minor, 0) as rejected_minor,
        paid_so_far as paid_minor_total,
        if(is_approved or earned_minor - paid_so_far < 0, earned_minor - paid_so_far, 0) as approved_minor,
        earned_minor - paid_so_far - approved_minor as pending_minor
    from states
    inner join all_commissions
        on all_commissions.tenant_id = states.tenant_id
        and all_commissions.commission_id = states.commission_id
),

deltas as (
    select
        *,
        earned_minor - lagInFrame(earned_minor, 1, 0) over previous as earned_delta_minor,
        pending_minor - lagInFrame(pending_minor, 1, 0) over previous as pending_delta_minor,
        approved_minor - lagInFrame(approved_minor, 1, 0) over previous as approved_delta_minor,
        paid_minor_total - lagInFrame(paid_minor_total, 1, 0) over previous as paid_delta_minor,
        rejected_minor - lagInFrame(rejected_minor, 1, 0) over previous as rejected_delta_minor,
        -- Was anything paid before this event (a reversal then is a clawback)?
        lagInFrame(paid_minor_total, 1, 0) over previous as paid_before_minor
    from buckets
    window previous as (
        partition by tenant_id, commission_id
        order by event_seq
        rows between unbounded preceding and current row
    )
),

final as (
    select
        tenant_id,
        commission_id,
        affiliate_id,
        conversion_id,
        currency,
        toUInt32(event_seq) as event_seq,
        toDateTime64(effective_at, 3, 'UTC') as effective_at,
        toLowCardinality(source_kind) as source_kind,
        source_id,
        toLowCardinality(multiIf(
            source_kind = 'accrual', 'accrual',
            source_kind = 'order_update', if(paid_before_minor > 0, 'clawback', 'reversal'),
            source_kind = 'payout', 'payment',
            source_kind = 'hold_end', 'approval',
            decision = 'reject', 'rejection',
            decision = 'hold', 'hold',
            'approval'
        )) as entry_type,
        -- Stable across runs and ClickHouse versions: the kind of source event, not the entry
        -- type (a refund is a reversal or a clawback depending on what was paid before it).
        lower(hex(MD5(concat(tenant_id, '|', commission_id, '|', source_kind, '|', source_id))))
            as entry_id,
        toInt64(amount_minor) as amount_minor,
        toInt64(earned_minor) as earned_minor,
        toInt64(pending_minor) as pending_minor,
        toInt64(approved_minor) as approved_minor,
        toInt64(paid_minor_total) as paid_minor,
        toInt64(rejected_minor) as rejected_minor,
        toInt64(earned_delta_minor) as earned_delta_minor,
        toInt64(pending_delta_minor) as pending_delta_minor,
        toInt64(approved_delta_minor) as approved_delta_minor,
        toInt64(paid_delta_minor) as paid_delta_minor,
        toInt64(rejected_delta_minor) as rejected_delta_minor,
        toUInt8(event_seq = count() over (partition by tenant_id, commission_id)) as is_latest
    from deltas
)

select * from final
