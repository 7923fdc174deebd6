"""`rastro warehouse serve`: ClickHouse's HTTP interface over the embedded engine.

Unmodified ClickHouse clients (clickhouse-connect, dbt-clickhouse, curl, BI tools) connect to
it as to a ClickHouse server. One thread per client connection; the engine runs queries in
parallel and releases the GIL while it works. See docs/architecture.md for the protocol
subset and where it differs from a server.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

from rastro.warehouse.compression import (
    BlockDecoder,
    BodyDecoder,
    choose_response_encoding,
    compress_block,
    response_encoder,
)
from rastro.warehouse.engine import Connection, Engine, Outcome, Session, Sessions
from rastro.warehouse.errors import (
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    QUERY_IS_TOO_LARGE,
    READONLY,
    SYNTAX_ERROR,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNKNOWN_SETTING,
    WarehouseError,
)
from rastro.warehouse.sql import Incomplete, Kind, Statement, parse

log = logging.getLogger("rastro.warehouse")

KEEP_ALIVE_TIMEOUT = 10.0  # seconds an idle keep-alive connection stays open (as ClickHouse)
REQUEST_TIMEOUT = 300.0  # seconds a request may stall reading or writing the socket
MAX_QUERY_BYTES = 64 << 20  # statement text (INSERT data is streamed and not counted)
MAX_URI_BYTES = 1 << 20  # ClickHouse's http_max_uri_size: a query may be in the URL
SPOOL_BYTES = 16 << 20  # wait_end_of_query=1: a result is held in memory up to this, then on disk
READ_CHUNK = 1 << 20

# URL parameters the HTTP layer consumes; every other one is a setting of the query.
_TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "query_id",
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "stacktrace",
        "buffer_size",
        "wait_end_of_query",
        "role",
        "client_protocol_version",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "http_zlib_compression_level",
        "http_native_compression_disable_checksumming_on_decompress",
        "add_http_cors_header",
        "http_response_buffer_size",
        "http_wait_end_of_query",
    }
)
# What a GET may not run: ClickHouse treats GET requests as readonly (readonly=2).
_WRITE_KEYWORDS = frozenset(
    {
        "INSERT",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "RENAME",
        "OPTIMIZE",
        "SYSTEM",
        "KILL",
        "GRANT",
        "REVOKE",
        "ATTACH",
        "DETACH",
        "DELETE",
        "UPDATE",
        "EXCHANGE",
        "UNDROP",
        "BACKUP",
        "RESTORE",
    }
)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
}


@dataclass
class QueryRequest:
    """One query request, as read from the URL, the headers and the credentials."""

    user: str
    query_id: str
    query: str = ""
    database: str | None = None
    default_format: str = "TabSeparated"
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    session_timeout: float = 60.0
    session_check: bool = False
    close_session: bool = False
    compress_response: bool = False  # compress=1: ClickHouse block compression
    decompress_body: bool = False  # decompress=1
    http_compression: bool = False  # enable_http_compression=1 (with Accept-Encoding)
    wait_end_of_query: bool = False  # hold the result until it is complete, then answer


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true")


def content_type(fmt: str) -> str:
    if fmt in _CONTENT_TYPES:
        return _CONTENT_TYPES[fmt]
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return "text/csv; charset=UTF-8; header=present"
    if fmt.startswith(("Pretty", "Vertical", "Markdown", "XML")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


class WarehouseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rastro-warehouse"
    sys_version = ""
    disable_nagle_algorithm = True  # small responses must not wait for a delayed ACK
    wbufsize = 1 << 16  # headers and a small body leave in one segment (flushed per request)
    server: WarehouseServer
    idle = True

    # -- connection handling ---------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def handle_one_request(self) -> None:
        """BaseHTTPRequestHandler's loop step, with an idle timeout between requests and a
        flag so that shutdown can close idle keep-alive connections at once."""
        self.idle = True
        try:
            self.connection.settimeout(KEEP_ALIVE_TIMEOUT)
            self.raw_requestline = self.rfile.readline(MAX_URI_BYTES + 1)
        except OSError:
            self.close_connection = True
            return
        finally:
            self.idle = False
        if not self.raw_requestline or self.server.stopping:
            self.close_connection = True
            return
        self.connection.settimeout(REQUEST_TIMEOUT)
        if len(self.raw_requestline) > MAX_URI_BYTES:
            self.send_error(414)
            self.wfile.flush()
            return
        if not self.parse_request():
            return
        handler = {"GET": self.do_GET, "POST": self.do_POST}.get(self.command)
        if handler is None:
            self.send_error(501, f"Unsupported method {self.command!r}")
            return
        handler()
        self.wfile.flush()
        if self.server.stopping:
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: the interim response must leave now, not sit in the write
        buffer while the client waits for it before sending the body."""
        result = super().handle_expect_100()
        self.wfile.flush()
        return result

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # -- routing -----------------------------------------------------------------------------

    def _serve(self) -> None:
        path, _, query_string = self.path.partition("?")
        args = dict(parse_qsl(query_string, keep_blank_values=True))
        self._body_consumed = self.command == "GET"
        if path in ("/ping", "/replicas_status") or (
            path == "/" and self.command == "GET" and "query" not in args
        ):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if path != "/":
            self._reply(
                404,
                f"There is no handle {path}\n".encode(),
                {"Content-Type": "text/plain; charset=UTF-8"},
            )
            return
        query_id = args.get("query_id") or str(uuid.uuid4())
        try:
            request = self._read_request(args, query_id)
            if not self.server.slots.acquire(blocking=False):
                raise WarehouseError(
                    TOO_MANY_SIMULTANEOUS_QUERIES,
                    f"Too many simultaneous queries. Maximum: {self.server.max_queries}",
                )
            try:
                self._execute(request)
            finally:
                self.server.slots.release()
        except WarehouseError as exc:
            self._reply_error(exc, query_id)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    # -- reading the request -----------------------------------------------------------------

    def _read_request(self, args: dict[str, str], query_id: str) -> QueryRequest:
        user = self._authenticate(args)
        request = QueryRequest(user=user, query_id=query_id, query=args.get("query", ""))
        request.database = args.get("database") or self.headers.get("X-ClickHouse-Database")
        request.default_format = (
            args.get("default_format") or self.headers.get("X-ClickHouse-Format") or "TabSeparated"
        )
        request.session_id = args.get("session_id") or None
        if request.session_id:
            request.session_timeout = Sessions.parse_timeout(args.get("session_timeout"))
        request.session_check = _flag(args.get("session_check"))
        request.close_session = _flag(args.get("close_session"))
        request.compress_response = _flag(args.get("compress"))
        request.decompress_body = _flag(args.get("decompress"))
        request.http_compression = _flag(args.get("enable_http_compression"))
        request.wait_end_of_query = _flag(
            args.get("wait_end_of_query") or args.get("http_wait_end_of_query")
        )
        for name, value in args.items():
            if name.startswith("param_"):
                request.params[name[len("param_") :]] = value
            elif name not in _TRANSPORT_PARAMS:
                if not _SETTING_NAME.match(name):
                    raise WarehouseError(UNKNOWN_SETTING, f"Unknown setting '{name}'")
                request.settings[name] = value
        return request

    def _authenticate(self, args: dict[str, str]) -> str:
        user, password = "default", ""
        authorization = self.headers.get("Authorization", "")
        in_headers = "X-ClickHouse-User" in self.headers or "X-ClickHouse-Key" in self.headers
        in_params = "user" in args or "password" in args
        # As ClickHouse does, refuse credentials given two ways: which one would count is moot.
        methods = [
            method
            for method, used in (
                ("X-ClickHouse HTTP headers", in_headers),
                ("Authorization HTTP header", "Authorization" in self.headers),
                ("authentication via parameters", in_params),
            )
            if used
        ]
        if len(methods) > 1:
            raise WarehouseError(
                AUTHENTICATION_FAILED,
                f"Invalid authentication: it is not allowed to use {methods[0]} and "
                f"{methods[1]} simultaneously",
            )
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise WarehouseError(BAD_ARGUMENTS, "Invalid Basic authorization header") from None
            user, _, password = decoded.partition(":")
        elif in_headers:
            user = self.headers.get("X-ClickHouse-User") or "default"
            password = self.headers.get("X-ClickHouse-Key") or ""
        elif in_params:
            user, password = args.get("user") or "default", args.get("password", "")
        expected = self.server.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise WarehouseError(
                AUTHENTICATION_FAILED,
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name",
            )
        return user

    def _raw_body(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise WarehouseError(BAD_ARGUMENTS, "Malformed chunked request body") from None
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass  # trailers
                    break
                yield from self._read_exactly(size)
                self.rfile.readline(1024)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise WarehouseError(BAD_ARGUMENTS, "Malformed Content-Length") from None
            yield from self._read_exactly(length)
        self._body_consumed = True

    def _read_exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            data = self.rfile.read(min(size, READ_CHUNK))
            if not data:
                raise ConnectionError("client closed the connection inside the body")
            size -= len(data)
            yield data

    def _body(self, request: QueryRequest) -> Iterator[bytes]:
        """The request body, decoded as it arrives (Content-Encoding, then decompress=1)."""
        if self.command != "POST":
            return
        decoders: list[BodyDecoder | BlockDecoder] = []
        encoding = self.headers.get("Content-Encoding", "").strip()
        if encoding and encoding.lower() != "identity":
            decoders.append(BodyDecoder(encoding))
        if request.decompress_body:
            decoders.append(BlockDecoder())
        for data in self._raw_body():
            for decoder in decoders:
                data = decoder.feed(data)
            if data:
                yield data
        for decoder in decoders:
            decoder.finish()

    def _statement(self, request: QueryRequest, body: Iterator[bytes]) -> tuple[Statement, bytes]:
        """Reads the request until its statement is known. As ClickHouse does, the text is the
        `query` parameter, a newline, then the body; an INSERT's data starts after its FORMAT
        name (or VALUES) and is returned, with the rest of the body left unread."""
        buffer = bytearray((request.query + "\n").encode() if request.query else b"")
        statement = None
        for data in body:
            buffer += data
            try:
                statement = parse(buffer.decode("latin-1"), final=False)
                break
            except Incomplete:
                if len(buffer) > MAX_QUERY_BYTES:
                    raise WarehouseError(
                        QUERY_IS_TOO_LARGE, f"Query is too large (> {MAX_QUERY_BYTES} bytes)"
                    ) from None
        if statement is None:
            statement = parse(buffer.decode("latin-1"), final=True)
        # Scanned as latin-1 so offsets are byte offsets; the statement itself is UTF-8.
        try:
            sql = statement.sql.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            raise WarehouseError(SYNTAX_ERROR, "Syntax error: query is not valid UTF-8") from None
        data = b"" if statement.data_start is None else bytes(buffer[statement.data_start :])
        return replace(statement, sql=sql), data

    # -- running it --------------------------------------------------------------------------

    def _execute(self, request: QueryRequest) -> None:
        body = self._body(request)
        statement, inline_data = self._statement(request, body)
        if self.command == "GET" and statement.keyword in _WRITE_KEYWORDS:
            raise WarehouseError(
                READONLY,
                "Cannot execute query in readonly mode. For queries over HTTP, method POST or "
                "payload with the query is required",
            )
        settings = request.settings
        session: Session | None = None
        if request.session_id:
            # A connection in readonly mode cannot leave it, and a session's connection must
            # outlive this request: its `readonly` URL setting is enforced here instead.
            readonly = settings.get("readonly", "0").strip()
            if readonly not in ("", "0") and (
                statement.keyword in _WRITE_KEYWORDS
                or (readonly == "1" and statement.keyword == "SET")
            ):
                raise WarehouseError(READONLY, "Cannot execute query in readonly mode")
            settings = {name: value for name, value in settings.items() if name != "readonly"}
            session = self.server.sessions.acquire(
                request.user, request.session_id, request.session_timeout, request.session_check
            )
            connection = session.connection
        else:
            connection = Connection(self.server.engine.connect(), session=False)
        try:
            connection.prepare(request.database, settings, statement.keyword)
            self._run(request, statement, connection, chain([inline_data], body))
        finally:
            if session is not None:
                self.server.sessions.release(session, close=request.close_session)
            else:
                connection.raw.close()

    def _run(
        self,
        request: QueryRequest,
        statement: Statement,
        connection: Connection,
        data: Iterable[bytes],
    ) -> None:
        outcome = Outcome()
        fmt = statement.format or request.default_format
        headers = self._common_headers(request.query_id)
        if statement.kind is Kind.INSERT:
            connection.insert(statement, data, outcome)
            headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary())
            self._reply(200, b"", headers)
            return
        if statement.kind is Kind.COMMAND:
            result = connection.command(statement, fmt, request.params, outcome)
            headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary())
            headers["Content-Type"] = "text/plain; charset=UTF-8"
            self._reply(200, self._encode_whole(request, result, headers), headers)
            return
        chunks = connection.rows(statement, fmt, request.params, outcome)
        first = next(chunks, b"")  # errors before the first row still get a proper status
        if request.wait_end_of_query:  # and so do all errors: the status waits for the end
            chunks = _spooled(chain([first], chunks))
            first = b""
        headers["X-ClickHouse-Format"] = fmt
        headers["Content-Type"] = content_type(fmt)
        headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary())
        self._stream(request, headers, chain([first], chunks))

    # -- writing the response ------------------------------------------------------------------

    def _common_headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Server-Display-Name": "rastro-embedded",
        }

    def _encoders(self, request: QueryRequest, headers: dict[str, str]) -> list[Any]:
        encoders: list[Any] = []
        if request.compress_response:
            encoders.append(_BlockEncoder())
        if request.http_compression:
            encoding = choose_response_encoding(self.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
                encoders.append(response_encoder(encoding))
        return encoders

    def _encode_whole(self, request: QueryRequest, data: bytes, headers: dict[str, str]) -> bytes:
        for encoder in self._encoders(request, headers):
            data = encoder.compress(data) + encoder.flush()
        return data

    def _stream(
        self, request: QueryRequest, headers: dict[str, str], chunks: Iterator[bytes]
    ) -> None:
        encoders = self._encoders(request, headers)
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self._keep_alive_header()
        self.end_headers()
        try:
            for data in chunks:
                for encoder in encoders:
                    data = encoder.compress(data)
                self._write_chunk(data)
            tail = b""
            for encoder in encoders:
                tail = encoder.compress(tail) + encoder.flush()
            self._write_chunk(tail)
            self.wfile.write(b"0\r\n\r\n")
        except WarehouseError as exc:
            # The status is sent already: as ClickHouse does, append the exception and break
            # the chunked stream so that no client mistakes the partial result for a whole one.
            # The exception goes through the response's compression, as the rows did, so that
            # a client decoding the body reads it.
            log.warning("query %s failed while streaming: %s", request.query_id, exc)
            data = b"\n" + exc.body().encode()
            for encoder in encoders:
                data = encoder.compress(data) + encoder.flush()
            self._write_chunk(data)
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _keep_alive_header(self) -> None:
        if not self._body_consumed or self.server.stopping:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        else:
            self.send_header("Keep-Alive", f"timeout={KEEP_ALIVE_TIMEOUT:.0f}")

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self._keep_alive_header()
        self.end_headers()
        self.wfile.write(body)

    def _reply_error(self, exc: WarehouseError, query_id: str) -> None:
        log.info("query %s failed: %s", query_id, exc)
        headers = self._common_headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        body = exc.body().rstrip("\n") + f" (version {self.server.engine.version})\n"
        self._reply(exc.http_status, body.encode(), headers)


def _spooled(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Reads `chunks` to the end (in memory, then on disk) before yielding the first one."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (_drain closes)
    try:
        for data in chunks:
            spool.write(data)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return _drain(spool)


def _drain(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        while data := spool.read(READ_CHUNK):
            yield data


class _BlockEncoder:
    def compress(self, data: bytes) -> bytes:
        return compress_block(data) if data else b""

    def flush(self) -> bytes:
        return b""


class WarehouseServer(ThreadingHTTPServer):
    daemon_threads = True  # stop() waits for requests in flight itself
    allow_reuse_address = True

    def __init__(
        self,
        engine: Engine,
        users: dict[str, str],
        host: str = "127.0.0.1",
        port: int = 8123,
        max_queries: int = 100,
    ) -> None:
        self.engine = engine
        self.users = users
        self.sessions = Sessions(engine)
        self.max_queries = max_queries
        self.slots = threading.BoundedSemaphore(max_queries)
        self.stopping = False
        self._handlers: set[WarehouseHandler] = set()
        self._handlers_lock = threading.Lock()
        super().__init__((host, port), WarehouseHandler)

    def track(self, handler: WarehouseHandler, alive: bool) -> None:
        with self._handlers_lock:
            (self._handlers.add if alive else self._handlers.discard)(handler)

    def stop(self, grace: float = 30.0) -> None:
        """Stops accepting, lets requests in flight finish (up to `grace` seconds), closes idle
        keep-alive connections, then the sessions. Call from a thread other than serve_forever's."""
        self.stopping = True
        self.shutdown()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._handlers_lock:
                handlers = list(self._handlers)
            if not handlers:
                break
            for handler in handlers:
                if handler.idle:
                    with contextlib.suppress(OSError):
                        handler.connection.shutdown(socket.SHUT_RDWR)
            time.sleep(0.05)
        self.server_close()
        self.sessions.close_all()


def serve(
    data_dir: Path,
    users: dict[str, str],
    host: str,
    port: int,
) -> None:
    """Runs the endpoint until SIGTERM or SIGINT, then stops it cleanly."""
    engine = Engine(data_dir)
    try:
        server = WarehouseServer(engine, users, host, port)
    except OSError:  # the port is taken: release the data directory before reporting it
        engine.close()
        raise
    stopper = threading.Thread(target=server.stop, name="warehouse-stop")

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopper.is_alive() and not server.stopping:
            log.info("received %s: stopping", signal.Signals(signum).name)
            stopper.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host_, port_ = server.server_address[:2]
    log.info(
        "warehouse listening on http://%s:%s (ClickHouse %s, data in %s)",
        host_,
        port_,
        engine.version,
        data_dir,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        if stopper.is_alive():
            stopper.join()
        else:
            server.stop()
        engine.close()
        log.info("warehouse stopped")
