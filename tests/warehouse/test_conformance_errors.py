"""Conformance: errors (status, exception code header, body) and authentication."""

from __future__ import annotations

import zlib
from typing import Any

import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError, Error

from tests.conftest import client_for
from tests.warehouse.conformance import (
    REAL_SERVER,
    Target,
    decompress_blocks,
    read_response,
    request,
)

THROW_MIDWAY = "SELECT throwIf(number = 500000) FROM numbers(1000000)"
# The same, slowed down so that the first rows are surely sent before the error.
THROW_LATE = "SELECT throwIf(number = 50000), sleepEachRow(0.000004) FROM numbers(1000000)"
THROWING = [THROW_MIDWAY, THROW_LATE]


def assert_exception(response: Any, status: int, code: int) -> None:
    assert response.status == status, response.text
    assert response.exception_code == code
    assert response.text.startswith(f"Code: {code}. DB::Exception:"), response.text
    assert response.header("X-ClickHouse-Query-Id")


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_table(target: Target) -> None:
    response = request(target, body="SELECT * FROM default.no_such_table_anywhere")
    assert_exception(response, 404, 60)


def test_unknown_database(target: Target) -> None:
    response = request(target, body="SELECT * FROM no_such_database_anywhere.t")
    assert_exception(response, 404, 81)


def test_unknown_function(target: Target) -> None:
    response = request(target, body="SELECT no_such_function_anywhere(1)")
    assert_exception(response, 404, 46)


def test_unknown_format(target: Target) -> None:
    response = request(target, body="SELECT 1 FORMAT NoSuchFormat")
    assert_exception(response, 404, 73)


def test_syntax_error(target: Target) -> None:
    response = request(target, body="SELEC 1")
    assert_exception(response, 400, 62)


def test_type_mismatch_is_a_bad_request(target: Target) -> None:
    response = request(target, body="SELECT toUInt8('not a number')")
    assert response.status == 400
    assert response.exception_code in (6, 72)  # CANNOT_PARSE_TEXT, CANNOT_PARSE_NUMBER


def test_error_with_a_query_id(target: Target) -> None:
    response = request(target, {"query_id": "conformance-error-id"}, "SELECT * FROM nope_nope")
    assert response.header("X-ClickHouse-Query-Id") == "conformance-error-id"


def test_client_raises_database_error_with_code(warehouse_url: str) -> None:
    client = client_for(warehouse_url)
    try:
        with pytest.raises(DatabaseError) as raised:
            client.query("SELECT * FROM default.no_such_table_anywhere")
        assert raised.value.code == 60
        assert "UNKNOWN_TABLE" in str(raised.value)
        with pytest.raises(DatabaseError) as raised:
            client.command("SELECT 1; SELECT 2")
        assert raised.value.code == 62
        with pytest.raises(DatabaseError) as raised:
            client.insert("default.no_such_table_anywhere", [[1]], column_names=["x"])
        assert client.command("SELECT 1") == 1
    finally:
        client.close()


def _assert_never_a_whole_result(response: Any) -> None:
    # Either the error came before the result (an error status), or the result is cut short
    # and carries the exception: never a 200 with a complete, well-formed body.
    if response.status == 200:
        assert not response.complete
        assert b"Code: 395" in response.body
    else:
        assert response.exception_code == 395


@pytest.mark.parametrize("sql", THROWING, ids=["midway", "late"])
def test_error_midway_through_a_streamed_native_result(target: Target, sql: str) -> None:
    conn = target.connection()
    try:
        conn.request("POST", "/?max_block_size=10000", f"{sql} FORMAT Native", target.basic_auth())
        response = read_response(conn.getresponse())
    finally:
        conn.close()
    _assert_never_a_whole_result(response)


@pytest.mark.parametrize("fmt", ["TabSeparated", "JSONEachRow", "CSV", "RowBinary"])
def test_error_midway_through_a_streamed_result_in_other_formats(target: Target, fmt: str) -> None:
    response = request(target, {"max_block_size": "10000"}, f"{THROW_LATE} FORMAT {fmt}")
    _assert_never_a_whole_result(response)


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "lz4"])
def test_error_midway_through_a_compressed_result(target: Target, encoding: str) -> None:
    response = request(
        target,
        {"max_block_size": "10000", "enable_http_compression": "1"},
        f"{THROW_LATE} FORMAT TabSeparated",
        headers={"Accept-Encoding": encoding},
    )
    if response.status != 200:
        assert response.exception_code == 395
        return
    assert not response.complete
    assert response.header("Content-Encoding") == encoding
    text = _decode_prefix(encoding, response.body)
    assert b"Code: 395" in text, text[-300:]


def test_error_midway_through_a_block_compressed_result(target: Target) -> None:
    response = request(
        target, {"max_block_size": "10000", "compress": "1"}, f"{THROW_LATE} FORMAT TabSeparated"
    )
    if response.status != 200:
        assert response.exception_code == 395
        return
    assert not response.complete
    data, _ = decompress_blocks(response.body)
    assert b"Code: 395" in data, data[-300:]


def _decode_prefix(encoding: str, data: bytes) -> bytes:
    """Decodes as much of a compressed body as there is, across frames or members."""
    out = bytearray()
    while data:
        decoder: Any
        if encoding == "gzip":
            decoder = zlib.decompressobj(wbits=31)
        elif encoding == "zstd":
            decoder = zstandard.ZstdDecompressor().decompressobj()
        else:
            decoder = lz4.frame.LZ4FrameDecompressor()
        try:
            out += decoder.decompress(data)
        except Exception:
            break
        data = decoder.unused_data if decoder.eof else b""
    return bytes(out)


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
@pytest.mark.parametrize("sql", THROWING, ids=["midway", "late"])
def test_error_midway_through_a_streamed_result_client(
    warehouse_url: str, sql: str, compress: bool | str
) -> None:
    client = client_for(warehouse_url, compress=compress)
    settings = {"max_block_size": 10000}
    try:
        with pytest.raises(Error) as raised:  # query() reads the body lazily: read it all
            client.query(sql, settings=settings).result_rows  # noqa: B018
        assert "395" in str(raised.value)
        rows = 0
        stream = client.query_rows_stream(sql, settings=settings)
        with pytest.raises(Error) as raised, stream:
            for _ in stream:
                rows += 1
        assert "395" in str(raised.value)
        assert rows < 1_000_000
        assert client.command("SELECT 1") == 1
    finally:
        client.close()


# -- authentication -------------------------------------------------------------------------------


def whoami(target: Target, **kwargs: Any) -> Any:
    return request(target, body="SELECT currentUser()", **kwargs)


def test_basic_auth(target: Target) -> None:
    response = whoami(target)
    assert (response.status, response.body) == (200, f"{target.user}\n".encode())


def test_x_clickhouse_headers(target: Target) -> None:
    headers = {"X-ClickHouse-User": target.user, "X-ClickHouse-Key": target.password}
    response = whoami(target, auth=False, headers=headers)
    assert (response.status, response.body) == (200, f"{target.user}\n".encode())


def test_url_parameters(target: Target) -> None:
    response = request(
        target,
        {"user": target.user, "password": target.password},
        "SELECT currentUser()",
        auth=False,
    )
    assert (response.status, response.body) == (200, f"{target.user}\n".encode())


def test_second_user(target: Target) -> None:
    reader = target.basic_auth("reader", "r3ader")
    response = request(target, body="SELECT 40 + 2", auth=False, headers=reader)
    assert (response.status, response.body) == (200, b"42\n")
    response = request(target, {"user": "reader", "password": "r3ader"}, "SELECT 1", auth=False)
    assert (response.status, response.body) == (200, b"1\n")
    response = whoami(target, auth=False, headers=target.basic_auth("reader", "s3cret"))
    assert_exception(response, 403, 516)


def test_current_user_is_the_authenticated_user(target: Target) -> None:
    if not REAL_SERVER:
        pytest.skip(
            "the embedded engine has one account of its own: its currentUser() is 'default' "
            "whoever authenticated over HTTP"
        )
    response = whoami(target, auth=False, headers=target.basic_auth("reader", "r3ader"))
    assert (response.status, response.body) == (200, b"reader\n")


@pytest.mark.parametrize(
    "credentials",
    [
        {"basic": ("default", "wrong")},
        {"basic": ("no_such_user", "s3cret")},
        {"basic": ("default", "")},
        {"headers": ("default", "wrong")},
        {"headers": ("no_such_user", "x")},
        {"params": ("default", "wrong")},
        {"params": ("no_such_user", "")},
    ],
    ids=lambda c: "-".join(str(v) for pair in c.items() for v in (pair[0], *pair[1])),
)
def test_bad_credentials(target: Target, credentials: dict[str, tuple[str, str]]) -> None:
    ((kind, (user, password)),) = credentials.items()
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if kind == "basic":
        headers = target.basic_auth(user, password)
    elif kind == "headers":
        headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
    else:
        params = {"user": user, "password": password}
    response = request(target, params, "SELECT 1", auth=False, headers=headers)
    assert_exception(response, 403, 516)
    assert response.body != b"1\n"


def test_no_credentials_when_default_has_a_password(target: Target) -> None:
    if not target.password:
        pytest.skip("the warehouse's default user has no password")
    response = request(target, body="SELECT 1", auth=False)
    assert response.status in (401, 403)
    assert response.exception_code in (194, 516)  # REQUIRED_PASSWORD, AUTHENTICATION_FAILED
    response = request(target, {"query": "SELECT 1"}, method="GET", auth=False)
    assert response.status in (401, 403)


@pytest.mark.parametrize("second", ["headers", "params"])
def test_mixing_authentication_methods_is_refused(target: Target, second: str) -> None:
    params = {"user": target.user, "password": target.password} if second == "params" else {}
    headers = dict(target.basic_auth())
    if second == "headers":
        headers.update({"X-ClickHouse-User": target.user, "X-ClickHouse-Key": target.password})
    response = request(target, params, "SELECT 1", auth=False, headers=headers)
    assert response.status == 403
    assert response.exception_code == 516


def test_bad_credentials_do_not_break_keep_alive(target: Target) -> None:
    conn = target.connection()
    try:
        bad = request(
            target,
            body="SELECT 1",
            auth=False,
            headers=target.basic_auth(target.user, "wrong"),
            connection=conn,
        )
        good = request(target, body="SELECT 1", connection=conn)
    finally:
        conn.close()
    assert bad.status == 403
    assert (good.status, good.body) == (200, b"1\n")
