"""Conformance: ClickHouse's HTTP interface, spoken with raw requests (no client library).

Each test holds for a ClickHouse server as well (CLICKHOUSE_TEST_URL)."""

from __future__ import annotations

import gzip
import json
import socket
import uuid
import zlib
from collections.abc import Iterator

import lz4.frame
import pytest
import zstandard

from tests.warehouse.conformance import (
    LZ4_METHOD,
    REAL_SERVER,
    ZSTD_METHOD,
    Target,
    compress_blocks,
    decompress_blocks,
    query,
    request,
)

NUMBERS = "SELECT number, toString(number * 7) FROM numbers(20000)"
NUMBERS_TSV = "".join(f"{n}\t{n * 7}\n" for n in range(20000)).encode()


@pytest.fixture
def table(target: Target, database: str) -> str:
    name = f"{database}.t"
    response = query(target, f"CREATE TABLE {name} (id UInt32, s String) ENGINE = Memory")
    assert response.status == 200, response.text
    return name


def count(target: Target, table: str) -> int:
    response = query(target, f"SELECT count() FROM {table}")
    assert response.status == 200, response.text
    return int(response.body)


# -- endpoints and where the query comes from -----------------------------------------------------


def test_ping(target: Target) -> None:
    response = request(target, method="GET", path="/ping", auth=False)
    assert (response.status, response.body) == (200, b"Ok.\n")


def test_get_root_without_query_is_ok(target: Target) -> None:
    response = request(target, method="GET", auth=False)
    assert (response.status, response.body) == (200, b"Ok.\n")


def test_get_with_query_in_url(target: Target) -> None:
    response = request(target, {"query": "SELECT 1 + 1"}, method="GET")
    assert (response.status, response.body) == (200, b"2\n")


def test_post_with_query_in_body(target: Target) -> None:
    response = request(target, body="SELECT 'a', 2")
    assert (response.status, response.body) == (200, b"a\t2\n")


def test_post_with_query_in_url_and_empty_body(target: Target) -> None:
    response = request(target, {"query": "SELECT 3"}, b"")
    assert (response.status, response.body) == (200, b"3\n")


def test_query_in_url_and_body_are_joined_by_a_newline(target: Target) -> None:
    # The newline ends the URL part's comment: without it, `, 'b'` would be commented out.
    response = request(target, {"query": "SELECT 'a' -- a comment"}, ", 'b'")
    assert (response.status, response.body) == (200, b"a\tb\n")
    response = request(target, {"query": "SELECT 40 +"}, "2")
    assert (response.status, response.body) == (200, b"42\n")


def test_unknown_path_is_404(target: Target) -> None:
    response = request(target, {"query": "SELECT 1"}, method="GET", path="/no/such/handler")
    assert response.status == 404


# -- formats --------------------------------------------------------------------------------------


def test_default_format_is_tab_separated(target: Target) -> None:
    response = query(target, "SELECT 1 AS x, 'y' AS y")
    assert response.body == b"1\ty\n"
    assert response.header("X-ClickHouse-Format") == "TabSeparated"


def test_default_format_parameter(target: Target) -> None:
    response = query(target, "SELECT 1 AS x, 'y' AS y", default_format="JSONEachRow")
    assert response.status == 200, response.text
    assert json.loads(response.body) == {"x": 1, "y": "y"}
    assert response.header("X-ClickHouse-Format") == "JSONEachRow"


def test_format_request_header(target: Target) -> None:
    response = request(
        target, body="SELECT 1 AS x", headers={"X-ClickHouse-Format": "CSVWithNames"}
    )
    assert response.status == 200, response.text
    assert response.body == b'"x"\n1\n'
    assert response.header("X-ClickHouse-Format") == "CSVWithNames"


def test_format_clause_wins_over_default_format(target: Target) -> None:
    response = query(target, "SELECT 1 AS x FORMAT CSVWithNames", default_format="JSONEachRow")
    assert response.status == 200, response.text
    assert response.body == b'"x"\n1\n'
    assert response.header("X-ClickHouse-Format") == "CSVWithNames"


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("JSON", "application/json"),
        ("CSV", "text/csv"),
        ("TabSeparated", "text/tab-separated-values"),
        ("Native", "application/octet-stream"),
    ],
)
def test_content_type_follows_the_format(target: Target, fmt: str, content_type: str) -> None:
    response = query(target, f"SELECT 1 FORMAT {fmt}")
    assert response.status == 200, response.text
    assert (response.header("Content-Type") or "").startswith(content_type)


# -- parameters, database, query id, response headers ---------------------------------------------


def test_server_side_parameters(target: Target) -> None:
    response = request(
        target,
        {
            "param_x": "41",
            # Values are in the escaped (TabSeparated) form: `\\t` is a tab.
            "param_s": "héllo 'wörld'\\t\\\\",
            "param_a": "[1,2,3]",
        },
        "SELECT {x:UInt32} + 1, {s:String} = 'héllo \\'wörld\\'\\t\\\\', "
        "arraySum({a:Array(UInt8)})",
    )
    assert (response.status, response.body) == (200, b"42\t1\t6\n"), response.text


def test_missing_parameter_is_an_error(target: Target) -> None:
    response = query(target, "SELECT {x:UInt32}")
    assert response.status >= 400
    assert response.exception_code == 456  # UNKNOWN_QUERY_PARAMETER


def test_database_parameter_and_header(target: Target, database: str) -> None:
    response = query(target, "SELECT currentDatabase()", database=database)
    assert response.body.decode().strip() == database
    response = request(
        target, body="SELECT currentDatabase()", headers={"X-ClickHouse-Database": database}
    )
    assert response.body.decode().strip() == database


def test_query_id_is_echoed(target: Target) -> None:
    query_id = f"conformance-{uuid.uuid4()}"
    response = query(target, "SELECT 1", query_id=query_id)
    assert response.header("X-ClickHouse-Query-Id") == query_id


def test_query_id_is_generated_when_absent(target: Target) -> None:
    first = query(target, "SELECT 1").header("X-ClickHouse-Query-Id")
    second = query(target, "SELECT 1").header("X-ClickHouse-Query-Id")
    assert first and second and first != second
    uuid.UUID(first)


def test_summary_reports_written_rows(target: Target, table: str) -> None:
    response = request(target, {"query": f"INSERT INTO {table} FORMAT CSV"}, "1,a\n2,b\n3,c\n")
    assert response.status == 200, response.text
    summary = json.loads(response.header("X-ClickHouse-Summary") or "")
    assert int(summary["written_rows"]) == 3


def test_format_header_only_for_statements_returning_rows(target: Target, table: str) -> None:
    selected = query(target, f"SELECT * FROM {table}")
    assert selected.header("X-ClickHouse-Format") == "TabSeparated"
    described = query(target, f"DESCRIBE TABLE {table}")
    assert described.header("X-ClickHouse-Format") == "TabSeparated"
    inserted = request(target, {"query": f"INSERT INTO {table} FORMAT TSV"}, "1\ta\n")
    created = query(target, f"CREATE TABLE {table}_2 (x UInt8) ENGINE = Memory")
    for response in (inserted, created):
        assert response.status == 200, response.text
        assert response.header("X-ClickHouse-Format") is None
        assert response.body == b""


def test_timezone_header(target: Target) -> None:
    response = query(target, "SELECT timezone()")
    assert response.header("X-ClickHouse-Timezone") == response.body.decode().strip()


# -- the statement's text -------------------------------------------------------------------------

COMMENTS = [
    "-- a line comment\n",
    "/* a block comment */ ",
    "/* nested /* block */ comments */\n",
    "#! a shebang line\n",
    "# a hash comment\n",
    "-- one\n/* two */\n-- three\n",
]


@pytest.mark.parametrize("comment", COMMENTS)
def test_leading_comments_before_select(target: Target, comment: str) -> None:
    response = query(target, comment + "SELECT 'ok'")
    assert (response.status, response.body) == (200, b"ok\n"), response.text
    response = request(target, {"query": comment + "SELECT 'ok'"}, method="GET")
    assert (response.status, response.body) == (200, b"ok\n"), response.text


@pytest.mark.parametrize("comment", COMMENTS)
def test_leading_comments_before_insert(target: Target, table: str, comment: str) -> None:
    response = query(target, comment + f"INSERT INTO {table} FORMAT CSV\n1,a\n2,b\n")
    assert response.status == 200, response.text
    response = request(target, {"query": comment + f"INSERT INTO {table} VALUES"}, "(3, 'c')")
    assert response.status == 200, response.text
    assert count(target, table) == 3


def test_trailing_semicolon_is_allowed(target: Target) -> None:
    for sql in ("SELECT 1;", "SELECT 1 ;\n", "SELECT 1; -- done\n", "SELECT 1; /* done */"):
        response = query(target, sql)
        assert (response.status, response.body) == (200, b"1\n"), (sql, response.text)


def test_semicolon_inside_literals_is_not_a_separator(target: Target) -> None:
    response = query(target, "SELECT ';', `a;b`, \"c;\" FROM (SELECT 1 AS `a;b`, 2 AS `c;`) -- ;")
    assert (response.status, response.body) == (200, b";\t1\t2\n"), response.text


@pytest.mark.parametrize(
    "sql", ["SELECT 1; SELECT 2", "SELECT 1;SELECT 2;", "SELECT ';'; DROP TABLE x"]
)
def test_multi_statements_are_refused(target: Target, sql: str) -> None:
    response = query(target, sql)
    assert response.status == 400
    assert response.exception_code == 62
    assert response.text.startswith("Code: 62. DB::Exception:")
    response = request(target, {"query": sql}, method="GET")
    assert response.exception_code == 62


# -- settings -------------------------------------------------------------------------------------


def test_unknown_url_parameter_is_a_setting(target: Target) -> None:
    response = query(target, "SELECT getSetting('max_block_size')", max_block_size="1234")
    assert (response.status, response.body) == (200, b"1234\n"), response.text


def test_url_setting_takes_effect(target: Target) -> None:
    response = query(
        target,
        "SELECT number FROM numbers(10)",
        max_result_rows="1",
        result_overflow_mode="throw",
    )
    assert response.status >= 400
    assert response.exception_code == 396  # TOO_MANY_ROWS_OR_BYTES


def test_unknown_setting_is_an_error(target: Target) -> None:
    response = query(target, "SELECT 1", no_such_setting_for_sure="1")
    assert response.status == 404
    assert response.exception_code == 115  # UNKNOWN_SETTING
    assert response.text.startswith("Code: 115. DB::Exception:")


def test_invalid_setting_value_is_an_error(target: Target) -> None:
    response = query(target, "SELECT 1", max_threads="many")
    assert response.status >= 400
    assert response.exception_code is not None
    assert response.text.startswith(f"Code: {response.exception_code}. DB::Exception:")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE {db}.created_by_get (x UInt8) ENGINE = Memory",
        "INSERT INTO {db}.t VALUES (1, 'a')",
        "DROP TABLE {db}.t",
    ],
)
def test_get_is_read_only(target: Target, table: str, database: str, sql: str) -> None:
    response = request(target, {"query": sql.format(db=database)}, method="GET")
    assert response.status >= 400
    assert response.exception_code == 164  # READONLY
    tables = query(target, f"SELECT name FROM system.tables WHERE database = '{database}'")
    assert tables.body == b"t\n"
    assert count(target, table) == 0


# -- connection handling --------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(target: Target, table: str) -> None:
    conn = target.connection()
    try:
        conn.connect()
        sock = conn.sock
        steps = [
            request(target, method="GET", path="/ping", connection=conn),
            request(target, {"query": "SELECT 1"}, method="GET", connection=conn),
            request(target, body="SELECT * FROM no_such_table_anywhere", connection=conn),
            request(
                target, {"query": f"INSERT INTO {table} FORMAT TSV"}, "1\ta\n", connection=conn
            ),
            request(target, body=NUMBERS, connection=conn),
            request(target, body=f"SELECT count() FROM {table}", connection=conn),
        ]
        assert [r.status for r in steps] == [200, 200, 404, 200, 200, 200]
        assert steps[4].body == NUMBERS_TSV
        assert steps[5].body == b"1\n"
        assert conn.sock is sock, "the server closed the kept-alive connection"
    finally:
        conn.close()


def test_chunked_request_body(target: Target, table: str) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"SELECT "
        yield b"1 +"
        yield b" 2"

    response = request(target, body=pieces(), encode_chunked=True)
    assert (response.status, response.body) == (200, b"3\n"), response.text

    def rows() -> Iterator[bytes]:
        yield f"INSERT INTO {table} FORMAT TSV\n".encode()
        for n in range(1000):
            yield f"{n}\tx{n}\n".encode()

    response = request(target, body=rows(), encode_chunked=True)
    assert response.status == 200, response.text
    assert count(target, table) == 1000


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data


def test_expect_100_continue(target: Target, table: str) -> None:
    body = b"".join(f"{n}\tv{n}\n".encode() for n in range(100))
    auth = target.basic_auth()["Authorization"]
    head = (
        f"POST /?query=INSERT+INTO+{table}+FORMAT+TSV HTTP/1.1\r\n"
        f"Host: {target.host}\r\nAuthorization: {auth}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((target.host, target.port), timeout=10) as sock:
        sock.sendall(head)
        interim = _read_head(sock)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        final = interim.split(b"\r\n\r\n", 1)[1] + _read_head(sock)
        assert final.startswith(b"HTTP/1.1 200"), final
    assert count(target, table) == 100


# -- response compression -------------------------------------------------------------------------


def _decode(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        out = bytearray()
        while data:  # possibly several frames
            decompressor = zstandard.ZstdDecompressor().decompressobj()
            out += decompressor.decompress(data)
            data = decompressor.unused_data
        return bytes(out)
    if encoding == "lz4":
        out = bytearray()
        while data:
            lz4_decompressor = lz4.frame.LZ4FrameDecompressor()
            out += lz4_decompressor.decompress(data)
            data = lz4_decompressor.unused_data
        return bytes(out)
    if encoding == "br":
        brotli = pytest.importorskip("brotli")
        return bytes(brotli.decompress(data))
    raise AssertionError(f"unexpected Content-Encoding {encoding}")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "lz4"])
def test_response_http_compression(target: Target, encoding: str) -> None:
    response = request(
        target,
        {"enable_http_compression": "1"},
        NUMBERS,
        headers={"Accept-Encoding": encoding},
    )
    assert response.status == 200, response.text
    assert response.header("Content-Encoding") == encoding
    assert len(response.body) < len(NUMBERS_TSV)
    assert _decode(encoding, response.body) == NUMBERS_TSV


def test_response_http_compression_of_a_small_result(target: Target) -> None:
    response = request(
        target,
        {"enable_http_compression": "1", "query": "SELECT 1"},
        method="GET",
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.header("Content-Encoding") == "gzip"
    assert gzip.decompress(response.body) == b"1\n"


def test_response_compression_picks_an_offered_encoding(target: Target) -> None:
    response = request(
        target,
        {"enable_http_compression": "1"},
        NUMBERS,
        headers={"Accept-Encoding": "br, gzip"},
    )
    assert response.status == 200, response.text
    encoding = response.header("Content-Encoding")
    assert encoding in ("br", "gzip")
    assert _decode(encoding, response.body) == NUMBERS_TSV


def test_response_compression_falls_back_to_identity(target: Target) -> None:
    if REAL_SERVER:
        pytest.skip("ClickHouse answers in br, which the embedded endpoint does not produce")
    response = request(
        target,
        {"enable_http_compression": "1"},
        NUMBERS,
        headers={"Accept-Encoding": "br"},
    )
    assert response.status == 200, response.text
    assert response.header("Content-Encoding") is None
    assert response.body == NUMBERS_TSV


def test_no_response_compression_without_the_setting(target: Target) -> None:
    response = request(target, body=NUMBERS, headers={"Accept-Encoding": "gzip, deflate, zstd"})
    assert response.status == 200, response.text
    assert response.header("Content-Encoding") is None
    assert response.body == NUMBERS_TSV


def test_compress_1_answers_in_clickhouse_blocks(target: Target) -> None:
    response = query(target, NUMBERS, compress="1")
    assert response.status == 200, response.text
    data, blocks = decompress_blocks(response.body)
    assert data == NUMBERS_TSV
    assert blocks >= 1


def test_compress_1_inside_http_compression(target: Target) -> None:
    response = request(
        target,
        {"compress": "1", "enable_http_compression": "1"},
        NUMBERS,
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.status == 200, response.text
    assert response.header("Content-Encoding") == "gzip"
    data, _ = decompress_blocks(gzip.decompress(response.body))
    assert data == NUMBERS_TSV


@pytest.mark.parametrize("method", [LZ4_METHOD, ZSTD_METHOD])
def test_decompress_1_reads_clickhouse_blocks(target: Target, table: str, method: int) -> None:
    data = "".join(f"{n}\tname {n}\n" for n in range(5000)).encode()
    body = compress_blocks(data, method, block_size=10_000)
    response = request(
        target, {"query": f"INSERT INTO {table} FORMAT TSV", "decompress": "1"}, body
    )
    assert response.status == 200, response.text
    result = query(target, f"SELECT count(), sum(id), max(s) FROM {table}")
    assert result.body == b"5000\t12497500\tname 999\n"


def test_decompress_1_refuses_a_corrupted_block(target: Target, table: str) -> None:
    body = bytearray(compress_blocks(b"1\ta\n2\tb\n"))
    body[-1] ^= 0xFF
    response = request(
        target, {"query": f"INSERT INTO {table} FORMAT TSV", "decompress": "1"}, bytes(body)
    )
    assert response.status >= 400
    assert response.exception_code == 40  # CHECKSUM_DOESNT_MATCH
    assert count(target, table) == 0


# -- more of the protocol -----------------------------------------------------------------------


def test_long_query_in_url(target: Target) -> None:
    # ClickHouse takes URIs up to http_max_uri_size (1 MiB by default).
    literal = "x" * 200_000
    response = request(target, {"query": f"SELECT length('{literal}')"}, method="GET")
    assert (response.status, response.body) == (200, b"200000\n"), response.text[:300]


@pytest.mark.parametrize("body", ["", "  \n", "-- only a comment\n", "/* nothing */"])
def test_empty_query(target: Target, body: str) -> None:
    response = request(target, body=body)
    assert response.status == 400
    assert response.exception_code == 62


def test_insert_data_inline_in_the_url(target: Target, table: str) -> None:
    response = request(target, {"query": f"INSERT INTO {table} FORMAT CSV\n1,a\n2,b"}, b"")
    assert response.status == 200, response.text
    assert count(target, table) == 2


def test_url_settings_apply_to_insert_data(target: Target, table: str) -> None:
    response = request(
        target,
        {"query": f"INSERT INTO {table} FORMAT CSV", "format_csv_delimiter": ";"},
        "1;a\n2;b\n",
    )
    assert response.status == 200, response.text
    assert query(target, f"SELECT * FROM {table} ORDER BY id").body == b"1\ta\n2\tb\n"


def test_readonly_url_setting(target: Target, table: str) -> None:
    response = request(target, {"readonly": "1"}, f"INSERT INTO {table} VALUES (1, 'a')")
    assert response.exception_code == 164
    response = request(target, {"readonly": "1"}, f"SELECT count() FROM {table}")
    assert (response.status, response.body) == (200, b"0\n")
    response = request(target, {"readonly": "2"}, f"DROP TABLE {table}")
    assert response.exception_code == 164
    assert count(target, table) == 0


@pytest.mark.parametrize("readonly", ["1", "2"])
def test_readonly_url_setting_lasts_one_request_of_a_session(
    target: Target, table: str, readonly: str
) -> None:
    session = {"session_id": f"conformance-{uuid.uuid4()}"}
    response = request(target, {**session, "readonly": readonly}, "SELECT 1")
    assert (response.status, response.body) == (200, b"1\n"), response.text
    response = request(
        target, {**session, "readonly": readonly}, f"INSERT INTO {table} VALUES (1, 'a')"
    )
    assert response.exception_code == 164
    response = request(target, session, "CREATE TEMPORARY TABLE after_readonly (x UInt8)")
    assert response.status == 200, response.text
    response = request(target, session, f"INSERT INTO {table} VALUES (1, 'a')")
    assert response.status == 200, response.text
    assert count(target, table) == 1


def test_wait_end_of_query_reports_a_late_error_in_the_status(target: Target) -> None:
    response = request(
        target,
        {"wait_end_of_query": "1", "max_block_size": "10000"},
        "SELECT throwIf(number = 500000) FROM numbers(1000000) FORMAT TSV",
    )
    assert response.status == 500
    assert response.exception_code == 395
    assert response.text.startswith("Code: 395. DB::Exception:")


def test_wait_end_of_query_result(target: Target) -> None:
    response = request(target, {"wait_end_of_query": "1"}, NUMBERS)
    assert (response.status, response.body) == (200, NUMBERS_TSV)
