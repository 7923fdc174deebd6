"""Numbered migrations: one module per migration, `mNNNN_<name>.py`, each holding only
`OPERATIONS`, a list of operations (rastro.schema.operations). They are discovered here in
number order; `rastro.schema.migrate.migrate` applies those a database has not recorded.

Never edit a migration once it has been applied anywhere: its SQL's checksum is recorded in
every database, and `migrate` refuses to run when the code no longer matches. Change the
schema with a new migration (for a new column: `Column(..., added_in=N)` in
rastro/schema/tables.py and `AddColumns` in migration N), then regenerate the snapshot with
`python -m rastro.schema.snapshot`.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rastro.schema.operations import Operation

_MODULE = re.compile(r"m(\d{4})_([a-z0-9_]+)\Z")
# The database name migrations are rendered for when their checksum is taken, so that the
# checksum does not depend on the database they are applied to.
_CHECKSUM_DATABASE = "{database}"


@dataclass(frozen=True)
class Migration:
    number: int
    name: str  # the module's name without the `mNNNN_` prefix
    operations: tuple[Operation, ...]

    @property
    def id(self) -> str:
        """What schema_migrations records as its name, e.g. `0001_config_tables`."""
        return f"{self.number:04d}_{self.name}"

    def statements(self, database: str) -> list[str]:
        return [sql for operation in self.operations for sql in operation.statements(database)]

    @property
    def checksum(self) -> str:
        sql = ";\n".join(self.statements(_CHECKSUM_DATABASE))
        return hashlib.sha256(sql.encode()).hexdigest()


def discover() -> list[Migration]:
    """Every migration module of this package, in number order (duplicates included: see
    `check_numbers`). A module whose name does not follow `mNNNN_<name>` is an error, so that
    a misnamed migration is not silently skipped."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        match = _MODULE.match(module.name)
        if match is None:
            raise ValueError(
                f"rastro.schema.migrations.{module.name}: migration modules are named "
                "mNNNN_<name> (four digits, lowercase name)"
            )
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        operations = getattr(loaded, "OPERATIONS", None)
        if not isinstance(operations, list) or not operations:
            raise ValueError(f"{loaded.__name__}: OPERATIONS must be a non-empty list")
        found.append(Migration(int(match.group(1)), match.group(2), tuple(operations)))
    return sorted(found, key=lambda migration: (migration.number, migration.name))


def check_numbers(migrations: Sequence[Migration]) -> None:
    """Numbers must be unique and contiguous from 1, in order."""
    numbers = [migration.number for migration in migrations]
    expected = list(range(1, len(numbers) + 1))
    if numbers != expected:
        duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
        raise ValueError(
            f"migration numbers must be 1..{len(numbers)} without gaps or duplicates; "
            f"found {numbers}" + (f" (duplicated: {duplicates})" if duplicates else "")
        )


def all_migrations() -> list[Migration]:
    """The migrations to apply, in order, after checking their numbers."""
    migrations = discover()
    check_numbers(migrations)
    return migrations
