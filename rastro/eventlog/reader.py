"""`LogReader`: reads the partitions of the log, from any process, without any writer's lock.

What the reader does at a defect (bytes that are not a whole, valid record):

- in the **active** segment (the partition's last one, its writer alive): a partial record at
  the tail is a write in progress, "not yet": the records before it are returned and the
  offset never moves past it; it is read once it is complete.
- in a **sealed** segment (a later one exists, it ends in the footer, or its writer is gone)
  the bytes after the defect are searched for a valid record:
  - none, and the writer did not seal the segment cleanly (no footer): a **torn** last record
    left by a crash. It is skipped: reading goes on with the next segment.
  - one (or the segment ends in the footer, which a writer only writes after whole records):
    **corruption**. `CorruptRecord` is raised, with where to resume; nothing is skipped
    silently.

The same applies, in an active segment, to a defect that valid records already follow.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rastro.eventlog.format import (
    CORRUPT_DATA_LIMIT,
    FOOTER,
    FOOTER_SIZE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD_BYTES,
    PARTITION_NAME,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    CorruptRecord,
    EventLogError,
    Offset,
    OffsetOutOfRange,
    Record,
    segment_name,
)
from rastro.eventlog.partitions import fsync_dir, list_partitions, list_segments, writer_alive

DEFAULT_MAX_RECORDS = 1000
DEFAULT_MAX_BYTES = 4 << 20
_READ_CHUNK = 1 << 20
_NONZERO = re.compile(rb"[^\x00]")

Stop = Literal["end", "footer", "full", "defect"]


@dataclass(slots=True)
class _Scan:
    """What reading one segment from a position found."""

    records: list[Record] = field(default_factory=list)
    position: int = 0  # after the last record returned: where the stop is
    stop: Stop = "end"
    reason: str = ""  # for "defect"
    partial: bool = False  # the defect may be a record still being written
    size: int = 0  # of the file when it was read


class LogReader:
    """Reads records from the partitions under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def partitions(self) -> list[str]:
        """The partitions' names, in order (`p-0000`, `p-0001`, ...)."""
        return list_partitions(self.root)

    def segments(self, partition: str) -> list[int]:
        """The sequence numbers of a partition's segments on disk, ascending."""
        return list_segments(self._dir(partition))

    def read(
        self,
        partition: str,
        offset: Offset,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> list[Record]:
        """The complete records from `offset` on, in order: at most `max_records`, and payloads
        of at most `max_bytes` in all (but always the first record, however large). Empty when
        nothing new is there yet. Resume from the last record's `next_offset`.

        Raises `CorruptRecord` when the first thing at `offset` is corrupt (see the module's
        docstring), `OffsetOutOfRange` when `offset` is in a segment that is not on disk.
        """
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be >= 1")
        directory = self._dir(partition)
        seqs = list_segments(directory)
        seq, position = self._locate(partition, seqs, offset)
        if seq is None:
            return []
        records: list[Record] = []
        budget = max_bytes
        sealed_known = False  # we established that `seq` can no longer grow
        while True:
            last = seq == seqs[-1]
            scan = self._scan(
                partition,
                directory / segment_name(seq),
                seq,
                position,
                records,
                max_records,
                budget,
            )
            budget -= sum(len(r.payload) for r in scan.records)
            records.extend(scan.records)
            position = scan.position
            if scan.stop == "full":
                return records
            if scan.stop in ("end", "footer") and not last:
                seq, position, sealed_known = seqs[seqs.index(seq) + 1], 0, False
                continue
            if scan.stop != "defect":
                return records  # the end of the partition as it is now
            # A defect. Whether the segment is sealed decides between "not yet" and torn.
            if not sealed_known:
                sealed_known = not last or self._sealed(directory, seq, seqs)
                if sealed_known and last:
                    seqs = list_segments(directory)  # it may have been completed meanwhile:
                    continue  # read it again, now that it cannot change
            verdict, resume = self._judge(directory / segment_name(seq), seq, scan, sealed_known)
            if verdict == "wait":
                return records
            if verdict == "torn":
                following = [s for s in seqs if s > seq]
                if not following:
                    return records  # a dead writer's torn tail, and nothing after it yet
                seq, position, sealed_known = following[0], 0, False
                continue
            if records:
                return records  # the caller gets the good records first; the next call raises
            data = self._bytes(directory / segment_name(seq), seq, scan.position, resume)
            raise CorruptRecord(partition, seq, scan.position, scan.reason, resume, data)

    def delete_consumed(self, partition: str, offset: Offset) -> list[int]:
        """Delete the partition's segments wholly before `offset` (a committed offset: pass the
        smallest one if several consumers read the partition). The segment `offset` is in, and
        the partition's newest segment, are always kept, so sequence numbers never go back.
        Returns the sequence numbers deleted."""
        directory = self._dir(partition)
        seqs = list_segments(directory)
        doomed = [s for s in seqs[:-1] if s < offset.segment]
        for seq in doomed:
            (directory / segment_name(seq)).unlink(missing_ok=True)
        if doomed:
            fsync_dir(directory)
        return doomed

    # -- internals --------------------------------------------------------------------------------

    def _dir(self, partition: str) -> Path:
        if PARTITION_NAME.match(partition) is None:
            raise ValueError(f"not an event-log partition name: {partition!r}")
        directory = self.root / partition
        if not directory.is_dir():
            raise EventLogError(f"no partition {partition} under {self.root}")
        return directory

    @staticmethod
    def _locate(partition: str, seqs: list[int], offset: Offset) -> tuple[int | None, int]:
        """The segment and position to read from (None: nothing there yet)."""
        if offset.segment in seqs:
            return offset.segment, offset.position
        if offset.position == 0:  # the start of that segment, or of the first one after it
            later = [s for s in seqs if s > offset.segment]
            return (later[0], 0) if later else (None, 0)
        oldest = f"{seqs[0]:016d}" if seqs else "none"
        raise OffsetOutOfRange(
            f"offset {offset.to_str()} of partition {partition}: segment {offset.segment:016d} "
            f"is not on disk (oldest segment: {oldest})"
        )

    @staticmethod
    def _sealed(directory: Path, seq: int, seqs: list[int]) -> bool:
        """Whether segment `seq`, the last one we listed, can no longer grow."""
        if list_segments(directory)[-1:] != [seq]:
            return True  # a later segment exists (or retention removed this one)
        if _ends_in_footer(directory / segment_name(seq)):
            return True
        return not writer_alive(directory)

    def _scan(
        self,
        partition: str,
        path: Path,
        seq: int,
        position: int,
        already: list[Record],
        max_records: int,
        budget: int,
    ) -> _Scan:
        """Read whole records of one segment from `position` until its end, a defect or the
        caller's limits."""
        out = _Scan(position=position)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise OffsetOutOfRange(f"segment {path} was deleted while being read") from None
        try:
            size = out.size = os.fstat(fd).st_size
            if position > size:  # segments only grow: no record ever ended there
                raise OffsetOutOfRange(f"position {position} is past the end of {path}")
            if position < HEADER_SIZE:
                head = os.pread(fd, HEADER_SIZE, 0)
                if len(head) < HEADER_SIZE and HEADER.startswith(head):
                    out.stop, out.partial, out.reason = "defect", True, "incomplete header"
                    out.position = 0
                    return out
                if head[: len(MAGIC)] != MAGIC:
                    out.stop, out.reason, out.position = "defect", "not a segment header", 0
                    return out
                if head != HEADER:
                    raise EventLogError(f"{path}: unsupported segment format {head!r}")
                position = out.position = HEADER_SIZE
            buf, base = b"", position  # buf holds the file's bytes from `base`
            count = len(already)
            while True:
                if position == size:
                    out.stop = "end"
                    return out
                if count >= max_records:
                    out.stop = "full"
                    return out
                if size - position < RECORD_HEADER_SIZE:
                    out.stop, out.partial, out.reason = "defect", True, "incomplete record header"
                    return out
                if position + RECORD_HEADER_SIZE > base + len(buf):
                    buf, base = os.pread(fd, min(_READ_CHUNK, size - position), position), position
                length, crc = RECORD_HEADER.unpack_from(buf, position - base)
                at = position - base
                if position + FOOTER_SIZE == size and buf[at : at + FOOTER_SIZE] == FOOTER:
                    out.stop = "footer"
                    return out
                if not 1 <= length <= MAX_PAYLOAD_BYTES:
                    out.stop, out.reason = "defect", f"invalid record length {length}"
                    return out
                end = position + RECORD_HEADER_SIZE + length
                if end > size:
                    out.stop, out.partial = "defect", True
                    out.reason = f"record of {length} bytes cut at {size - position - 8}"
                    return out
                if (already or out.records) and length > budget:
                    out.stop = "full"
                    return out
                if end > base + len(buf):
                    want = max(_READ_CHUNK, end - position)
                    buf, base = os.pread(fd, min(want, size - position), position), position
                payload = buf[position - base + RECORD_HEADER_SIZE : end - base]
                if zlib.crc32(payload) != crc:
                    out.stop, out.reason = "defect", "checksum mismatch"
                    out.partial = end == size  # the last bytes of the file: maybe in flight
                    return out
                out.records.append(Record(partition, seq, position, end, payload))
                budget -= length
                count += 1
                position = out.position = end
        finally:
            os.close(fd)

    @staticmethod
    def _judge(
        path: Path, seq: int, scan: _Scan, sealed: bool
    ) -> tuple[Literal["wait", "torn", "corrupt"], Offset]:
        """Decide what a defect at `scan.position` is: a write in progress, a torn last record
        or corruption (with where to resume)."""
        if not sealed and scan.partial:
            return "wait", Offset(seq, scan.position)
        base = scan.position  # only the bytes from the defect on are needed
        with open(path, "rb") as f:
            f.seek(base)
            data = f.read()
        footer = data.endswith(FOOTER) and base + len(data) >= HEADER_SIZE + FOOTER_SIZE
        end = len(data) - FOOTER_SIZE if footer else len(data)
        found = _next_valid_record(data, max(1, HEADER_SIZE - base), end)
        if found is not None:
            return "corrupt", Offset(seq, base + found)
        if base == 0 and not scan.partial and data[:HEADER_SIZE].strip(b"\x00"):
            # A header that is neither a prefix of ours nor zeros (a power loss can leave
            # those) was never written by a writer: report it, even with nothing valid after.
            return "corrupt", Offset(seq, end) if end >= HEADER_SIZE else Offset(seq + 1, 0)
        if not sealed:
            return "wait", Offset(seq, base)  # garbage at a live tail: not judged yet
        if footer:
            return "corrupt", Offset(seq, base + end)
        return "torn", Offset(seq, base + end)

    @staticmethod
    def _bytes(path: Path, seq: int, start: int, resume: Offset) -> bytes:
        with open(path, "rb") as f:
            f.seek(start)
            if resume.segment != seq:
                return f.read(CORRUPT_DATA_LIMIT)
            return f.read(min(resume.position - start, CORRUPT_DATA_LIMIT))


def _ends_in_footer(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < HEADER_SIZE + FOOTER_SIZE:
                return False
            f.seek(size - FOOTER_SIZE)
            return f.read(FOOTER_SIZE) == FOOTER
    except FileNotFoundError:
        return False


def _next_valid_record(data: bytes, start: int, end: int) -> int | None:
    """The first index in [start, end) of `data` where a whole record with a matching checksum
    starts. A valid length has a zero high byte, so candidates are found with `bytes.find`
    (fast over text payloads), and runs of zeros are skipped whole."""
    position = start
    while position + RECORD_HEADER_SIZE < end:
        zero = data.find(b"\x00", position + 3, end)
        if zero == -1:
            return None
        candidate = zero - 3
        if candidate + RECORD_HEADER_SIZE >= end:
            return None
        length, crc = RECORD_HEADER.unpack_from(data, candidate)
        if length == 0:  # inside a run of zeros: jump to 3 bytes before its end
            nonzero = _NONZERO.search(data, candidate, end)
            if nonzero is None:
                return None
            position = max(candidate + 1, nonzero.start() - 3)
            continue
        payload = candidate + RECORD_HEADER_SIZE
        if payload + length <= end and zlib.crc32(data[payload : payload + length]) == crc:
            return candidate
        position = candidate + 1
    return None
