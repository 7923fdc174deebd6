"""The reports API on real marts (the `built_warehouse` fixture: simulated traffic for four
tenants, ingested, `dbt build` run): every total, dimension and filter of the performance
report against numbers computed independently from the same tables (in Python, or in SQL
written differently), pagination, CSV, the summary, the explanation of one conversion, and
who may see what."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from api.main import create_app
from api.store import ConfigStore
from tests.api.conftest import BuiltWarehouse, TenantFixture
from tests.conftest import client_for

FIRST, LAST = date(2026, 1, 1), date(2026, 12, 31)
PERIOD = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    currency: str
    timezone: str
    admin: dict[str, str]


class Warehouse:
    """Independent reads of the built database, each naming its tenant explicitly."""

    def __init__(self, built: BuiltWarehouse) -> None:
        self.client = client_for(
            built.settings.warehouse_url, database=built.settings.clickhouse_database
        )

    def rows(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        result = self.client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@pytest.fixture(scope="module")
def built_app(built_warehouse: BuiltWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(built_warehouse.settings)) as client:
        yield client


@pytest.fixture(scope="module")
def warehouse(built_warehouse: BuiltWarehouse) -> Iterator[Warehouse]:
    reads = Warehouse(built_warehouse)
    yield reads
    reads.client.close()


def key(
    built: BuiltWarehouse, tenant_id: str, scope: str, affiliate_id: str | None = None
) -> dict[str, str]:
    api_key = (
        ConfigStore(built.settings)
        .for_tenant(tenant_id)
        .create_api_key(f"test {scope}", [scope], affiliate_id=affiliate_id)
    )
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="module")
def tenants(built_warehouse: BuiltWarehouse, warehouse: Warehouse) -> dict[str, Tenant]:
    """The simulated tenants by name (Loja Verde, Moda Rio, Mercado Sul: BRL; CloudApp: USD)."""
    rows = warehouse.rows(
        "SELECT tenant_id, name, default_currency, timezone FROM tenants FINAL "
        "WHERE tenant_id IN {ids:Array(String)}",
        ids=built_warehouse.tenant_ids,
    )
    return {
        row["name"]: Tenant(
            row["tenant_id"],
            row["name"],
            row["default_currency"],
            row["timezone"],
            key(built_warehouse, row["tenant_id"], "admin"),
        )
        for row in rows
    }


def report(app: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = app.get("/v1/reports/performance", headers=headers, params={**PERIOD, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def totals(app: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    body = report(app, headers, **params)
    assert body["total_rows"] == 1
    row: dict[str, Any] = body["rows"][0]
    return row


# -- independent figures -----------------------------------------------------------------------


def period_bounds(
    timezone: str, first: date = FIRST, last: date = LAST
) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    end = datetime(last.year, last.month, last.day, tzinfo=zone) + timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def click_events(warehouse: Warehouse, tenant: Tenant) -> list[dict[str, Any]]:
    """Counted click events (no bots, HEAD or previews; on an affiliate's link)."""
    start, end = period_bounds(tenant.timezone)
    return warehouse.rows(
        "SELECT click_id, ts, cookie_id, campaign_id, affiliate_id, link_id, sub1, country, "
        "device_type FROM clicks FINAL WHERE tenant_id = {t:String} "
        "AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)} "
        "AND is_bot = 0 AND is_head = 0 AND is_preview = 0 AND affiliate_id != ''",
        t=tenant.tenant_id,
        start=start,
        end=end,
    )


def first_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per click id: its first (repeat clicks reuse the id)."""
    first: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e["ts"]):
        first.setdefault(event["click_id"], event)
    return list(first.values())


def credits(warehouse: Warehouse, tenant: Tenant) -> list[dict[str, Any]]:
    """Payable credits with their commission."""
    return warehouse.rows(
        "SELECT a.conversion_id AS conversion_id, a.affiliate_id AS affiliate_id, "
        "a.campaign_id AS campaign_id, a.converted_at AS converted_at, "
        "a.credited_amount_minor AS revenue, c.commission_minor AS commission "
        "FROM fct_attributions AS a LEFT JOIN fct_commissions AS c "
        "ON c.commission_id = concat(a.conversion_id, ':', a.affiliate_id) "
        "WHERE a.tenant_id = {t:String} AND a.is_payable = 1 AND a.share > 0 "
        "AND a.currency = {currency:String}",
        t=tenant.tenant_id,
        currency=tenant.currency,
    )


def local_day(at: datetime, timezone: str) -> str:
    return at.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date().isoformat()


def metrics_by(
    clicks: list[dict[str, Any]], conversions: list[dict[str, Any]], click_key: Any, credit_key: Any
) -> dict[Any, dict[str, int]]:
    groups: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {
            "clicks": 0,
            "visitors": set(),
            "conversions": set(),
            "revenue": 0,
            "commission": 0,
        }
    )
    for event in clicks:
        group = groups[click_key(event)]
        group["clicks"] += 1
        group["visitors"].add(event["cookie_id"] or event["click_id"])
    for credit in conversions:
        group = groups[credit_key(credit)]
        group["conversions"].add(credit["conversion_id"])
        group["revenue"] += credit["revenue"]
        group["commission"] += credit["commission"] or 0
    return {
        key: {
            "clicks": g["clicks"],
            "unique_visitors": len(g["visitors"]),
            "conversions": len(g["conversions"]),
            "revenue_minor": g["revenue"],
            "commission_minor": g["commission"],
        }
        for key, g in groups.items()
    }


def metrics_of(row: dict[str, Any]) -> dict[str, int]:
    return {
        name: row[name]
        for name in (
            "clicks",
            "unique_visitors",
            "conversions",
            "revenue_minor",
            "commission_minor",
        )
    }


# -- the performance report --------------------------------------------------------------------


def test_totals_match_the_marts_and_landing_tables(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    assert len(tenants) == 4
    for tenant in tenants.values():
        row = totals(built_app, tenant.admin)
        clicks = first_events(click_events(warehouse, tenant))
        assert row["clicks"] == len(clicks) > 0
        assert row["unique_visitors"] == len({c["cookie_id"] or c["click_id"] for c in clicks})
        # The whole range: every commission of the tenant (all in its one currency).
        everything = warehouse.rows(
            "SELECT sum(commission_minor) AS commission, uniqExact(currency) AS currencies "
            "FROM fct_commissions WHERE tenant_id = {t:String}",
            t=tenant.tenant_id,
        )[0]
        assert everything["currencies"] == 1
        assert row["commission_minor"] == everything["commission"] > 0
        payable = warehouse.rows(
            "SELECT uniqExact(conversion_id) AS conversions, sum(credited_amount_minor) AS revenue "
            "FROM fct_attributions WHERE tenant_id = {t:String} AND is_payable = 1",
            t=tenant.tenant_id,
        )[0]
        assert row["conversions"] == payable["conversions"]
        assert row["revenue_minor"] == payable["revenue"]
        epc = (Decimal(row["commission_minor"]) / row["clicks"]).quantize(
            Decimal(1), "ROUND_HALF_EVEN"
        )
        assert row["epc_minor"] == int(epc)
        assert row["conversion_rate"] == round(row["conversions"] / row["clicks"], 6)


# sub1..sub5 work as these do; the simulation sets none (the filter test covers sub1).
@pytest.mark.parametrize("dimension", ["day", "campaign", "affiliate", "link", "device", "country"])
def test_each_dimension_matches_an_independent_count(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant], dimension: str
) -> None:
    tenant = tenants["Loja Verde"]  # two campaigns, terms versions, coupons, split credits
    clicks = first_events(click_events(warehouse, tenant))
    conversions = credits(warehouse, tenant)
    touch = credited_touches(warehouse, tenant)
    keys = {
        "day": (
            lambda c: local_day(c["ts"], tenant.timezone),
            lambda c: local_day(c["converted_at"], tenant.timezone),
        ),
        "campaign": (lambda c: c["campaign_id"], lambda c: c["campaign_id"]),
        "affiliate": (lambda c: c["affiliate_id"], lambda c: c["affiliate_id"]),
        "link": (
            lambda c: c["link_id"],
            lambda c: touch.get((c["conversion_id"], c["affiliate_id"]), {}).get("link_id", ""),
        ),
        "device": (
            lambda c: c["device_type"],
            lambda c: touch.get((c["conversion_id"], c["affiliate_id"]), {}).get("device", ""),
        ),
        "country": (
            lambda c: c["country"],
            lambda c: touch.get((c["conversion_id"], c["affiliate_id"]), {}).get("country", ""),
        ),
    }
    expected = metrics_by(clicks, conversions, *keys[dimension])
    body = report(built_app, tenant.admin, group_by=dimension, limit=1000)
    column = {"campaign": "campaign_id", "affiliate": "affiliate_id", "link": "link_id"}.get(
        dimension, dimension
    )
    got = {row[column]: metrics_of(row) for row in body["rows"]}
    assert got == expected
    assert body["total_rows"] == len(expected) > 1


def credited_touches(warehouse: Warehouse, tenant: Tenant) -> dict[tuple[str, str], dict[str, str]]:
    """Per payable credit, the link, country and device of the affiliate's latest journey touch:
    its click's (the latest event of that click id), or its coupon's link."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for touch in warehouse.rows(
        "SELECT conversion_id, affiliate_id, touch_id, touched_at FROM int_attribution__journeys "
        "WHERE tenant_id = {t:String}",
        t=tenant.tenant_id,
    ):
        key = (touch["conversion_id"], touch["affiliate_id"])
        if key not in latest or (touch["touched_at"], touch["touch_id"]) > (
            latest[key]["touched_at"],
            latest[key]["touch_id"],
        ):
            latest[key] = touch
    clicks: dict[str, dict[str, Any]] = {}
    for event in sorted(
        warehouse.rows(
            "SELECT click_id, ts, link_id, country, device_type FROM clicks FINAL "
            "WHERE tenant_id = {t:String}",
            t=tenant.tenant_id,
        ),
        key=lambda e: e["ts"],
    ):
        clicks[event["click_id"]] = event  # the latest event wins
    coupons = {
        row["code"].upper(): row
        for row in warehouse.rows(
            "SELECT code, id FROM links FINAL WHERE tenant_id = {t:String} AND kind = 'coupon'",
            t=tenant.tenant_id,
        )
    }
    found = {}
    for key, touch in latest.items():
        kind, _, value = touch["touch_id"].partition(":")
        if kind == "click":
            click = clicks[value]
            found[key] = {
                "link_id": click["link_id"],
                "country": click["country"],
                "device": click["device_type"],
            }
        else:
            coupon = coupons[value]
            # A coupon touch has no country or device.
            found[key] = {"link_id": coupon["id"], "country": "", "device": ""}
    return found


def test_labels_name_the_ids(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Loja Verde"]
    body = report(built_app, tenant.admin, group_by="campaign,affiliate,link", limit=1000)
    names = {
        row["id"]: row["name"]
        for row in warehouse.rows(
            "SELECT id, display_name AS name FROM affiliates FINAL WHERE tenant_id = {t:String}",
            t=tenant.tenant_id,
        )
    }
    codes = {
        row["id"]: row["code"]
        for row in warehouse.rows(
            "SELECT id, code FROM links FINAL WHERE tenant_id = {t:String}", t=tenant.tenant_id
        )
    }
    for row in body["rows"]:
        assert row["affiliate_name"] == names[row["affiliate_id"]]
        assert row["link_code"] == codes.get(row["link_id"], "")
        assert row["campaign_name"] in ("Parceiros Premium", "Programa Geral")


@pytest.mark.parametrize(
    ("dimension", "filter_name"),
    [("campaign", "campaign_id"), ("affiliate", "affiliate_id"), ("link", "link_id"),
     ("device", "device"), ("sub1", "sub1"), ("country", "country")],
)  # fmt: skip
def test_a_filter_gives_the_row_of_its_group(
    built_app: TestClient, tenants: dict[str, Tenant], dimension: str, filter_name: str
) -> None:
    tenant = tenants["Loja Verde"]
    grouped = report(built_app, tenant.admin, group_by=dimension, limit=1000)["rows"]
    column = filter_name if dimension != "device" else "device"
    for row in grouped[:5]:
        filtered = totals(built_app, tenant.admin, **{filter_name: row[column]})
        assert metrics_of(filtered) == metrics_of(row)
    nothing = totals(built_app, tenant.admin, **{filter_name: "no-such-value"})
    assert metrics_of(nothing) == dict.fromkeys(metrics_of(nothing), 0)
    assert nothing["epc_minor"] is None and nothing["conversion_rate"] is None


def test_days_are_the_tenants_calendar_days(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Moda Rio"]
    assert tenant.timezone == "America/Sao_Paulo"
    day = report(built_app, tenant.admin, group_by="day", sort="-clicks", limit=1)["rows"][0]
    start, end = period_bounds(
        tenant.timezone, date.fromisoformat(day["day"]), date.fromisoformat(day["day"])
    )
    assert end - start == timedelta(hours=24)
    one_day = report(
        built_app, tenant.admin, group_by="day", **{"from": day["day"], "to": day["day"]}
    )
    assert one_day["total_rows"] == 1
    assert metrics_of(one_day["rows"][0]) == metrics_of(day)
    clicks = first_events(click_events(warehouse, tenant))
    assert day["clicks"] == sum(1 for c in clicks if start <= c["ts"].replace(tzinfo=UTC) < end)


def test_pages_cover_every_group_once_in_order(
    built_app: TestClient, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Loja Verde"]
    whole = report(
        built_app, tenant.admin, group_by="day,affiliate", sort="-commission_minor", limit=1000
    )
    assert 20 < whole["total_rows"] == len(whole["rows"]) < 1000
    commissions = [row["commission_minor"] for row in whole["rows"]]
    assert commissions == sorted(commissions, reverse=True)
    pages, offset = [], 0
    while True:
        page = report(
            built_app,
            tenant.admin,
            group_by="day,affiliate",
            sort="-commission_minor",
            limit=7,
            offset=offset,
        )
        assert page["total_rows"] == whole["total_rows"]
        if not page["rows"]:
            break
        assert len(page["rows"]) == min(7, whole["total_rows"] - offset)
        pages += page["rows"]
        offset += 7
    assert pages == whole["rows"]
    assert offset >= whole["total_rows"]
    last_page = report(
        built_app, tenant.admin, group_by="day,affiliate", limit=7, offset=whole["total_rows"] - 1
    )
    assert len(last_page["rows"]) == 1


@pytest.mark.parametrize("sort", ["day", "-day", "clicks", "-epc_minor", "conversion_rate"])
def test_sorting(built_app: TestClient, tenants: dict[str, Tenant], sort: str) -> None:
    rows = report(built_app, tenants["Moda Rio"].admin, group_by="day", sort=sort, limit=1000)[
        "rows"
    ]
    key = sort.removeprefix("-")
    values = [row[key] for row in rows if row[key] is not None]
    assert values == sorted(values, reverse=sort.startswith("-"))
    # Groups without clicks (no EPC, no rate) come last whichever the direction.
    nulls = [row[key] is None for row in rows]
    assert nulls == sorted(nulls)


def test_csv_round_trips(built_app: TestClient, tenants: dict[str, Tenant]) -> None:
    tenant = tenants["Loja Verde"]
    params = {**PERIOD, "group_by": "day,campaign", "sort": "day"}
    as_json = report(built_app, tenant.admin, **params, limit=1000)
    response = built_app.get(
        "/v1/reports/performance",
        headers=tenant.admin,
        params={**params, "format": "csv", "limit": 3},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    records = list(csv.DictReader(io.StringIO(response.text)))
    assert len(records) == as_json["total_rows"]  # every row: limit does not apply
    for record, row in zip(records, as_json["rows"], strict=True):
        assert record["day"] == row["day"]
        assert record["campaign_id"] == row["campaign_id"]
        assert record["campaign_name"] == row["campaign_name"]
        assert record["currency"] == "BRL"
        for metric in (
            "clicks",
            "unique_visitors",
            "conversions",
            "revenue_minor",
            "commission_minor",
        ):
            assert int(record[metric]) == row[metric]
        assert Decimal(record["revenue"]) * 100 == row["revenue_minor"]
        assert Decimal(record["commission"]) * 100 == row["commission_minor"]
        assert len(record["revenue"].partition(".")[2]) == 2  # cents, always two digits
        if row["epc_minor"] is None:
            assert record["epc"] == record["epc_minor"] == ""
        else:
            assert Decimal(record["epc"]) * 100 == int(record["epc_minor"]) == row["epc_minor"]
    by_accept = built_app.get(
        "/v1/reports/performance", headers={**tenant.admin, "Accept": "text/csv"}, params=params
    )
    assert by_accept.status_code == 200
    assert by_accept.text == response.text


def test_amounts_stay_in_one_currency(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["CloudApp"]
    assert tenant.currency == "USD"
    default = totals(built_app, tenant.admin)
    assert report(built_app, tenant.admin)["currency"] == "USD"
    assert default["revenue_minor"] > 0
    # The same tenant asked in BRL: no conversion is in BRL, clicks still count.
    in_brl = report(built_app, tenant.admin, currency="brl")
    assert in_brl["currency"] == "BRL"
    assert in_brl["other_currencies"] == ["USD"]
    row = in_brl["rows"][0]
    assert (row["conversions"], row["revenue_minor"], row["commission_minor"]) == (0, 0, 0)
    assert row["clicks"] == default["clicks"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"group_by": "week"}, "unknown dimension week"),
        ({"group_by": "day,day"}, "twice"),
        ({"from": "2026-05-02", "to": "2026-05-01"}, "after"),
        ({"from": "2025-01-01", "to": "2026-12-31"}, "at most 366"),
        ({"from": "2026-13-01"}, "date"),
        ({"from": "0455-12-20", "to": "0455-12-26"}, "between 2000-01-01 and 2199-12-31"),
        ({"limit": 0}, "greater than or equal"),
        ({"limit": 1001}, "less than or equal"),
        ({"offset": -1}, "greater than or equal"),
        ({"currency": "XYZ"}, "ISO 4217"),
        ({"sort": "bogus"}, "cannot sort"),
        ({"sort": "campaign", "group_by": "day"}, "cannot sort"),
        ({"format": "xml"}, "csv"),
        ({"sub1": "x" * 300}, "at most 256"),
    ],
)
def test_bad_requests_are_422(
    built_app: TestClient, tenants: dict[str, Tenant], params: dict[str, Any], message: str
) -> None:
    response = built_app.get(
        "/v1/reports/performance", headers=tenants["Moda Rio"].admin, params={**PERIOD, **params}
    )
    assert response.status_code == 422
    assert message in response.text


# -- the summary -------------------------------------------------------------------------------


def test_summary_compares_with_the_previous_period(
    built_app: TestClient, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Loja Verde"]
    params = {"from": "2026-10-01", "to": "2026-10-31"}
    response = built_app.get("/v1/reports/summary", headers=tenant.admin, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"] == {**params, "timezone": "America/Sao_Paulo"}
    # 31 days just before.
    assert body["previous_period"]["from"] == "2026-08-31"
    assert body["previous_period"]["to"] == "2026-09-30"
    now = totals(built_app, tenant.admin, **params)
    before = totals(built_app, tenant.admin, **{"from": "2026-08-31", "to": "2026-09-30"})
    for metric, value in body["totals"].items():
        assert value == now[metric]
        assert body["previous_totals"][metric] == before[metric]
    assert now["commission_minor"] > 0 and before["commission_minor"] > 0
    expected = round(
        (now["commission_minor"] - before["commission_minor"]) / before["commission_minor"] * 100, 1
    )
    assert body["change_percent"]["commission_minor"] == expected
    assert datetime.fromisoformat(body["models_built_at"]) <= datetime.now(UTC)


# -- one conversion explained ------------------------------------------------------------------


def split_conversion(warehouse: Warehouse, tenant: Tenant) -> dict[str, Any]:
    """A conversion whose payable credit is split between affiliates."""
    rows = warehouse.rows(
        "SELECT conversion_id, payable_affiliate_ids, candidate_touches, excluded_by_reason, "
        "payable_model, governing_campaign_id, governing_terms_version "
        "FROM fct_conversion_journeys WHERE tenant_id = {t:String} "
        "AND length(payable_affiliate_ids) > 1 ORDER BY conversion_id LIMIT 1",
        t=tenant.tenant_id,
    )
    assert rows, "the simulation has split credits"
    return rows[0]


def test_explain_shows_every_step(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Loja Verde"]
    journey = split_conversion(warehouse, tenant)
    response = built_app.get(
        f"/v1/conversions/{journey['conversion_id']}/explain", headers=tenant.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["journey"]["candidate_touches"] == journey["candidate_touches"]
    assert len(body["journey"]["touches"]) == journey["candidate_touches"]
    excluded: dict[str, int] = defaultdict(int)
    for touch in body["journey"]["touches"]:
        if touch["outcome"] == "excluded":
            excluded[touch["exclusion_reason"]] += 1
        assert touch["affiliate_id"] is not None and touch["own"] is None
    assert excluded == journey["excluded_by_reason"]
    assert body["governing"] == {
        "campaign_id": journey["governing_campaign_id"],
        "terms_version": journey["governing_terms_version"],
        "payable_model": journey["payable_model"],
        "why": body["governing"]["why"],
    }
    assert journey["payable_model"] in body["governing"]["why"]
    models = {m["model"]: m for m in body["models"]}
    assert set(models) == {
        "first_click",
        "last_click",
        "linear",
        "time_decay",
        "position_based",
        "data_driven",
    }
    assert [m["model"] for m in body["models"] if m["is_payable"]] == [journey["payable_model"]]
    for model in models.values():
        assert sum(c["credited_amount_minor"] for c in model["credits"]) == body["amount_minor"]
    payable = sorted(c["affiliate_id"] for c in models[journey["payable_model"]]["credits"])
    assert payable == sorted(journey["payable_affiliate_ids"])
    expected = warehouse.rows(
        "SELECT commission_id, commission_minor, rule_ids FROM fct_commissions "
        "WHERE tenant_id = {t:String} AND conversion_id = {c:String} ORDER BY affiliate_id",
        t=tenant.tenant_id,
        c=journey["conversion_id"],
    )
    assert [
        (c["commission_id"], c["amount_minor"], [r["rule_id"] for r in c["rules"]])
        for c in body["commissions"]
    ] == [(row["commission_id"], row["commission_minor"], row["rule_ids"]) for row in expected]
    for commission in body["commissions"]:
        entries = warehouse.rows(
            "SELECT sum(earned_delta_minor) AS earned, count() AS n FROM fct_ledger_entries "
            "WHERE tenant_id = {t:String} AND commission_id = {c:String}",
            t=tenant.tenant_id,
            c=commission["commission_id"],
        )[0]
        assert len(commission["ledger_entries"]) == entries["n"] > 0
        assert commission["ledger"]["earned_minor"] == entries["earned"]
        assert commission["ledger_entries"][0]["entry_type"] == "accrual"
        assert commission["status"] in ("pending", "approved", "reversed")
        assert commission["amount_minor"] == commission["ledger_entries"][0]["earned_delta_minor"]
        rules = commission["rules"]
        assert [r["amount"] for r in rules] == commission["rule_amounts"]
        assert all(r["base_minor"] > 0 for r in rules)
    assert body["affiliate_flags"] == []
    assert body["ledger"] == "updates at the next build"


def test_explain_an_unattributed_conversion(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["Mercado Sul"]
    journey = warehouse.rows(
        "SELECT conversion_id, candidate_touches, excluded_by_reason "
        "FROM fct_conversion_journeys WHERE tenant_id = {t:String} "
        "AND attribution_status = 'unattributed' AND candidate_touches > 0 LIMIT 1",
        t=tenant.tenant_id,
    )[0]
    response = built_app.get(
        f"/v1/conversions/{journey['conversion_id']}/explain", headers=tenant.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["attribution_status"] == "unattributed"
    assert body["models"] == body["commissions"] == []
    assert body["governing"]["payable_model"] is None
    assert body["governing"]["why"] == "No eligible touch: no affiliate is credited."
    reasons = [t["exclusion_reason"] for t in body["journey"]["touches"]]
    assert len(reasons) == journey["candidate_touches"] and all(reasons)


def test_explain_a_renewal_names_its_first_payment(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    tenant = tenants["CloudApp"]
    renewal = warehouse.rows(
        "SELECT conversion_id, subscription_id FROM int_conversions__current "
        "WHERE tenant_id = {t:String} AND renewal_number > 0 AND conversion_id IN "
        "(SELECT conversion_id FROM fct_commissions WHERE tenant_id = {t:String}) LIMIT 1",
        t=tenant.tenant_id,
    )[0]
    body = built_app.get(
        f"/v1/conversions/{renewal['conversion_id']}/explain", headers=tenant.admin
    ).json()
    assert body["attribution_status"] == "renewal"
    first = warehouse.rows(
        "SELECT conversion_id FROM int_conversions__current WHERE tenant_id = {t:String} "
        "AND subscription_id = {s:String} AND renewal_number = 0",
        t=tenant.tenant_id,
        s=renewal["subscription_id"],
    )[0]
    assert body["renewal_of"] == first["conversion_id"]
    assert body["journey"]["touches"] == []
    assert {c["via"] for m in body["models"] for c in m["credits"]} == {"renewal"}


def test_explain_unknown_or_malformed_ids(
    built_app: TestClient, tenants: dict[str, Tenant]
) -> None:
    headers = tenants["Moda Rio"].admin
    assert (
        built_app.get("/v1/conversions/no-such-conversion/explain", headers=headers).status_code
        == 404
    )
    assert built_app.get("/v1/conversions/bad%20id/explain", headers=headers).status_code == 422


# -- who may see what --------------------------------------------------------------------------


ROUTES = ["/v1/reports/performance", "/v1/reports/summary", "/v1/conversions/x/explain"]


@pytest.mark.parametrize("route", ROUTES)
def test_keys_and_scopes(
    built_app: TestClient, built_warehouse: BuiltWarehouse, tenants: dict[str, Tenant], route: str
) -> None:
    tenant = tenants["Moda Rio"]
    assert built_app.get(route, params=PERIOD).status_code == 401
    bad = built_app.get(route, params=PERIOD, headers={"Authorization": "Bearer rk_nope"})
    assert bad.status_code == 401
    ingest = built_app.get(
        route, params=PERIOD, headers=key(built_warehouse, tenant.tenant_id, "ingest")
    )
    assert ingest.status_code == 403
    analyst = built_app.get(
        route, params=PERIOD, headers=key(built_warehouse, tenant.tenant_id, "analyst")
    )
    assert analyst.status_code == (404 if "explain" in route else 200)


def test_tenants_never_see_each_other(
    built_app: TestClient, warehouse: Warehouse, tenants: dict[str, Tenant]
) -> None:
    a, b = tenants["Loja Verde"], tenants["Mercado Sul"]
    conversion = split_conversion(warehouse, a)["conversion_id"]
    assert (
        built_app.get(f"/v1/conversions/{conversion}/explain", headers=b.admin).status_code == 404
    )
    affiliates_of_b = {
        row["id"]
        for row in warehouse.rows(
            "SELECT id FROM affiliates FINAL WHERE tenant_id = {t:String}", t=b.tenant_id
        )
    }
    rows = report(built_app, b.admin, group_by="affiliate,campaign", limit=1000)["rows"]
    assert rows and {row["affiliate_id"] for row in rows} <= affiliates_of_b
    # A's ids as filters on B's report find nothing of A's.
    a_campaign = warehouse.rows(
        "SELECT campaign_id FROM campaigns FINAL WHERE tenant_id = {t:String} LIMIT 1",
        t=a.tenant_id,
    )[0]["campaign_id"]
    stolen = totals(built_app, b.admin, campaign_id=a_campaign)
    assert (stolen["clicks"], stolen["conversions"], stolen["commission_minor"]) == (0, 0, 0)
    assert totals(built_app, b.admin)["clicks"] == len(first_events(click_events(warehouse, b)))


def test_an_affiliate_sees_only_its_own(
    built_app: TestClient,
    built_warehouse: BuiltWarehouse,
    warehouse: Warehouse,
    tenants: dict[str, Tenant],
) -> None:
    tenant = tenants["Loja Verde"]
    journey = split_conversion(warehouse, tenant)
    me, other = journey["payable_affiliate_ids"][:2]
    headers = key(built_warehouse, tenant.tenant_id, "affiliate", affiliate_id=me)

    rows = report(built_app, headers, group_by="affiliate", limit=1000)["rows"]
    assert [row["affiliate_id"] for row in rows] == [me]
    mine = [c for c in credits(warehouse, tenant) if c["affiliate_id"] == me]
    my_clicks = [
        c for c in first_events(click_events(warehouse, tenant)) if c["affiliate_id"] == me
    ]
    assert metrics_of(rows[0]) == metrics_by(my_clicks, mine, lambda _: 0, lambda _: 0)[0]
    # Asking for another affiliate's rows finds nothing.
    assert totals(built_app, headers, affiliate_id=other)["commission_minor"] == 0
    summary = built_app.get("/v1/reports/summary", headers=headers, params=PERIOD).json()
    assert summary["totals"]["commission_minor"] == rows[0]["commission_minor"]

    body = built_app.get(
        f"/v1/conversions/{journey['conversion_id']}/explain", headers=headers
    ).json()
    assert [c["affiliate_id"] for c in body["commissions"]] == [me]
    assert {c["affiliate_id"] for m in body["models"] for c in m["credits"]} == {me}
    assert body["affiliate_flags"] is None
    assert all(c["fraud_flags"] == [] for c in body["commissions"])
    touches = body["journey"]["touches"]
    assert len(touches) == journey["candidate_touches"]
    assert any(t["own"] for t in touches) and not all(t["own"] for t in touches)
    for touch in touches:
        if touch["own"]:
            assert touch["affiliate_id"] == me
        else:
            assert touch["affiliate_id"] is touch["campaign_id"] is touch["touch_id"] is None
    assert other not in response_text(built_app, headers, journey["conversion_id"])

    # A conversion credited only to others is not the affiliate's to explain.
    foreign = warehouse.rows(
        "SELECT conversion_id FROM fct_commissions WHERE tenant_id = {t:String} "
        "AND conversion_id NOT IN (SELECT conversion_id FROM fct_commissions "
        "WHERE tenant_id = {t:String} AND affiliate_id = {me:String}) LIMIT 1",
        t=tenant.tenant_id,
        me=me,
    )[0]["conversion_id"]
    assert built_app.get(f"/v1/conversions/{foreign}/explain", headers=headers).status_code == 404


def response_text(app: TestClient, headers: dict[str, str], conversion_id: str) -> str:
    return app.get(f"/v1/conversions/{conversion_id}/explain", headers=headers).text


def test_before_the_first_build_reports_are_503(app: TestClient, tenant: TenantFixture) -> None:
    # `app` serves a freshly migrated database: no dbt model exists yet.
    for route in ROUTES:
        assert app.get(route, params=PERIOD).status_code == 401
        response = app.get(route, params=PERIOD, headers=tenant.auth)
        assert response.status_code == 503
        assert "rastro dbt build" in response.json()["detail"]
    body = {**PERIOD, "campaign_id": tenant.campaign_id, "attribution_model": "linear"}
    assert app.post("/v1/reports/what-if", json=body, headers=tenant.auth).status_code == 503
