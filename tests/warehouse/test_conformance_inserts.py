"""Conformance: INSERT with data in the request body, in every common input format and
Content-Encoding; output formats of empty results. Raw HTTP requests, so that the bytes on
the wire are exactly the ones each test means."""

from __future__ import annotations

import gzip
import io
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import lz4.frame
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.warehouse.conformance import Response, Target, query, request

Row = tuple[int, str, float]
ROWS: list[Row] = [
    (1, "alpha", 1.5),
    (2, "quote \" apostrophe ' backslash \\ comma , semicolon ;", -2.25),
    (3, "tab\there\nnew line", 0.0),
    (4, "ünïcödé ☃ 𝄞", 1e100),
    (5, "", 3.0),
]
COLUMNS = (("id", "UInt32"), ("name", "String"), ("v", "Float64"))


@pytest.fixture
def table(target: Target, database: str) -> str:
    name = f"{database}.t"
    response = query(
        target,
        f"CREATE TABLE {name} (id UInt32, name String, v Float64) ENGINE = MergeTree ORDER BY id",
    )
    assert response.status == 200, response.text
    return name


def rows_of(target: Target, table: str) -> list[Row]:
    response = query(target, f"SELECT id, name, v FROM {table} ORDER BY id FORMAT JSONEachRow")
    assert response.status == 200, response.text
    lines = [json.loads(line) for line in response.body.splitlines()]
    return [(r["id"], r["name"], float(r["v"])) for r in lines]


def count(target: Target, table: str) -> int:
    response = query(target, f"SELECT count() FROM {table}")
    assert response.status == 200, response.text
    return int(response.body)


# -- input formats, written by hand (or by pyarrow), independently of the server ------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _binary_string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(len(data)) + data


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _tsv_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def csv(rows: list[Row]) -> bytes:
    return "".join(f"{i},{_csv_field(s)},{v!r}\n" for i, s, v in rows).encode()


def tsv(rows: list[Row]) -> bytes:
    return "".join(f"{i}\t{_tsv_field(s)}\t{v!r}\n" for i, s, v in rows).encode()


def json_each_row(rows: list[Row]) -> bytes:
    lines = (json.dumps({"id": i, "name": s, "v": v}, ensure_ascii=False) for i, s, v in rows)
    return "".join(line + "\n" for line in lines).encode()


def values(rows: list[Row]) -> bytes:
    return ", ".join(f"({i}, {_quoted(s)}, {v!r})" for i, s, v in rows).encode()


def row_binary(rows: list[Row]) -> bytes:
    return b"".join(
        struct.pack("<I", i) + _binary_string(s) + struct.pack("<d", v) for i, s, v in rows
    )


def row_binary_with_names_and_types(rows: list[Row]) -> bytes:
    header = _varint(len(COLUMNS))
    header += b"".join(_binary_string(name) for name, _ in COLUMNS)
    header += b"".join(_binary_string(type_) for _, type_ in COLUMNS)
    return header + row_binary(rows)


def native(rows: list[Row]) -> bytes:
    block = _varint(len(COLUMNS)) + _varint(len(rows))
    block += _binary_string("id") + _binary_string("UInt32")
    block += b"".join(struct.pack("<I", i) for i, _, _ in rows)
    block += _binary_string("name") + _binary_string("String")
    block += b"".join(_binary_string(s) for _, s, _ in rows)
    block += _binary_string("v") + _binary_string("Float64")
    block += b"".join(struct.pack("<d", v) for _, _, v in rows)
    return block


def _arrow_table(rows: list[Row]) -> pa.Table:
    schema = pa.schema([("id", pa.uint32()), ("name", pa.string()), ("v", pa.float64())])
    return pa.Table.from_pylist([{"id": i, "name": s, "v": v} for i, s, v in rows], schema=schema)


def arrow_file(rows: list[Row]) -> bytes:
    table = _arrow_table(rows)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):  # several record batches
            writer.write_batch(batch)
    return sink.getvalue()


def arrow_stream(rows: list[Row]) -> bytes:
    table = _arrow_table(rows)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    return sink.getvalue()


def parquet(rows: list[Row]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_arrow_table(rows), sink, row_group_size=2)  # several row groups
    return sink.getvalue()


FORMATS: dict[str, Callable[[list[Row]], bytes]] = {
    "Native": native,
    "RowBinary": row_binary,
    "RowBinaryWithNamesAndTypes": row_binary_with_names_and_types,
    "CSV": csv,
    "CSVWithNames": lambda rows: b'"id","name","v"\n' + csv(rows),
    "TSV": tsv,
    "TabSeparatedWithNames": lambda rows: b"id\tname\tv\n" + tsv(rows),
    "JSONEachRow": json_each_row,
    "Arrow": arrow_file,
    "ArrowStream": arrow_stream,
    "Parquet": parquet,
    "Values": values,
}


def _lz4_frames(data: bytes, frames: int = 3) -> bytes:
    size = max(1, -(-len(data) // frames))
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return b"".join(lz4.frame.compress(part) for part in parts)


ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda data: data,
    "lz4": _lz4_frames,  # several concatenated frames, as clickhouse-connect sends
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "gzip": gzip.compress,
}


def post(target: Target, params: dict[str, str], body: bytes, encoding: str = "none") -> Response:
    headers = {} if encoding == "none" else {"Content-Encoding": encoding}
    return request(target, params, ENCODINGS[encoding](body), headers=headers)


def insert_head(table: str, fmt: str) -> str:
    return f"INSERT INTO {table} VALUES" if fmt == "Values" else f"INSERT INTO {table} FORMAT {fmt}"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_insert_with_statement_in_url(target: Target, table: str, fmt: str, encoding: str) -> None:
    response = post(target, {"query": insert_head(table, fmt)}, FORMATS[fmt](ROWS), encoding)
    assert response.status == 200, response.text
    assert rows_of(target, table) == ROWS
    summary = json.loads(response.header("X-ClickHouse-Summary") or "{}")
    assert int(summary.get("written_rows", len(ROWS))) == len(ROWS)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_insert_with_statement_in_body(target: Target, table: str, fmt: str, encoding: str) -> None:
    separator = b" " if fmt == "Values" else b"\n"
    body = insert_head(table, fmt).encode() + separator + FORMATS[fmt](ROWS)
    response = post(target, {}, body, encoding)
    assert response.status == 200, response.text
    assert rows_of(target, table) == ROWS


def test_inline_values(target: Target, table: str) -> None:
    response = query(target, f"INSERT INTO {table} (id, name) VALUES (1, 'a'), (2, 'b')")
    assert response.status == 200, response.text
    assert rows_of(target, table) == [(1, "a", 0.0), (2, "b", 0.0)]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_style_insert_with_columns_and_inline_csv(
    target: Target, table: str, encoding: str
) -> None:
    # What dbt seeds send: the statement, a newline, then CSV, all in the body.
    body = f"INSERT INTO {table} (id, name, v) FORMAT CSV\n".encode() + csv(ROWS)
    response = post(target, {}, body, encoding)
    assert response.status == 200, response.text
    assert rows_of(target, table) == ROWS


def test_insert_with_settings_clause_and_column_subset(target: Target, table: str) -> None:
    response = query(
        target,
        f"INSERT INTO {table} (name, id) SETTINGS max_insert_block_size = 1000 FORMAT CSV\n"
        '"x",7\n"y",8\n',
    )
    assert response.status == 200, response.text
    assert rows_of(target, table) == [(7, "x", 0.0), (8, "y", 0.0)]


@pytest.mark.parametrize("name", ["format", "values", "`FORMAT CSV`"])
def test_insert_into_a_table_named_like_a_keyword(target: Target, database: str, name: str) -> None:
    created = query(target, f"CREATE TABLE {database}.{name} (x UInt8) ENGINE = Memory")
    assert created.status == 200, created.text
    response = query(target, f"INSERT INTO {database}.{name} FORMAT CSV\n1\n2\n")
    assert response.status == 200, response.text
    response = query(target, f"INSERT INTO {database}.{name} VALUES (3)")
    assert response.status == 200, response.text
    assert count(target, f"{database}.{name}") == 3


def test_large_insert_in_several_encodings(target: Target, table: str) -> None:
    rows = [(n, f"name {n}", n / 4) for n in range(100_000)]
    data = tsv(rows)
    for encoding in ENCODINGS:
        response = post(target, {"query": insert_head(table, "TSV")}, data, encoding)
        assert response.status == 200, (encoding, response.text)
    result = query(target, f"SELECT count(), sum(id), uniqExact(name) FROM {table}")
    assert result.body == b"400000\t19999800000\t100000\n"


def test_query_body_may_be_compressed(target: Target) -> None:
    response = post(target, {}, b"SELECT 'compressed'", "gzip")
    assert (response.status, response.body) == (200, b"compressed\n"), response.text


def test_unknown_content_encoding_is_refused(target: Target, table: str) -> None:
    response = request(
        target,
        {"query": insert_head(table, "CSV")},
        csv(ROWS),
        headers={"Content-Encoding": "no-such-encoding"},
    )
    assert response.status >= 400
    assert count(target, table) == 0


# -- binary data that starts with a blank byte ----------------------------------------------------


def _wide_table(target: Target, database: str, columns: int) -> tuple[str, bytes]:
    """A table of `columns` UInt8 columns and a 2-row Native block for it: the block's first
    byte is the column count (0x09 tab, 0x0a newline, 0x0c form feed, 0x0d CR, 0x20 space)."""
    table = f"{database}.wide_{columns}"
    definition = ", ".join(f"c{n} UInt8" for n in range(columns))
    response = query(target, f"CREATE TABLE {table} ({definition}) ENGINE = Memory")
    assert response.status == 200, response.text
    block = _varint(columns) + _varint(2)
    for n in range(columns):
        block += _binary_string(f"c{n}") + _binary_string("UInt8") + bytes([n, 100 + n])
    assert block[0] == columns
    return table, block


def _check_wide(target: Target, table: str, columns: int) -> None:
    response = query(target, f"SELECT c0, c{columns - 1} FROM {table} ORDER BY c0")
    assert response.body == f"0\t{columns - 1}\n100\t{99 + columns}\n".encode(), response.text


WHITESPACE_COLUMNS = [9, 10, 12, 13, 32]


@pytest.mark.parametrize("columns", WHITESPACE_COLUMNS)
def test_native_data_starting_with_whitespace_statement_in_url(
    target: Target, database: str, columns: int
) -> None:
    table, block = _wide_table(target, database, columns)
    response = request(target, {"query": f"INSERT INTO {table} FORMAT Native"}, block)
    assert response.status == 200, response.text
    _check_wide(target, table, columns)


@pytest.mark.parametrize("columns", WHITESPACE_COLUMNS)
def test_native_data_starting_with_whitespace_statement_in_body(
    target: Target, database: str, columns: int
) -> None:
    table, block = _wide_table(target, database, columns)
    response = request(target, body=f"INSERT INTO {table} FORMAT Native\n".encode() + block)
    assert response.status == 200, response.text
    _check_wide(target, table, columns)


@pytest.mark.parametrize("columns", WHITESPACE_COLUMNS)
def test_native_data_starting_with_whitespace_in_separate_chunks(
    target: Target, database: str, columns: int
) -> None:
    table, block = _wide_table(target, database, columns)
    head = f"INSERT INTO {table} FORMAT Native"

    def pieces() -> Iterator[bytes]:
        yield head.encode()  # the format name ends the first chunk: more may follow
        yield b"\n"
        yield block[:1]  # the blank byte alone
        yield block[1:]

    response = request(target, body=pieces(), encode_chunked=True)
    assert response.status == 200, response.text
    _check_wide(target, table, columns)


def test_statement_head_split_byte_by_byte(target: Target, table: str) -> None:
    head = f"/* c */ INSERT INTO {table} (id, name, v) FORMAT CSV\n".encode()

    def pieces() -> Iterator[bytes]:
        for n in range(len(head)):
            yield head[n : n + 1]
        yield csv(ROWS)

    response = request(target, body=pieces(), encode_chunked=True)
    assert response.status == 200, response.text
    assert rows_of(target, table) == ROWS


# -- failures are atomic --------------------------------------------------------------------------

BAD_BODIES = {
    "CSV": b'1,"a",1.5\nnot a number,"b",2\n3,"c",3\n',
    "TSV": b"1\ta\t1.5\n2\tb\tnot a float\n3\tc\t3\n",
    "JSONEachRow": b'{"id": 1, "name": "a", "v": 1}\n{"id": "x", "name": "b", "v": 2}\n',
    "Native": native(ROWS)[:-5],  # truncated
    "RowBinary": row_binary(ROWS)[:-3],
}


@pytest.mark.parametrize("fmt", BAD_BODIES)
@pytest.mark.parametrize("encoding", ["none", "lz4"])
def test_bad_row_rejects_the_whole_insert(
    target: Target, table: str, fmt: str, encoding: str
) -> None:
    response = post(target, {"query": insert_head(table, fmt)}, BAD_BODIES[fmt], encoding)
    assert response.status >= 400
    code = response.exception_code
    assert code is not None and code > 0
    assert response.text.startswith(f"Code: {code}. DB::Exception:"), response.text
    assert count(target, table) == 0


def test_insert_into_unknown_table(target: Target, database: str) -> None:
    response = post(target, {"query": f"INSERT INTO {database}.nope FORMAT CSV"}, b"1\n")
    assert response.status == 404
    assert response.exception_code == 60


# -- INSERT ... SELECT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "select",
    [
        "SELECT number, toString(number), number / 2 FROM numbers(10)",
        "(id, name) SELECT number, toString(number) FROM numbers(10)",
        "WITH 10 AS n SELECT number, toString(number), 0 FROM numbers(n)",
        "(SELECT number, 'x', 1 FROM numbers(10))",
    ],
)
def test_insert_select(target: Target, table: str, select: str) -> None:
    response = query(target, f"INSERT INTO {table} {select}")
    assert response.status == 200, response.text
    assert response.body == b""
    summary = json.loads(response.header("X-ClickHouse-Summary") or "{}")
    assert int(summary["written_rows"]) == 10
    assert count(target, table) == 10


# -- output formats of an empty result ------------------------------------------------------------

EMPTY = "SELECT number AS n, toString(number) AS s FROM numbers(0)"


def _read_native_header(data: bytes) -> list[tuple[str, str]]:
    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                return value, pos

    def string(pos: int) -> tuple[str, int]:
        size, pos = varint(pos)
        return data[pos : pos + size].decode(), pos + size

    columns, pos = varint(0)
    rows, pos = varint(pos)
    assert rows == 0
    out = []
    for _ in range(columns):
        name, pos = string(pos)
        type_, pos = string(pos)
        out.append((name, type_))
    assert pos == len(data)
    return out


def test_empty_result_native(target: Target) -> None:
    response = query(target, f"{EMPTY} FORMAT Native")
    assert response.status == 200, response.text
    if response.body:  # a header-only block, or nothing at all
        assert _read_native_header(response.body) == [("n", "UInt64"), ("s", "String")]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JSONEachRow", b""),
        ("CSV", b""),
        ("CSVWithNames", b'"n","s"\n'),
        ("TabSeparatedWithNames", b"n\ts\n"),
        ("TabSeparatedWithNamesAndTypes", b"n\ts\nUInt64\tString\n"),
        ("JSONCompactEachRowWithNamesAndTypes", b'["n", "s"]\n["UInt64", "String"]\n'),
    ],
)
def test_empty_result_text_formats(target: Target, fmt: str, expected: bytes) -> None:
    response = query(target, f"{EMPTY} FORMAT {fmt}")
    assert (response.status, response.body) == (200, expected), response.text


def test_empty_result_json(target: Target) -> None:
    response = query(target, f"{EMPTY} FORMAT JSON")
    assert response.status == 200, response.text
    document: dict[str, Any] = json.loads(response.body)
    assert document["meta"] == [{"name": "n", "type": "UInt64"}, {"name": "s", "type": "String"}]
    assert document["data"] == []
    assert document["rows"] == 0


@pytest.mark.parametrize("fmt", ["Arrow", "ArrowStream", "Parquet"])
def test_empty_result_columnar_formats(target: Target, fmt: str) -> None:
    response = query(target, f"{EMPTY} FORMAT {fmt}")
    assert response.status == 200, response.text
    source = pa.BufferReader(response.body)
    if fmt == "Arrow":
        table = pa.ipc.open_file(source).read_all()
    elif fmt == "ArrowStream":
        table = pa.ipc.open_stream(source).read_all()
    else:
        table = pq.read_table(source)
    assert table.num_rows == 0
    assert table.column_names == ["n", "s"]


# -- output formats of a result of many blocks ----------------------------------------------------

MANY = "SELECT number AS n, toString(number) AS s FROM numbers(30000)"
MANY_SETTINGS = {"max_block_size": "1000"}


def _many(target: Target, fmt: str) -> bytes:
    response = request(target, MANY_SETTINGS, f"{MANY} FORMAT {fmt}")
    assert response.status == 200, response.text
    return response.body


@pytest.mark.parametrize("fmt", ["JSON", "JSONCompact", "JSONStrings"])
def test_many_blocks_json_is_one_document(target: Target, fmt: str) -> None:
    document: dict[str, Any] = json.loads(_many(target, fmt))
    assert document["rows"] == 30000
    assert len(document["data"]) == 30000


@pytest.mark.parametrize(
    ("fmt", "header"),
    [
        ("CSV", b""),
        ("TSV", b""),
        ("CSVWithNames", b'"n","s"\n'),
        ("CSVWithNamesAndTypes", b'"n","s"\n"UInt64","String"\n'),
        ("TabSeparatedWithNames", b"n\ts\n"),
        ("TSVWithNamesAndTypes", b"n\ts\nUInt64\tString\n"),
        ("JSONCompactEachRowWithNames", b'["n", "s"]\n'),
    ],
)
def test_many_blocks_text_header_once(target: Target, fmt: str, header: bytes) -> None:
    body = _many(target, fmt)
    assert body.startswith(header)
    lines = body[len(header) :].splitlines()
    assert len(lines) == 30000
    assert lines[-1].replace(b'"', b"").replace(b"\t", b",").replace(b" ", b"") in (
        b"29999,29999",
        b"[29999,29999]",
    )


def test_many_blocks_json_each_row(target: Target) -> None:
    rows = [json.loads(line) for line in _many(target, "JSONEachRow").splitlines()]
    assert [r["n"] for r in rows] == list(range(30000))


def test_many_blocks_row_binary_with_names_and_types(target: Target) -> None:
    body = _many(target, "RowBinaryWithNamesAndTypes")
    header = b"\x02\x01n\x01s\x06UInt64\x06String"
    assert body.startswith(header)
    pos, n = len(header), 0
    while pos < len(body):
        assert struct.unpack_from("<Q", body, pos)[0] == n
        size = body[pos + 8]
        assert body[pos + 9 : pos + 9 + size] == str(n).encode()
        pos, n = pos + 9 + size, n + 1
    assert n == 30000


@pytest.mark.parametrize("fmt", ["Arrow", "ArrowStream", "Parquet"])
def test_many_blocks_columnar_formats(target: Target, fmt: str) -> None:
    source = pa.BufferReader(_many(target, fmt))
    if fmt == "Arrow":
        table = pa.ipc.open_file(source).read_all()
    elif fmt == "ArrowStream":
        table = pa.ipc.open_stream(source).read_all()
    else:
        table = pq.read_table(source)
    assert table.num_rows == 30000
    assert table.column("n").to_pylist() == list(range(30000))


def test_many_blocks_native(target: Target) -> None:
    body = _many(target, "Native")
    rows = pos = 0
    while pos < len(body):  # blocks of (n UInt64, s String)
        assert body[pos] == 2  # columns
        value, shift, pos = 0, 0, pos + 1
        while True:  # rows: a varint
            byte = body[pos]
            value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
            if byte < 0x80:
                break
        assert body[pos : pos + 9] == b"\x01n\x06UInt64"
        pos += 9
        numbers = struct.unpack_from(f"<{value}Q", body, pos)
        assert list(numbers) == list(range(rows, rows + value))
        pos += 8 * value
        assert body[pos : pos + 9] == b"\x01s\x06String"
        pos += 9
        for _ in range(value):
            pos += 1 + body[pos]
        rows += value
    assert rows == 30000
