"""The committed snapshot of the schema: the CREATE statement of every table (and any raw
statement) for database `rastro`, in migration order. A test compares it with the code, so
every schema change shows up in review as a diff of plain SQL.

    python -m rastro.schema.snapshot           # rewrite rastro/schema/snapshots/schema.sql
    python -m rastro.schema.snapshot --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rastro.schema.migrations import Migration, all_migrations
from rastro.schema.tables import SCHEMA_MIGRATIONS, render_create

SNAPSHOT_PATH = Path(__file__).parent / "snapshots" / "schema.sql"
SNAPSHOT_DATABASE = "rastro"
REGENERATE = "python -m rastro.schema.snapshot"

_HEADER = f"""\
-- Rastro's warehouse schema for database `{SNAPSHOT_DATABASE}`, in migration order.
-- Generated from rastro/schema/tables.py by `{REGENERATE}`: do not edit by hand.
"""


def render_snapshot(migrations: Sequence[Migration] | None = None) -> str:
    parts = [
        _HEADER,
        "-- created by migrate() before any migration",
        render_create(SCHEMA_MIGRATIONS, SNAPSHOT_DATABASE) + ";\n",
    ]
    for migration in all_migrations() if migrations is None else migrations:
        parts.append(f"-- {migration.id}")
        for operation in migration.operations:
            parts += [sql + ";\n" for sql in operation.snapshot(SNAPSHOT_DATABASE)]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rastro.schema.snapshot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if it differs")
    args = parser.parse_args(argv)
    rendered = render_snapshot()
    current = SNAPSHOT_PATH.read_text() if SNAPSHOT_PATH.exists() else None
    if args.check:
        if current != rendered:
            print(f"{SNAPSHOT_PATH} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    if current != rendered:
        SNAPSHOT_PATH.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT_PATH.write_text(rendered)
        print(f"wrote {SNAPSHOT_PATH}")
    else:
        print(f"{SNAPSHOT_PATH} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
