-- The data-driven model: each affiliate's Shapley value in its journey's set of
-- affiliates, the value of a set being the conversion rate of journeys with exactly that
-- set (docs/attribution.md). Computed once per distinct set, then joined to conversions.
{%- set max_players = 10 %}  {#- 2^10 coalitions per set at most; one affiliate or more than 10: equal shares #}

with

journeys as (
    select * from {{ ref('int_attribution__journeys') }}
),

converting as (
    select
        tenant_id,
        conversion_id,
        arraySort(groupUniqArray(affiliate_id)) as affiliate_set,
        {{ set_fingerprint('affiliate_set') }} as fingerprint
    from journeys
    group by tenant_id, conversion_id
),

non_converting as (
    -- People who clicked and never converted: one journey per person (a click outside the
    -- graph is its own browser's), with the affiliates of their clicks that could have
    -- earned credit (no bots, known links, no paid-traffic markers, no IP velocity).
    select
        any(clicks.tenant_id) as tenant_id,
        coalesce(persons.person_key, {{ click_anchor('clicks.click_id', 'clicks.cookie_id', 'clicks.tenant_id') }}) as person,
        sum(distinct cityHash64(clicks.affiliate_id)) as fingerprint
    from {{ ref('stg_rastro__clicks') }} as clicks
    left join {{ ref('int_identity__persons') }} as persons
        on persons.node = {{ click_anchor('clicks.click_id', 'clicks.cookie_id', 'clicks.tenant_id') }}
    where not (clicks.is_bot or clicks.is_head or clicks.is_preview)
      and clicks.affiliate_id != ''
      and empty(clicks.paid_click_markers)
      and not arrayExists(flag -> startsWith(flag, 'ip_'), clicks.velocity_flags)
    group by person
    having person not in (select person_key from {{ ref('int_conversions__persons') }})
),

set_values as (
    select
        tenant_id,
        fingerprint,
        countIf(converted) / count() as conversion_rate
    from (
        select tenant_id, fingerprint, true as converted from converting
        union all
        select tenant_id, fingerprint, false from non_converting
    )
    group by tenant_id, fingerprint
),

player_sets as (
    select distinct tenant_id, affiliate_set, length(affiliate_set) as players
    from converting
    where players between 2 and {{ max_players }}
),

coalitions as (
    -- Every non-empty subset (a bit mask over the set's positions) and its value.
    select
        player_sets.tenant_id as tenant_id,
        player_sets.affiliate_set as affiliate_set,
        player_sets.players as players,
        coalitions.mask as mask,
        bitCount(coalitions.mask) as size,
        ifNull(set_values.conversion_rate, 0) as value
    from (
        select
            tenant_id,
            affiliate_set,
            players,
            arrayJoin(range(1, toUInt64(exp2(players)))) as mask,
            arrayFilter((affiliate, i) -> bitTest(mask, i - 1), affiliate_set, arrayEnumerate(affiliate_set))
                as coalition
        from player_sets
    ) as coalitions
    inner join player_sets
        on player_sets.tenant_id = coalitions.tenant_id and player_sets.affiliate_set = coalitions.affiliate_set
    left join set_values
        on set_values.tenant_id = coalitions.tenant_id
        and set_values.fingerprint = {{ set_fingerprint('coalitions.coalition') }}
),

shapley as (
    -- phi_i = sum over T not containing i of |T|!(n-|T|-1)!/n! (v(T + i) - v(T)): each
    -- coalition adds its value to its members (as T + i) and takes it from the others (as T).
    select
        tenant_id,
        affiliate_set,
        sumForEach(
            arrayMap(
                i -> if(
                    bitTest(mask, i - 1),
                    factorial(size - 1) * factorial(players - size) / factorial(players),
                    -factorial(size) * factorial(players - size - 1) / factorial(players)
                ) * value,
                range(1, players + 1)
            )
        ) as values
    from coalitions
    group by tenant_id, affiliate_set
),

set_shares as (
    select
        tenant_id,
        affiliate_set,
        arrayMap(v -> greatest(v, 0), values) as positive,
        if(
            arraySum(positive) > 0,
            arrayMap(v -> v / arraySum(positive), positive),
            arrayMap(v -> 1.0 / length(affiliate_set), positive)
        ) as shares
    from shapley
),

final as (
    select
        converting.tenant_id as tenant_id,
        converting.conversion_id as conversion_id,
        affiliate_id,
        -- Rounded to 12 places: the sums above leave binary noise (0.37499999999999994).
        -- Sets larger than max_players have no Shapley row (an unmatched array is []).
        round(if(
            empty(set_shares.shares), 1.0 / length(converting.affiliate_set),
            set_shares.shares[index]
        ), 12) as share
    from converting
    left join set_shares
        on set_shares.tenant_id = converting.tenant_id
        and set_shares.affiliate_set = converting.affiliate_set
    array join converting.affiliate_set as affiliate_id, arrayEnumerate(converting.affiliate_set) as index
)

select * from final
