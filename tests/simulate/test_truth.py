"""The ground truth on hand-made journeys: each model, the exclusions, the conflict rules,
renewals. Expected values come from docs/attribution.md, worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.simulate import agents
from pipelines.simulate.journeys import Journey, Order
from pipelines.simulate.truth import expected_credit, journey_truth, velocity_flagged
from pipelines.simulate.world import ConflictRules
from tests.simulate.helpers import BROWSER, T0, affiliate, campaign, click, order, tenant

ANA, LEO, RUI = affiliate("ana"), affiliate("leo"), affiliate("rui")


def shares_for(
    model: str, days: list[tuple[str, float]], conversion_day: float = 6
) -> dict[str, float]:
    shop = tenant([ANA, LEO, RUI], [campaign(model)])  # type: ignore[arg-type]
    clicks = [click(shop, who, day) for who, day in days]
    return expected_credit(shop, order(conversion_day), clicks, set()).shares


def test_worked_example_of_the_rules() -> None:
    """docs/attribution.md, section 3: Ana on day 0, Léo on day 5, order on day 6."""
    journey = [("ana", 0.0), ("leo", 5.0)]
    assert shares_for("first_click", journey) == {"ana": 1.0}
    assert shares_for("last_click", journey) == {"leo": 1.0}
    assert shares_for("linear", journey) == {"ana": 0.5, "leo": 0.5}
    assert shares_for("position_based", journey) == {"ana": 0.5, "leo": 0.5}
    decay = shares_for("time_decay", journey)
    assert decay["ana"] == pytest.approx(2 ** (-6 / 7) / (2 ** (-6 / 7) + 2 ** (-1 / 7)), abs=1e-12)
    assert decay["ana"] == pytest.approx(0.3787, abs=1e-4)
    assert decay["leo"] == pytest.approx(0.6213, abs=1e-4)


def test_models_sum_touches_per_affiliate() -> None:
    journey = [("ana", 0.0), ("leo", 1.0), ("ana", 2.0), ("rui", 3.0)]
    assert shares_for("linear", journey) == {"ana": 0.5, "leo": 0.25, "rui": 0.25}
    # n >= 3: 0.4 first, 0.4 last, 0.2 / (n - 2) in between
    assert shares_for("position_based", journey) == pytest.approx(
        {"ana": 0.4 + 0.1, "leo": 0.1, "rui": 0.4}
    )
    assert shares_for("position_based", journey[:3]) == pytest.approx({"ana": 0.8, "leo": 0.2})
    assert shares_for("position_based", [("rui", 1.0)]) == {"rui": 1.0}


def test_time_decay_uses_the_governing_half_life() -> None:
    shop = tenant([ANA, LEO], [campaign("time_decay", half_life=2)])
    clicks = [click(shop, "ana", 0), click(shop, "leo", 4)]
    shares = expected_credit(shop, order(6), clicks, set()).shares
    ana, leo = 2 ** (-6 / 2), 2 ** (-2 / 2)
    assert shares["ana"] == pytest.approx(ana / (ana + leo), abs=1e-12)


def test_ties_in_time_are_ordered_by_click_id() -> None:
    shop = tenant([ANA, LEO], [campaign("first_click")])
    clicks = [click(shop, "leo", 1, click_id="b"), click(shop, "ana", 1, click_id="a")]
    assert expected_credit(shop, order(2), clicks, set()).shares == {"ana": 1.0}


def test_window_of_the_terms_in_force_at_the_conversion() -> None:
    # 30 days, last click until day 20, then 10 days and linear.
    changed = campaign("last_click", 30, changes=(20, "linear", 10))
    shop = tenant([ANA, LEO], [changed])
    clicks = [click(shop, "ana", 0), click(shop, "leo", 12)]
    before = expected_credit(shop, order(15), clicks, set())
    assert (before.model, before.shares) == ("last_click", {"leo": 1.0})
    after = expected_credit(shop, order(25), clicks, set())
    # Ana's click is 25 days old: outside the new 10-day window; Léo's is 13: outside too.
    assert (after.model, after.shares) == ("", {})
    assert after.excluded == {"outside_window": 2}
    later = expected_credit(shop, order(21), clicks, set())  # Léo's is 9 days old
    assert (later.model, later.shares, later.excluded) == (
        "linear",
        {"leo": 1.0},
        {"outside_window": 1},
    )


def test_each_touch_uses_its_own_campaigns_window_and_the_last_one_governs() -> None:
    short = campaign("first_click", 5, campaign_id="short")
    long = campaign("linear", 60, campaign_id="long")
    shop = tenant([ANA, LEO, RUI], [short, long])
    clicks = [
        click(shop, "ana", 0, campaign_id="long"),
        click(shop, "rui", 1, campaign_id="short"),  # 9 days before: outside its 5 days
        click(shop, "leo", 7, campaign_id="short"),
    ]
    credit = expected_credit(shop, order(10), clicks, set())
    # Governing: the last eligible touch's campaign (short, first click) over Ana and Léo.
    assert (credit.model, credit.shares) == ("first_click", {"ana": 1.0})
    assert credit.excluded == {"outside_window": 1}


def test_bots_heads_and_previews_are_never_credited() -> None:
    shop = tenant([ANA, LEO, RUI], [campaign("linear")])
    crawler = dataclasses.replace(BROWSER, ua=agents.CRAWLERS[0])
    preview = dataclasses.replace(BROWSER, ua=agents.PREVIEWS[0])
    clicks = [
        click(shop, "ana", 1, browser=crawler),
        click(shop, "leo", 2, browser=preview),
        click(shop, "rui", 3, head=True),
    ]
    credit = expected_credit(shop, order(4), clicks, set())
    assert (credit.shares, credit.excluded) == ({}, {"bot": 3})


def test_paid_hijack_unless_the_campaign_allows_paid_traffic() -> None:
    for allow, expected in ((False, {"ana": 1.0}), (True, {"leo": 1.0})):
        rules = ConflictRules(exclude_paid_traffic=not allow)
        shop = tenant([ANA, LEO], [campaign("last_click", 30, rules)])
        clicks = [click(shop, "ana", 1), click(shop, "leo", 2, query="gclid=abc")]
        assert expected_credit(shop, order(3), clicks, set()).shares == expected


def test_self_referral_unless_allowed() -> None:
    seller = affiliate("seller", email_hash="e-seller")
    for policy, expected in (("exclude", {"ana": 1.0}), ("allow", {"seller": 1.0})):
        rules = ConflictRules(self_referral=policy)  # type: ignore[arg-type]
        shop = tenant([ANA, seller], [campaign("last_click", 30, rules)])
        clicks = [click(shop, "ana", 1), click(shop, "seller", 2)]
        # The affiliate's email hash is the buyer's: they bought through their own link.
        assert expected_credit(shop, order(3), clicks, {"e-seller"}).shares == expected


def test_suspended_affiliates_are_not_credited() -> None:
    gone = affiliate("gone", status="suspended")
    shop = tenant([ANA, gone], [campaign("last_click")])
    credit = expected_credit(shop, order(3), [click(shop, "ana", 1), click(shop, "gone", 2)], set())
    assert (credit.shares, credit.excluded) == ({"ana": 1.0}, {"affiliate_inactive": 1})


@pytest.mark.parametrize(
    ("rule", "with_click", "expected"),
    [
        ("wins", True, {"leo": 1.0}),  # the code alone is the journey
        ("click", True, {"ana": 1.0}),  # a click is eligible: the coupon does not count
        ("click", False, {"leo": 1.0}),  # no click: the coupon counts
        ("touch", True, {"ana": 0.5, "leo": 0.5}),  # one more touch (linear)
    ],
)
def test_coupon_rules(rule: str, with_click: bool, expected: dict[str, float]) -> None:
    rules = ConflictRules(coupon=rule)  # type: ignore[arg-type]
    shop = tenant([ANA, LEO], [campaign("linear", 30, rules)], coupons={"leo": "LEO15"})
    clicks = [click(shop, "ana", 1)] if with_click else []
    # Codes match whatever their case; a code that is no affiliate's is ignored.
    credit = expected_credit(shop, order(2, coupons=("leo15", "BEMVINDO10")), clicks, set())
    assert credit.shares == expected


def test_coupon_touch_is_at_the_conversion_time() -> None:
    rules = ConflictRules(coupon="touch")
    shop = tenant([ANA, LEO], [campaign("last_click", 30, rules)], coupons={"ana": "ANA10"})
    clicks = [click(shop, "leo", 1)]
    assert expected_credit(shop, order(2, coupons=("ANA10",)), clicks, set()).shares == {"ana": 1.0}


def test_affiliate_priorities_keep_the_highest_present() -> None:
    rules = ConflictRules(coupon="touch", affiliate_priorities={"leo": 2, "rui": 1})
    shop = tenant([ANA, LEO, RUI], [campaign("linear", 30, rules)], coupons={"leo": "LEO15"})
    clicks = [click(shop, "ana", 1), click(shop, "rui", 2), click(shop, "rui", 3)]
    assert expected_credit(shop, order(4), clicks, set()).shares == {"rui": 1.0}
    # Léo's coupon is a touch of the top-priority affiliate: only Léo stays.
    with_code = expected_credit(shop, order(4, coupons=("LEO15",)), clicks, set())
    assert with_code.shares == {"leo": 1.0}


def test_repeat_clicks_are_one_touch_and_later_clicks_no_touch() -> None:
    shop = tenant([ANA, LEO], [campaign("linear")])
    first = click(shop, "ana", 1, click_id="same")
    repeat = click(shop, "ana", 1.02, click_id="same")
    after = click(shop, "leo", 3)  # after the order
    credit = expected_credit(shop, order(2), [first, repeat, after], set())
    assert credit.shares == {"ana": 1.0}
    # The touch is at the repeat's time: with time decay alone it would not matter, so
    # check the window: 30 days after the first click but not after the repeat.
    late = order(1 + 30.01)
    assert expected_credit(shop, late, [first, repeat], set()).shares == {"ana": 1.0}
    assert expected_credit(shop, late, [first], set()).shares == {}


def test_velocity_flags_the_twenty_first_click_of_a_minute() -> None:
    shop = tenant([ANA, LEO], [campaign("last_click")])
    burst = [click(shop, "ana", 1 + i / 86_400, click_id=f"b{i}") for i in range(21)]
    assert velocity_flagged(burst) == {id(burst[20])}
    spread = [click(shop, "ana", 1 + 4 * i / 86_400, click_id=f"s{i}") for i in range(21)]
    assert velocity_flagged(spread) == set()
    flagged = velocity_flagged(burst)
    credit = expected_credit(shop, order(2), [click(shop, "leo", 0.5), burst[20]], set(), flagged)
    assert (credit.shares, credit.excluded) == ({"leo": 1.0}, {"velocity": 1})


def test_renewals_inherit_the_first_payment() -> None:
    shop = tenant([ANA, LEO], [campaign("last_click", 7)])
    clicks = [click(shop, "ana", 0), click(shop, "leo", 1)]
    first = order(2)
    renewal = Order(
        ts=T0 + 32 * 86_400_000,  # long after the window: inherited, not attributed again
        order_id="o-r1",
        currency="BRL",
        lines=first.lines,
        shipping_minor=0,
        tax_minor=0,
        customer_id="cus-1",
        email_sha256="",
        renewal_number=1,
        subscription_id="sub-1",
        first=first,
    )
    truth = journey_truth(Journey(shop, [*clicks, first, renewal]), {})
    assert [(o.order_id, c.model, c.shares) for o, c in truth] == [
        ("o-2", "last_click", {"leo": 1.0}),
        ("o-r1", "last_click", {"leo": 1.0}),
    ]


def test_data_driven_has_no_ground_truth() -> None:
    with pytest.raises(ValueError, match="data_driven"):
        shares_for("data_driven", [("ana", 1.0)])
