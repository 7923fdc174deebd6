"""The lexer that routes statements: it must agree with ClickHouse on where strings, comments
and brackets end, so a `;` or `FORMAT` inside them is never taken for a real one."""

from __future__ import annotations

import pytest

from rastro.warehouse.errors import SYNTAX_ERROR, WarehouseError
from rastro.warehouse.sql import Incomplete, Kind, parse


@pytest.mark.parametrize(
    ("text", "kind", "keyword"),
    [
        ("SELECT 1", Kind.ROWS, "SELECT"),
        ("  with x AS (SELECT 1) SELECT * FROM x", Kind.ROWS, "WITH"),
        ("(SELECT 1) UNION ALL (SELECT 2)", Kind.ROWS, ""),
        ("SHOW TABLES", Kind.ROWS, "SHOW"),
        ("DESCRIBE TABLE t", Kind.ROWS, "DESCRIBE"),
        ("EXPLAIN SELECT 1", Kind.ROWS, "EXPLAIN"),
        ("CREATE TABLE t (a UInt8) ENGINE = Memory", Kind.COMMAND, "CREATE"),
        ("SET max_threads = 1", Kind.COMMAND, "SET"),
        ("INSERT INTO t SELECT * FROM u", Kind.COMMAND, "INSERT"),
        ("INSERT INTO t WITH 1 AS x SELECT x", Kind.COMMAND, "INSERT"),
    ],
)
def test_kinds(text: str, kind: Kind, keyword: str) -> None:
    statement = parse(text)
    assert (statement.kind, statement.keyword) == (kind, keyword)


@pytest.mark.parametrize(
    "text",
    [
        "-- a comment\nSELECT 1",
        "/* a /* nested */ comment */ SELECT 1",
        "# hash comment\nSELECT 1",
        "#!shebang-like comment\nSELECT 1",
        "\n\n  SELECT 1",
    ],
)
def test_leading_comments_are_skipped(text: str) -> None:
    statement = parse(text)
    assert statement.sql == "SELECT 1"
    assert statement.kind is Kind.ROWS


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1;SELECT 2;",
        "CREATE TABLE t (a UInt8) ENGINE = Memory; DROP TABLE t",
        "SELECT ';'; SELECT 2",
    ],
)
def test_multi_statements_are_refused(text: str) -> None:
    with pytest.raises(WarehouseError) as error:
        parse(text)
    assert error.value.code == SYNTAX_ERROR
    assert "Multi-statements are not allowed" in error.value.message


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1 ;  -- trailing comment\n", "SELECT 1"),
        ("SELECT ';' AS semicolon", "SELECT ';' AS semicolon"),
        ("SELECT 'it''s; fine'", "SELECT 'it''s; fine'"),
        (r"SELECT 'escaped \'; quote'", r"SELECT 'escaped \'; quote'"),
        ('SELECT 1 AS "a;b"', 'SELECT 1 AS "a;b"'),
        ("SELECT 1 AS `a;b`", "SELECT 1 AS `a;b`"),
        ("SELECT 1 /* ; */", "SELECT 1 /* ; */"),
        ("SELECT 1 -- ; SELECT 2", "SELECT 1 -- ; SELECT 2"),
    ],
)
def test_semicolons_inside_literals_and_comments(text: str, sql: str) -> None:
    assert parse(text).sql == sql


def test_output_format_clause_is_found_at_top_level_only() -> None:
    assert parse("SELECT 1 FORMAT JSONEachRow").format == "JSONEachRow"
    assert parse("SELECT 'FORMAT CSV'").format is None
    assert parse("SELECT * FROM (SELECT 1) FORMAT Native").format == "Native"


@pytest.mark.parametrize(
    ("text", "sql", "fmt", "data"),
    [
        ("INSERT INTO t FORMAT CSV\n1,2\n", "INSERT INTO t", "CSV", "1,2\n"),
        ("INSERT INTO db.t (a, b) FORMAT TSV\n1\t2", "INSERT INTO db.t (a, b)", "TSV", "1\t2"),
        ('insert into t format JSONEachRow {"a":1}', "insert into t", "JSONEachRow", '{"a":1}'),
        ("INSERT INTO t VALUES (1), (2)", "INSERT INTO t", "Values", "(1), (2)"),
        (
            "INSERT INTO t SETTINGS x = 'FORMAT' FORMAT CSV\n1",
            "INSERT INTO t SETTINGS x = 'FORMAT'",
            "CSV",
            "1",
        ),
        ("INSERT INTO format FORMAT CSV\n1", "INSERT INTO format", "CSV", "1"),
        ("INSERT INTO TABLE `values` VALUES (1)", "INSERT INTO TABLE `values`", "Values", "(1)"),
        (
            "INSERT INTO FUNCTION file('a.csv', 'CSV') FORMAT CSV\n1",
            "INSERT INTO FUNCTION file('a.csv', 'CSV')",
            "CSV",
            "1",
        ),
        ("/* c */ INSERT INTO t FORMAT CSV\n1", "INSERT INTO t", "CSV", "1"),
        # Data starts after the first newline: binary data opening with blanks stays whole.
        ("INSERT INTO t FORMAT Native\n\n\t rest", "INSERT INTO t", "Native", "\n\t rest"),
        ("INSERT INTO t FORMAT RowBinary \r\n ", "INSERT INTO t", "RowBinary", " "),
        # No newline: the data starts after the blanks.
        ("INSERT INTO t FORMAT CSV   1,2", "INSERT INTO t", "CSV", "1,2"),
        ("INSERT INTO t FORMAT CSV", "INSERT INTO t", "CSV", ""),
    ],
)
def test_insert_data_start(text: str, sql: str, fmt: str, data: str) -> None:
    statement = parse(text)
    assert statement.kind is Kind.INSERT
    assert (statement.sql, statement.format) == (sql, fmt)
    assert statement.data_start is not None
    assert text[statement.data_start :] == data


def test_insert_data_is_never_scanned() -> None:
    # Data that would be a syntax error (an open quote, a semicolon) is not the lexer's business.
    statement = parse("INSERT INTO t FORMAT CSV\n'unterminated;\"; SELECT 2")
    assert statement.format == "CSV"


@pytest.mark.parametrize(
    "head",
    [
        "",
        "INSE",
        "INSERT INTO t FORM",
        "INSERT INTO t FORMAT CSVWith",
        "INSERT INTO t FORMAT CSV",  # a newline may still come
        "INSERT INTO t SETTINGS x = 'unterminated",
        "INSERT /* comment not closed",
        "SELECT 1",  # only INSERT data may stream: other statements are read whole
    ],
)
def test_incomplete_heads_ask_for_more(head: str) -> None:
    with pytest.raises(Incomplete):
        parse(head, final=False)


def test_complete_insert_head_is_routed_before_the_body_ends() -> None:
    statement = parse("INSERT INTO t FORMAT CSVWithNames\na,b\n1,", final=False)
    assert (statement.format, statement.data_start) == ("CSVWithNames", 34)


@pytest.mark.parametrize("text", ["", "   ", "-- only a comment", "SELECT 'open", "/* open"])
def test_bad_statements_are_syntax_errors(text: str) -> None:
    with pytest.raises(WarehouseError) as error:
        parse(text)
    assert error.value.code == SYNTAX_ERROR
