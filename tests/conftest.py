"""Shared fixtures. The warehouse is the embedded endpoint started for the test session, or
a real ClickHouse server when CLICKHOUSE_TEST_URL is set (the same tests run unchanged)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import pytest

from tests.endpoint import Endpoint, start_endpoint

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Users of the embedded endpoint in tests: "default" has a password so that bad-credential
# tests mean something; "reader" is a second account.
TEST_USERS = "default:s3cret,reader:r3ader"


@pytest.fixture(scope="session")
def embedded_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint | None]:
    if os.environ.get("CLICKHOUSE_TEST_URL"):
        yield None
        return
    endpoint = start_endpoint(tmp_path_factory.mktemp("warehouse") / "data", users=TEST_USERS)
    yield endpoint
    assert endpoint.stop() == 0, endpoint.log()


@pytest.fixture(scope="session")
def warehouse_url(embedded_endpoint: Endpoint | None) -> str:
    """http://user:password@host:port of the warehouse under test."""
    if embedded_endpoint is None:
        return os.environ["CLICKHOUSE_TEST_URL"]
    return f"http://default:s3cret@127.0.0.1:{embedded_endpoint.port}"


def client_for(url: str, **kwargs: Any) -> Any:
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port or 8123,
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "https",
        **kwargs,
    )


@contextmanager
def migrated_database(warehouse_url: str, prefix: str) -> Iterator[str]:
    """A fresh database with Rastro's schema (every migration), dropped afterwards."""
    from rastro.schema.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = client_for(warehouse_url)
    migrate(admin, name)
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    admin.close()


@pytest.fixture
def database(warehouse_url: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = client_for(warehouse_url)
    admin.command(f"CREATE DATABASE {name}")
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    admin.close()


@pytest.fixture
def client(warehouse_url: str, database: str) -> Iterator[Any]:
    """A clickhouse-connect client whose current database is the test's own."""
    client = client_for(warehouse_url, database=database)
    yield client
    client.close()
