"""Schemathesis fuzzes every route of the running API from its OpenAPI spec: no server
error, and every status code and response body as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rastro.settings import Settings
from tests.api.conftest import TenantFixture, running_api


@pytest.mark.slow
def test_every_route_behaves_as_documented(settings: Settings, tenant: TenantFixture) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with running_api(settings) as (_, port):
        result = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "-H",
                f"Authorization: Bearer {tenant.admin_key}",
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
