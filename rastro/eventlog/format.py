"""The on-disk format of the event log: segment header and footer, record framing, offsets.

A segment file `<seq:016d>.seg` is

    header   16 bytes   b"RSTEVLOG" | version (u32 LE) | 0 (u32, reserved)
    record*             length (u32 LE) | crc32(payload) (u32 LE, zlib.crc32) | payload
    footer   8 bytes    b"\\xff\\xff\\xff\\xffSEAL", only when the writer sealed it cleanly

A payload is 1 to `MAX_PAYLOAD_BYTES` bytes, so a valid length has a zero high byte and is never
zero: a run of zero bytes (what a file system can leave after a power loss) never reads as a
record, and the footer's length (0xFFFFFFFF) is never a record's. See docs/event-log.md.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Self

MAGIC = b"RSTEVLOG"
VERSION = 1
HEADER = MAGIC + struct.pack("<II", VERSION, 0)
HEADER_SIZE = len(HEADER)  # 16: the position of a segment's first record
FOOTER = b"\xff\xff\xff\xffSEAL"
FOOTER_SIZE = len(FOOTER)
RECORD_HEADER = struct.Struct("<II")  # length, crc32
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 8
MAX_PAYLOAD_BYTES = (1 << 24) - 1  # 16 MiB - 1: a length's high byte is always 0

SEGMENT_SUFFIX = ".seg"
SEGMENT_NAME = re.compile(r"^(\d{16})\.seg$")
PARTITION_NAME = re.compile(r"^p-(\d{4,})$")

_OFFSET_TEXT = re.compile(r"^(\d+):(\d+)$")
_POSITION_BITS = 32  # Offset.to_int(): the segment in the high 32 bits, the position in the low


def _pack(segment: int, position: int) -> int:
    """An offset as one int (`Offset.to_int`, `Record.offset_int`)."""
    return segment << _POSITION_BITS | position


class EventLogError(Exception):
    """The event log cannot do what was asked (closed or failed writer, bad offset, bad file)."""


class OffsetOutOfRange(EventLogError):
    """An offset points into a segment that does not exist (deleted by retention, or never
    written): reading from it could skip records silently, so it is refused."""


class CorruptRecord(EventLogError):
    """Bytes that are not a valid record where a record must be, with valid data after them
    (or in a segment its writer sealed cleanly). Never raised for a torn last record.

    `LogReader.read` returns the good records before the corruption first; the call that starts
    at the corrupt position raises. The consumer records it (dead letter) and continues with
    `read(partition, exc.resume)`: nothing after the corruption is skipped without this report.
    """

    def __init__(
        self,
        partition: str,
        segment: int,
        position: int,
        reason: str,
        resume: Offset,
        data: bytes,
    ) -> None:
        self.partition = partition
        self.segment = segment
        self.position = position
        self.reason = reason
        self.resume = resume  # where the next valid record (or the segment's end) is
        self.data = data  # the skipped bytes, at most CORRUPT_DATA_LIMIT of them
        skipped = (
            f"{resume.position - position} bytes"
            if resume.segment == segment
            else "the rest of the segment"
        )
        super().__init__(
            f"corrupt record in partition {partition}, segment {segment:016d}, position "
            f"{position}: {reason}; skipping {skipped}, resume at {resume.to_str()}"
        )

    @property
    def offset(self) -> Offset:
        return Offset(self.segment, self.position)


CORRUPT_DATA_LIMIT = 1 << 20


@dataclass(frozen=True, order=True, slots=True)
class Offset:
    """A position in one partition: a segment's sequence number and a byte position in it.

    Ordered as the records are. A record's `offset` is where it starts and its `next_offset`
    where the next one starts: consumers commit `next_offset` (the next record to read).
    `Offset(s, 0)` means "the start of segment s, or of the first segment after it".
    """

    segment: int
    position: int

    def __post_init__(self) -> None:
        if self.segment < 0 or self.position < 0:
            raise ValueError(f"offset components must be >= 0, got {self!r}")

    @classmethod
    def start(cls) -> Self:
        """The beginning of a partition (its oldest segment still on disk)."""
        return cls(0, 0)

    def to_str(self) -> str:
        return f"{self.segment}:{self.position}"

    @classmethod
    def from_str(cls, text: str) -> Self:
        match = _OFFSET_TEXT.match(text)
        if match is None:
            raise ValueError(f"not an event-log offset: {text!r} (expected 'segment:position')")
        return cls(int(match[1]), int(match[2]))

    def to_int(self) -> int:
        """One UInt64 ordered like the offsets (the warehouse's `log_offset`): the segment in
        the high 32 bits, the position in the low 32 (a writer keeps positions below 2^32)."""
        if self.position >= 1 << _POSITION_BITS or self.segment >= 1 << (64 - _POSITION_BITS):
            raise ValueError(f"{self!r} does not fit in 64 bits")
        return _pack(self.segment, self.position)

    @classmethod
    def from_int(cls, value: int) -> Self:
        return cls(value >> _POSITION_BITS, value & ((1 << _POSITION_BITS) - 1))


class Record(NamedTuple):
    """One record read from a partition. Positions are plain ints, not `Offset`s: a reader
    makes one of these per event, and two Offset objects each would cost more than the rest
    of reading the record (docs/event-log.md)."""

    partition: str
    segment: int
    position: int  # where the record starts in its segment
    end: int  # where the next record starts
    payload: bytes

    @property
    def offset(self) -> Offset:
        return Offset(self.segment, self.position)

    @property
    def next_offset(self) -> Offset:
        return Offset(self.segment, self.end)

    def offset_int(self) -> int:
        """`offset.to_int()` without building the Offset (the warehouse's `log_offset`)."""
        return _pack(self.segment, self.position)


def partition_name(number: int) -> str:
    return f"p-{number:04d}"


def partition_number(name: str) -> int:
    """The number of a partition (the warehouse's `log_partition`): `p-0007` -> 7."""
    match = PARTITION_NAME.match(name)
    if match is None:
        raise ValueError(f"not an event-log partition name: {name!r}")
    return int(match[1])


def segment_name(seq: int) -> str:
    return f"{seq:016d}{SEGMENT_SUFFIX}"


def check_payload(payload: bytes) -> None:
    if not isinstance(payload, bytes):
        raise TypeError(f"a payload is bytes, not {type(payload).__name__}")
    if not 1 <= len(payload) <= MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"a payload is 1 to {MAX_PAYLOAD_BYTES} bytes, got {len(payload)}"
            + (" (empty payloads are not allowed)" if not payload else "")
        )


def frame(payloads: Iterable[bytes]) -> tuple[bytes, list[int]]:
    """The framed records, concatenated, and the length of each frame."""
    parts: list[bytes] = []
    sizes: list[int] = []
    for payload in payloads:
        check_payload(payload)
        parts.append(RECORD_HEADER.pack(len(payload), zlib.crc32(payload)))
        parts.append(payload)
        sizes.append(RECORD_HEADER_SIZE + len(payload))
    return b"".join(parts), sizes
