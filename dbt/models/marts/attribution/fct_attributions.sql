-- Every model's credit for every conversion, per affiliate, with the money split exactly:
-- the order's amount and net are divided by share with the largest-remainder method, so a
-- conversion's credited amounts sum to the order's to the cent under every model.
-- is_payable marks the governing campaign's payable model: only those rows earn.
with

conversions as (
    select * from {{ ref('int_conversions__current') }}
),

terms as (
    select * from {{ ref('int_campaign_terms__in_force') }}
),

own_credits as (
    select * from {{ ref('int_attribution__credits') }}
),

renewal_credits as (
    -- A renewal inherits the first payment's credit, under its campaign's terms in force
    -- at the renewal.
    select
        renewals.tenant_id as tenant_id,
        renewals.conversion_id as conversion_id,
        inherited.model as model,
        inherited.affiliate_id as affiliate_id,
        inherited.share as share,
        inherited.campaign_id as campaign_id,
        ifNull(renewal_terms.terms_version, inherited.campaign_terms_version) as campaign_terms_version,
        inherited.touches as touches,
        inherited.first_touched_at as first_touched_at,
        'renewal' as via,
        inherited.is_payable as is_payable
    from conversions as renewals
    inner join conversions as first_payment
        on first_payment.tenant_id = renewals.tenant_id
        and first_payment.subscription_id = renewals.subscription_id
        and first_payment.renewal_number = 0
    inner join own_credits as inherited
        on inherited.tenant_id = first_payment.tenant_id
        and inherited.conversion_id = first_payment.conversion_id
    left join (
        select
            renewals.conversion_id as conversion_id,
            terms.campaign_id as campaign_id,
            max(terms.terms_version) as terms_version
        from conversions as renewals
        inner join terms on terms.tenant_id = renewals.tenant_id
        where terms.valid_from <= renewals.converted_at and renewals.converted_at < terms.valid_until
        group by renewals.conversion_id, terms.campaign_id
    ) as renewal_terms
        on renewal_terms.conversion_id = renewals.conversion_id
        and renewal_terms.campaign_id = inherited.campaign_id
    where renewals.renewal_number > 0 and renewals.subscription_id != ''
      and renewals.conversion_id not in (select conversion_id from own_credits)
),

credits as (
    select * from own_credits
    union all
    select * from renewal_credits
),

split as (
    select
        credits.*,
        conversions.order_id as order_id,
        conversions.converted_at as converted_at,
        conversions.currency as currency,
        conversions.amount_minor as order_amount_minor,
        conversions.net_minor as order_net_minor
    from credits
    inner join conversions on conversions.conversion_id = credits.conversion_id
),

shared as (
    -- Largest remainder, for the rows that share a conversion with other affiliates: the
    -- cents left after the floors go one each to the largest remainders (ties: the earlier
    -- first touch, then the smaller affiliate id).
    select
        *,
        share * order_amount_minor as amount_exact,
        share * order_net_minor as net_exact,
        toInt64(floor(amount_exact)) as amount_floor,
        toInt64(floor(net_exact)) as net_floor,
        amount_floor + toInt64(
            row_number() over (
                partition by conversion_id, model
                order by amount_exact - amount_floor desc, first_touched_at, affiliate_id
            ) <= order_amount_minor - sum(amount_floor) over (partition by conversion_id, model)
        ) as credited_amount_minor,
        net_floor + toInt64(
            row_number() over (
                partition by conversion_id, model
                order by net_exact - net_floor desc, first_touched_at, affiliate_id
            ) <= order_net_minor - sum(net_floor) over (partition by conversion_id, model)
        ) as credited_net_minor
    from split
    where share < 1
),

final as (
    select
        tenant_id, conversion_id, order_id, converted_at, model, affiliate_id, campaign_id,
        campaign_terms_version, share, credited_amount_minor, credited_net_minor,
        order_amount_minor, order_net_minor, currency, toUInt8(is_payable) as is_payable,
        toUInt32(touches) as touches, via
    from shared

    union all

    -- A sole affiliate (share 1, most rows: first and last click always) gets it all.
    select
        tenant_id, conversion_id, order_id, converted_at, model, affiliate_id, campaign_id,
        campaign_terms_version, share, order_amount_minor, order_net_minor,
        order_amount_minor, order_net_minor, currency, toUInt8(is_payable), toUInt32(touches), via
    from split
    where share >= 1
)

select * from final
