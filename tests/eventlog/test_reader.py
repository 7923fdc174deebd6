"""The reader: resuming from committed offsets, torn tails, live tails, corruption, retention."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from rastro.eventlog import (
    CorruptRecord,
    LogReader,
    LogWriter,
    Offset,
    OffsetOutOfRange,
    OffsetStore,
    Record,
)
from rastro.eventlog.format import FOOTER, HEADER_SIZE, frame
from tests.eventlog.helpers import payloads, read_all, segment_path, strip_footer

P0 = "p-0000"


def event(i: int) -> bytes:
    return (
        f'{{"event_id": "e{i:05d}", "type": "click", "url": "https://shop.example/{i}"}}'.encode()
    )


def test_offsets_resume_exactly(tmp_path: Path) -> None:
    root = tmp_path / "log"
    # Two partitions, many segments, and more records written between the two consumers' runs.
    a, b = LogWriter(root, segment_max_bytes=4096), LogWriter(root, segment_max_bytes=4096)
    for i in range(600):
        (a if i % 3 else b).append(event(i))

    def consume(limit: int) -> list[bytes]:
        reader, store = LogReader(root), OffsetStore.for_consumer(root, "ingest")
        committed = store.load()
        seen: list[bytes] = []
        for partition in reader.partitions():
            offset = committed.get(partition, Offset.start())
            while len(seen) < limit and (
                batch := reader.read(partition, offset, max_records=37, max_bytes=2000)
            ):
                seen.extend(payloads(batch))
                offset = batch[-1].next_offset
            store.commit({partition: offset})
        return seen

    first = consume(250)
    for i in range(600, 1000):
        (a if i % 3 else b).append(event(i))
    a.close()
    b.close()
    second = consume(10**9)
    third = consume(10**9)
    assert 250 <= len(first) < 1000
    assert third == []
    everything = first + second
    assert len(everything) == len(set(everything)) == 1000
    assert set(everything) == {event(i) for i in range(1000)}


def test_limits_are_respected_but_a_large_first_record_is_returned(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        writer.append(b"L" * 5000)
        writer.append_many([b"s" * 10] * 10)
    reader = LogReader(tmp_path)
    first = reader.read(P0, Offset.start(), max_bytes=100)
    assert payloads(first) == [b"L" * 5000]
    small = reader.read(P0, first[-1].next_offset, max_bytes=35)
    assert payloads(small) == [b"s" * 10] * 3
    assert len(reader.read(P0, small[-1].next_offset, max_records=4)) == 4


# -- torn last records ---------------------------------------------------------------------------


def three_records(root: Path) -> tuple[bytes, list[Record]]:
    """A cleanly closed segment with three records: its bytes without the footer, and them."""
    with LogWriter(root) as writer:
        for i in range(3):
            writer.append(event(i))
    data = strip_footer(segment_path(root, P0, 0))
    return data, read_all(LogReader(root), P0)


def test_a_torn_last_record_is_skipped_at_every_cut(tmp_path: Path) -> None:
    data, records = three_records(tmp_path)
    last = records[-1]
    path = segment_path(tmp_path, P0, 0)
    reader = LogReader(tmp_path)
    # The writer is gone (its lock is free): the segment is sealed, its tail is torn.
    for cut in range(last.offset.position, last.next_offset.position):
        path.write_bytes(data[:cut])
        got = read_all(reader, P0)
        assert got == records[:2], f"cut at {cut}"
    # Another writer takes the slot and writes a newer segment: still skipped, then read on.
    with LogWriter(tmp_path) as writer:
        newer = writer.append(b"newer")
        for cut in range(last.offset.position, last.next_offset.position):
            path.write_bytes(data[:cut])
            got = read_all(reader, P0)
            assert payloads(got) == [*payloads(records[:2]), b"newer"], f"cut at {cut}"
            assert got[-1].offset == newer


def test_a_damaged_last_record_is_skipped_never_misread(tmp_path: Path) -> None:
    data, records = three_records(tmp_path)
    last = records[-1]
    path = segment_path(tmp_path, P0, 0)
    for position in range(last.offset.position, last.next_offset.position):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path.write_bytes(damaged)
        assert read_all(LogReader(tmp_path), P0) == records[:2], f"byte {position} flipped"


def test_a_damaged_last_record_of_a_cleanly_sealed_segment_is_corruption(tmp_path: Path) -> None:
    data, records = three_records(tmp_path)
    damaged = bytearray(data + FOOTER)  # the writer sealed it: no torn record can be in it
    damaged[records[-1].offset.position + 12] ^= 0x01
    segment_path(tmp_path, P0, 0).write_bytes(damaged)
    reader = LogReader(tmp_path)
    assert reader.read(P0, Offset.start()) == records[:2]
    with pytest.raises(CorruptRecord) as caught:
        reader.read(P0, records[1].next_offset)
    assert caught.value.offset == records[2].offset
    assert caught.value.resume == Offset(0, len(data))  # the footer: the segment is done
    assert reader.read(P0, caught.value.resume) == []


# -- the tail of a live segment ------------------------------------------------------------------


def test_a_partial_tail_of_a_live_segment_is_not_read_until_complete(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        first = writer.append(event(0))
        path = segment_path(tmp_path, P0, 0)
        reader = LogReader(tmp_path)
        framed, _ = frame([event(1)])
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # a write in progress, byte by byte
        try:
            seen = reader.read(P0, Offset.start())
            assert payloads(seen) == [event(0)]
            offset = seen[-1].next_offset
            for i in range(len(framed) - 1):
                os.write(fd, framed[i : i + 1])
                assert reader.read(P0, Offset.start()) == seen, f"{i + 1} bytes written"
                assert reader.read(P0, offset) == [], f"{i + 1} bytes written"
            os.write(fd, framed[-1:])
        finally:
            os.close(fd)
        completed = reader.read(P0, offset)
        assert payloads(completed) == [event(1)]
        assert completed[0].offset == Offset(0, first.position + len(event(0)) + 8)
        assert reader.read(P0, completed[0].next_offset) == []


def test_a_checksum_mismatch_at_a_live_tail_is_not_yet_judged(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        writer.append(event(0))
        path = segment_path(tmp_path, P0, 0)
        with open(path, "ab") as f:  # whole length, wrong bytes: as if not yet visible
            f.write(struct.pack("<II", 5, 0) + b"hello")
        reader = LogReader(tmp_path)
        assert payloads(reader.read(P0, Offset.start())) == [event(0)]
        assert payloads(read_all(reader, P0)) == [event(0)]


# -- corruption in the middle --------------------------------------------------------------------


def ten_records(root: Path) -> tuple[Path, list[Record]]:
    with LogWriter(root) as writer:
        for i in range(10):
            writer.append(event(i))
    return segment_path(root, P0, 0), read_all(LogReader(root), P0)


def flip_payload(data: bytearray, record: Record) -> None:
    data[record.offset.position + 8 + 5] ^= 0x20


def zero_length(data: bytearray, record: Record) -> None:
    data[record.offset.position : record.offset.position + 4] = b"\x00\x00\x00\x00"


def huge_length(data: bytearray, record: Record) -> None:
    data[record.offset.position : record.offset.position + 4] = struct.pack("<I", 1_000_000)


@pytest.fixture(params=["sealed", "crashed", "live"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """How the damaged segment ended: sealed by its writer (footer), left by a crashed one (no
    footer, lock free), or still being written (no footer, a writer holding the lock)."""
    yield str(request.param)


@pytest.mark.parametrize("damage", [flip_payload, zero_length, huge_length])
def test_mid_segment_corruption_is_reported_not_skipped(
    tmp_path: Path, state: str, damage: object
) -> None:
    path, records = ten_records(tmp_path)
    data = bytearray(path.read_bytes())
    if state != "sealed":
        data = data[: -len(FOOTER)]
    damage(data, records[4])  # type: ignore[operator]
    path.write_bytes(data)
    live = LogWriter(tmp_path) if state == "live" else None
    try:
        if live is not None:
            assert live.start() == P0  # holds the lock; segment 0 stays the last one
        reader = LogReader(tmp_path)
        before = reader.read(P0, Offset.start())
        assert before == records[:4]
        if live is not None and damage is huge_length:
            # A length running past the end of a live segment is a write in progress as far
            # as anyone can tell: judged once the segment is sealed (here: its writer leaves).
            assert reader.read(P0, before[-1].next_offset) == []
            live.close()
        with pytest.raises(CorruptRecord) as caught:
            reader.read(P0, before[-1].next_offset)
        exc = caught.value
        assert (exc.partition, exc.segment, exc.position) == (P0, 0, records[4].offset.position)
        assert exc.resume == records[5].offset
        assert exc.data == bytes(data[records[4].offset.position : records[5].offset.position])
        assert "partition p-0000" in str(exc)
        assert read_all(reader, P0, exc.resume) == records[5:]
    finally:
        if live is not None:
            live.close()


def test_a_garbage_segment_header_is_reported(tmp_path: Path) -> None:
    path, records = ten_records(tmp_path)
    data = bytearray(path.read_bytes())
    data[0:8] = b"GARBAGE!"
    path.write_bytes(data)
    with pytest.raises(CorruptRecord) as caught:
        LogReader(tmp_path).read(P0, Offset.start())
    assert caught.value.position == 0
    assert caught.value.resume == records[0].offset
    assert read_all(LogReader(tmp_path), P0, caught.value.resume) == records


# -- retention -----------------------------------------------------------------------------------


def test_delete_consumed_removes_only_whole_segments_before_the_offset(tmp_path: Path) -> None:
    with LogWriter(tmp_path, segment_max_bytes=500) as writer:
        for i in range(60):
            writer.append(event(i))
    reader = LogReader(tmp_path)
    records = read_all(reader, P0)
    seqs = reader.segments(P0)
    committed = records[30].offset
    deleted = reader.delete_consumed(P0, committed)
    assert deleted == [s for s in seqs if s < committed.segment]
    assert reader.segments(P0) == [s for s in seqs if s >= committed.segment]
    assert read_all(reader, P0, committed) == records[30:]
    remaining = read_all(reader, P0)  # from the start: the oldest segment still there
    assert remaining[0].offset.segment == committed.segment
    with pytest.raises(OffsetOutOfRange):
        reader.read(P0, records[0].next_offset)
    assert reader.delete_consumed(P0, Offset(10**6, 0)) == seqs[seqs.index(committed.segment) : -1]
    assert reader.segments(P0) == [seqs[-1]]  # the newest is always kept
    assert read_all(reader, P0) == [r for r in records if r.offset.segment == seqs[-1]]


def test_partitions_are_listed_in_numeric_order(tmp_path: Path) -> None:
    for number in (10000, 2, 0, 9999):
        (tmp_path / f"p-{number:04d}").mkdir()
    (tmp_path / "offsets").mkdir()
    (tmp_path / "p-x").mkdir()
    assert LogReader(tmp_path).partitions() == ["p-0000", "p-0002", "p-9999", "p-10000"]
    assert LogReader(tmp_path / "missing").partitions() == []
    assert LogReader(tmp_path).read("p-0002", Offset.start()) == []
    assert HEADER_SIZE == 16


# -- what a power loss can leave -----------------------------------------------------------------


def test_a_zero_filled_tail_is_torn_and_zeros_before_records_are_corruption(
    tmp_path: Path,
) -> None:
    """A file system may keep a file's new size but not its data: the tail reads as zeros."""
    path, records = ten_records(tmp_path)
    data = strip_footer(path)
    path.write_bytes(data + bytes(4096))
    reader = LogReader(tmp_path)
    assert read_all(reader, P0) == records  # zeros at the tail: torn, skipped
    # Zeros where records 3..5 were, valid records after them: reported, resumed at record 6;
    # a long run of zeros is searched quickly.
    hole = bytes(8 << 20)
    start, stop = records[3].offset.position, records[6].offset.position
    path.write_bytes(data[:start] + hole + data[stop:])
    assert reader.read(P0, Offset.start()) == records[:3]
    with pytest.raises(CorruptRecord) as caught:
        reader.read(P0, records[2].next_offset)
    assert caught.value.reason == "invalid record length 0"
    assert caught.value.resume == Offset(0, start + len(hole))
    assert payloads(read_all(reader, P0, caught.value.resume)) == payloads(records[6:])


def test_an_empty_segment_left_by_a_crash_is_skipped(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        writer.append(b"before")
    segment_path(tmp_path, P0, 1).write_bytes(b"RSTEV")  # died while writing the header
    reader = LogReader(tmp_path)
    assert payloads(read_all(reader, P0)) == [b"before"]  # writer gone: nothing more there
    with LogWriter(tmp_path) as writer:
        assert writer.append(b"after").segment == 2
    assert payloads(read_all(reader, P0)) == [b"before", b"after"]
