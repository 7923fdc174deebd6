"""Payouts (api/payouts.py, api/routes/payouts.py, pipelines/payouts.py) on real marts, in a
database of their own (simulated traffic ingested and built; no fraud batch, so the ledger
is the only source of approvals): minimums, batches, export files, paying (never twice, not
even from two workers at once), what the ledger books at the next build, and the merchant's
reports for reconciliation. Expectations come from the warehouse, never written down.

Each test works on its own tenant of the simulation, so that one test's decisions and
payments are not another's surprise."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter
from starlette.testclient import TestClient

from api import audit
from api.affiliates import PayoutDetails, set_payout_details
from api.main import create_app
from api.payouts import payout_id
from api.state import EdgeState
from api.store import ConfigStore, Principal
from pipelines.dbt import run_dbt
from pipelines.payouts import DEFAULT_MINIMUM_MINOR, prepare
from pipelines.reconcile import reconcile_orders_vs_reported
from tests.api.conftest import BuiltWarehouse, build_database
from tests.conftest import client_for

# Valid Brazilian tax ids (their check digits hold).
CPF = "52998224725"
CNPJ = "11222333000181"


@pytest.fixture(scope="module")
def paying(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltWarehouse]:
    yield from build_database(
        warehouse_url,
        tmp_path_factory.mktemp("payouts"),
        "rastro_api_payouts",
        seed=11,
        conversions=100,
        up_to_now=True,
    )


@pytest.fixture(scope="module")
def client(paying: BuiltWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(paying.settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def warehouse(paying: BuiltWarehouse) -> Iterator[Any]:
    connection = client_for(
        str(paying.settings.clickhouse_url), database=paying.settings.clickhouse_database
    )
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def tenants(paying: BuiltWarehouse, warehouse: Any) -> dict[str, str]:
    """Which simulated tenant each test works on: the export files need one paid in BRL."""
    currencies = {
        str(r["tenant_id"]): str(r["currency"])
        for r in _rows(
            warehouse,
            "SELECT tenant_id, any(currency) AS currency FROM fct_commissions GROUP BY tenant_id",
        )
    }
    first, second, *rest = paying.tenant_ids
    export = next(t for t in rest if currencies[t] == "BRL")
    [concurrency] = [t for t in rest if t != export]
    return {"batches": first, "ledger": second, "export": export, "concurrency": concurrency}


def _key(
    built: BuiltWarehouse, tenant_id: str, scope: str, affiliate_id: str | None = None
) -> dict[str, str]:
    key = (
        ConfigStore(built.settings)
        .for_tenant(tenant_id)
        .create_api_key(f"test {scope}", [scope], affiliate_id=affiliate_id)
    )
    return {"Authorization": f"Bearer {key}"}


def _rows(warehouse: Any, sql: str, **parameters: Any) -> list[dict[str, Any]]:
    result = warehouse.query(sql, parameters=parameters)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _balances(warehouse: Any, tenant_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = _rows(
        warehouse,
        "SELECT affiliate_id, toString(currency) AS currency, approved_minor, paid_minor, "
        "pending_minor FROM dim_affiliate_balances WHERE tenant_id = {t:String}",
        t=tenant_id,
    )
    return {(r["affiliate_id"], r["currency"]): r for r in rows}


def _set_details(built: BuiltWarehouse, tenant_id: str, affiliate_id: str, **details: Any) -> None:
    """The affiliate's payout details, through the affiliates service (encrypted)."""
    state = EdgeState(built.settings)
    actor = Principal(tenant_id=tenant_id, actor_id="test-admin", scopes=["admin"])
    parsed = TypeAdapter(PayoutDetails).validate_python(details)
    scope = state.store.for_tenant(tenant_id)
    assert set_payout_details(scope, state, actor, affiliate_id, parsed) is not None


def _build(built: BuiltWarehouse) -> None:
    result = run_dbt(
        ["build"],
        built.settings.warehouse_url,
        built.settings.clickhouse_database,
        capture=True,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-20_000:]


def _pay(client: TestClient, admin: dict[str, str], batch_id: str, **body: Any) -> Any:
    response = client.post(f"/v1/payouts/batches/{batch_id}/pay", headers=admin, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _items(warehouse: Any, commission_ids: list[str]) -> list[dict[str, Any]]:
    return _rows(
        warehouse,
        "SELECT commission_id, payout_id, amount_minor FROM payout_items FINAL "
        "WHERE commission_id IN {ids:Array(String)} ORDER BY commission_id, payout_id",
        ids=commission_ids,
    )


# -- minimums and batches -------------------------------------------------------------------------


def test_a_batch_pays_approved_balances_from_the_minimum_and_nothing_under_review(
    paying: BuiltWarehouse, client: TestClient, warehouse: Any, tenants: dict[str, str]
) -> None:
    tenant, other = tenants["batches"], tenants["ledger"]
    admin, intruder = _key(paying, tenant, "admin"), _key(paying, other, "admin")
    settings = client.get("/v1/payout-settings", headers=admin)
    assert settings.json() == {"default_minimum_minor": DEFAULT_MINIMUM_MINOR, "minimums": []}

    balances = _balances(warehouse, tenant)
    [currency] = {c for _, c in balances}
    approved = sorted(b["approved_minor"] for b in balances.values() if b["approved_minor"] > 0)
    minimum = approved[len(approved) // 2]  # half the affiliates reach it
    put = client.put(
        "/v1/payout-settings",
        headers=admin,
        json={"minimums": [{"currency": currency.lower(), "minimum_minor": minimum}]},
    )
    assert put.status_code == 200, put.text
    assert [(m["currency"], m["minimum_minor"]) for m in put.json()["minimums"]] == [
        (currency, minimum)
    ]
    # Another tenant's minimums are its own.
    assert client.get("/v1/payout-settings", headers=intruder).json()["minimums"] == []

    created = client.post("/v1/payouts/batches", headers=admin)
    assert created.status_code == 201, created.text
    batch = created.json()
    expected = {
        affiliate: b["approved_minor"]
        for (affiliate, _), b in balances.items()
        if b["approved_minor"] >= minimum
    }
    assert {r["affiliate_id"]: r["amount_minor"] for r in batch["rows"]} == expected
    assert batch["totals"] == [
        {
            "currency": currency,
            "affiliates": len(expected),
            "amount_minor": sum(expected.values()),
            "payable_minor": sum(expected.values()),
            "paid_minor": 0,
        }
    ]
    # The simulated affiliates have no payout details yet: listed, flagged, not payable.
    assert {r["status"] for r in batch["rows"]} == {"blocked"}
    assert all("payout details" in r["problem"] for r in batch["rows"])

    # A hold taken after the build keeps the commission out of the next batch at once.
    top = max(batch["rows"], key=lambda r: r["amount_minor"])
    [held] = _rows(
        warehouse,
        "SELECT commission_id, sum(approved_delta_minor) AS approved FROM fct_ledger_entries "
        "WHERE commission_id IN {ids:Array(String)} GROUP BY commission_id "
        "HAVING approved > 0 ORDER BY approved DESC, commission_id LIMIT 1",
        ids=top["commission_ids"],
    )
    hold = client.post(
        "/v1/commissions/decisions",
        headers=admin,
        json={"decision": "hold", "commission_ids": [held["commission_id"]], "reason": "check"},
    )
    assert hold.status_code == 201, hold.text
    again = client.post("/v1/payouts/batches", headers=admin).json()
    rows = {r["affiliate_id"]: r for r in again["rows"]}
    remaining = top["amount_minor"] - held["approved"]
    if remaining >= minimum:
        assert rows[top["affiliate_id"]]["amount_minor"] == remaining
        assert held["commission_id"] not in rows[top["affiliate_id"]]["commission_ids"]
    else:
        assert top["affiliate_id"] not in rows

    # The monthly Dagster batch runs the same SQL (for every tenant): the same rows.
    monthly = prepare(warehouse, f"test-{uuid.uuid4().hex[:8]}")
    assert monthly.rows >= len(again["rows"])
    via_dagster = client.get(f"/v1/payouts/batches/{monthly.batch_id}", headers=admin).json()
    assert [
        (r["affiliate_id"], r["amount_minor"], r["commission_ids"]) for r in via_dagster["rows"]
    ] == [(r["affiliate_id"], r["amount_minor"], r["commission_ids"]) for r in again["rows"]]

    # Newest first, page by page.
    first = client.get("/v1/payouts/batches", headers=admin, params={"limit": 1}).json()
    assert [b["batch_id"] for b in first["items"]] == [monthly.batch_id]
    second = client.get(
        "/v1/payouts/batches", headers=admin, params={"limit": 1, "after": first["next_after"]}
    ).json()
    assert [b["batch_id"] for b in second["items"]] == [again["batch_id"]]
    assert batch["batch_id"] not in {
        b["batch_id"] for b in client.get("/v1/payouts/batches", headers=intruder).json()["items"]
    }
    assert (
        client.get(f"/v1/payouts/batches/{batch['batch_id']}", headers=intruder).status_code == 404
    )

    # A minimum nobody reaches: nothing to pay, no batch.
    client.put(
        "/v1/payout-settings",
        headers=admin,
        json={"minimums": [{"currency": currency, "minimum_minor": 10**12}]},
    )
    empty = client.post("/v1/payouts/batches", headers=admin)
    assert empty.status_code == 409 and "minimum" in empty.json()["detail"]
    scope = ConfigStore(paying.settings).for_tenant(tenant)
    assert [e.action for e in audit.entries(scope, "payout_settings")][:2] == [
        "payout_settings.update",
        "payout_settings.update",
    ]
    assert len(audit.entries(scope, "payout_batch")) == 2  # the two API batches


@pytest.mark.parametrize(
    "body",
    [
        {"minimums": []},
        {"minimums": [{"currency": "XXX", "minimum_minor": 100}]},
        {"minimums": [{"currency": "BRL", "minimum_minor": -1}]},
        {"minimums": [{"currency": "BRL", "minimum_minor": "50.00"}]},
        {
            "minimums": [
                {"currency": "BRL", "minimum_minor": 1},
                {"currency": "brl", "minimum_minor": 2},
            ]
        },
        {"minimums": [{"currency": "BRL", "minimum_minor": 1, "tenant_id": "x"}]},
    ],
)
def test_payout_settings_refuse_invalid_bodies(
    paying: BuiltWarehouse, client: TestClient, body: dict[str, Any]
) -> None:
    admin = _key(paying, paying.tenant_ids[1], "admin")
    assert client.put("/v1/payout-settings", headers=admin, json=body).status_code == 422


def test_every_payout_route_needs_an_admin_key(paying: BuiltWarehouse, client: TestClient) -> None:
    tenant = paying.tenant_ids[1]
    routes = [
        ("GET", "/v1/payout-settings", None),
        ("PUT", "/v1/payout-settings", {"minimums": [{"currency": "BRL", "minimum_minor": 1}]}),
        ("POST", "/v1/payouts/batches", None),
        ("GET", "/v1/payouts/batches", None),
        ("GET", "/v1/payouts/batches/any", None),
        ("GET", "/v1/payouts/batches/any/export?format=pix", None),
        ("POST", "/v1/payouts/batches/any/pay", {}),
    ]
    [affiliate] = (
        ConfigStore(paying.settings)
        .for_tenant(tenant)
        .rows("SELECT id FROM affiliates FINAL LIMIT 1")
    )
    keys = [
        _key(paying, tenant, "analyst"),
        _key(paying, tenant, "ingest"),
        _key(paying, tenant, "affiliate", affiliate["id"]),
    ]
    for method, path, body in routes:
        assert client.request(method, path, json=body).status_code == 401, path
        for key in keys:
            assert client.request(method, path, headers=key, json=body).status_code == 403, path
    admin = _key(paying, tenant, "admin")
    assert client.get("/v1/payouts/batches/no-such-batch", headers=admin).status_code == 404
    assert client.post("/v1/payouts/batches/no-such-batch/pay", headers=admin).status_code == 404
    export = client.get("/v1/payouts/batches/no-such-batch/export?format=pix", headers=admin)
    assert export.status_code == 404
    assert (
        client.get("/v1/payouts/batches", headers=admin, params={"after": "x"}).status_code == 422
    )


# -- export files and paying ----------------------------------------------------------------------


def _pay_every_balance(
    client: TestClient, admin: dict[str, str], warehouse: Any, tenant_id: str
) -> None:
    """Minimum 0 in the tenant's currencies: every positive approved balance is in a batch."""
    currencies = sorted({currency for _, currency in _balances(warehouse, tenant_id)})
    minimums = [{"currency": c, "minimum_minor": 0} for c in currencies]
    response = client.put("/v1/payout-settings", headers=admin, json={"minimums": minimums})
    assert response.status_code == 200, response.text


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_export_files_and_paying_a_batch_once(
    paying: BuiltWarehouse, client: TestClient, warehouse: Any, tenants: dict[str, str]
) -> None:
    tenant, other = tenants["export"], tenants["concurrency"]
    admin, intruder = _key(paying, tenant, "admin"), _key(paying, other, "admin")
    _pay_every_balance(client, admin, warehouse, tenant)
    batch = client.post("/v1/payouts/batches", headers=admin).json()
    rows = sorted(batch["rows"], key=lambda r: -r["amount_minor"])
    assert len(rows) >= 4, "the simulation left too few affiliates above the minimum"
    pix, bank, paypal = rows[0], rows[1], rows[2]
    currency = pix["currency"]
    _set_details(paying, tenant, pix["affiliate_id"], method="pix", key_type="cpf", key=CPF)
    _set_details(
        paying, tenant, bank["affiliate_id"], method="bank_transfer", bank_code="341",
        branch="0001", account="12345-6", account_type="checking",
        holder_name="=HYPERLINK(\"http://evil\")", holder_tax_id=CNPJ,
    )  # fmt: skip
    _set_details(paying, tenant, paypal["affiliate_id"], method="paypal", email="ana@example.com")

    def export(export_format: str, **params: str) -> Any:
        return client.get(
            f"/v1/payouts/batches/{batch['batch_id']}/export",
            headers=admin,
            params={"format": export_format, **params},
        )

    def decimal(minor: int) -> str:
        return f"{minor // 100}.{minor % 100:02d}"  # BRL and USD: two decimals

    pix_file = export("pix")
    assert pix_file.status_code == 200, pix_file.text
    assert pix_file.headers["content-type"].startswith("text/csv")
    now = client.get(f"/v1/payouts/batches/{batch['batch_id']}", headers=admin).json()
    blocked_pix = sum(1 for r in now["rows"] if r["method"] == "pix" and r["status"] == "blocked")
    assert pix_file.headers["X-Rastro-Excluded"] == str(blocked_pix)
    assert pix_file.headers["X-Rastro-Rows"] == "1"
    pix_id = payout_id(tenant, batch["batch_id"], pix["affiliate_id"], currency)
    header, line = _csv(pix_file.text)
    assert header[:6] == [
        "chave_pix", "tipo_chave", "valor", "nome_favorecido", "cpf_cnpj_favorecido",
        "identificador",
    ]  # fmt: skip
    assert line[:6] == [
        CPF,
        "CPF",
        decimal(pix["amount_minor"]),
        pix["affiliate_name"],
        CPF,
        pix_id,
    ]
    assert pix["payout_id"] == pix_id

    [header, line] = _csv(export("bank_transfer").text)
    assert header[:8] == [
        "banco", "agencia", "conta", "tipo_conta", "titular", "cpf_cnpj_titular", "valor",
        "identificador",
    ]  # fmt: skip
    assert line[:8] == [
        "341", "0001", "12345-6", "corrente", "'=HYPERLINK(\"http://evil\")", CNPJ,
        decimal(bank["amount_minor"]), bank["payout_id"],
    ]  # fmt: skip

    # PayPal's Payouts file: no header; recipient, amount, currency, id (<= 30), note, wallet.
    [line] = _csv(export("paypal").text)
    assert line[:4] == [
        "ana@example.com",
        decimal(paypal["amount_minor"]),
        currency,
        paypal["payout_id"],
    ]
    assert line[5] == "PAYPAL" and len(line[3]) <= 30 and " " not in line[3]

    other_currency = "USD" if currency != "USD" else "EUR"
    assert export("pix", currency=other_currency).status_code == 422
    assert export("wire").status_code == 422
    assert export("paypal", currency="XYZ").status_code == 422
    foreign = client.get(
        f"/v1/payouts/batches/{batch['batch_id']}/export",
        headers=intruder,
        params={"format": "pix"},
    )
    assert foreign.status_code == 404

    # Validation before anything is written.
    batch_path = f"/v1/payouts/batches/{batch['batch_id']}/pay"
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    invalid: list[dict[str, Any]] = [
        {"affiliate_ids": ["not-in-the-batch"]},
        {"affiliate_ids": []},
        {"paid_at": soon},
        {"paid_at": "2026-11-01T10:00:00"},  # no time zone
        {"paid_at": "2001-01-01T00:00:00Z"},  # before the batch was prepared
        {"reference": "x" * 201},
        {"amount": 1},
    ]
    for body in invalid:
        assert client.post(batch_path, headers=admin, json=body).status_code == 422, body
    assert client.post(batch_path, headers=intruder, json={}).status_code == 404
    every_commission = [c for r in rows for c in r["commission_ids"]]
    assert _items(warehouse, every_commission) == []

    # Pay one affiliate, then the rest: blocked rows are skipped, nothing is paid twice.
    first = _pay(client, admin, batch["batch_id"], affiliate_ids=[pix["affiliate_id"]],
                 reference="itau-lote-1")  # fmt: skip
    assert [(p["payout_id"], p["amount_minor"], p["method"]) for p in first["newly_paid"]] == [
        (pix_id, pix["amount_minor"], "pix")
    ]
    assert first["ledger"] == "updates at the next build"
    assert [
        (i["commission_id"], i["payout_id"]) for i in _items(warehouse, every_commission)
    ] == sorted((c, pix_id) for c in pix["commission_ids"])
    assert (
        sum(i["amount_minor"] for i in _items(warehouse, pix["commission_ids"]))
        == pix["amount_minor"]
    )
    assert len(_csv(export("pix").text)) == 1  # only the header: nothing left to transfer

    rest = _pay(client, admin, batch["batch_id"])
    assert {p["affiliate_id"] for p in rest["newly_paid"]} == {
        bank["affiliate_id"],
        paypal["affiliate_id"],
    }
    assert {p["affiliate_id"] for p in rest["already_paid"]} == {pix["affiliate_id"]}
    assert {s["affiliate_id"] for s in rest["skipped"]} == {r["affiliate_id"] for r in rows[3:]}
    paid_items = _items(warehouse, every_commission)
    again = _pay(client, admin, batch["batch_id"])
    assert again["newly_paid"] == []
    assert len(again["already_paid"]) == 3
    assert _items(warehouse, every_commission) == paid_items
    assert len({i["commission_id"] for i in paid_items}) == len(paid_items)

    detail = client.get(f"/v1/payouts/batches/{batch['batch_id']}", headers=admin).json()
    statuses = {r["affiliate_id"]: r["status"] for r in detail["rows"]}
    assert [statuses[r["affiliate_id"]] for r in (pix, bank, paypal)] == ["paid"] * 3
    assert detail["status"] == "partly_paid"
    scope = ConfigStore(paying.settings).for_tenant(tenant)
    paid_audit = [
        e for e in audit.entries(scope, "payout", limit=1000) if e.action == "payout.paid"
    ]
    assert {e.subject_id for e in paid_audit} == {pix_id, bank["payout_id"], paypal["payout_id"]}
    assert {e.action for e in audit.entries(scope, "payout_batch", batch["batch_id"])} >= {
        "payout_batch.export"
    }


def test_two_workers_paying_at_once_pay_each_commission_once(
    paying: BuiltWarehouse, warehouse: Any, tenants: dict[str, str]
) -> None:
    tenant = tenants["concurrency"]
    with (
        TestClient(create_app(paying.settings)) as one,
        TestClient(create_app(paying.settings)) as two,
    ):
        admin = _key(paying, tenant, "admin")
        _pay_every_balance(one, admin, warehouse, tenant)
        first = one.post("/v1/payouts/batches", headers=admin).json()
        for row in first["rows"]:
            _set_details(
                paying, tenant, row["affiliate_id"], method="pix", key_type="random",
                key=str(uuid.uuid4()),
            )  # fmt: skip
        # A second batch of the same commissions (the monthly one and an ad-hoc one, say).
        second = two.post("/v1/payouts/batches", headers=admin).json()
        commissions = sorted(c for r in first["rows"] for c in r["commission_ids"])
        assert sorted(c for r in second["rows"] for c in r["commission_ids"]) == commissions

        start = threading.Barrier(4)
        results: list[Any] = []

        def pay(worker: TestClient, batch_id: str) -> None:
            start.wait()
            results.append(_pay(worker, admin, batch_id))

        threads = [
            threading.Thread(target=pay, args=(worker, batch["batch_id"]))
            for worker in (one, two)
            for batch in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 4
    items = _items(warehouse, commissions)
    assert sorted(i["commission_id"] for i in items) == commissions  # each exactly once
    newly = [p for result in results for p in result["newly_paid"]]
    assert sum(p["amount_minor"] for p in newly) == sum(r["amount_minor"] for r in first["rows"])


# -- what the ledger books ------------------------------------------------------------------------


def test_paid_balances_reach_the_ledger_at_the_next_build(
    paying: BuiltWarehouse, client: TestClient, warehouse: Any, tenants: dict[str, str]
) -> None:
    """approve -> build -> prepare -> pay -> build: the paid balance is the batch's, the
    approved one drops by as much, and a payout item written twice is booked once."""
    tenant = tenants["ledger"]
    admin = _key(paying, tenant, "admin")
    [pending] = _rows(
        warehouse,
        "SELECT commission_id, affiliate_id, toString(currency) AS currency, commission_minor "
        "FROM fct_commissions WHERE tenant_id = {t:String} AND commission_minor > 0 "
        "AND hold_until > now64(3) + INTERVAL 1 DAY "
        "AND commission_id NOT IN (SELECT commission_id FROM commission_decisions) "
        "ORDER BY commission_minor DESC LIMIT 1",
        t=tenant,
    )
    commission_id, affiliate_id = pending["commission_id"], pending["affiliate_id"]
    currency = pending["currency"]
    approve = client.post(f"/v1/commissions/{commission_id}/approve", headers=admin)
    assert approve.status_code == 201, approve.text
    # Every positive balance is paid: the minimum is not what this test is about.
    _pay_every_balance(client, admin, warehouse, tenant)
    _set_details(paying, tenant, affiliate_id, method="paypal", email="leo@example.com")

    _build(paying)
    booked = client.get(f"/v1/commissions/{commission_id}", headers=admin).json()
    assert booked["status"] == "approved" and booked["awaiting_ledger"] is False
    assert booked["ledger"]["approved_minor"] == pending["commission_minor"]
    assert booked["latest_decision"]["booked"] is True

    batch = client.post("/v1/payouts/batches", headers=admin).json()
    [row] = [r for r in batch["rows"] if r["affiliate_id"] == affiliate_id]
    assert commission_id in row["commission_ids"]
    before = _balances(warehouse, tenant)[(affiliate_id, currency)]
    assert row["amount_minor"] == before["approved_minor"]

    paid = _pay(client, admin, batch["batch_id"], affiliate_ids=[affiliate_id])
    assert [p["amount_minor"] for p in paid["newly_paid"]] == [row["amount_minor"]]
    now = client.get(f"/v1/commissions/{commission_id}", headers=admin).json()
    assert now["status"] == "paid" and now["awaiting_ledger"] is True
    assert now["payout_id"] == row["payout_id"]
    # A retried write of the same payout (the same payout id) replaces its items.
    warehouse.insert(
        "payout_items",
        [[tenant, row["payout_id"], commission_id, affiliate_id, pending["commission_minor"],
          currency, "paypal", datetime.now(UTC)]],
        column_names=["tenant_id", "payout_id", "commission_id", "affiliate_id", "amount_minor",
                      "currency", "method", "paid_at"],
    )  # fmt: skip

    _build(paying)
    after = _balances(warehouse, tenant)[(affiliate_id, currency)]
    assert after["paid_minor"] == before["paid_minor"] + row["amount_minor"]
    assert after["approved_minor"] == before["approved_minor"] - row["amount_minor"]
    payments = _rows(
        warehouse,
        "SELECT commission_id, sum(paid_delta_minor) AS paid, count() AS entries "
        "FROM fct_ledger_entries WHERE entry_type = 'payment' "
        "AND commission_id IN {ids:Array(String)} GROUP BY commission_id",
        ids=row["commission_ids"],
    )
    assert len(payments) == len(row["commission_ids"])
    assert all(p["entries"] == 1 for p in payments)
    assert sum(p["paid"] for p in payments) == row["amount_minor"]
    settled = client.get(f"/v1/commissions/{commission_id}", headers=admin).json()
    assert settled["awaiting_ledger"] is False
    assert settled["ledger"]["paid_minor"] == pending["commission_minor"]

    # Paying again pays nothing; a new batch no longer lists what was paid.
    items = _items(warehouse, row["commission_ids"])
    assert _pay(client, admin, batch["batch_id"])["newly_paid"] == []
    assert _items(warehouse, row["commission_ids"]) == items
    later = client.post("/v1/payouts/batches", headers=admin)
    listed = [c for r in later.json().get("rows", []) for c in r["commission_ids"]]
    assert not set(listed) & set(row["commission_ids"])


# -- reconciliation -------------------------------------------------------------------------------


def test_merchant_reports_are_reconciled_and_the_differences_listed(
    paying: BuiltWarehouse, client: TestClient, warehouse: Any, tenants: dict[str, str]
) -> None:
    tenant, other = tenants["batches"], tenants["export"]
    [day] = _rows(
        warehouse,
        "SELECT toDate(ts) AS day, toString(currency) AS currency, count() AS orders "
        "FROM conversions_dedup WHERE tenant_id = {t:String} AND kind = 'sale' AND version = 1 "
        "GROUP BY day, currency ORDER BY day DESC LIMIT 1",
        t=tenant,
    )
    ingest = _key(paying, tenant, "ingest")
    report = {
        "days": [
            {
                "day": day["day"].isoformat(),
                "currency": day["currency"].lower(),
                "orders": day["orders"] + 3,
                "gross": "12873.40",
                "refunds": 259.9,
            }
        ]
    }
    created = client.post("/v1/merchant-reports", headers=ingest, json=report)
    assert created.status_code == 201, created.text
    [stored] = _rows(
        warehouse,
        "SELECT orders, gross_minor, refunds_minor, toString(source) AS source "
        "FROM merchant_reports FINAL WHERE tenant_id = {t:String}",
        t=tenant,
    )
    assert stored == {
        "orders": day["orders"] + 3, "gross_minor": 1287340, "refunds_minor": 25990, "source": "api"
    }  # fmt: skip

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    line = report["days"][0]
    invalid = [
        {"days": []},
        {"days": [{**line, "gross": "1.234"}]},  # BRL has two decimals
        {"days": [{**line, "gross": "-5"}]},
        {"days": [{**line, "day": tomorrow}]},
        {"days": [{**line, "currency": "REAIS"}]},
        {"days": [line, line]},
        {"days": [{**line, "extra": 1}]},
    ]
    for bad in invalid:
        assert client.post("/v1/merchant-reports", headers=ingest, json=bad).status_code == 422
    assert client.post("/v1/merchant-reports", json=report).status_code == 401
    analyst = _key(paying, tenant, "analyst")
    assert client.post("/v1/merchant-reports", headers=analyst, json=report).status_code == 403

    reconcile_orders_vs_reported(
        warehouse,
        paying.settings.clickhouse_database,
        run_id="test-reconcile",
        since=day["day"],
        until=day["day"],
    )
    found = client.get("/v1/reconciliation/differences", headers=analyst)
    assert found.status_code == 200, found.text
    orders = [d for d in found.json() if d["key"] == "orders"]
    assert [(d["expected"], d["actual"]) for d in orders] == [(day["orders"] + 3, day["orders"])]
    assert (
        orders[0]["check_name"] == "orders_vs_reported" and orders[0]["run_id"] == "test-reconcile"
    )
    only_ledger = client.get(
        "/v1/reconciliation/differences", headers=analyst, params={"check_name": "ledger_vs_orders"}
    )
    assert all(d["check_name"] == "ledger_vs_orders" for d in only_ledger.json())
    assert client.get("/v1/reconciliation/differences", headers=ingest).status_code == 403
    assert client.get("/v1/reconciliation/differences").status_code == 401
    assert (
        client.get(
            "/v1/reconciliation/differences",
            headers=analyst,
            params={"from": "2026-02-01", "to": "2026-01-01"},
        ).status_code
        == 422
    )
    theirs = client.get("/v1/reconciliation/differences", headers=_key(paying, other, "admin"))
    assert theirs.json() == []
    assert date.fromisoformat(orders[0]["day"]) == day["day"]
