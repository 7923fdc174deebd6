from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from rastro.ids import stable_uuid7, uuid7
from rastro.settings import Settings


def test_embedded_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RASTRO_CLICKHOUSE_URL", raising=False)
    settings = Settings(_env_file=None)
    assert settings.embedded
    assert settings.warehouse_url == "http://default@127.0.0.1:8123"
    assert settings.warehouse_data_dir.parts[-2:] == (".rastro", "warehouse")


def test_server_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTRO_CLICKHOUSE_URL", "https://rastro:pw@ch.example:8443")
    settings = Settings(_env_file=None)
    assert not settings.embedded
    assert settings.warehouse_url == "https://rastro:pw@ch.example:8443"


def test_an_empty_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTRO_CLICKHOUSE_URL", "")
    assert Settings(_env_file=None).embedded


def test_clickhouse_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http"):
        Settings(_env_file=None, clickhouse_url="tcp://host:9000")


def test_warehouse_users() -> None:
    settings = Settings(_env_file=None, warehouse_users="rastro:pw, bi:x")
    assert settings.warehouse_credentials == {"rastro": "pw", "bi": "x"}
    assert settings.warehouse_url == "http://rastro:pw@127.0.0.1:8123"


def test_prod_refuses_users_without_password() -> None:
    settings = Settings(
        _env_file=None, env="prod", warehouse_users="default:", secret_key="a-real-secret"
    )
    with pytest.raises(ValueError, match="no password in prod"):
        _ = settings.warehouse_credentials


def test_uuid7_is_version_7_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_stable_uuid7_is_deterministic_and_time_ordered() -> None:
    assert stable_uuid7(1_000, "a") == stable_uuid7(1_000, "a")
    assert stable_uuid7(1_000, "a") != stable_uuid7(1_000, "b")
    assert stable_uuid7(1_000, "z") < stable_uuid7(1_001, "a")
    assert uuid.UUID(stable_uuid7(1_000, "a")).version == 7


def test_prod_refuses_the_dev_secret() -> None:
    with pytest.raises(ValidationError, match="RASTRO_SECRET_KEY"):
        Settings(_env_file=None, env="prod", warehouse_users="u:p")


def test_env_example_documents_every_setting() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (Path(__file__).parents[1] / ".env.example").read_text().splitlines()
        if line.startswith("RASTRO_")
    }
    expected = {f"RASTRO_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
