from typing import Any


def test_select_one(client: Any) -> None:
    assert client.query("SELECT 1").result_rows == [(1,)]
