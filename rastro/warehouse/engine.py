"""The embedded ClickHouse engine (chDB) and the sessions of the clients using it.

chDB lets one process open a data directory. `Engine` is that process's handle: it opens the
directory once and keeps it open, and hands out connections to it. Each connection is a
ClickHouse session of its own (current database, settings, temporary tables), so:

- a request without `session_id` gets a fresh connection, dropped after the request, and never
  sees another request's state (a new connection costs ~0.15 ms);
- a `session_id` keeps one connection until the session expires; one request at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chdb

from rastro.warehouse.errors import (
    INVALID_SESSION_TIMEOUT,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    WarehouseError,
)
from rastro.warehouse.sql import Statement, quote_identifier, quote_literal

DEFAULT_SESSION_TIMEOUT = 60.0
_STREAMABLE = frozenset({"SELECT", "WITH", ""})  # "": a statement opening with "("
MAX_SESSION_TIMEOUT = 3600.0

# chDB streams a SELECT as chunks that are each a whole output of the format: header, rows and
# footer. Row formats without either concatenate as they are; the ...WithNames[AndTypes] formats
# repeat their header (this many lines, or length-prefixed strings per column for RowBinary) and
# ArrowStream its schema and end-of-stream marker, which are cut from every chunk but the first.
# Any other format (JSON, XML, Parquet, Arrow, Pretty, Values, ...) is one document: produced
# whole, not streamed.
_CONCATENABLE = frozenset(
    {
        "native",
        "rowbinary",
        "tabseparated",
        "tsv",
        "tabseparatedraw",
        "tsvraw",
        "raw",
        "csv",
        "jsoneachrow",
        "jsonlines",
        "ndjson",
        "jsonstringseachrow",
        "jsoncompacteachrow",
        "jsoncompactstringseachrow",
        "tskv",
        "lineasstring",
        "rawblob",
        "msgpack",
        "bsoneachrow",
    }
)
_TEXT_BASES = (
    "tabseparated",
    "tsv",
    "tabseparatedraw",
    "tsvraw",
    "raw",
    "csv",
    "jsoncompacteachrow",
    "jsoncompactstringseachrow",
)
_TEXT_HEADER_LINES = {
    **{f"{base}withnames": 1 for base in _TEXT_BASES},
    **{f"{base}withnamesandtypes": 2 for base in _TEXT_BASES},
}
_BINARY_HEADER_STRINGS = {"rowbinarywithnames": 1, "rowbinarywithnamesandtypes": 2}
_ARROW_END = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class _Framing:
    """Joins chDB's self-contained chunks of a SELECT's result into one output of its format."""

    def __init__(self, fmt: str) -> None:
        name = fmt.lower()
        self._lines = _TEXT_HEADER_LINES.get(name, 0)
        self._strings = _BINARY_HEADER_STRINGS.get(name, 0)
        self._arrow = name == "arrowstream"
        self._csv = name.startswith("csv")
        self._first = True
        self._schema = b""

    @staticmethod
    def streams(fmt: str) -> bool:
        name = fmt.lower()
        return (
            name in _CONCATENABLE
            or name in _TEXT_HEADER_LINES
            or name in _BINARY_HEADER_STRINGS
            or name == "arrowstream"
        )

    def cut(self, data: bytes) -> bytes:
        first, self._first = self._first, False
        if self._arrow:
            if data.endswith(_ARROW_END):
                data = data[: -len(_ARROW_END)]
            if first:  # the schema message: continuation marker, metadata size, metadata
                self._schema = data[: 8 + int.from_bytes(data[4:8], "little", signed=True)]
            elif data.startswith(self._schema):
                data = data[len(self._schema) :]
            else:
                raise WarehouseError(1002, "the result's Arrow schema changed between blocks")
            return data
        if first:
            return data
        if self._lines:
            return data[_text_header_length(data, self._lines, self._csv) :]
        if self._strings:
            return data[_binary_header_length(data, self._strings) :]
        return data

    def end(self) -> bytes:
        return _ARROW_END if self._arrow and not self._first else b""


def _text_header_length(data: bytes, lines: int, csv: bool) -> int:
    """Where the rows start after `lines` header lines (CSV names may hold quoted newlines)."""
    pos, quoted = 0, False
    while lines and pos < len(data):
        char = data[pos]
        if csv and char == 0x22:  # '"'; a doubled quote toggles twice
            quoted = not quoted
        elif char == 0x0A and not quoted:
            lines -= 1
        pos += 1
    return pos


def _binary_header_length(data: bytes, strings_per_column: int) -> int:
    """RowBinaryWithNames[AndTypes]: a varint column count, then length-prefixed strings."""

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
            if byte < 0x80:
                return value, pos

    columns, pos = varint(0)
    for _ in range(columns * strings_per_column):
        size, pos = varint(pos)
        pos += size
    return pos


class Engine:
    """Owns the chDB data directory for the life of the process."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        try:
            # Held open until close(): it keeps the engine and the directory's lock alive.
            self._anchor = chdb.connect(str(data_dir))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the warehouse at {data_dir}: {exc}. Only one process may own a "
                "chDB data directory; is `rastro warehouse serve` already running for it?"
            ) from exc
        version, timezone = (
            self._anchor.query("SELECT version(), timezone()", "TabSeparated")
            .bytes()
            .decode()
            .strip()
            .split("\t")
        )
        self.version: str = version
        self.timezone: str = timezone

    def connect(self) -> Any:
        return chdb.connect(str(self.data_dir))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._anchor.close()


@dataclass
class Outcome:
    """What a statement did, for the X-ClickHouse-Summary header."""

    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, str]:
        elapsed_ns = int((time.perf_counter() - self.started) * 1e9)
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows),
            "written_bytes": str(self.written_bytes),
            "total_rows_to_read": "0",
            "result_rows": str(self.result_rows),
            "result_bytes": str(self.result_bytes),
            "elapsed_ns": str(elapsed_ns),
        }


class Connection:
    """One engine connection, with each request's per-query context (URL settings and
    `database`) applied around its statement.

    On a session's connection that context must not outlive the request, yet clients send
    the same settings with every query (clickhouse-connect sends three). So the context is
    reverted lazily: the connection remembers the values it overrode (`_base`) and what it
    set them to (`_overlay`), and the next request changes only what differs. A statement
    that changes the session itself (SET, USE) first gets the session's own values back.
    """

    def __init__(self, raw: Any, session: bool) -> None:
        self.raw = raw
        self._session = session
        self._base: dict[str, str] = {}  # setting -> the session's own value
        self._overlay: dict[str, str] = {}  # setting -> the value the last request set
        self._base_database: str | None = None
        self._overlay_database: str | None = None

    def _run(self, sql: str) -> bytes:
        try:
            return bytes(self.raw.query(sql, "TabSeparated").bytes())
        except Exception as exc:
            raise WarehouseError.from_engine(exc) from None

    def prepare(self, database: str | None, settings: dict[str, str], keyword: str) -> None:
        """Makes the connection's context the one this request asks for."""
        if self._session and keyword in ("SET", "USE"):
            self._revert()
            return
        if self._session:
            self._remember_base(database, settings)
        target = dict(settings)
        for name in self._overlay:
            target.setdefault(name, self._base[name])
        changes = {n: v for n, v in target.items() if self._overlay.get(n) != v}
        wanted_database = database or self._base_database
        if wanted_database and wanted_database != (self._overlay_database or self._base_database):
            self._run(f"USE {quote_identifier(wanted_database)}")
        if changes:
            self._run("SET " + ", ".join(f"{n} = {quote_literal(v)}" for n, v in changes.items()))
        if self._session:
            self._overlay = {n: v for n, v in target.items() if n in settings}
            self._overlay_database = database
            for name in set(target) - set(settings):
                self._base.pop(name, None)  # back to the session's own value: nothing to track

    def _remember_base(self, database: str | None, settings: dict[str, str]) -> None:
        missing = [name for name in settings if name not in self._base]
        need_database = database is not None and self._base_database is None
        if not missing and not need_database:
            return
        probes = ["currentDatabase()"] + [
            f"toString(getSetting({quote_literal(name)}))" for name in missing
        ]
        values = [
            _unescape_tsv(v)
            for v in self._run("SELECT " + ", ".join(probes)).decode().rstrip("\n").split("\t")
        ]
        if self._base_database is None:
            self._base_database = values[0]
        self._base.update(zip(missing, values[1:], strict=True))

    def _revert(self) -> None:
        """Gives the session its own values back, and forgets them (a SET or USE follows)."""
        if self._overlay:
            self._run(
                "SET " + ", ".join(f"{n} = {quote_literal(self._base[n])}" for n in self._overlay)
            )
        if self._overlay_database and self._base_database:
            self._run(f"USE {quote_identifier(self._base_database)}")
        self._base, self._overlay = {}, {}
        self._base_database = self._overlay_database = None

    def rows(
        self, statement: Statement, fmt: str, params: dict[str, str], outcome: Outcome
    ) -> Iterator[bytes]:
        """Streams a SELECT's result in `fmt`, chunk by chunk, never holding it whole. Other
        statements that return rows (SHOW, DESCRIBE, EXPLAIN, ...) return small results, and
        chDB streams only SELECT: they come back in one piece, as do results in a format that
        is one document (JSON, Parquet, ...: see _Framing)."""
        if statement.keyword not in _STREAMABLE or not _Framing.streams(fmt):
            yield self.command(statement, fmt, params, outcome)
            return
        framing = _Framing(fmt)
        raw = self.raw._conn  # chdb's own StreamingResult drops header-only chunks (JSON, ...)
        try:
            handle = raw.send_query(statement.sql, fmt, params=params)
        except Exception as exc:
            raise WarehouseError.from_engine(exc) from None
        finished = False
        try:
            while True:
                try:
                    chunk = raw.streaming_fetch_result(handle)
                except Exception as exc:
                    raise WarehouseError.from_engine(exc) from None
                data = chunk.bytes() if chunk is not None else b""
                if not data:
                    finished = True
                    tail = framing.end()
                    outcome.result_bytes += len(tail)
                    if tail:
                        yield tail
                    return
                outcome.read_rows += chunk.rows_read()
                outcome.read_bytes += chunk.bytes_read()
                data = framing.cut(data)
                outcome.result_bytes += len(data)
                if data:
                    yield data
        finally:
            if not finished:
                raw.streaming_cancel_query(handle)

    def insert(self, statement: Statement, chunks: Iterable[bytes], outcome: Outcome) -> None:
        """Streams INSERT data into the engine; the rows are committed only if all of it parses."""
        assert statement.format is not None
        try:
            inserter = self.raw.send_insert(statement.sql, statement.format)
        except Exception as exc:
            raise WarehouseError.from_engine(exc) from None
        with inserter:
            try:
                for chunk in chunks:
                    if chunk:
                        inserter.append(chunk)
                result = inserter.finish()
            except WarehouseError:
                raise
            except Exception as exc:
                raise WarehouseError.from_engine(exc) from None
        outcome.written_rows += result.rows_written
        outcome.written_bytes += result.bytes_written

    def command(
        self, statement: Statement, fmt: str, params: dict[str, str], outcome: Outcome
    ) -> bytes:
        try:
            result = self.raw.query(statement.sql, fmt, params=params)
        except Exception as exc:
            raise WarehouseError.from_engine(exc) from None
        outcome.read_rows += result.rows_read()
        outcome.read_bytes += result.bytes_read()
        outcome.written_rows += result.rows_written()
        outcome.written_bytes += result.bytes_written()
        data = bytes(result.bytes())
        outcome.result_bytes += len(data)
        return data


def _unescape_tsv(value: str) -> str:
    out, i = [], 0
    escapes = {
        "t": "\t",
        "n": "\n",
        "r": "\r",
        "0": "\0",
        "\\": "\\",
        "'": "'",
        "b": "\b",
        "f": "\f",
    }
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(escapes.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


@dataclass
class Session:
    key: tuple[str, str]  # (user, session_id): sessions belong to the user who opened them
    connection: Connection
    timeout: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    expires_at: float = 0.0
    closed: bool = False


class Sessions:
    """Named sessions: created on first use, locked while a request uses one, closed when idle
    for longer than their timeout (checked every second)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions: dict[tuple[str, str], Session] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
        self._reaper.start()

    @staticmethod
    def parse_timeout(value: str | None) -> float:
        if value is None:
            return DEFAULT_SESSION_TIMEOUT
        try:
            timeout = float(value)
        except ValueError:
            timeout = -1
        if not 0 < timeout <= MAX_SESSION_TIMEOUT:
            raise WarehouseError(
                INVALID_SESSION_TIMEOUT,
                f"Invalid session timeout: '{value}', max is {MAX_SESSION_TIMEOUT:.0f}",
            )
        return timeout

    def acquire(self, user: str, session_id: str, timeout: float, check: bool) -> Session:
        key = (user, session_id)
        with self._guard:
            session = self._sessions.get(key)
            if session is None:
                if check:
                    raise WarehouseError(SESSION_NOT_FOUND, f"Session {session_id} not found")
                session = Session(key, Connection(self._engine.connect(), session=True), timeout)
                self._sessions[key] = session
            if not session.lock.acquire(blocking=False):
                raise WarehouseError(
                    SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client"
                )
            return session  # as in ClickHouse, the timeout stays the one it was opened with

    def release(self, session: Session, close: bool = False) -> None:
        with self._guard:
            session.expires_at = time.monotonic() + session.timeout
            if close:
                self._close(session)
            session.lock.release()

    def _close(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        if not session.closed:
            session.closed = True
            session.connection.raw.close()

    def _reap(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with self._guard:
                for session in list(self._sessions.values()):
                    if session.expires_at < now and session.lock.acquire(blocking=False):
                        self._close(session)
                        session.lock.release()

    def close_all(self) -> None:
        self._stop.set()
        with self._guard:
            for session in list(self._sessions.values()):
                self._close(session)
