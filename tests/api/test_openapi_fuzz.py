"""Schemathesis fuzzes every route of the running API from its OpenAPI spec, against a
built warehouse (so the routes that read the dbt models answer from real rows): no server
error, and every status code and response body as documented."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.store import ConfigStore
from tests.api.conftest import BuiltWarehouse, build_database, running_api


@pytest.fixture(scope="module")
def fuzzed(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltWarehouse]:
    """A database of its own: the fuzzer creates, decides, prepares and pays at random."""
    yield from build_database(
        warehouse_url, tmp_path_factory.mktemp("fuzz"), "rastro_api_fuzz", conversions=40
    )


@pytest.mark.slow
def test_every_route_behaves_as_documented(fuzzed: BuiltWarehouse) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    admin_key = (
        ConfigStore(fuzzed.settings)
        .for_tenant(fuzzed.tenant_ids[0])
        .create_api_key("fuzz", ["admin"])
    )
    with running_api(fuzzed.settings) as (_, port):
        result = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "-H",
                f"Authorization: Bearer {admin_key}",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
