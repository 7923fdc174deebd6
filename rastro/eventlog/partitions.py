"""Partitions on disk: `root/p-NNNN/` directories, each with a `lock` file and its segments.

A writer process owns a partition by holding an exclusive `flock` on its `lock` file for as
long as it lives; the kernel releases it when the process dies, however it dies. A reader only
ever *tests* the lock (`writer_alive`), never keeps it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from rastro.eventlog.format import PARTITION_NAME, SEGMENT_NAME, partition_name

LOCK_FILE = "lock"
# A reader testing a lock holds it (shared) for a few microseconds; a writer that finds a slot
# locked looks again this many times, this far apart, before it moves on to the next slot.
_CLAIM_ATTEMPTS = 3
_CLAIM_PAUSE_S = 0.002


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (files created, renamed or deleted in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_partitions(root: Path) -> list[str]:
    """Partition names under `root`, in numeric order."""
    try:
        entries = [e.name for e in os.scandir(root) if e.is_dir()]
    except FileNotFoundError:
        return []
    names = [(int(m[1]), n) for n in entries if (m := PARTITION_NAME.match(n))]
    return [name for _, name in sorted(names)]


def list_segments(partition_dir: Path) -> list[int]:
    """Sequence numbers of the segments in a partition, ascending."""
    try:
        names = os.listdir(partition_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m[1]) for n in names if (m := SEGMENT_NAME.match(n)))


def claim_partition(root: Path) -> tuple[str, int]:
    """Lock the first free partition slot under `root` (creating it if needed): its name and
    the locked file descriptor, which the caller keeps open for as long as it writes."""
    root.mkdir(parents=True, exist_ok=True)
    number = 0
    while True:
        name = partition_name(number)
        directory = root / name
        try:
            directory.mkdir()
            fsync_dir(root)
        except FileExistsError:
            pass
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        for attempt in range(_CLAIM_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if attempt + 1 < _CLAIM_ATTEMPTS:
                    time.sleep(_CLAIM_PAUSE_S)
                continue
            # The pid is for people looking at the directory; nothing reads it.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return name, fd
        os.close(fd)
        number += 1


def writer_alive(partition_dir: Path) -> bool:
    """Whether a process holds the partition's lock, i.e. its writer is running. Tested with a
    non-blocking shared lock that is released at once."""
    try:
        fd = os.open(partition_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the shared lock if we got it
    return False
