"""Identifiers: UUIDv7 (RFC 9562) in canonical text form.

Time-ordered, so ids sort by creation time as text and as sort-key prefixes; 74 random bits
make them unguessable enough for ids (not for secrets: use `secrets` for keys and codes).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _compose(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | (rand_a & 0xFFF) << 64
    value |= 0b10 << 62 | (rand_b & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def uuid7() -> str:
    """A new UUIDv7. Within one process, ids are strictly increasing even in the same
    millisecond (a 12-bit counter in rand_a, as RFC 9562 method 1 allows)."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, int.from_bytes(os.urandom(2)) & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    return _compose(ms, counter, int.from_bytes(os.urandom(8)))


def stable_uuid7(ms: int, key: str) -> str:
    """The same UUIDv7 for the same (time, key): for rows that must be written idempotently,
    such as demo data seeded at every start."""
    digest = hashlib.sha256(key.encode()).digest()
    return _compose(ms, int.from_bytes(digest[:2]), int.from_bytes(digest[2:10]))
