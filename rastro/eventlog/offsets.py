"""`OffsetStore`: a consumer's committed offsets, one JSON file, replaced atomically.

The file is `root/offsets/<consumer>.json`:
`{"format": "rastro-eventlog-offsets", "version": 1, "offsets": {"p-0000": "3:1234", ...}}`,
each offset being the next record to read in that partition. A commit writes a temporary file,
fsyncs it, renames it over the old one and fsyncs the directory: after a crash the file holds
either the previous commit or the new one, never a mix.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from rastro.eventlog.format import PARTITION_NAME, EventLogError, Offset
from rastro.eventlog.partitions import fsync_dir

_FORMAT = "rastro-eventlog-offsets"
_VERSION = 1
_CONSUMER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class OffsetStore:
    """The committed offsets of one consumer. Safe to use from several processes: commits are
    serialised by a lock file next to the offsets file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_consumer(cls, root: Path, consumer: str) -> Self:
        """The store of `consumer` in the log under `root`: `root/offsets/<consumer>.json`."""
        if not consumer or not set(consumer) <= _CONSUMER or consumer.startswith("."):
            raise ValueError(f"a consumer name is [A-Za-z0-9_.-]+, got {consumer!r}")
        return cls(Path(root) / "offsets" / f"{consumer}.json")

    def load(self) -> dict[str, Offset]:
        """The committed offsets by partition; empty if nothing was ever committed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(text)
            if document.get("format") != _FORMAT or document.get("version") != _VERSION:
                raise ValueError(f"format {document.get('format')!r} {document.get('version')!r}")
            return {
                str(partition): Offset.from_str(value)
                for partition, value in document["offsets"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EventLogError(f"unreadable offsets file {self.path}: {exc}") from exc

    def commit(self, offsets: Mapping[str, Offset]) -> None:
        """Durably record these partitions' offsets (the next record to read in each); the
        other partitions keep the offsets committed before."""
        for partition in offsets:
            if PARTITION_NAME.match(partition) is None:
                raise ValueError(f"not an event-log partition name: {partition!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(
            self.path.with_name(self.path.name + ".lock"),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o644,
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            merged = {**self.load(), **offsets}
            document = {
                "format": _FORMAT,
                "version": _VERSION,
                "offsets": {p: merged[p].to_str() for p in sorted(merged)},
            }
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                data = (json.dumps(document, indent=1) + "\n").encode()
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to {temporary}")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            fsync_dir(self.path.parent)
        finally:
            os.close(lock_fd)  # releases the lock
