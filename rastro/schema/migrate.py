"""`migrate(client, database)`: bring a database up to the schema in code.

Creates the database and its `schema_migrations` table if missing, refuses to run if what the
database recorded does not match the code, then applies each migration not yet recorded, in
order, recording it after its statements succeeded. Every statement is idempotent, so a crash
between applying and recording is repaired by the next run; two runs at once apply the same
idempotent statements and record the same rows (schema_migrations collapses them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rastro.schema.migrations import Migration, all_migrations, check_numbers
from rastro.schema.tables import SCHEMA_MIGRATIONS, render_create

log = logging.getLogger("rastro.schema")

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Databases that belong to ClickHouse itself: Rastro's tables never go there.
RESERVED_DATABASES = frozenset({"default", "system", "information_schema"})


class MigrationError(RuntimeError):
    """The database and the migrations in code disagree; nothing was applied."""


def check_database_name(database: str) -> None:
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"invalid database name {database!r}: use letters, digits and _")
    if database.lower() in RESERVED_DATABASES:
        raise ValueError(
            f"refusing to put Rastro's tables in the {database!r} database: "
            "name a database of Rastro's own (RASTRO_CLICKHOUSE_DATABASE, default 'rastro')"
        )


def applied_migrations(client: Any, database: str) -> dict[int, tuple[str, str]]:
    """What the database recorded: number -> (name, checksum)."""
    result = client.query(
        f"SELECT number, name, checksum FROM {database}.{SCHEMA_MIGRATIONS.name} FINAL"
    )
    return {
        int(number): (str(name), str(checksum)) for number, name, checksum in result.result_rows
    }


def _check_recorded(
    recorded: dict[int, tuple[str, str]], migrations: Sequence[Migration], database: str
) -> None:
    known = {migration.number: migration for migration in migrations}
    for number, (name, checksum) in sorted(recorded.items()):
        migration = known.get(number)
        if migration is None:
            raise MigrationError(
                f"database {database!r} has migration {name} applied, which this code does "
                "not have: it was migrated by a newer Rastro. Upgrade Rastro instead."
            )
        if migration.id != name or migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.id} was changed after it was applied to database "
                f"{database!r} (recorded {name} with checksum {checksum[:12]}, the code has "
                f"{migration.id} with checksum {migration.checksum[:12]}). Applied migrations "
                "must not be edited: restore it and change the schema in a new migration."
            )


def migrate(client: Any, database: str, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply every migration `database` has not recorded, in order; return their names
    (e.g. `["0001_config_tables", ...]`), empty when the database is up to date.
    `migrations` defaults to all of rastro/schema/migrations."""
    check_database_name(database)
    if migrations is None:
        migrations = all_migrations()
    else:
        check_numbers(migrations)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(render_create(SCHEMA_MIGRATIONS, database))
    recorded = applied_migrations(client, database)
    _check_recorded(recorded, migrations, database)

    applied = []
    for migration in migrations:
        if migration.number in recorded:
            continue
        log.info("applying migration %s to %s", migration.id, database)
        for statement in migration.statements(database):
            client.command(statement)
        client.insert(
            SCHEMA_MIGRATIONS.name,
            [[migration.number, migration.id, datetime.now(UTC), migration.checksum]],
            column_names=["number", "name", "applied_at", "checksum"],
            database=database,
        )
        applied.append(migration.id)
    return applied
