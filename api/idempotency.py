"""The idempotency index of conversions and order updates: a small SQLite database in
`$RASTRO_DATA_DIR/idempotency.sqlite3`, shared by every API worker process of one machine.

It answers "have we seen this order, this order at this version, this Idempotency-Key, this
refund id?" and keeps what refund checks need (an order's amount, currency, and what has been
taken back). It is the *answer* layer: what makes the API say 200-and-the-original-id instead
of writing again. The *effect* layer is the event ids: an order's record carries ids derived
from the tenant, the order id, its version and its content (see `api.routes.conversions`), so
a record written twice (a crash, a lost index, two hosts in server mode) is the same event
twice, and the warehouse keeps one (`ReplacingMergeTree` on the event's sort key, and
`LIMIT 1 BY event_id` in dbt staging).

Crash ordering. One request is three steps:

1. claim: in one `BEGIN IMMEDIATE` transaction (which serializes writers across processes),
   read the entries the request touches, decide (replay, conflict, new order, new version),
   and write the new entries together with a `pending` row holding the exact record bytes;
2. `append_durable(record)`: the record is fsynced in the event log;
3. finish: delete the `pending` row.

A crash between 1 and 3 leaves a pending row. Whoever touches one of its entries next (the
client's retry, or any request for the same order) waits while it is fresh (its writer may be
in the middle of an fsync) and, once it is older than `LEASE_S`, takes it over: appends the
stored bytes again and finishes it. Each process also sweeps stale pending rows when it first
opens the index. If the crash came after step 2 the record is then in the log twice, byte for
byte the same (same event id, same times): the log is at least once and consumers deduplicate
by event id. If it came before step 2 the order is written now. Either way the retry can never
produce a second, different conversion. (Writing the log first and the index second would
also lose nothing, but a retry would then build a new record, with a new `received_at` and,
without `occurred_at`, a new `ts`: equal event ids, different rows.)

Durability: WAL with `synchronous=NORMAL`. A commit survives the death of the process (kill -9
included); an OS crash or power loss may forget the last moments' commits. The event log, not
this index, is the record of what was accepted, and what the index forgets is exactly what
deterministic ids cover: the same order sent again becomes the same event again.

Retention: Idempotency-Key entries live `KEY_TTL_S` (24 h, as Stripe's); order, version and
refund-id entries live `ORDER_TTL_S` after their last change (the oldest `occurred_at`
accepted is 400 days).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rastro.eventlog import EventLog

LEASE_S = 5.0  # a pending write younger than this is in progress; older, its writer died
KEY_TTL_S = 24 * 3600.0
ORDER_TTL_S = 430 * 86400.0  # 400 days of accepted occurred_at, and a month of late refunds
BUSY_TIMEOUT_MS = 10_000
PRUNE_EVERY = 1000  # writes between two prunes, per process
PRUNE_BATCH = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,             -- order | version | update | request
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- SHA-256 of the normalized request
    response TEXT NOT NULL,         -- JSON: what the request that wrote the entry was answered
    event_id TEXT NOT NULL,         -- the last record written for this entry
    conversion_id TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,   -- orders: 0 while only refunds of it are known
    currency TEXT NOT NULL DEFAULT '',
    amount_minor INTEGER NOT NULL DEFAULT 0,
    taken_back_minor INTEGER NOT NULL DEFAULT 0,  -- refunds, cancellations, chargebacks
    written_at REAL NOT NULL,
    UNIQUE (tenant_id, kind, key)
);
CREATE INDEX IF NOT EXISTS entries_by_age ON entries (kind, written_at);
CREATE TABLE IF NOT EXISTS pending (
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    record BLOB NOT NULL,           -- the exact bytes to append
    claimed_at REAL NOT NULL,       -- 0: released after a failed append, take over at once
    PRIMARY KEY (tenant_id, event_id)
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of `entries`: something a later request is compared with."""

    kind: str
    key: str
    fingerprint: str
    response: dict[str, Any]
    event_id: str
    conversion_id: str = ""
    version: int = 0
    currency: str = ""
    amount_minor: int = 0
    taken_back_minor: int = 0


@dataclass(frozen=True, slots=True)
class Pending:
    tenant_id: str
    event_id: str
    record: bytes
    claimed_at: float


class Busy(Exception):
    """An entry the request needs has a write in progress (or abandoned)."""

    def __init__(self, pending: Pending) -> None:
        super().__init__(pending.event_id)
        self.pending = pending


@dataclass(slots=True)
class Outcome:
    """What a request decided: the answer, the entries to save with it and, when something
    new was accepted, the record to append before answering."""

    response: dict[str, Any]
    status: int
    replayed: bool
    entries: list[Entry] = field(default_factory=list)
    record: bytes | None = None
    event_id: str = ""


class Transaction:
    """The reads and writes of one claim, inside `BEGIN IMMEDIATE`, for one tenant."""

    def __init__(self, conn: sqlite3.Connection, tenant_id: str, now: float, lease_s: float):
        self._conn = conn
        self.tenant_id = tenant_id
        self.now = now
        self._lease_s = lease_s

    def get(self, kind: str, key: str, *, ttl_s: float = ORDER_TTL_S) -> Entry | None:
        """The entry, or None (also when older than `ttl_s`). Raises `Busy` when the entry's
        last write is still pending."""
        row = self._conn.execute(
            "SELECT e.fingerprint, e.response, e.event_id, e.conversion_id, e.version, "
            "e.currency, e.amount_minor, e.taken_back_minor, e.written_at, p.record, "
            "p.claimed_at FROM entries AS e LEFT JOIN pending AS p "
            "ON p.tenant_id = e.tenant_id AND p.event_id = e.event_id "
            "WHERE e.tenant_id = ? AND e.kind = ? AND e.key = ?",
            (self.tenant_id, kind, key),
        ).fetchone()
        if row is None:
            return None
        if row[9] is not None:
            raise Busy(Pending(self.tenant_id, row[2], bytes(row[9]), float(row[10])))
        if row[8] < self.now - ttl_s:
            return None
        return Entry(
            kind=kind,
            key=key,
            fingerprint=row[0],
            response=json.loads(row[1]),
            event_id=row[2],
            conversion_id=row[3],
            version=row[4],
            currency=row[5],
            amount_minor=row[6],
            taken_back_minor=row[7],
        )

    def put(self, entry: Entry) -> None:
        self._conn.execute(
            "INSERT INTO entries (tenant_id, kind, key, fingerprint, response, event_id, "
            "conversion_id, version, currency, amount_minor, taken_back_minor, written_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, kind, key) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "response = excluded.response, event_id = excluded.event_id, "
            "conversion_id = excluded.conversion_id, version = excluded.version, "
            "currency = excluded.currency, amount_minor = excluded.amount_minor, "
            "taken_back_minor = excluded.taken_back_minor, written_at = excluded.written_at",
            (
                self.tenant_id,
                entry.kind,
                entry.key,
                entry.fingerprint,
                json.dumps(entry.response, separators=(",", ":")),
                entry.event_id,
                entry.conversion_id,
                entry.version,
                entry.currency,
                entry.amount_minor,
                entry.taken_back_minor,
                self.now,
            ),
        )

    def _put_pending(self, event_id: str, record: bytes) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO pending (tenant_id, event_id, record, claimed_at) "
            "VALUES (?, ?, ?, ?)",
            (self.tenant_id, event_id, record, self.now),
        )

    def _take_over(self, pending: Pending) -> bool:
        """Claim an abandoned pending write; False if someone else just did."""
        cursor = self._conn.execute(
            "UPDATE pending SET claimed_at = ? WHERE tenant_id = ? AND event_id = ? "
            "AND claimed_at = ?",
            (self.now, pending.tenant_id, pending.event_id, pending.claimed_at),
        )
        return cursor.rowcount == 1

    def is_stale(self, pending: Pending) -> bool:
        return pending.claimed_at < self.now - self._lease_s


Decide = Callable[[Transaction], Outcome]


class IdempotencyIndex:
    """One per process and data directory (`EdgeState.idempotency`). Thread-safe: one SQLite
    connection per thread, opened on first use in the process that uses it (uvicorn workers
    fork)."""

    def __init__(self, path: Path, *, lease_s: float = LEASE_S) -> None:
        self.path = path
        self.lease_s = lease_s
        self._local = threading.local()
        self._writes = 0
        self._writes_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        for attempt in range(50):  # another worker may be creating it at this very moment
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.05)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- the one entry point of the routes -------------------------------------------------

    def run(self, tenant_id: str, log: EventLog, decide: Decide) -> Outcome:
        """Decide in a claim transaction, append the record durably (if any), finish.

        `decide` may raise (an HTTPException for a conflict): nothing is saved then. It may
        run more than once: after waiting for, or taking over, a pending write it touched."""
        delay = 0.002
        while True:
            try:
                with self._immediate() as conn:
                    tx = Transaction(conn, tenant_id, time.time(), self.lease_s)
                    outcome = decide(tx)
                    for entry in outcome.entries:
                        tx.put(entry)
                    if outcome.record is not None:
                        tx._put_pending(outcome.event_id, outcome.record)
            except Busy as busy:
                if not self._complete_if_stale(busy.pending, log):
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                continue
            break
        if outcome.record is not None:
            try:
                log.append_durable(outcome.record)
            except BaseException:
                self._release(tenant_id, outcome.event_id)
                raise
            self._finish(tenant_id, outcome.event_id)
            self._count_write()
        return outcome

    def _complete_if_stale(self, pending: Pending, log: EventLog) -> bool:
        """Append an abandoned pending write again and finish it; False while it is fresh."""
        with self._immediate() as conn:
            tx = Transaction(conn, pending.tenant_id, time.time(), self.lease_s)
            if not tx.is_stale(pending):
                return False
            if not tx._take_over(pending):
                return True  # another request took it over: look again
        log.append_durable(pending.record)
        self._finish(pending.tenant_id, pending.event_id)
        return True

    def _finish(self, tenant_id: str, event_id: str) -> None:
        self._connection().execute(
            "DELETE FROM pending WHERE tenant_id = ? AND event_id = ?", (tenant_id, event_id)
        )

    def _release(self, tenant_id: str, event_id: str) -> None:
        """After a failed append: the record may or may not be in the log, so keep it pending,
        but let the next request take it over at once."""
        with contextlib.suppress(sqlite3.Error):  # else taken over when its lease runs out
            self._connection().execute(
                "UPDATE pending SET claimed_at = 0 WHERE tenant_id = ? AND event_id = ?",
                (tenant_id, event_id),
            )

    # -- maintenance -------------------------------------------------------------------------

    def recover(self, log: EventLog) -> int:
        """Append every stale pending write again (writers that died mid-request); returns
        how many. Run when a process opens the index."""
        cutoff = time.time() - self.lease_s
        rows = (
            self._connection()
            .execute(
                "SELECT tenant_id, event_id, record, claimed_at FROM pending WHERE claimed_at < ?",
                (cutoff,),
            )
            .fetchall()
        )
        done = 0
        for tenant_id, event_id, record, claimed_at in rows:
            if self._complete_if_stale(
                Pending(tenant_id, event_id, bytes(record), claimed_at), log
            ):
                done += 1
        return done

    def prune(self, now: float | None = None) -> int:
        """Delete expired entries (a batch at most); returns how many."""
        now = time.time() if now is None else now
        conn = self._connection()
        deleted = 0
        for kinds, ttl in (
            (("request",), KEY_TTL_S),
            (("order", "version", "update"), ORDER_TTL_S),
        ):
            marks = ",".join("?" * len(kinds))
            cursor = conn.execute(
                "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries "
                f"WHERE kind IN ({marks}) AND written_at < ? LIMIT ?)",
                (*kinds, now - ttl, PRUNE_BATCH),
            )
            deleted += cursor.rowcount
        return deleted

    def _count_write(self) -> None:
        with self._writes_lock:
            self._writes += 1
            due = self._writes % PRUNE_EVERY == 0
        if due:
            self.prune()

    def close(self) -> None:
        """Close this thread's connection (other threads' close when their threads end)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
