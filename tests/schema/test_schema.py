"""The schema as code: the rendered DDL against the committed snapshot, the conventions every
table follows, and `migrate` against the warehouse under test (embedded or a real server)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from rastro.schema import tables
from rastro.schema.migrate import MigrationError, migrate
from rastro.schema.migrations import Migration, all_migrations, check_numbers, discover
from rastro.schema.operations import AddColumns, CreateTable, RawSQL
from rastro.schema.snapshot import REGENERATE, SNAPSHOT_PATH, render_snapshot
from rastro.schema.tables import Column, Table
from tests.conftest import client_for

# Tables whose sort key does not start with tenant_id, and why: bookkeeping of the database.
GLOBAL_TABLES = {"schema_migrations"}
# Landing tables that do not deduplicate replays: dead letters are kept as they come.
APPEND_ONLY_LANDING = {"dead_letters"}
# Pseudonymous personal data: in a landing table, cleared by a TTL (column or table).
PERSONAL_COLUMNS = {"ip_network", "ip_hash", "user_agent", "cookie_id", "customer_id", "email_hash"}
TIMESTAMP_TYPES = {"DateTime64(3, 'UTC')", "Nullable(DateTime64(3, 'UTC'))"}


def created_tables(migrations: list[Migration] | None = None) -> list[Table]:
    """Every table a migration creates, in migration order."""
    return [
        operation.table
        for migration in (all_migrations() if migrations is None else migrations)
        for operation in migration.operations
        if isinstance(operation, CreateTable)
    ]


ALL_TABLES = [tables.SCHEMA_MIGRATIONS, *created_tables()]
LANDING_TABLES = [table for table in ALL_TABLES if table.event_time is not None]


def by_name(items: list[Table]) -> list[Any]:
    return [pytest.param(table, id=table.name) for table in items]


# -- the code and the snapshot ------------------------------------------------------------------


def test_snapshot_matches_the_code() -> None:
    committed = SNAPSHOT_PATH.read_text()
    assert render_snapshot() == committed, (
        f"{SNAPSHOT_PATH} differs from the schema in code: run `{REGENERATE}` and review the diff"
    )


def test_snapshot_has_every_table_once_in_migration_order() -> None:
    created = re.findall(r"^CREATE TABLE IF NOT EXISTS rastro\.(\w+)$", render_snapshot(), re.M)
    assert created == [table.name for table in ALL_TABLES]


def test_rendering_is_deterministic_and_parameterised_by_database() -> None:
    sql = tables.render_create(tables.CLICKS, "other_db")
    assert sql == tables.render_create(tables.CLICKS, "other_db")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS other_db.clicks\n(")
    assert "rastro." not in sql and "default." not in sql


def test_comments_are_escaped() -> None:
    table = Table(
        name="t",
        comment="it's a \\ test",
        columns=(Column("tenant_id", "String", "quote ' and backslash \\"),),
        engine="MergeTree",
        order_by=("tenant_id",),
    )
    sql = tables.render_create(table, "db")
    assert "COMMENT 'quote \\' and backslash \\\\'" in sql
    assert sql.endswith("COMMENT 'it\\'s a \\\\ test'")


# -- migrations ---------------------------------------------------------------------------------


def test_migration_numbers_are_unique_and_contiguous_from_one() -> None:
    numbers = [migration.number for migration in discover()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert [m.id for m in discover()] == [
        "0001_config_tables",
        "0002_landing_tables",
        "0003_ingest_views",
        "0004_ledger_inputs",
        "0005_operations",
        "0006_console_and_integrations",
    ]


@pytest.mark.parametrize("numbers", [[1, 1, 2], [1, 3], [2, 3], [2, 1]])
def test_bad_migration_numbers_are_refused(numbers: list[int]) -> None:
    fakes = [Migration(n, f"m{i}", (RawSQL("SELECT 1"),)) for i, n in enumerate(numbers)]
    with pytest.raises(ValueError, match="without gaps or duplicates"):
        check_numbers(fakes)


def test_every_column_is_created_exactly_once() -> None:
    created: dict[str, list[str]] = {}
    for migration in all_migrations():
        for operation in migration.operations:
            if isinstance(operation, CreateTable):
                assert operation.table.name not in created, f"{operation.table.name} twice"
                created[operation.table.name] = [c.name for c in operation.table.created_columns]
            elif isinstance(operation, AddColumns):
                for name in operation.columns:
                    assert operation.table.column(name).added_in == migration.number
                created[operation.table.name] += operation.columns
    for table in created_tables():
        assert sorted(created[table.name]) == sorted(c.name for c in table.columns), table.name


def test_a_later_column_leaves_the_creating_migration_unchanged() -> None:
    base = tables.LINKS
    extra = Column("note", "String", "added later", added_in=3)
    grown = replace(base, columns=(*base.columns[:3], extra, *base.columns[3:]))
    before = Migration(1, "config", (CreateTable(base),))
    after = Migration(1, "config", (CreateTable(grown),))
    assert after.checksum == before.checksum
    [alter] = AddColumns(grown, ("note",)).statements("db")
    assert alter == (
        "ALTER TABLE db.links\n"
        "    ADD COLUMN IF NOT EXISTS note String COMMENT 'added later' AFTER kind"
    )
    assert "note String" in CreateTable(grown).snapshot("db")[0]


def test_checksum_changes_when_a_migration_is_edited() -> None:
    [config, *_later] = all_migrations()
    edited_table = replace(tables.TENANTS, comment="One row per tenant, edited")
    edited = replace(config, operations=(CreateTable(edited_table), *config.operations[1:]))
    assert edited.checksum != config.checksum
    assert re.fullmatch(r"[0-9a-f]{64}", config.checksum)


# -- conventions --------------------------------------------------------------------------------


@pytest.mark.parametrize("table", by_name(ALL_TABLES))
def test_sort_key_starts_with_tenant_id(table: Table) -> None:
    if table.name in GLOBAL_TABLES:
        assert "tenant_id" not in {c.name for c in table.columns}
        return
    assert table.order_by[0] == "tenant_id"
    assert table.columns[0].name == "tenant_id"


@pytest.mark.parametrize("table", by_name(ALL_TABLES))
def test_grain_is_the_first_words_of_the_comment(table: Table) -> None:
    assert table.comment.startswith("One row per ")


def test_every_table_with_an_event_time_declares_it() -> None:
    for table in ALL_TABLES:
        if any(column.name == "ts" for column in table.columns):
            assert table.event_time == "ts", table.name
    landing = [m for m in all_migrations() if m.name == "landing_tables"]
    assert all(table.event_time for table in created_tables(landing))
    assert {table.name for table in LANDING_TABLES} == {
        "clicks",
        "page_events",
        "conversions",
        "order_updates",
        "identity_links",
        "dead_letters",
    }


@pytest.mark.parametrize("table", by_name(LANDING_TABLES))
def test_landing_table_is_partitioned_and_sorted_by_event_time(table: Table) -> None:
    assert table.partition_by is not None
    assert re.fullmatch(rf"toYYYYMM(DD)?\({table.event_time}\)", table.partition_by)
    assert table.order_by[:2] == ("tenant_id", f"toDate({table.event_time})")
    if table.name in APPEND_ONLY_LANDING:
        assert table.engine == "MergeTree"
    else:
        # A replayed event has the same key and collapses into one row.
        assert table.engine == "ReplacingMergeTree"
        assert table.order_by[-1] == "event_id"


@pytest.mark.parametrize("table", by_name(LANDING_TABLES))
def test_personal_data_in_landing_tables_expires(table: Table) -> None:
    for column in table.columns:
        if column.name in PERSONAL_COLUMNS:
            assert column.ttl or table.ttl, f"{table.name}.{column.name} has no TTL"
    if table.name == "dead_letters":
        assert table.ttl == "toDateTime(received_at) + INTERVAL 30 DAY"


@pytest.mark.parametrize("table", by_name(ALL_TABLES))
def test_money_timestamps_and_ids_follow_the_conventions(table: Table) -> None:
    names = {column.name for column in table.columns}
    for column in table.columns:
        if column.name.endswith("_minor"):
            assert column.type == "Int64", column.name
            assert "currency" in names, f"{table.name}.{column.name} without a currency"
        if "DateTime" in column.type:
            assert column.type in TIMESTAMP_TYPES, column.name
        if column.name == "id" or column.name.endswith("_id"):
            assert column.type in {"String", "LowCardinality(String)", "Nullable(String)"}
        assert "Float" not in column.type and "Decimal" not in column.type


@pytest.mark.parametrize("table", by_name(created_tables(all_migrations()[:1])))
def test_configuration_tables_replace_by_version(table: Table) -> None:
    assert table.engine.startswith("ReplacingMergeTree(version")
    assert {"version", "created_at", "updated_at"} <= {c.name for c in table.columns}
    assert table.partition_by is None
    if "is_deleted" in {c.name for c in table.columns}:
        assert table.engine == "ReplacingMergeTree(version, is_deleted)"
        assert table.column("is_deleted").type == "UInt8"


# -- migrate against the warehouse --------------------------------------------------------------


@pytest.fixture
def admin(warehouse_url: str) -> Iterator[Any]:
    client = client_for(warehouse_url)
    yield client
    client.close()


@pytest.fixture
def new_database(admin: Any) -> Iterator[str]:
    """A database name nobody uses yet (migrate creates it), dropped afterwards."""
    name = f"test_schema_{uuid.uuid4().hex[:12]}"
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")


def live_tables(client: Any, database: str) -> dict[str, tuple[str, str, str]]:
    rows = client.query(
        "SELECT name, engine, sorting_key, partition_key FROM system.tables "
        "WHERE database = {db:String} AND engine != 'View'",
        parameters={"db": database},
    ).result_rows
    return {name: (engine, sorting, partition) for name, engine, sorting, partition in rows}


def live_columns(client: Any, database: str, table: str) -> list[tuple[str, ...]]:
    rows = client.query(
        "SELECT name, type, comment, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} AND table = {table:String} ORDER BY position",
        parameters={"db": database, "table": table},
    ).result_rows
    return [tuple(row) for row in rows]


def expected_columns(table: Table) -> list[tuple[str, ...]]:
    return [
        (
            column.name,
            column.type,
            column.comment,
            "" if column.default is None else "DEFAULT",
            column.default or "",
        )
        for column in table.columns
    ]


def test_migrate_applies_everything_once(admin: Any, new_database: str) -> None:
    migrations = all_migrations()
    assert migrate(admin, new_database) == [m.id for m in migrations]
    assert migrate(admin, new_database) == []

    live = live_tables(admin, new_database)
    assert sorted(live) == sorted(table.name for table in ALL_TABLES)
    for table in ALL_TABLES:
        engine, sorting_key, partition_key = live[table.name]
        assert engine == table.engine.split("(")[0], table.name
        assert sorting_key == ", ".join(table.order_by), table.name
        assert partition_key == (table.partition_by or ""), table.name
        assert live_columns(admin, new_database, table.name) == expected_columns(table)

    recorded = admin.query(
        f"SELECT number, name, checksum FROM {new_database}.schema_migrations FINAL ORDER BY number"
    ).result_rows
    assert recorded == [(m.number, m.id, m.checksum) for m in migrations]


def test_an_edited_recorded_checksum_is_refused(admin: Any, new_database: str) -> None:
    migrate(admin, new_database)
    admin.command(
        f"INSERT INTO {new_database}.schema_migrations (number, name, applied_at, checksum) "
        "VALUES (1, '0001_config_tables', now64(3) + 60, 'edited')"
    )
    with pytest.raises(
        MigrationError, match=r"0001_config_tables was changed after it was applied"
    ):
        migrate(admin, new_database)


def test_an_edited_migration_is_refused_before_anything_runs(admin: Any, new_database: str) -> None:
    [config, landing, views, *_later] = all_migrations()
    migrate(admin, new_database, [config])
    edited_table = replace(tables.TENANTS, comment="One row per tenant, edited after the fact")
    edited = replace(config, operations=(CreateTable(edited_table), *config.operations[1:]))
    with pytest.raises(MigrationError, match="must not be edited"):
        migrate(admin, new_database, [edited, landing, views])
    assert "clicks" not in live_tables(admin, new_database)


def test_a_migration_the_code_does_not_know_is_refused(admin: Any, new_database: str) -> None:
    [config, *_later] = all_migrations()
    migrate(admin, new_database)
    with pytest.raises(MigrationError, match="newer Rastro"):
        migrate(admin, new_database, [config])


def test_a_crash_before_recording_is_repaired(admin: Any, new_database: str) -> None:
    migrations = all_migrations()
    admin.command(f"CREATE DATABASE {new_database}")
    for statement in migrations[0].statements(new_database):  # applied, then "crashed"
        admin.command(statement)
    assert migrate(admin, new_database) == [migration.id for migration in migrations]


def test_a_later_migration_adds_columns(admin: Any, new_database: str) -> None:
    base = replace(tables.DEAD_LETTERS, name="evolving")
    first = Migration(1, "create", (CreateTable(base),))
    assert migrate(admin, new_database, [first]) == ["0001_create"]

    extra = Column("attempts", "UInt16", "Replay attempts", default="0", added_in=2)
    grown = replace(base, columns=(*base.columns[:2], extra, *base.columns[2:]))
    migrations = [
        Migration(1, "create", (CreateTable(grown),)),
        Migration(2, "attempts", (AddColumns(grown, ("attempts",)),)),
    ]
    assert migrate(admin, new_database, migrations) == ["0002_attempts"]
    assert migrate(admin, new_database, migrations) == []
    assert live_columns(admin, new_database, "evolving") == expected_columns(grown)


@pytest.mark.parametrize("database", ["default", "system", "INFORMATION_SCHEMA", "x; DROP", ""])
def test_reserved_or_invalid_databases_are_refused(database: str) -> None:
    with pytest.raises(ValueError):
        migrate(object(), database)


def test_engines_collapse_replays_and_hide_deleted_rows(admin: Any, new_database: str) -> None:
    migrate(admin, new_database)
    click = ["t1", datetime(2026, 3, 1, 12, tzinfo=UTC), "evt-1", "click-1", "aff-1"]
    columns = ["tenant_id", "ts", "event_id", "click_id", "affiliate_id"]
    for rows in ([click], [click], [[*click[:2], "evt-2", *click[3:]]]):  # a replay, then a new one
        admin.insert("clicks", rows, column_names=columns, database=new_database)
    counts = admin.query(
        f"SELECT count(), uniqExact(event_id) FROM {new_database}.clicks FINAL"
    ).result_rows
    assert counts == [(2, 2)]

    link = ["t1", "link-1", "code", datetime(2026, 3, 1, tzinfo=UTC)]
    columns = ["tenant_id", "id", "code", "created_at", "version", "is_deleted"]
    admin.insert("links", [[*link, 1, 0]], column_names=columns, database=new_database)
    admin.insert("links", [[*link, 2, 1]], column_names=columns, database=new_database)
    assert admin.query(f"SELECT count() FROM {new_database}.links FINAL").result_rows == [(0,)]
