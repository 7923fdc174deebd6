"""Conformance: HTTP sessions (`session_id`) and the isolation of requests without one."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.warehouse.conformance import Response, Target, request

BLOCK_SIZE = "SELECT getSetting('max_block_size')"


def new_session() -> str:
    return f"conformance-{uuid.uuid4()}"


def in_session(target: Target, session: str, sql: str, **params: str) -> Response:
    return request(target, {"session_id": session, **params}, sql)


def ok(response: Response) -> str:
    assert response.status == 200, response.text
    return response.body.decode()


def default_block_size(target: Target) -> str:
    return ok(request(target, body=BLOCK_SIZE))


def test_session_keeps_use_set_and_temporary_tables(target: Target, database: str) -> None:
    session = new_session()
    ok(in_session(target, session, f"USE {database}"))
    ok(in_session(target, session, "SET max_block_size = 4321"))
    ok(in_session(target, session, "CREATE TEMPORARY TABLE tmp (x UInt8)"))
    ok(in_session(target, session, "INSERT INTO tmp VALUES (1), (2)"))
    assert ok(in_session(target, session, "SELECT currentDatabase()")) == f"{database}\n"
    assert ok(in_session(target, session, BLOCK_SIZE)) == "4321\n"
    assert ok(in_session(target, session, "SELECT sum(x) FROM tmp")) == "3\n"
    ok(in_session(target, session, "SELECT 1", close_session="1"))


def test_sessions_do_not_see_each_other(target: Target, database: str) -> None:
    first, second = new_session(), new_session()
    ok(in_session(target, first, "CREATE TEMPORARY TABLE only_first (x UInt8)"))
    ok(in_session(target, first, "SET max_block_size = 1111"))
    ok(in_session(target, first, f"USE {database}"))
    response = in_session(target, second, "SELECT count() FROM only_first")
    assert response.exception_code == 60  # UNKNOWN_TABLE
    assert ok(in_session(target, second, BLOCK_SIZE)) == default_block_size(target)
    assert ok(in_session(target, second, "SELECT currentDatabase()")) != f"{database}\n"
    assert ok(in_session(target, first, "SELECT count() FROM only_first")) == "0\n"


def test_sessions_belong_to_their_user(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "CREATE TEMPORARY TABLE defaults_own (x UInt8)"))
    reader = Target(target.host, target.port, "reader", "r3ader")
    response = in_session(reader, session, "SELECT count() FROM defaults_own")
    assert response.status != 200
    assert ok(in_session(target, session, "SELECT count() FROM defaults_own")) == "0\n"


def test_requests_without_session_share_nothing(target: Target, database: str) -> None:
    default = default_block_size(target)
    request(target, body="SET max_block_size = 2222")
    assert default_block_size(target) == default
    request(target, body=f"USE {database}")
    assert ok(request(target, body="SELECT currentDatabase()")) != f"{database}\n"
    # ClickHouse may refuse a temporary table without a session; either way it is gone.
    request(target, body="CREATE TEMPORARY TABLE sessionless_tmp (x UInt8)")
    response = request(target, body="SELECT count() FROM sessionless_tmp")
    assert response.exception_code == 60


def test_url_setting_lasts_one_request_of_a_session(target: Target) -> None:
    session = new_session()
    default = default_block_size(target)
    assert ok(in_session(target, session, BLOCK_SIZE, max_block_size="1111")) == "1111\n"
    assert ok(in_session(target, session, BLOCK_SIZE)) == default
    ok(in_session(target, session, "SET max_block_size = 2222"))
    assert ok(in_session(target, session, BLOCK_SIZE)) == "2222\n"
    assert ok(in_session(target, session, BLOCK_SIZE, max_block_size="3333")) == "3333\n"
    assert ok(in_session(target, session, BLOCK_SIZE)) == "2222\n"
    # A SET while a URL setting is given still sets the session's own value.
    ok(in_session(target, session, "SET max_block_size = 4444", max_block_size="5555"))
    assert ok(in_session(target, session, BLOCK_SIZE)) == "4444\n"


def test_database_parameter_lasts_one_request_of_a_session(target: Target, database: str) -> None:
    session = new_session()
    ok(in_session(target, session, "CREATE DATABASE IF NOT EXISTS " + database + "_other"))
    try:
        ok(in_session(target, session, f"USE {database}"))
        current = "SELECT currentDatabase()"
        other = f"{database}_other"
        assert ok(in_session(target, session, current, database=other)) == f"{other}\n"
        assert ok(in_session(target, session, current)) == f"{database}\n"
    finally:
        ok(request(target, body=f"DROP DATABASE IF EXISTS {database}_other"))


def test_session_check_of_an_unknown_session(target: Target) -> None:
    response = in_session(target, new_session(), "SELECT 1", session_check="1")
    assert response.status >= 400
    assert response.exception_code == 372  # SESSION_NOT_FOUND


def test_session_check_of_a_known_session(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "SELECT 1"))
    assert ok(in_session(target, session, "SELECT 2", session_check="1")) == "2\n"


def test_session_used_by_two_requests_at_once_is_locked(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "SELECT 1"))
    results: list[Response] = []
    slow = threading.Thread(
        target=lambda: results.append(in_session(target, session, "SELECT sleep(1.5)"))
    )
    slow.start()
    try:
        time.sleep(0.5)
        response = in_session(target, session, "SELECT 1")
        assert response.status >= 400
        assert response.exception_code == 373  # SESSION_IS_LOCKED
    finally:
        slow.join()
    assert ok(results[0]) == "0\n"
    assert ok(in_session(target, session, "SELECT 3")) == "3\n"  # free again


@pytest.mark.slow
def test_session_timeout(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "CREATE TEMPORARY TABLE short (x UInt8)", session_timeout="1"))
    # The timeout is the session's own, set when it was opened: a later request without
    # `session_timeout` does not bring back the default.
    ok(in_session(target, session, "INSERT INTO short VALUES (1)"))
    time.sleep(3.5)
    response = in_session(target, session, "SELECT 1", session_check="1")
    assert response.exception_code == 372


@pytest.mark.parametrize("timeout", ["abc", "100000"])
def test_invalid_session_timeout(target: Target, timeout: str) -> None:
    response = in_session(target, new_session(), "SELECT 1", session_timeout=timeout)
    assert response.status >= 400
    assert response.exception_code == 374  # INVALID_SESSION_TIMEOUT


def test_close_session(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "CREATE TEMPORARY TABLE closing (x UInt8)"))
    ok(in_session(target, session, "SELECT 1", close_session="1"))
    response = in_session(target, session, "SELECT 1", session_check="1")
    assert response.exception_code == 372
    # A new session under the same id starts empty.
    response = in_session(target, session, "SELECT count() FROM closing")
    assert response.exception_code == 60


def test_failed_request_leaves_the_session_as_it_was(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "SET max_block_size = 2222"))
    response = in_session(target, session, "SELECT * FROM no_such_table", max_block_size="1111")
    assert response.exception_code == 60
    response = in_session(target, session, "SET no_such_setting_for_sure = 1")
    assert response.exception_code == 115
    assert ok(in_session(target, session, BLOCK_SIZE)) == "2222\n"


def test_insert_with_data_into_a_session_temporary_table(target: Target) -> None:
    session = new_session()
    ok(in_session(target, session, "CREATE TEMPORARY TABLE staged (x UInt32, s String)"))
    response = request(
        target,
        {"session_id": session, "query": "INSERT INTO staged FORMAT TSV"},
        b"".join(f"{n}\tv{n}\n".encode() for n in range(1000)),
    )
    ok(response)
    assert ok(in_session(target, session, "SELECT count(), sum(x) FROM staged")) == "1000\t499500\n"
