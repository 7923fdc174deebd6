"""EventLogSource on a real log: batches, resume from the snapshot, corrupt records,
new partitions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ingest.source import Corrupt, EventLogSource
from rastro.eventlog import LogReader, LogWriter, Offset, Record


def write(root: Path, payloads: list[bytes]) -> str:
    with LogWriter(root) as writer:
        writer.append_many(payloads)
        return writer.partition or ""


def records_of(batch: list[Record | Corrupt]) -> list[Record]:
    assert all(isinstance(item, Record) for item in batch)
    return [item for item in batch if isinstance(item, Record)]


def drain(part: object) -> list[list[Record | Corrupt]]:
    out: list[list[Record | Corrupt]] = []
    while True:
        try:
            batches = part.next_batch()  # type: ignore[attr-defined]
        except StopIteration:
            return out
        out.extend(batches)


def test_reads_batches_and_resumes_from_the_snapshot(tmp_path: Path) -> None:
    partition = write(tmp_path, [b"%d" % i for i in range(10)])
    source = EventLogSource(tmp_path, max_records=4, stop_at_end=True)
    assert source.list_parts() == [partition]
    part = source.build_part("read_event_log", partition, None)
    first = part.next_batch()
    assert len(first) == 1
    got = records_of(first[0])
    assert [r.payload for r in got] == [b"0", b"1", b"2", b"3"]
    state = part.snapshot()
    assert Offset.from_str(state) == got[-1].next_offset
    resumed = source.build_part("read_event_log", partition, state)
    rest = drain(resumed)
    assert [len(b) for b in rest] == [4, 2]
    assert [r.payload for b in rest for r in records_of(b)] == [b"%d" % i for i in range(4, 10)]


def test_idle_partitions_wait_and_do_not_end(tmp_path: Path) -> None:
    partition = write(tmp_path, [b"x"])
    source = EventLogSource(tmp_path, poll_interval=timedelta(milliseconds=100))
    part = source.build_part("read_event_log", partition, None)
    assert len(part.next_batch()) == 1 and part.next_awake() is None
    assert part.next_batch() == [] and part.next_awake() is not None


def test_a_corrupt_record_becomes_a_marker_and_reading_goes_on(tmp_path: Path) -> None:
    partition = write(tmp_path, [b"first", b"second", b"third"])
    records = LogReader(tmp_path).read(partition, Offset.start())
    path = tmp_path / partition / "0000000000000000.seg"
    data = bytearray(path.read_bytes())
    data[records[1].next_offset.position - 1] ^= 0xFF  # the second record's last byte
    path.write_bytes(bytes(data))
    batches = drain(EventLogSource(tmp_path, stop_at_end=True).build_part("s", partition, None))
    assert [r.payload for r in batches[0] if isinstance(r, Record)] == [b"first"]
    corrupt = batches[1][0]
    assert isinstance(corrupt, Corrupt) and corrupt.offset == records[1].offset
    assert [r.payload for r in batches[2] if isinstance(r, Record)] == [b"third"]


def test_ends_when_a_new_partition_appears(tmp_path: Path) -> None:
    partition = write(tmp_path, [b"a"])
    source = EventLogSource(tmp_path, rescan_interval=timedelta(0))
    part = source.build_part("s", partition, None)
    assert len(part.next_batch()) == 1
    assert part.next_batch() == []
    with LogWriter(tmp_path) as one, LogWriter(tmp_path) as two:
        one.start()
        two.start()
        with pytest.raises(StopIteration):
            part.next_batch()
