"""`LogWriter`: one process's append-only partition of the embedded event log.

Each record is handed to the operating system with one `os.write` on an `O_APPEND` file before
`append` returns, so it survives the death of the process (the page cache outlives it). A
background thread fsyncs what was written within `sync_interval_s`, so a power loss loses at
most that much; `append_durable` waits for the fsync itself. Concurrent durable appends share
fsyncs (group commit): the first caller to need one runs it, those who arrive meanwhile wait for
it to finish, then the next one runs a single fsync for all of them.

A writer still open when the interpreter exits normally (an API worker stopped with SIGTERM)
is closed by an atexit hook; call `close()` on shutdown all the same.

Fork: the writer starts (claims a partition, opens files, starts its thread) at its first use,
not when it is created, so a writer built in a parent process before fork is a fresh writer in
each child. A writer already started is of no use in a child: the child's copies of its file
descriptors are closed at fork (without unlocking the parent's partition) and any call there
raises `EventLogError`. Create the writer in each process after fork (every uvicorn worker has
its own).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from rastro.eventlog.format import (
    FOOTER,
    HEADER,
    HEADER_SIZE,
    EventLogError,
    Offset,
    frame,
    segment_name,
)
from rastro.eventlog.partitions import claim_partition, fsync_dir, list_segments

log = logging.getLogger("rastro.eventlog")

DEFAULT_SEGMENT_MAX_BYTES = 64 << 20
DEFAULT_SEGMENT_MAX_AGE_S = 300.0
DEFAULT_SYNC_INTERVAL_S = 0.2
# Bounds that keep every position below 2^32 (Offset.to_int): a segment is rotated before a
# write that would take it past segment_max_bytes, unless it is empty.
MAX_SEGMENT_BYTES = 1 << 30
MAX_BATCH_BYTES = 256 << 20


@dataclass(slots=True)
class _Segment:
    seq: int
    fd: int
    position: int  # bytes in the file: where the next record goes
    created: float  # time.monotonic()

    @property
    def has_records(self) -> bool:
        return self.position > HEADER_SIZE


_WRITERS: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._forget_after_fork()


def _close_at_exit() -> None:
    """A writer left open when the interpreter exits normally is sealed and fsynced."""
    for writer in list(_WRITERS):
        if writer._pid == os.getpid():
            try:
                writer.close()
            except Exception:
                log.exception("closing %r at exit", writer)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)


class LogWriter:
    """Appends records to this process's partition of the log under `root`.

    Thread-safe. Implements `rastro.eventlog.EventLog` (see it for the delivery guarantee).
    A write or fsync error makes the writer unusable (every later call raises `EventLogError`):
    after a failed fsync nobody can tell which records reached the disk, so the process should
    exit and be restarted; its successor starts a new segment.
    """

    def __init__(
        self,
        root: Path,
        *,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age_s: float = DEFAULT_SEGMENT_MAX_AGE_S,
        sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
    ) -> None:
        if not 1 <= segment_max_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_max_bytes must be 1 to {MAX_SEGMENT_BYTES}")
        if segment_max_age_s <= 0 or sync_interval_s <= 0:
            raise ValueError("segment_max_age_s and sync_interval_s must be > 0")
        self.root = Path(root)
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.sync_interval_s = sync_interval_s
        self._reset_state()
        _WRITERS.add(self)

    def _reset_state(self) -> None:
        self._lock = threading.Lock()  # the segment, the counters, the lifecycle flags
        self._sync_cond = threading.Condition(threading.Lock())  # _synced, _syncing, _sync_error
        self._wake = threading.Event()  # something was written (or the writer is closing)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None  # the process that started the writer
        self._forked_from: int | None = None
        self._partition: str | None = None
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._segment: _Segment | None = None
        self._next_seq = 0
        self._written = 0  # writes made so far; each write's number is its ticket
        self._synced = 0  # every write up to this number is on disk
        self._syncing = False  # a thread is running an fsync for everyone
        self._write_error: BaseException | None = None  # no more appends
        self._sync_error: BaseException | None = None  # nothing can be promised durable
        self._torn = False  # the segment may end in a partial record: seal it without footer
        self._closed = False

    # -- the public API ---------------------------------------------------------------------------

    @property
    def partition(self) -> str | None:
        """This writer's partition (`p-0000`, ...), once started."""
        return self._partition

    def start(self) -> str:
        """Claim a partition now rather than at the first append; returns its name."""
        with self._lock:
            self._ensure_started()
            assert self._partition is not None
            return self._partition

    def append(self, payload: bytes) -> Offset:
        """Write one record; it survives a kill -9 once this returns, and reaches the disk
        within `sync_interval_s`."""
        offsets, _ = self._write([payload])
        return offsets[0]

    def append_durable(self, payload: bytes) -> Offset:
        """Write one record and return once it is fsynced (group commit)."""
        offsets, ticket = self._write([payload])
        self._sync_to(ticket)
        return offsets[0]

    def append_many(self, payloads: Iterable[bytes], *, durable: bool = False) -> list[Offset]:
        """Write a batch with one `os.write`, in order, in one segment."""
        offsets, ticket = self._write(payloads)
        if durable and offsets:
            self._sync_to(ticket)
        return offsets

    def sync(self) -> None:
        """Return once everything written so far is on disk."""
        with self._lock:
            ticket = self._written
        self._sync_to(ticket)

    def close(self) -> None:
        """Seal the segment (footer, fsync) and release the partition. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._pid is not None and self._forked_from is None
        _WRITERS.discard(self)
        if not started:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            try:
                self._seal_locked()
            finally:
                with self._sync_cond:  # nobody waits for a durable write that cannot come now
                    if self._sync_error is None and self._segment is None:
                        self._synced = self._written
                    self._sync_cond.notify_all()
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None
        log.debug("event log writer closed partition %s", self._partition)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogWriter({str(self.root)!r}, partition={self._partition!r})"

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, payloads: Iterable[bytes]) -> tuple[list[Offset], int]:
        data, sizes = frame(payloads)
        if not sizes:
            return [], 0
        if len(data) > MAX_BATCH_BYTES:
            raise ValueError(f"a batch is at most {MAX_BATCH_BYTES} bytes framed: split it")
        with self._lock:
            self._ensure_started()
            segment = self._segment
            now = time.monotonic()
            if segment is not None and segment.has_records:
                too_big = segment.position + len(data) > self.segment_max_bytes
                if too_big or now - segment.created >= self.segment_max_age_s:
                    self._seal_locked()
                    segment = None
            if segment is None:
                segment = self._open_segment_locked(now)
            try:
                written = os.write(segment.fd, data)
                if written != len(data):
                    raise OSError(f"short write: {written} of {len(data)} bytes")
            except OSError as exc:
                # The segment may now end in part of this batch: nothing more goes into it.
                self._torn = True
                self._write_error = exc
                raise EventLogError(f"cannot write to the event log: {exc}") from exc
            offsets = []
            position = segment.position
            for size in sizes:
                offsets.append(Offset(segment.seq, position))
                position += size
            segment.position = position
            self._written += 1
            ticket = self._written
        self._wake.set()
        return offsets, ticket

    def _ensure_started(self) -> None:
        """Called with self._lock held."""
        if self._closed:
            raise EventLogError("the event log writer is closed")
        if self._forked_from is not None:
            raise EventLogError(
                f"this event log writer was started in process {self._forked_from}; "
                "create a new writer in each process after fork"
            )
        if self._write_error is not None or self._sync_error is not None:
            error = self._sync_error or self._write_error
            raise EventLogError(f"the event log writer failed earlier: {error}") from error
        if self._pid is not None:
            return
        name, lock_fd = claim_partition(self.root)
        directory = self.root / name
        existing = list_segments(directory)
        self._pid, self._partition, self._dir, self._lock_fd = os.getpid(), name, directory, lock_fd
        self._next_seq = existing[-1] + 1 if existing else 0
        self._thread = threading.Thread(
            target=self._background, name=f"eventlog-sync-{name}", daemon=True
        )
        self._thread.start()
        log.debug("event log writer claimed partition %s (pid %d)", name, self._pid)

    def _open_segment_locked(self, now: float) -> _Segment:
        assert self._dir is not None
        seq = self._next_seq
        self._next_seq += 1  # a failed attempt leaves at most an empty file: never reuse it
        path = self._dir / segment_name(seq)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise EventLogError(f"cannot create segment {path}: {exc}") from exc
        try:
            if os.write(fd, HEADER) != len(HEADER):
                raise OSError("short write of the segment header")
            fsync_dir(self._dir)  # the new file's name must survive a power loss with its data
        except OSError as exc:
            os.close(fd)
            raise EventLogError(f"cannot create segment {path}: {exc}") from exc
        self._segment = _Segment(seq, fd, HEADER_SIZE, now)
        self._torn = False
        return self._segment

    def _seal_locked(self) -> None:
        """Footer, fsync and close the current segment (self._lock held)."""
        segment = self._segment
        if segment is None:
            return
        self._segment = None
        try:
            if not self._torn and os.write(segment.fd, FOOTER) != len(FOOTER):
                raise OSError("short write of the segment footer")
            os.fsync(segment.fd)
        except OSError as exc:
            with self._sync_cond:
                self._sync_error = self._sync_error or exc
                self._sync_cond.notify_all()
            raise EventLogError(f"cannot seal segment {segment.seq}: {exc}") from exc
        finally:
            os.close(segment.fd)
        with self._sync_cond:
            self._synced = max(self._synced, self._written)
            self._sync_cond.notify_all()

    # -- durability -------------------------------------------------------------------------------

    def _sync_to(self, ticket: int) -> None:
        """Return once write number `ticket` is on disk. One caller at a time runs an fsync
        that covers every write made before it started; the others wait for it."""
        while True:
            with self._sync_cond:
                while True:
                    if self._sync_error is not None:
                        raise EventLogError(
                            f"fsync of the event log failed: {self._sync_error}"
                        ) from self._sync_error
                    if self._synced >= ticket:
                        return
                    if not self._syncing:
                        self._syncing = True
                        break
                    self._sync_cond.wait()
            covered, error = 0, None
            try:
                with self._lock:
                    covered = self._written
                    fd = os.dup(self._segment.fd) if self._segment is not None else None
                if fd is not None:  # None: sealed, and sealing fsynced it
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            except OSError as exc:
                error = exc
            with self._sync_cond:
                self._syncing = False
                if error is None:
                    self._synced = max(self._synced, covered)
                else:
                    self._sync_error = self._sync_error or error
                self._sync_cond.notify_all()

    def _background(self) -> None:
        """Fsync what was written within sync_interval_s; seal a segment that got too old."""
        while not self._stop.is_set():
            timeout = None
            with self._lock:
                if self._segment is not None and self._segment.has_records:
                    age = time.monotonic() - self._segment.created
                    timeout = max(0.0, self.segment_max_age_s - age)
            self._wake.wait(timeout)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                with self._lock:
                    target = self._written
                with self._sync_cond:
                    dirty = self._synced < target
                if dirty:
                    # Half the interval lets the writes that follow join this fsync, and leaves
                    # the other half for the fsync itself.
                    if self._stop.wait(self.sync_interval_s / 2):
                        return
                    with self._lock:
                        target = self._written
                    self._sync_to(target)
                with self._lock:
                    segment = self._segment
                    if (
                        segment is not None
                        and segment.has_records
                        and time.monotonic() - segment.created >= self.segment_max_age_s
                        and not self._closed
                    ):
                        self._seal_locked()
            except EventLogError:
                log.exception("event log writer %s stops syncing", self._partition)
                return

    # -- fork -------------------------------------------------------------------------------------

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's locks, thread and file descriptors. Closing the
        child's copy of the lock descriptor does not unlock the parent's partition (flock locks
        belong to the open file, which the parent still has open)."""
        started = self._pid is not None and not self._closed
        fds = [self._lock_fd, self._segment.fd if self._segment is not None else None]
        partition, pid = self._partition, self._pid
        self._reset_state()
        if started:
            for fd in fds:
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._forked_from, self._partition = pid, partition
