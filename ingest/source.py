"""`EventLogSource`: the event log's partitions as a Bytewax source.

Delivery guarantee: at least once. Each Bytewax partition reads one log partition and its
snapshot is the offset of the next record to read (`Offset.to_str`); on resume from a
recovery snapshot the records read after that snapshot are read again, so the landing tables
deduplicate by event_id (ReplacingMergeTree, read through the `*_dedup` views).

Every item is a BATCH: the list of records one read returned (up to `max_records` records /
`max_bytes` payload bytes), or a one-element list holding a `Corrupt` marker when the log
reports a corrupt record (the flow dead-letters it and the source continues at its resume
offset).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from ingest.metrics import get_metrics, lag_bytes
from rastro.eventlog import CorruptRecord, EventLogError, LogReader, Offset, Record


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Bytes of a log partition that are not a valid record (see CorruptRecord)."""

    partition: str
    offset: Offset
    reason: str
    data: bytes


LogItem = Record | Corrupt
LogBatch = list[LogItem]


class _LogPartition(StatefulSourcePartition[LogBatch, str]):
    def __init__(
        self,
        reader: LogReader,
        partition: str,
        offset: Offset,
        *,
        max_records: int,
        max_bytes: int,
        poll_interval: timedelta,
        stop_at_end: bool,
        known_partitions: frozenset[str],
        rescan_interval: timedelta | None,
    ) -> None:
        self._reader = reader
        self._partition = partition
        self._offset = offset
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._poll_interval = poll_interval
        self._stop_at_end = stop_at_end
        self._awake: datetime | None = None
        self._known = known_partitions
        self._rescan_interval = rescan_interval
        self._next_rescan = datetime.now(UTC) + (rescan_interval or timedelta(0))

    def _new_partitions(self) -> bool:
        """Whether the log has a partition the flow was not started with (checked every
        `rescan_interval`): the flow then ends and `run_ingest` restarts it, from the
        recovery snapshot, with every partition."""
        if self._rescan_interval is None:
            return False
        now = datetime.now(UTC)
        if now < self._next_rescan:
            return False
        self._next_rescan = now + self._rescan_interval
        return not set(self._reader.partitions()) <= self._known

    def next_batch(self) -> list[LogBatch]:
        if self._new_partitions():
            raise StopIteration
        try:
            records = self._reader.read(
                self._partition,
                self._offset,
                max_records=self._max_records,
                max_bytes=self._max_bytes,
            )
        except CorruptRecord as exc:
            self._offset = exc.resume
            self._awake = None
            return [[Corrupt(exc.partition, exc.offset, exc.reason, exc.data)]]
        if not records:
            if self._stop_at_end:
                raise StopIteration
            self._awake = datetime.now(UTC) + self._poll_interval
            return []
        self._awake = None
        self._offset = records[-1].next_offset
        return [list(records)]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        # The offset Bytewax commits: how far behind the log's end it is, once per epoch.
        with contextlib.suppress(EventLogError):  # the partition vanished: no lag to report
            get_metrics().set_lag(
                self._partition, lag_bytes(self._reader, self._partition, self._offset)
            )
        return self._offset.to_str()


class EventLogSource(FixedPartitionedSource[LogBatch, str]):
    """One Bytewax partition per log partition present at start (`LogReader.partitions()`).
    With `rescan_interval`, the source ends (EOF) once a new partition appears, so that its
    runner restarts the flow with it (`run_ingest` does). At least once (module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        max_records: int = 10_000,
        max_bytes: int = 16 << 20,
        poll_interval: timedelta = timedelta(milliseconds=100),
        stop_at_end: bool = False,
        rescan_interval: timedelta | None = None,
    ) -> None:
        self.root = Path(root)
        self.rescan_interval = rescan_interval
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.poll_interval = poll_interval
        self.stop_at_end = stop_at_end

    def list_parts(self) -> list[str]:
        return LogReader(self.root).partitions()

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _LogPartition:
        offset = Offset.from_str(resume_state) if resume_state else Offset.start()
        return _LogPartition(
            LogReader(self.root),
            for_part,
            offset,
            max_records=self.max_records,
            max_bytes=self.max_bytes,
            poll_interval=self.poll_interval,
            stop_at_end=self.stop_at_end,
            known_partitions=frozenset(LogReader(self.root).partitions()),
            rescan_interval=self.rescan_interval,
        )
