"""What survives what: fsync on durable appends (group commit), the background fsync within
sync_interval_s, and kill -9 of a writer process losing nothing it had acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rastro.eventlog import LogReader, LogWriter, Offset
from tests.eventlog.helpers import FsyncSpy, numbered_payload, payloads, read_all

REPO = Path(__file__).resolve().parents[2]


def test_append_durable_fsyncs_before_returning_and_append_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with LogWriter(tmp_path, sync_interval_s=60) as writer:  # no background fsync meanwhile
        writer.append(b"warm-up")
        spy.reset()
        offset = writer.append(b"fast")
        assert spy.snapshot() == []
        durable = writer.append_durable(b"safe")
        calls = spy.snapshot()
        assert len(calls) == 1
        # The fsync started once the record was in the file: it covers it.
        assert calls[0].size >= durable.position + 8 + len(b"safe") > offset.position
        spy.reset()
        writer.append_many([b"a", b"b"], durable=True)
        assert len(spy.snapshot()) == 1


def test_an_idle_durable_append_waits_for_one_fsync_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch, delay=0.05)
    with LogWriter(tmp_path, sync_interval_s=10) as writer:
        writer.start()
        for _ in range(3):
            started = time.monotonic()
            writer.append_durable(b"alone")
            elapsed = time.monotonic() - started
            assert elapsed < 0.5, f"{elapsed:.3f} s for one durable append on an idle writer"
    assert len(spy.snapshot()) >= 3


def test_concurrent_durable_appends_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = 32
    spy = FsyncSpy(monkeypatch, delay=0.02)  # a slow disk: callers pile up behind an fsync
    done: dict[int, tuple[Offset, float]] = {}
    lock = threading.Lock()
    with LogWriter(tmp_path, sync_interval_s=60) as writer:
        writer.append(b"warm-up")
        spy.reset()
        barrier = threading.Barrier(threads)

        def work(t: int) -> None:
            barrier.wait()
            offset = writer.append_durable(f"durable {t:02d}".encode())
            with lock:
                done[t] = (offset, time.monotonic())

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        calls = spy.snapshot()
    assert len(done) == threads
    assert 1 <= len(calls) <= threads // 4, f"{len(calls)} fsyncs for {threads} durable appends"
    for t, (offset, returned) in done.items():
        end = offset.position + 8 + len(f"durable {t:02d}")
        assert any(c.size >= end and c.ended <= returned for c in calls), f"thread {t}"


def test_the_background_thread_fsyncs_within_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 0.2
    spy = FsyncSpy(monkeypatch)
    written: list[tuple[int, float]] = []
    with LogWriter(tmp_path, sync_interval_s=interval) as writer:
        for i in range(10):
            offset = writer.append(f"record {i}".encode())
            written.append((offset.position + 8 + len(f"record {i}"), time.monotonic()))
            time.sleep(0.06)
        time.sleep(2 * interval)
        calls = spy.snapshot()
    assert len(calls) < len(written) + 2, "one fsync per append is not a background sync"
    for end, at in written:
        covering = [c for c in calls if c.size >= end]
        assert covering, f"the record ending at {end} was never fsynced"
        latency = covering[0].ended - at
        assert latency <= interval, f"the record ending at {end} took {latency:.3f} s to sync"


def _run_and_kill(root: Path, run_for: float) -> list[tuple[int, Offset]]:
    """Start a writer process, let it append for `run_for` seconds, SIGKILL it, and return what
    it printed (each line printed after append() returned)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.eventlog.helpers", str(root), str(64 << 10)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    header = process.stdout.readline()
    assert header.startswith("partition "), header
    time.sleep(run_for)
    os.kill(process.pid, signal.SIGKILL)
    out = process.stdout.read()
    process.wait(10)
    assert process.returncode == -signal.SIGKILL
    acknowledged = []
    for line in out.splitlines():
        number, offset = line.split(" ")
        acknowledged.append((int(number), Offset.from_str(offset)))
    return acknowledged


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    reader = LogReader(tmp_path)
    expected: list[bytes] = []
    for round_ in range(3):  # each round: a new process on the freed slot, a new segment
        acknowledged = _run_and_kill(tmp_path, 0.4 + 0.15 * round_)
        assert len(acknowledged) > 100, "the writer barely ran"
        assert reader.partitions() == ["p-0000"]
        records = read_all(reader, "p-0000")
        by_offset = {r.offset: r.payload for r in records}
        for number, offset in acknowledged:
            assert by_offset.get(offset) == numbered_payload(number), f"lost #{number}"
        # What was written is the acknowledged records, perhaps one more, in order, once.
        written = payloads(records)[len(expected) :]
        count = len(written)
        assert count in (len(acknowledged), len(acknowledged) + 1)
        assert written == [numbered_payload(i) for i in range(count)]
        expected.extend(written)
    with LogWriter(tmp_path) as writer:
        assert writer.start() == "p-0000"
        writer.append(b"after the crashes")
    assert payloads(read_all(reader, "p-0000")) == [*expected, b"after the crashes"]
