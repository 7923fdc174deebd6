"""`run_ingest(settings)`: the ingest job for real, as `rastro ingest` runs it.

The event log under `settings.event_log_dir` -> the landing tables of
`settings.clickhouse_database`, with Bytewax recovery in `settings.data_dir/ingest-recovery`
(one recovery partition, a snapshot every `snapshot_interval_s`): a restart, even after
kill -9, continues from the last snapshot; what was re-read collapses by event_id.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from ingest.flow import build_flow
from ingest.metrics import get_metrics
from ingest.settings import IngestSettings
from ingest.sink import ClickHouseSink
from ingest.source import EventLogSource
from rastro.eventlog import LogReader
from rastro.settings import Settings
from rastro.warehouse.client import connect

log = logging.getLogger("rastro.ingest")

RECOVERY_DIR_NAME = "ingest-recovery"


def recovery_dir(settings: Settings) -> Path:
    return settings.data_dir / RECOVERY_DIR_NAME


def ensure_recovery_dir(path: Path) -> Path:
    """Create the recovery database (1 partition) once; atomically, so a crash while
    creating it leaves no half-made directory behind."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    init_db_dir(staging, 1)  # type: ignore[no-untyped-call]
    staging.rename(path)
    return path


def build_real_flow(settings: Settings, ingest: IngestSettings) -> Dataflow:
    def client_factory() -> Any:
        return connect(
            settings, database=settings.clickhouse_database, autogenerate_session_id=False
        )

    source = EventLogSource(
        settings.event_log_dir,
        max_records=ingest.read_max_records,
        max_bytes=ingest.read_max_bytes,
        poll_interval=timedelta(seconds=ingest.poll_interval_s),
        stop_at_end=ingest.stop_at_end,
        rescan_interval=timedelta(seconds=ingest.rescan_interval_s),
    )
    sink = ClickHouseSink(
        client_factory, flush_rows=ingest.flush_rows, flush_interval_s=ingest.flush_interval_s
    )
    return build_flow(source, sink, settings=ingest)


def wait_for_partitions(settings: Settings, poll_s: float = 0.5) -> None:
    """Block until the event log has a partition (the API creates them): a flow started
    without any would have no input at all."""
    reader = LogReader(settings.event_log_dir)
    announced = False
    while True:
        if settings.event_log_dir.exists() and reader.partitions():
            return
        if not announced:
            log.info("waiting for the event log's first partition in %s", settings.event_log_dir)
            announced = True
        time.sleep(poll_s)


def run_ingest(settings: Settings, ingest: IngestSettings | None = None) -> None:
    """Run the ingest job until interrupted (or, with `stop_at_end`, until the log is read).
    The flow ends when a new log partition appears; it is then run again, resuming from the
    recovery snapshot, with the new partition."""
    ingest = ingest or IngestSettings(metrics_port=settings.ingest_metrics_port)
    if not ingest.stop_at_end:
        wait_for_partitions(settings)
    recovery = ensure_recovery_dir(recovery_dir(settings))
    # Outside the loop: the flow restarts when a log partition appears; the port stays.
    metrics = get_metrics()
    metrics.log_interval_s = ingest.metrics_log_interval_s
    if ingest.metrics_port is not None:
        metrics.serve(ingest.metrics_port)
    while True:
        partitions = LogReader(settings.event_log_dir).partitions()
        log.info("ingest starting on partitions %s", ", ".join(partitions))
        cli_main(  # type: ignore[no-untyped-call]
            build_real_flow(settings, ingest),
            workers_per_process=1,
            epoch_interval=timedelta(seconds=ingest.snapshot_interval_s),
            recovery_config=RecoveryConfig(recovery),  # type: ignore[no-untyped-call]
        )
        if ingest.stop_at_end:
            return


def main() -> None:
    """`python -m ingest.run`: the job with settings from the environment."""
    from rastro.logs import configure
    from rastro.settings import get_settings

    configure()
    run_ingest(get_settings())


if __name__ == "__main__":
    main()
