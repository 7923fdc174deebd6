"""The one way Rastro's processes connect to the warehouse: clickhouse-connect over HTTP, to
the embedded endpoint or to a ClickHouse server, whichever the settings name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect

from rastro.settings import Settings


def connect(settings: Settings, database: str | None = None, **kwargs: Any) -> Any:
    """A clickhouse-connect client. `database=None` means no database (for migrations, which
    create Rastro's own); pass `settings.clickhouse_database` for everything else."""
    url = urlsplit(settings.warehouse_url)
    return clickhouse_connect.get_client(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8443 if url.scheme == "https" else 8123),
        username=unquote(url.username or "default"),
        password=unquote(url.password or ""),
        secure=url.scheme == "https",
        database=database or "",
        **kwargs,
    )


def insert_rows(
    client: Any, table: str, rows: Sequence[Mapping[str, Any]], database: str | None = None
) -> None:
    """Inserts rows given as dicts of column -> value: one insert per set of columns, so a
    column a row leaves out gets the table's default."""
    batches: dict[tuple[str, ...], list[list[Any]]] = {}
    for row in rows:
        batches.setdefault(tuple(row), []).append(list(row.values()))
    for columns, values in batches.items():
        client.insert(table, values, column_names=list(columns), database=database)
