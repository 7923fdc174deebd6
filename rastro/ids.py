"""Identifiers: UUIDv7 (RFC 9562) in canonical text form.

Time-ordered, so ids sort by creation time as text and as sort-key prefixes; 74 random bits
make them unguessable enough for ids (not for secrets: use `secrets` for keys and codes).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _compose(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | (rand_a & 0xFFF) << 64
    value |= 0b10 << 62 | (rand_b & ((1 << 62) - 1))
    text = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, at half the cost
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _RandomPool:
    """os.urandom in 4 KiB draws (one syscall per 512 ids, not one per id); refilled after a
    fork so that parent and child never hand out the same bits."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0
        self._pid = 0

    def take8(self) -> int:
        if self._pos + 8 > len(self._buffer) or self._pid != os.getpid():
            self._buffer, self._pos, self._pid = os.urandom(4096), 0, os.getpid()
        value = int.from_bytes(self._buffer[self._pos : self._pos + 8])
        self._pos += 8
        return value


_pool = _RandomPool()


def uuid7() -> str:
    """A new UUIDv7. Within one process, ids are strictly increasing even in the same
    millisecond (a 12-bit counter in rand_a, as RFC 9562 method 1 allows)."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, _pool.take8() & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
        random_bits = _pool.take8()
    return _compose(ms, counter, random_bits)


def stable_uuid7(ms: int, key: str) -> str:
    """The same UUIDv7 for the same (time, key): for rows that must be written idempotently,
    such as demo data seeded at every start."""
    digest = hashlib.sha256(key.encode()).digest()
    return _compose(ms, int.from_bytes(digest[:2]), int.from_bytes(digest[2:10]))
