"""Conformance: every clickhouse-connect method against the warehouse, with and without
compression, and a round trip of every common data type."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import client_for
from tests.warehouse.conformance import REAL_SERVER

COMPRESSIONS: list[bool | str] = [False, True, "lz4", "zstd", "gzip"]


@pytest.fixture(params=COMPRESSIONS, ids=lambda c: f"compress={c}")
def cclient(request: pytest.FixtureRequest, warehouse_url: str, database: str) -> Iterator[Any]:
    """A clickhouse-connect client on the test's database, for each compression setting."""
    client = client_for(warehouse_url, database=database, compress=request.param)
    yield client
    client.close()


@pytest.fixture
def table(cclient: Any) -> str:
    cclient.command(
        "CREATE TABLE t (id UInt32, name String, v Float64) ENGINE = MergeTree ORDER BY id"
    )
    return "t"


ROWS = [(1, "alpha", 1.5), (2, "βeta ☃", -2.25), (3, "", 0.0)]
NUMBERS = "SELECT number AS n, toString(number) AS s FROM numbers(100000)"
STREAM_SETTINGS = {"max_block_size": 10_000}


def test_command(cclient: Any) -> None:
    assert cclient.command("SELECT 1") == 1
    assert cclient.command("SELECT 'a', 2") == ["a", "2"]
    assert cclient.command("SELECT {x:UInt8} * 2", parameters={"x": 21}) == 42
    summary = cclient.command("CREATE TABLE c (x UInt8) ENGINE = Memory")
    assert cclient.command("EXISTS TABLE c") == 1
    assert summary is not None


def test_command_with_data(cclient: Any, table: str) -> None:
    cclient.command(f"INSERT INTO {table} (id, name) FORMAT CSV", data="1,a\n2,b\n")
    assert cclient.command(f"SELECT count() FROM {table}") == 2


def test_query(cclient: Any) -> None:
    result = cclient.query(
        "SELECT number AS n, toString(number) AS s, number / 2 AS h FROM numbers(3)"
    )
    assert result.result_rows == [(0, "0", 0.0), (1, "1", 0.5), (2, "2", 1.0)]
    assert result.column_names == ("n", "s", "h")
    assert [t.name for t in result.column_types] == ["UInt64", "String", "Float64"]
    assert result.first_row == (0, "0", 0.0)
    assert result.row_count == 3


def test_query_large_result(cclient: Any) -> None:
    result = cclient.query(NUMBERS)
    assert result.row_count == 100_000
    assert result.result_rows[-1] == (99_999, "99999")


def test_query_with_server_side_parameters(cclient: Any) -> None:
    result = cclient.query(
        "SELECT {n:UInt64} + 1, {s:String}, {d:DateTime}, {a:Array(String)}",
        parameters={
            "n": 41,
            "s": 'it\'s "quoted" \\ and ünicode\t',
            "d": datetime(2024, 5, 6, 7, 8, 9),
            "a": ["x", "y'z"],
        },
    )
    row = result.result_rows[0]
    assert row[0] == 42
    assert row[1] == 'it\'s "quoted" \\ and ünicode\t'
    assert row[2].replace(tzinfo=None) == datetime(2024, 5, 6, 7, 8, 9)
    assert row[3] == ["x", "y'z"]


def test_query_df(cclient: Any) -> None:
    df = cclient.query_df("SELECT number AS n, toString(number) AS s FROM numbers(5)")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["n", "s"]
    assert df["n"].tolist() == [0, 1, 2, 3, 4]
    assert df["s"].tolist() == ["0", "1", "2", "3", "4"]


def test_query_arrow(cclient: Any) -> None:
    table = cclient.query_arrow("SELECT number AS n, toString(number) AS s FROM numbers(5)")
    assert isinstance(table, pa.Table)
    assert table.column_names == ["n", "s"]
    assert table.column("n").to_pylist() == [0, 1, 2, 3, 4]
    assert [str(x) for x in table.column("s").to_pylist()] == ["0", "1", "2", "3", "4"]


def test_query_df_arrow_polars(cclient: Any) -> None:
    df = cclient.query_df_arrow(
        "SELECT number AS n, toString(number) AS s FROM numbers(5)", dataframe_library="polars"
    )
    assert isinstance(df, pl.DataFrame)
    assert df.columns == ["n", "s"]
    assert df["n"].to_list() == [0, 1, 2, 3, 4]
    assert df["s"].to_list() == ["0", "1", "2", "3", "4"]


def test_query_df_arrow_pandas(cclient: Any) -> None:
    df = cclient.query_df_arrow("SELECT number AS n FROM numbers(3)")
    assert isinstance(df, pd.DataFrame)
    assert df["n"].tolist() == [0, 1, 2]


def test_query_row_block_stream(cclient: Any) -> None:
    total = blocks = 0
    last = None
    with cclient.query_row_block_stream(NUMBERS, settings=STREAM_SETTINGS) as stream:
        for block in stream:
            blocks += 1
            total += len(block)
            last = block[-1]
    assert (total, last) == (100_000, (99_999, "99999"))
    assert blocks > 1


def test_query_rows_stream(cclient: Any) -> None:
    with cclient.query_rows_stream(NUMBERS, settings=STREAM_SETTINGS) as stream:
        rows = list(stream)
    assert len(rows) == 100_000
    assert sum(n for n, _ in rows) == 99_999 * 100_000 // 2


def test_query_column_block_stream(cclient: Any) -> None:
    total = 0
    with cclient.query_column_block_stream(NUMBERS, settings=STREAM_SETTINGS) as stream:
        for block in stream:
            numbers, strings = block
            assert [str(n) for n in numbers[:3]] == list(strings[:3])
            total += sum(numbers)
    assert total == 99_999 * 100_000 // 2


def test_query_df_stream(cclient: Any) -> None:
    frames = 0
    rows = 0
    with cclient.query_df_stream(NUMBERS, settings=STREAM_SETTINGS) as stream:
        for df in stream:
            frames += 1
            rows += len(df)
            assert list(df.columns) == ["n", "s"]
    assert rows == 100_000
    assert frames > 1


def test_query_arrow_stream(cclient: Any) -> None:
    rows = 0
    with cclient.query_arrow_stream(NUMBERS, settings=STREAM_SETTINGS) as stream:
        for batch in stream:
            rows += batch.num_rows
    assert rows == 100_000


def test_stream_closed_early(cclient: Any) -> None:
    with cclient.query_row_block_stream(
        "SELECT number FROM numbers(10000000)", settings=STREAM_SETTINGS
    ) as stream:
        first = next(iter(stream))
    assert first[0] == (0,)
    assert cclient.command("SELECT 1") == 1  # the client (and its pool) still works


def test_raw_query(cclient: Any) -> None:
    assert cclient.raw_query("SELECT 1 AS x, 'y' AS y", fmt="CSVWithNames") == b'"x","y"\n1,"y"\n'
    assert cclient.raw_query("SELECT {v:String}", parameters={"v": "p"}, fmt="TSV") == b"p\n"
    data = cclient.raw_query(NUMBERS, fmt="TabSeparated")
    assert data.count(b"\n") == 100_000


def test_raw_stream(cclient: Any) -> None:
    stream = cclient.raw_stream(NUMBERS, fmt="TabSeparated")
    data = b"".join(stream)
    assert data.count(b"\n") == 100_000
    assert data.endswith(b"99999\t99999\n")


def test_insert_rows(cclient: Any, table: str) -> None:
    summary = cclient.insert(table, ROWS)
    assert summary.written_rows == 3
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_insert_column_subset_and_oriented(cclient: Any, table: str) -> None:
    cclient.insert(table, [[1, 2], ["a", "b"]], column_names=["id", "name"], column_oriented=True)
    result = cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows
    assert result == [(1, "a", 0.0), (2, "b", 0.0)]


def test_insert_many_blocks(cclient: Any, table: str) -> None:
    rows = [(n, f"name {n}", n / 2) for n in range(200_000)]
    cclient.insert(table, rows)
    result = cclient.query(f"SELECT count(), sum(id), max(v) FROM {table}").result_rows
    assert result == [(200_000, 199_999 * 100_000, 99_999.5)]


def test_insert_df(cclient: Any, table: str) -> None:
    df = pd.DataFrame({"id": [1, 2, 3], "name": ["alpha", "βeta ☃", ""], "v": [1.5, -2.25, 0.0]})
    cclient.insert_df(table, df)
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_insert_arrow(cclient: Any, table: str) -> None:
    arrow = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.uint32()),
            "name": pa.array(["alpha", "βeta ☃", ""]),
            "v": pa.array([1.5, -2.25, 0.0]),
        }
    )
    cclient.insert_arrow(table, arrow)
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_insert_df_arrow_polars(cclient: Any, table: str) -> None:
    df = pl.DataFrame(
        {"id": [1, 2, 3], "name": ["alpha", "βeta ☃", ""], "v": [1.5, -2.25, 0.0]},
        schema={"id": pl.UInt32, "name": pl.String, "v": pl.Float64},
    )
    cclient.insert_df_arrow(table, df)
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_raw_insert_csv(cclient: Any, table: str) -> None:
    cclient.raw_insert(
        table, ["id", "name", "v"], '1,"alpha",1.5\n2,"βeta ☃",-2.25\n3,"",0\n', fmt="CSV"
    )
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


@pytest.mark.parametrize(
    ("fmt", "block"),
    [
        ("TabSeparated", "1\talpha\t1.5\n2\tβeta ☃\t-2.25\n3\t\t0\n"),
        ("CSVWithNames", '"id","name","v"\n1,"alpha",1.5\n2,"βeta ☃",-2.25\n3,"",0\n'),
        (
            "JSONEachRow",
            '{"id":1,"name":"alpha","v":1.5}\n{"id":2,"name":"βeta ☃","v":-2.25}\n'
            '{"id":3,"name":"","v":0}\n',
        ),
    ],
)
def test_raw_insert_formats(cclient: Any, table: str, fmt: str, block: str) -> None:
    cclient.raw_insert(table, None, block.encode(), fmt=fmt)
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_raw_insert_precompressed(cclient: Any, table: str) -> None:
    block = gzip.compress('1,"alpha",1.5\n2,"βeta ☃",-2.25\n3,"",0\n'.encode())
    cclient.raw_insert(table, None, block, fmt="CSV", compression="gzip")
    assert cclient.query(f"SELECT * FROM {table} ORDER BY id").result_rows == ROWS


def test_raw_insert_generator(cclient: Any, table: str) -> None:
    def blocks() -> Iterator[bytes]:
        for n in range(10):
            yield "".join(f"{n * 1000 + i},x,0\n" for i in range(1000)).encode()

    cclient.raw_insert(table, None, blocks(), fmt="CSV")
    assert cclient.command(f"SELECT count() FROM {table}") == 10_000


def test_empty_results(cclient: Any) -> None:
    empty = "SELECT number AS n, toString(number) AS s FROM numbers(0)"
    assert cclient.query(empty).result_rows == []
    assert len(cclient.query_df(empty)) == 0
    assert cclient.query_arrow(empty).num_rows == 0
    assert cclient.query_df_arrow(empty, dataframe_library="polars").height == 0
    with cclient.query_rows_stream(empty) as stream:
        assert list(stream) == []
    assert cclient.command("SELECT 1 WHERE 0") == ""


def test_errors_carry_the_code(cclient: Any) -> None:
    with pytest.raises(DatabaseError) as raised:
        cclient.query("SELECT * FROM no_such_table_anywhere")
    assert getattr(raised.value, "code", None) == 60
    with pytest.raises(DatabaseError) as raised:
        cclient.command("SELEC 1")
    assert getattr(raised.value, "code", None) == 62
    assert cclient.command("SELECT 2") == 2  # the client recovers


# -- data types round trip ------------------------------------------------------------------------

TOKYO = ZoneInfo("Asia/Tokyo")
TYPES: list[tuple[str, str, list[Any]]] = [
    ("i8", "Int8", [-128, 127]),
    ("i16", "Int16", [-32768, 32767]),
    ("i32", "Int32", [-(2**31), 2**31 - 1]),
    ("i64", "Int64", [-(2**63), 2**63 - 1]),
    ("i128", "Int128", [-(2**127), 2**127 - 1]),
    ("i256", "Int256", [-(2**255), 2**255 - 1]),
    ("u8", "UInt8", [0, 255]),
    ("u16", "UInt16", [0, 65535]),
    ("u32", "UInt32", [0, 2**32 - 1]),
    ("u64", "UInt64", [0, 2**64 - 1]),
    ("u128", "UInt128", [0, 2**128 - 1]),
    ("u256", "UInt256", [0, 2**256 - 1]),
    ("f32", "Float32", [1.5, -0.25]),
    ("f64", "Float64", [3.141592653589793, -1e300]),
    (
        "dec",
        "Decimal(38, 10)",
        [Decimal("1234567890123456789012345678.0123456789"), Decimal("-0.5")],
    ),
    ("dec9", "Decimal(9, 2)", [Decimal("1234567.89"), Decimal("-0.01")]),
    ("s", "String", ["ünïcödé ☃ 𝄞 \x00 nul\x00", "tab\tnew\nline 'q' \"dq\" \\"]),
    ("fs", "FixedString(6)", [b"ab\x00\x00\x00\x00", b"\xff\x00\x01zzz"]),
    ("d", "Date", [date(1970, 1, 1), date(2149, 6, 6)]),
    ("d32", "Date32", [date(1900, 1, 1), date(2299, 12, 31)]),
    (
        "dtz",
        "DateTime('Asia/Tokyo')",
        [datetime(2024, 2, 29, 23, 59, 59, tzinfo=TOKYO), datetime(1970, 1, 2, tzinfo=TOKYO)],
    ),
    (
        "dt64",
        "DateTime64(3, 'UTC')",
        [
            datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        ],
    ),
    ("uid", "UUID", [uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=0)]),
    ("ip4", "IPv4", [IPv4Address("192.168.1.1"), IPv4Address("255.255.255.255")]),
    ("ip6", "IPv6", [IPv6Address("2001:db8::1"), IPv6Address("::ffff:1.2.3.4")]),
    ("e8", "Enum8('b' = -2, 'a' = 1, 'ç ☃' = 127)", ["b", "ç ☃"]),
    ("lc", "LowCardinality(String)", ["low", "low"]),
    ("lcn", "LowCardinality(Nullable(String))", [None, "x"]),
    ("n", "Nullable(Int32)", [None, -7]),
    ("arr", "Array(Nullable(String))", [["x", None, ""], []]),
    ("arr2", "Array(Array(UInt8))", [[[1, 2], [], [3]], []]),
    ("tup", "Tuple(Int32, String)", [(1, "a"), (-1, "")]),
    ("m", "Map(String, UInt64)", [{"k": 1, "ü": 2**64 - 1}, {}]),
    ("js", "String", ['{"a": [1, 2, {"b": null}], "c": "☃"}', "{}"]),
    ("b", "Bool", [True, False]),
]


def _normalize(value: Any) -> Any:
    """clickhouse-connect may return UTC datetimes naive (tz_mode): compare as instants."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def test_types_round_trip(cclient: Any) -> None:
    definition = ", ".join(f"{name} {type_}" for name, type_, _ in TYPES)
    cclient.command(f"CREATE TABLE types (id UInt8, {definition}) ENGINE = Memory")
    rows = [[index] + [values[index] for _, _, values in TYPES] for index in range(2)]
    cclient.insert("types", rows)
    result = cclient.query("SELECT * FROM types ORDER BY id")
    expected_types = [type_ for _, type_, _ in TYPES]
    if not REAL_SERVER:  # see test_datetime_column_timezone_reaches_the_client
        expected_types = ["DateTime" if t.startswith("DateTime(") else t for t in expected_types]
    assert [t.name for t in result.column_types][1:] == expected_types
    for index, row in enumerate(result.result_rows):
        for (name, type_, values), got in zip(TYPES, row[1:], strict=True):
            assert _normalize(got) == values[index], (name, type_)


def test_json_string_round_trips_through_json_functions(cclient: Any) -> None:
    document = '{"a": [1, 2, {"b": null}], "c": "☃"}'
    cclient.command("CREATE TABLE docs (j String) ENGINE = Memory")
    cclient.insert("docs", [[document]])
    result = cclient.query("SELECT j, JSONExtractString(j, 'c'), JSONLength(j, 'a') FROM docs")
    assert result.result_rows == [(document, "☃", 3)]


def test_typed_literals(cclient: Any) -> None:
    result = cclient.query(
        "SELECT toDateTime('2024-01-02 03:04:05', 'UTC') AS dt, toDecimal64(1.25, 4) AS d, "
        "[1, NULL]::Array(Nullable(UInt8)) AS a, map('k', 'v') AS m"
    )
    dt, dec, arr, mapping = result.result_rows[0]
    assert _normalize(dt) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert dec == Decimal("1.25")
    assert arr == [1, None]
    assert mapping == {"k": "v"}


def test_datetime_column_timezone_reaches_the_client(cclient: Any) -> None:
    if not REAL_SERVER:
        pytest.skip(
            "Native output names a top-level DateTime column's timezone only for clients that "
            "send client_protocol_version, which chDB cannot take: the embedded endpoint answers "
            "as a server behind a proxy that strips it (the instant is right, the zone is the "
            "server's)"
        )
    result = cclient.query("SELECT toDateTime('2024-01-02 03:04:05', 'Asia/Tokyo') AS dt")
    assert result.column_types[0].name == "DateTime('Asia/Tokyo')"
    assert result.result_rows[0][0] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=TOKYO)


def test_json_type_round_trip(cclient: Any) -> None:
    cclient.command("CREATE TABLE jdocs (id UInt8, j JSON) ENGINE = Memory")
    cclient.insert("jdocs", [[1, {"a": 1, "b": {"c": "☃"}, "arr": [1, 2]}], [2, {}]])
    result = cclient.query("SELECT id, j FROM jdocs ORDER BY id")
    assert result.result_rows == [(1, {"a": 1, "b": {"c": "☃"}, "arr": [1, 2]}), (2, {})]
    as_text = cclient.query("SELECT j::String FROM jdocs ORDER BY id").result_rows
    assert as_text == [('{"a":1,"arr":[1,2],"b":{"c":"☃"}}',), ("{}",)]
