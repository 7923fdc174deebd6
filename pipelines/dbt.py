"""Running Rastro's dbt project (dbt/) against the warehouse the settings name: the embedded
endpoint or a ClickHouse server. Every caller (`rastro dbt`, the simulator's scoring, the
benchmarks, the tests, Dagster) builds dbt's environment here, so there is one way to do it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
DBT = Path(sys.executable).with_name("dbt")


def dbt_env(
    warehouse_url: str, database: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment dbt/profiles.yml reads, without any DBT_* setting of the caller's,
    telemetry off."""
    parts = urlsplit(warehouse_url)
    secure = parts.scheme == "https"
    env = {name: value for name, value in os.environ.items() if not name.startswith("DBT_")}
    env.update(
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DO_NOT_TRACK="1",
        DBT_CLICKHOUSE_HOST=parts.hostname or "127.0.0.1",
        DBT_CLICKHOUSE_PORT=str(parts.port or (8443 if secure else 8123)),
        DBT_CLICKHOUSE_USER=unquote(parts.username or "default"),
        DBT_ENV_SECRET_CLICKHOUSE_PASSWORD=unquote(parts.password or ""),
        DBT_CLICKHOUSE_SCHEMA=database,
        DBT_CLICKHOUSE_SECURE=str(secure),  # as_bool reads a Python literal
        **(extra or {}),
    )
    return env


def run_dbt(
    args: Sequence[str],
    warehouse_url: str,
    database: str,
    *,
    work_dir: Path | None = None,
    project_dir: Path = PROJECT_DIR,
    capture: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` on the project; target/ and logs/ go under work_dir (default: the
    project's own, which git ignores). Returns the finished process; the caller checks it."""
    work = work_dir or project_dir
    work.mkdir(parents=True, exist_ok=True)
    # As environment variables, not flags: every dbt command accepts them (deps too).
    paths = {"DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs")}
    return subprocess.run(
        [str(DBT), *args, "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)],
        env=dbt_env(warehouse_url, database, paths),
        cwd=work,
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )
