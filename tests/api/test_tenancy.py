"""Tenancy is enforced by the data-access layer, not by each query: a TenantScope reads only
its tenant's rows (and an affiliate scope only its affiliate's) from every table, whatever
the SQL says, and writes only its own tenant's rows. And every /v1 route asks for a key."""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from api.deps import PrincipalDep, require
from api.main import create_app
from api.store import ConfigStore, TenantScope
from rastro.settings import Settings
from tests.api.conftest import BuiltWarehouse
from tests.conftest import migrated_database

# Browser-facing routes that take no key (docs/api.md): they identify the tenant otherwise.
PUBLIC_V1_ROUTES = {"/v1/events", "/v1/postback"}
_PRINCIPAL = typing.get_args(PrincipalDep)[1].dependency  # what authenticates a request


@pytest.fixture(scope="module")
def store(warehouse_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigStore]:
    """A database of its own: this module writes rows into every table."""
    with migrated_database(warehouse_url, "rastro_tenancy") as database:
        yield ConfigStore(
            Settings(
                _env_file=None,
                clickhouse_url=warehouse_url,
                clickhouse_database=database,
                data_dir=tmp_path_factory.mktemp("tenancy"),
                secret_key="test-secret",
            )
        )


def _scoped_tables(store: ConfigStore) -> dict[str, tuple[frozenset[str], str]]:
    """Every table and view with a tenant_id column -> (its scoped columns, its engine)."""
    rows = store.rows(
        "SELECT t.name AS name, t.engine AS engine, groupArray(c.name) AS columns "
        "FROM system.tables AS t INNER JOIN system.columns AS c "
        "ON c.database = t.database AND c.table = t.name "
        "WHERE t.database = {db:String} AND c.name IN ('tenant_id', 'affiliate_id') "
        "GROUP BY t.name, t.engine",
        db=store.settings.clickhouse_database,
    )
    return {
        row["name"]: (frozenset(row["columns"]), row["engine"])
        for row in rows
        if "tenant_id" in row["columns"]
    }


def _row_of_defaults(store: ConfigStore, table: str, columns: frozenset[str]) -> dict[str, Any]:
    """A row of `table` with its defaults, but fresh ids and times: a time of 1970 would be
    dropped at once by the tables that expire rows (TTL)."""
    times = store.rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "AND type LIKE 'DateTime%'",
        db=store.settings.clickhouse_database,
        t=table,
    )
    row: dict[str, Any] = {column["name"]: datetime.now(UTC) for column in times}
    if table == "affiliates":
        row["id"] = _id()
    if "affiliate_id" in columns:
        row["affiliate_id"] = _id()
    return row


def _id() -> str:
    return str(uuid.uuid4())


def test_every_tenant_table_is_filtered_whatever_the_sql(store: ConfigStore) -> None:
    tables = _scoped_tables(store)
    assert {"affiliates", "api_keys", "users", "audit_log", "clicks", "conversions"} <= set(tables)
    mine, theirs = store.for_tenant(_id()), store.for_tenant(_id())
    writable = [name for name, (_, engine) in tables.items() if engine.endswith("MergeTree")]
    for scope in (mine, theirs):
        for table in writable:
            scope.insert(table, [_row_of_defaults(store, table, tables[table][0])])
    for table in tables:  # the views over them (deduplicated landing tables) included
        seen = [row["tenant_id"] for row in mine.rows(f"SELECT DISTINCT tenant_id FROM {table}")]
        # A view may hide a row of defaults (dead_letters_dedup does); a table shows it.
        assert seen == [mine.tenant_id] if table in writable else set(seen) <= {mine.tenant_id}, (
            table
        )
        # An explicit WHERE for another tenant cannot reach its rows either.
        stolen = mine.rows(
            f"SELECT count() AS n FROM {table} WHERE tenant_id = {{other:String}}",
            other=theirs.tenant_id,
        )
        assert stolen[0]["n"] == 0, table
    # Nor can a subquery or a join.
    joined = mine.rows(
        "SELECT count() AS n FROM (SELECT tenant_id FROM api_keys) AS k "
        "INNER JOIN users AS u ON u.tenant_id = k.tenant_id WHERE k.tenant_id != {tenant:String}"
    )
    assert joined[0]["n"] == 0
    # The rows are there: a scope of the other tenant sees its own.
    assert theirs.rows("SELECT DISTINCT tenant_id FROM audit_log") == [
        {"tenant_id": theirs.tenant_id}
    ]


def test_an_affiliate_scope_sees_only_its_affiliate(store: ConfigStore) -> None:
    tables = _scoped_tables(store)
    tenant_id, me, other = _id(), _id(), _id()
    tenant = store.for_tenant(tenant_id)
    with_affiliate = [
        name
        for name, (columns, engine) in tables.items()
        if "affiliate_id" in columns and engine.endswith("MergeTree")
    ]
    assert {"links", "clicks", "conversions", "payout_items"} <= set(with_affiliate)
    for affiliate_id in (me, other):
        tenant.insert("affiliates", [{"id": affiliate_id, "display_name": affiliate_id}])
        for table in with_affiliate:
            row = _row_of_defaults(store, table, tables[table][0])
            tenant.insert(table, [{**row, "affiliate_id": affiliate_id}])
    scope = store.for_tenant(tenant_id, affiliate_id=me)
    for table in with_affiliate:
        seen = scope.rows(f"SELECT DISTINCT tenant_id, affiliate_id FROM {table}")
        assert seen == [{"tenant_id": tenant_id, "affiliate_id": me}], table
        everyone = tenant.rows(f"SELECT count(DISTINCT affiliate_id) AS n FROM {table}")
        assert everyone[0]["n"] == 2, table
    assert scope.rows("SELECT id FROM affiliates") == [{"id": me}]
    assert scope.rows("SELECT id FROM affiliates WHERE id = {id:String}", id=other) == []


def test_insert_forces_the_scopes_tenant(store: ConfigStore) -> None:
    mine, theirs = store.for_tenant(_id()), store.for_tenant(_id())
    audit_id = _id()
    mine.insert("audit_log", [{"tenant_id": theirs.tenant_id, "audit_id": audit_id}])
    query = "SELECT tenant_id FROM audit_log WHERE audit_id = {id:String}"
    assert mine.rows(query, id=audit_id) == [{"tenant_id": mine.tenant_id}]
    assert theirs.rows(query, id=audit_id) == []


def test_a_scope_refuses_ids_that_are_not_ids(store: ConfigStore) -> None:
    # The ids end up inside the filter expressions: anything but an id is refused outright.
    for bad in ("x' OR 1=1 --", "", "a" * 65):
        with pytest.raises(ValueError, match="not an id"):
            TenantScope(store, bad)
        with pytest.raises(ValueError, match="not an id"):
            TenantScope(store, _id(), affiliate_id=bad)


def test_the_marts_are_filtered_too(built_warehouse: BuiltWarehouse) -> None:
    """dbt's tables and views, built after the process started, are filtered like the rest
    (read only: the built warehouse is shared)."""
    store = ConfigStore(built_warehouse.settings)
    tenant_id = built_warehouse.tenant_ids[0]
    scope = store.for_tenant(tenant_id)
    tables = _scoped_tables(store)
    assert {"fct_attributions", "fct_commissions", "fct_ledger_entries"} <= set(tables)
    for table in tables:
        seen = scope.rows(f"SELECT DISTINCT tenant_id FROM {table}")
        assert {row["tenant_id"] for row in seen} <= {tenant_id}, table
    # Meaningful only because the other tenants' rows are there, and this tenant's too.
    others = store.rows(
        "SELECT uniqExact(tenant_id) AS n FROM fct_commissions WHERE tenant_id != {t:String}",
        t=tenant_id,
    )
    assert others[0]["n"] >= 1
    [busiest] = scope.rows(
        "SELECT affiliate_id, count() AS n FROM fct_commissions GROUP BY affiliate_id "
        "ORDER BY n DESC, affiliate_id LIMIT 1"
    )
    affiliate = store.for_tenant(tenant_id, affiliate_id=busiest["affiliate_id"])
    for table in ("fct_commissions", "fct_attributions", "fct_ledger_entries"):
        seen = affiliate.rows(f"SELECT DISTINCT affiliate_id FROM {table}")
        assert seen == [{"affiliate_id": busiest["affiliate_id"]}], table


# -- every /v1 route asks for a key ---------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def unauthenticated_routes(app: FastAPI) -> list[str]:
    """ "METHODS path" of every /v1 route without the authenticating dependency, public ones
    excepted (router-level dependencies count: they are part of each route's dependant)."""
    found = []
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if not path.startswith("/v1") or path in PUBLIC_V1_ROUTES:
            continue
        if _PRINCIPAL not in set(_calls(route.dependant)):
            found.append(f"{','.join(sorted(route.methods or ()))} {path}")
    return found


def test_every_v1_route_needs_a_key(settings: Settings) -> None:
    app: FastAPI = create_app(settings).app
    checked = [r for r in iter_route_contexts(app.routes) if (r.path or "").startswith("/v1")]
    assert len(checked) > 30  # the walk sees the routes of the included routers
    assert unauthenticated_routes(app) == []


def test_the_route_check_finds_an_unauthenticated_route(tmp_path: Path) -> None:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/open")
    def open_route() -> None: ...

    @router.get("/closed", dependencies=[require("admin")])
    def closed_route() -> None: ...

    app.include_router(router)
    assert unauthenticated_routes(app) == ["GET /v1/open"]
