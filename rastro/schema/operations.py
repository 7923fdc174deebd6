"""What a migration may do. Each operation renders idempotent statements (IF NOT EXISTS), so
a crash between applying a migration and recording it is harmless: the next run applies it
again. `statements` is what runs; `snapshot` is what the finished schema looks like (the
CREATE of a table with every column it has now)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rastro.schema.tables import Table, render_create


class Operation(Protocol):
    def statements(self, database: str) -> list[str]:
        """The DDL to run, one statement each, for `database`."""
        ...

    def snapshot(self, database: str) -> list[str]:
        """What this operation contributes to the schema snapshot."""
        ...


@dataclass(frozen=True)
class CreateTable:
    """CREATE TABLE IF NOT EXISTS, with the columns the table was created with (those added
    later come by `AddColumns` in their own migration, so this SQL never changes)."""

    table: Table

    def statements(self, database: str) -> list[str]:
        return [render_create(self.table, database, self.table.created_columns)]

    def snapshot(self, database: str) -> list[str]:
        return [render_create(self.table, database)]


@dataclass(frozen=True)
class AddColumns:
    """ALTER TABLE ... ADD COLUMN IF NOT EXISTS, each after its predecessor in the table's
    column list. The columns must be declared with `added_in` = this migration's number."""

    table: Table
    columns: tuple[str, ...]

    def statements(self, database: str) -> list[str]:
        names = [column.name for column in self.table.columns]
        clauses = []
        for name in self.columns:
            column = self.table.column(name)
            position = names.index(name)
            after = f" AFTER {names[position - 1]}" if position else " FIRST"
            clauses.append(f"ADD COLUMN IF NOT EXISTS {column.render()}{after}")
        return [f"ALTER TABLE {database}.{self.table.name}\n    " + ",\n    ".join(clauses)]

    def snapshot(self, database: str) -> list[str]:
        return []  # the table's CREATE in the snapshot already has every column


@dataclass(frozen=True)
class RawSQL:
    """A statement written by hand (a view, a dictionary). `{database}` in it is replaced by
    the target database; it must be idempotent itself (IF NOT EXISTS, OR REPLACE)."""

    sql: str

    def statements(self, database: str) -> list[str]:
        return [self.sql.strip().replace("{database}", database)]

    def snapshot(self, database: str) -> list[str]:
        return self.statements(database)
