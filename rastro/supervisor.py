"""`rastro up`: every process of the platform under one supervisor.

It starts the embedded warehouse (unless RASTRO_CLICKHOUSE_URL points at a server), applies
the migrations, seeds the demo tenant, then starts the services later parts add, prints their
URLs and waits. Ctrl-C or SIGTERM stops every child cleanly, last started first; if a child
dies on its own, the others are stopped too, so a half-running platform never lingers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import urlopen

from rastro.settings import Settings

log = logging.getLogger("rastro.supervisor")

STOP_TIMEOUT = 30.0  # seconds a child gets to stop after SIGTERM before SIGKILL


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str  # what the supervisor prints
    health_url: str | None  # answers 2xx once the service is ready; None: alive after 1 s
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _wait_ready(service: Service, timeout: float) -> None:
    assert service.process is not None
    if service.health_url is None:
        time.sleep(1.0)
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}")
        try:
            with urlopen(service.health_url, timeout=1):
                return
        except (URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{service.name} did not become ready within {timeout:.0f} s")


def _signal_group(leader: int, signum: signal.Signals) -> None:
    """Sends a signal to a service's process group (its leader and what it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signum)


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.services: list[Service] = []
        self.stopping = threading.Event()

    def start(self, service: Service, ready_timeout: float = 120.0) -> None:
        log.info("starting %s: %s", service.name, " ".join(service.argv))
        # SIGINT restored: a child started from a non-interactive shell would ignore it. Each
        # service leads a process group of its own, so that stopping it also stops what it
        # started (Dagster's daemon launches a process per run).
        service.process = subprocess.Popen(
            service.argv,
            env=self.env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=True,
        )
        self.services.append(service)
        _wait_ready(service, ready_timeout)

    def stop_all(self) -> None:
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            log.info("stopping %s (pid %s)", service.name, process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", service.name, STOP_TIMEOUT)
            # Whatever of its group outlived it (or all of it, after the timeout).
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()

    def wait(self) -> int:
        """Blocks until a signal arrives (0) or a child dies on its own (1)."""
        while not self.stopping.wait(0.5):
            for service in self.services:
                assert service.process is not None
                code = service.process.poll()
                if code is not None:
                    log.error(
                        "%s exited unexpectedly with %s: stopping the platform", service.name, code
                    )
                    return 1
        return 0


def up(settings: Settings, data_dir: Path | None = None) -> int:
    from pipelines.dbt import run_dbt
    from pipelines.simulate.demo import seed_demo_traffic
    from rastro.demo import seed_demo, seed_demo_users
    from rastro.schema.migrate import migrate
    from rastro.warehouse.client import connect

    data_dir = (data_dir or settings.data_dir).resolve()
    settings = settings.model_copy(update={"data_dir": data_dir})
    env = {**os.environ, "RASTRO_DATA_DIR": str(data_dir)}
    supervisor = Supervisor(env)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: stopping the platform", signal.Signals(signum).name)
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    python = sys.executable
    try:
        if settings.embedded:
            supervisor.start(
                Service(
                    "warehouse",
                    [
                        python,
                        "-m",
                        "rastro.cli",
                        "warehouse",
                        "serve",
                        "--data-dir",
                        str(settings.warehouse_data_dir),
                    ],
                    url=f"http://{settings.warehouse_host}:{settings.warehouse_port}",
                    health_url=f"http://{settings.warehouse_host}:{settings.warehouse_port}/ping",
                )
            )
        applied = migrate(connect(settings), settings.clickhouse_database)
        log.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")
        demo_key = seed_demo(settings)
        demo_logins = seed_demo_users(settings)
        # A month of simulated visitors and orders for the demo tenant, into the event log
        # (once per data directory): the ingest job started below loads them.
        seed_demo_traffic(settings)
        api = f"http://{settings.api_host}:{settings.api_port}"
        supervisor.start(
            Service(
                "api",
                [python, "-m", "rastro.cli", "api"],
                url=f"{api}/docs",
                health_url=f"{api}/healthz",
            )
        )
        supervisor.start(
            Service(
                "ingest",
                [python, "-m", "rastro.cli", "ingest"],
                url="(event log -> warehouse)",
                health_url=None,
            )
        )
        supervisor.start(
            Service(
                "webhooks",
                [python, "-m", "rastro.cli", "webhooks"],
                url="(outbox -> merchants' endpoints)",
                health_url=None,
            )
        )
        # Dagster: the webserver (the UI ops work from) and the daemon (schedules, sensors).
        # dbt's manifest is parsed first, once: both processes load it (and would otherwise
        # both parse it into the same directory at the same time).
        parsed = run_dbt(
            ["parse"],
            settings.warehouse_url,
            settings.clickhouse_database,
            work_dir=data_dir / "dbt",
            capture=True,
        )
        if parsed.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{parsed.stdout}{parsed.stderr}")
        dagster_env = _dagster_home(data_dir)
        supervisor.env.update(dagster_env)
        dagster = f"http://127.0.0.1:{settings.dagster_port}"
        supervisor.start(
            Service(
                "dagster",
                [
                    str(Path(python).with_name("dagster-webserver")),
                    *("-h", "127.0.0.1", "-p", str(settings.dagster_port)),
                    *("-m", "orchestration.definitions"),
                ],
                url=dagster,
                health_url=f"{dagster}/server_info",
            ),
            ready_timeout=180.0,
        )
        supervisor.start(
            Service(
                "dagster-daemon",
                [
                    str(Path(python).with_name("dagster-daemon")),
                    *("run", "-m", "orchestration.definitions"),
                ],
                url="(schedules and sensors)",
                health_url=None,
            )
        )
        _print_urls(settings, supervisor.services, demo_key, demo_logins)
        return supervisor.wait()
    except Exception:
        log.exception("the platform failed to start")
        return 1
    finally:
        supervisor.stop_all()


def _dagster_home(data_dir: Path) -> dict[str, str]:
    """DAGSTER_HOME under the data directory (runs, schedules' state, logs), with its
    dagster.yaml: telemetry off. Returns the environment Dagster's processes need."""
    home = data_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {"DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}


def _print_urls(
    settings: Settings,
    services: list[Service],
    demo_key: str,
    demo_logins: list[tuple[str, str, str]],
) -> None:
    warehouse = urlsplit(settings.warehouse_url)
    where = f"{warehouse.scheme}://{warehouse.hostname}:{warehouse.port or 8123}"
    mode = "embedded (chDB)" if settings.embedded else "server"
    lines = ["", "Rastro is running (Ctrl-C stops everything):"]
    lines += [f"  {service.name:<10} {service.url}" for service in services]
    lines += [
        f"  warehouse: {mode} at {where}, database `{settings.clickhouse_database}`",
        f"  try: curl '{where}/?query=SHOW+TABLES+FROM+{settings.clickhouse_database}'",
        f"  demo tenant admin API key: {demo_key}",
        f"  try: curl -H 'Authorization: Bearer {demo_key}' "
        f"http://{settings.api_host}:{settings.api_port}/v1/links",
        f"  console:   http://{settings.api_host}:{settings.api_port}/console/ (demo logins below)",
    ]
    lines += [
        f"    {role:<9} {email}  password: {password}" for role, email, password in demo_logins
    ]
    print("\n".join(lines) + "\n", flush=True)
