"""`rastro up` as a user runs it: a real supervisor process with its children."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.request import Request, urlopen

import httpx2
import psutil
import pytest

from rastro.schema.migrations import all_migrations
from tests.conftest import client_for
from tests.endpoint import free_port, start_endpoint


def _wait_for(text: str, log: Path, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed within {timeout} s:\n{log.read_text()}")


@contextmanager
def _rastro_up(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`rastro up` on tmp_path/state until it prints that it runs; killed if still alive."""
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rastro.cli", "up", "--data-dir", str(tmp_path / "state")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield process, _wait_for("Rastro is running", log, process, timeout=240)
    finally:
        # A test that failed with the platform up: the supervisor stops its services (each
        # in a process group of its own, which killing the supervisor would orphan).
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def _query(port: int, sql: str) -> str:
    with urlopen(f"http://127.0.0.1:{port}/?query={sql.replace(' ', '+')}", timeout=10) as r:
        return str(r.read().decode())


def _settled_count(port: int, sql: str, timeout: float = 90) -> int:
    """The count once it is positive and has not moved for 3 s (the ingest job caught up)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = int(_query(port, sql).strip())
        if count != last:
            last, since = count, time.monotonic()
        elif count > 0 and time.monotonic() - since >= 3:
            return count
        time.sleep(0.5)
    raise AssertionError(f"{sql} did not settle above 0 within {timeout} s (last {last})")


@pytest.mark.slow
def test_up_runs_migrates_seeds_and_stops_cleanly(tmp_path: Path) -> None:
    if os.environ.get("CLICKHOUSE_TEST_URL"):
        pytest.skip("starts the embedded warehouse itself")
    port = free_port()
    api_port = free_port()
    dagster_port = free_port()
    env = {
        **os.environ,
        "RASTRO_WAREHOUSE_PORT": str(port),
        "RASTRO_WAREHOUSE_USERS": "default:",
        "RASTRO_API_PORT": str(api_port),
        "RASTRO_API_WORKERS": "1",
        "RASTRO_DAGSTER_PORT": str(dagster_port),
    }
    env.pop("RASTRO_CLICKHOUSE_URL", None)
    with _rastro_up(tmp_path, env) as (process, printed):
        assert f"http://127.0.0.1:{port}" in printed
        # The Dagster UI answers, with Rastro's definitions loaded.
        assert f"http://127.0.0.1:{dagster_port}" in printed
        with urlopen(f"http://127.0.0.1:{dagster_port}/server_info", timeout=10) as info:
            assert "dagster_webserver_version" in info.read().decode()
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "the warehouse runs as a child of the supervisor"
        migrations = _query(port, "SELECT count() FROM rastro.schema_migrations").strip()
        assert migrations == str(len(all_migrations()))
        assert _query(port, "SELECT count() FROM rastro.affiliates FINAL").strip() == "3"
        assert (tmp_path / "state" / "warehouse").is_dir()
        assert f"http://127.0.0.1:{api_port}/docs" in printed
        key = printed.split("demo tenant admin API key: ")[1].split()[0]
        request = Request(
            f"http://127.0.0.1:{api_port}/v1/links", headers={"Authorization": f"Bearer {key}"}
        )
        with urlopen(request, timeout=10) as response:
            assert len(json.loads(response.read())["items"]) == 5  # 3 links, 2 coupons
        # The printed demo admin logs in to the console.
        admin = printed.split("admin     admin@loja-demo.example  password: ")[1].split()[0]
        with httpx2.Client(base_url=f"http://127.0.0.1:{api_port}") as browser:
            form = browser.get("/console/login").text
            csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
            answer = browser.post(
                "/console/login",
                data={"email": "admin@loja-demo.example", "password": admin, "csrf_token": csrf},
            )
            assert answer.status_code == 303 and "rastro_session" in browser.cookies
        # The simulated month of demo traffic reaches the warehouse through the ingest job.
        orders = _settled_count(port, "SELECT count() FROM rastro.conversions_dedup")

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert not any(
            child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
        )

    # A second start on the same state: migrations and demo data are not applied twice.
    with _rastro_up(tmp_path, env) as (process, printed):
        assert "migrations applied: none" in printed
        assert _query(port, "SELECT count() FROM rastro.affiliates FINAL").strip() == "3"
        assert "demo traffic already seeded" in printed
        assert _query(port, "SELECT count() FROM rastro.conversions_dedup").strip() == str(orders)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


@pytest.mark.slow
def test_up_fails_and_cleans_up_when_the_warehouse_cannot_start(tmp_path: Path) -> None:
    if os.environ.get("CLICKHOUSE_TEST_URL"):
        pytest.skip("starts the embedded warehouse itself")
    with socket.socket() as taken:  # the warehouse port is taken
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "RASTRO_WAREHOUSE_PORT": str(port)}
        env.pop("RASTRO_CLICKHOUSE_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "rastro.cli", "up", "--data-dir", str(tmp_path / "s")],
            capture_output=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 1
    assert b"the platform failed to start" in result.stderr


@pytest.mark.slow
def test_up_in_server_mode_starts_nothing_embedded(tmp_path: Path) -> None:
    """With RASTRO_CLICKHOUSE_URL set, `rastro up` migrates and seeds that server and starts
    no warehouse of its own. The "server" here is an endpoint started apart, which speaks the
    same protocol; CLICKHOUSE_TEST_URL runs the same against a real ClickHouse server."""
    server_url = os.environ.get("CLICKHOUSE_TEST_URL")
    endpoint = None
    if not server_url:
        endpoint = start_endpoint(tmp_path / "server", users="rastro:pw")
        server_url = f"http://rastro:pw@127.0.0.1:{endpoint.port}"
    database = f"rastro_up_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": server_url,
        "RASTRO_CLICKHOUSE_DATABASE": database,
        "RASTRO_WAREHOUSE_PORT": str(free_port()),  # must stay unused
        "RASTRO_API_PORT": str(free_port()),
        "RASTRO_API_WORKERS": "1",
        "RASTRO_DAGSTER_PORT": str(free_port()),
    }
    client = client_for(server_url)
    try:
        with _rastro_up(tmp_path, env) as (process, printed):
            assert "warehouse: server at" in printed
            children = psutil.Process(process.pid).children()
            # The API, the ingest job, the webhook worker, Dagster's webserver and daemon; no
            # warehouse.
            commands = sorted(" ".join(child.cmdline()[-3:]) for child in children)
            assert [command.split()[-1] for command in commands] == [
                "api",
                "ingest",
                "webhooks",
                "orchestration.definitions",
                "orchestration.definitions",
            ], commands
            assert not (tmp_path / "state" / "warehouse").exists()
            assert client.command(f"SELECT count() FROM {database}.affiliates FINAL") == 3
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        client.close()
        if endpoint is not None:
            assert endpoint.stop() == 0
