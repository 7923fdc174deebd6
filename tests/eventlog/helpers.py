"""Shared by the event-log tests: reading a partition to its end, fsync spies, raw segment
surgery, and the code that runs in writer processes (spawned or started as a script)."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from rastro.eventlog import LogReader, LogWriter, Offset, Record
from rastro.eventlog.format import FOOTER, segment_name


def read_all(
    reader: LogReader, partition: str, offset: Offset | None = None, *, max_records: int = 1000
) -> list[Record]:
    """Every record from `offset` (the start) to what is there now, by repeated reads."""
    offset = offset or Offset.start()
    records: list[Record] = []
    while batch := reader.read(partition, offset, max_records=max_records):
        records.extend(batch)
        offset = batch[-1].next_offset
    return records


def payloads(records: list[Record]) -> list[bytes]:
    return [r.payload for r in records]


def segment_path(root: Path, partition: str, seq: int) -> Path:
    return root / partition / segment_name(seq)


def strip_footer(path: Path) -> bytes:
    """Remove the footer a clean close wrote, as if the writer had been killed instead."""
    data = path.read_bytes()
    assert data.endswith(FOOTER)
    data = data[: -len(FOOTER)]
    path.write_bytes(data)
    return data


@dataclass(frozen=True)
class Fsync:
    started: float  # time.monotonic()
    ended: float
    size: int  # of the file when the fsync started: everything below it is durable after


class FsyncSpy:
    """Replaces os.fsync: records every fsync of a regular file (directories are not counted),
    optionally taking `delay` seconds each, then really fsyncs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls: list[Fsync] = []
        self.delay = delay
        self._lock = threading.Lock()
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            self._real(fd)
            return
        started = time.monotonic()
        if self.delay:
            time.sleep(self.delay)
        self._real(fd)
        with self._lock:
            self.calls.append(Fsync(started, time.monotonic(), info.st_size))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> list[Fsync]:
        with self._lock:
            return list(self.calls)


# -- in other processes --------------------------------------------------------------------------


def hold_partition(root: str, names: Queue[str], release: Event) -> None:
    """Spawned: claim a partition, append one record, report the partition, hold it until
    `release` is set."""
    with LogWriter(Path(root)) as writer:
        name = writer.start()
        writer.append(f"from pid {os.getpid()}".encode())
        names.put(name)
        release.wait(30)


def numbered_payload(i: int) -> bytes:
    return f'{{"event_id": {i}, "pad": "{"x" * (i % 200)}"}}'.encode()


def append_forever(root: str, segment_max_bytes: int) -> None:
    """Run as a script: append numbered records until killed, printing `i offset` after each
    append returned."""
    with LogWriter(Path(root), segment_max_bytes=segment_max_bytes) as writer:
        print(f"partition {writer.start()}", flush=True)
        i = 0
        while True:
            offset = writer.append(numbered_payload(i))
            sys.stdout.write(f"{i} {offset.to_str()}\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    append_forever(sys.argv[1], int(sys.argv[2]))
