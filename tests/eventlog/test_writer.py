"""The writer: round trip, threads, partitions per process, restarts, rotation, fork."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rastro.eventlog import EventLog, EventLogError, LogReader, LogWriter, Offset
from rastro.eventlog.format import FOOTER, HEADER, HEADER_SIZE
from rastro.eventlog.partitions import writer_alive
from tests.eventlog.helpers import hold_partition, payloads, read_all, segment_path

REPO = Path(__file__).resolve().parents[2]


def test_round_trip(tmp_path: Path) -> None:
    sent = [f'{{"event_id": "{i}", "kind": "click"}}'.encode() for i in range(50)]
    writer: EventLog
    with LogWriter(tmp_path) as writer:
        offsets = [writer.append(p) for p in sent[:20]]
        offsets.append(writer.append_durable(sent[20]))
        offsets.extend(writer.append_many(sent[21:]))
        assert writer.partition == "p-0000"
    reader = LogReader(tmp_path)
    assert reader.partitions() == ["p-0000"]
    records = read_all(reader, "p-0000")
    assert payloads(records) == sent
    assert [r.offset for r in records] == offsets
    assert all(r.partition == "p-0000" for r in records)
    assert all(a.next_offset == b.offset for a, b in itertools.pairwise(records))
    segment = segment_path(tmp_path, "p-0000", 0).read_bytes()
    assert segment.startswith(HEADER) and segment.endswith(FOOTER)
    assert offsets[0] == Offset(0, HEADER_SIZE)


def test_many_threads_every_record_once_in_per_thread_order(tmp_path: Path) -> None:
    threads, per_thread = 8, 1500
    returned: dict[bytes, Offset] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(writer: LogWriter, t: int) -> None:
        start.wait()
        mine: dict[bytes, Offset] = {}
        i = 0
        while i < per_thread:
            if i % 100 == 7:
                batch = [f"{t}:{j}".encode() for j in range(i, min(i + 5, per_thread))]
                mine.update(zip(batch, writer.append_many(batch), strict=True))
                i += len(batch)
                continue
            payload = f"{t}:{i}".encode()
            mine[payload] = (
                writer.append_durable(payload) if i % 250 == 3 else writer.append(payload)
            )
            i += 1
        with lock:
            returned.update(mine)

    # Small segments: the threads race through many rotations.
    with LogWriter(tmp_path, segment_max_bytes=16 << 10) as writer:
        workers = [threading.Thread(target=work, args=(writer, t)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    records = read_all(LogReader(tmp_path), "p-0000")
    assert len(records) == threads * per_thread
    assert len({r.payload for r in records}) == len(records)
    assert {r.payload: r.offset for r in records} == returned
    by_thread: dict[int, list[int]] = {}
    for r in records:
        t, i = r.payload.decode().split(":")
        by_thread.setdefault(int(t), []).append(int(i))
    assert by_thread == {t: list(range(per_thread)) for t in range(threads)}
    assert len(LogReader(tmp_path).segments("p-0000")) >= 5


def test_two_writer_processes_get_different_partitions(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    names: multiprocessing.Queue[str] = ctx.Queue()
    release = ctx.Event()
    processes = [
        ctx.Process(target=hold_partition, args=(str(tmp_path), names, release)) for _ in range(2)
    ]
    for p in processes:
        p.start()
    try:
        claimed = sorted(names.get(timeout=30) for _ in processes)
    finally:
        release.set()
        for p in processes:
            p.join(30)
    assert claimed == ["p-0000", "p-0001"]
    assert [p.exitcode for p in processes] == [0, 0]
    reader = LogReader(tmp_path)
    assert reader.partitions() == ["p-0000", "p-0001"]
    pids = {read_all(reader, name)[0].payload for name in claimed}
    assert pids == {f"from pid {p.pid}".encode() for p in processes}


def test_a_restarted_writer_takes_the_first_free_slot_and_a_new_segment(tmp_path: Path) -> None:
    first, second = LogWriter(tmp_path), LogWriter(tmp_path)
    first.append(b"a1")
    second.append(b"b1")
    assert (first.partition, second.partition) == ("p-0000", "p-0001")
    first.close()
    assert not writer_alive(tmp_path / "p-0000") and writer_alive(tmp_path / "p-0001")
    with LogWriter(tmp_path) as third:
        offset = third.append(b"a2")
        assert third.partition == "p-0000"
        assert offset == Offset(1, HEADER_SIZE)  # never appends to segment 0
    with LogWriter(tmp_path) as fourth:  # and again: a new segment each time
        assert fourth.append(b"a3").segment == 2
    second.close()
    reader = LogReader(tmp_path)
    assert reader.partitions() == ["p-0000", "p-0001"]
    assert payloads(read_all(reader, "p-0000")) == [b"a1", b"a2", b"a3"]
    assert reader.segments("p-0000") == [0, 1, 2]


def test_a_writer_that_never_wrote_leaves_no_segment(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        assert writer.start() == "p-0000"
    assert LogReader(tmp_path).segments("p-0000") == []
    assert LogWriter(tmp_path).partition is None  # lazy: nothing claimed until used
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-0000"]


def test_rotation_by_size(tmp_path: Path) -> None:
    limit = 1000
    with LogWriter(tmp_path, segment_max_bytes=limit) as writer:
        offsets = [writer.append(f"record {i:03d} ".encode() * 3) for i in range(100)]
        huge = writer.append(b"h" * 3 * limit)  # larger than a segment: a segment of its own
        after = writer.append(b"after")
    assert [o.segment for o in offsets] == sorted(o.segment for o in offsets)
    reader = LogReader(tmp_path)
    seqs = reader.segments("p-0000")
    assert len(seqs) > 5
    assert huge == Offset(offsets[-1].segment + 1, HEADER_SIZE)
    assert after == Offset(huge.segment + 1, HEADER_SIZE)
    for seq in seqs:
        data = segment_path(tmp_path, "p-0000", seq).read_bytes()
        assert data.endswith(FOOTER)
        if seq != huge.segment:
            assert len(data) - len(FOOTER) <= limit
    assert len(read_all(reader, "p-0000")) == 102


def test_rotation_by_age_at_the_next_append(tmp_path: Path) -> None:
    with LogWriter(tmp_path, segment_max_age_s=0.3) as writer:
        first = writer.append(b"old")
        same = writer.append(b"still young")
        time.sleep(0.45)
        later = writer.append(b"new")
    assert first.segment == same.segment == 0
    assert later.segment == 1
    assert segment_path(tmp_path, "p-0000", 0).read_bytes().endswith(FOOTER)
    assert payloads(read_all(LogReader(tmp_path), "p-0000")) == [b"old", b"still young", b"new"]


def test_rotation_by_age_by_the_background_thread(tmp_path: Path) -> None:
    with LogWriter(tmp_path, segment_max_age_s=0.3) as writer:
        writer.append(b"lonely")
        path = segment_path(tmp_path, "p-0000", 0)
        deadline = time.monotonic() + 3
        while not path.read_bytes().endswith(FOOTER) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.read_bytes().endswith(FOOTER), "the idle segment was not sealed"
        assert LogReader(tmp_path).segments("p-0000") == [0]  # no empty segment opened
        assert writer.append(b"next").segment == 1


def test_close_releases_the_partition_and_refuses_more(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path)
    writer.append(b"x")
    assert writer_alive(tmp_path / "p-0000")
    writer.close()
    writer.close()
    assert not writer_alive(tmp_path / "p-0000")
    with pytest.raises(EventLogError, match="closed"):
        writer.append(b"y")


def _child(run: object) -> int:
    """Fork; run `run()` in the child, whose exit status (0: passed) is returned."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run()  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_writer_made_before_fork_starts_in_each_process(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path)  # not started yet: each process gets a partition of its own

    def child() -> int:
        with writer:
            return 0 if writer.start() == "p-0000" and writer.append(b"child").segment == 0 else 2

    assert _child(child) == 0
    with writer:
        assert writer.append(b"parent") == Offset(1, HEADER_SIZE)  # p-0000 again, freed
    assert payloads(read_all(LogReader(tmp_path), "p-0000")) == [b"child", b"parent"]


def test_a_started_writer_is_unusable_in_a_child_and_keeps_its_lock(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path)
    writer.append(b"parent 1")
    lock_fd = writer._lock_fd
    assert lock_fd is not None

    def child() -> int:
        try:
            writer.append(b"child")
        except EventLogError as exc:
            if "after fork" not in str(exc):
                return 3
        else:
            return 2
        try:
            os.fstat(lock_fd)  # the inherited descriptor is closed in the child
        except OSError:
            writer.close()
            return 0
        return 4

    assert _child(child) == 0
    assert writer_alive(tmp_path / "p-0000"), "the child released the parent's partition"
    writer.append(b"parent 2")
    writer.close()
    assert payloads(read_all(LogReader(tmp_path), "p-0000")) == [b"parent 1", b"parent 2"]


def test_a_writer_left_open_is_sealed_at_a_normal_exit(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from rastro.eventlog import LogWriter; "
        "w = LogWriter(Path(sys.argv[1])); w.append(b'last words')"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO)
    assert segment_path(tmp_path, "p-0000", 0).read_bytes().endswith(FOOTER)
    assert payloads(read_all(LogReader(tmp_path), "p-0000")) == [b"last words"]
