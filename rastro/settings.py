"""One settings class for every Rastro process, read from `RASTRO_*` environment variables
(and a `.env` file in the working directory). `.env.example` documents each of them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_SECRET = "dev-only-not-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RASTRO_", env_file=".env", extra="ignore")

    env: str = Field("dev", description="dev, test or prod; prod refuses placeholder secrets")
    data_dir: Path = Field(Path(".rastro"), description="embedded mode: all local state")

    # Server mode: when set, nothing embedded starts and every component connects here.
    clickhouse_url: str | None = Field(
        None, description="http(s)://user:password@host:8123 of a ClickHouse server"
    )
    clickhouse_database: str = Field("rastro", description="the database Rastro owns")

    # Embedded mode: the process that owns chDB and serves ClickHouse's HTTP interface.
    warehouse_host: str = "127.0.0.1"
    warehouse_port: int = 8123
    # "user:password" pairs separated by commas; the first one is what Rastro's own
    # processes use. An empty password is allowed only outside prod.
    warehouse_users: SecretStr = SecretStr("default:")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(2, ge=1, description="uvicorn worker processes of the API")
    # The public base URL of the tracking host (links are built on it; cookies are its own).
    public_url: str = "http://127.0.0.1:8000"
    # Where unknown or paused link codes send the visitor (a page, never an error).
    fallback_url: str = "http://127.0.0.1:8000/link-unavailable"
    # Derives tenant-scoped keys (IP hashes, email hashes). Set your own outside dev.
    secret_key: SecretStr = SecretStr(_DEV_SECRET)
    # Keys that encrypt secrets at rest (payout details, webhook secrets): comma-separated
    # "id:base64 of 32 bytes", the first encrypts, all decrypt (rotation). Unset: one key
    # derived from secret_key (dev and tests).
    encryption_keys: SecretStr | None = None
    # Comma-separated proxy addresses whose X-Forwarded-For is believed; empty: none.
    trusted_proxies: str = ""
    # Prometheus /metrics of the ingest job on 127.0.0.1; unset: metrics only in the logs.
    ingest_metrics_port: int | None = None
    dagster_port: int = 3000
    # Alerts (failed runs, failed blocking checks, reconciliation differences, fraud spikes)
    # are JSON log lines; set this to also POST them, Slack-compatible, to a webhook.
    alert_webhook_url: SecretStr | None = None
    log_level: str = "INFO"

    @field_validator("secret_key")
    @classmethod
    def _real_secret_outside_dev(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("env") == "prod" and value.get_secret_value() in ("", _DEV_SECRET):
            raise ValueError("RASTRO_SECRET_KEY must be set to a random secret in prod")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("RASTRO_CLICKHOUSE_URL must be an http:// or https:// URL")
        return value or None

    @field_validator("ingest_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url is None

    @property
    def warehouse_credentials(self) -> dict[str, str]:
        """Users the embedded endpoint accepts, by name."""
        users: dict[str, str] = {}
        for pair in self.warehouse_users.get_secret_value().split(","):
            name, _, password = pair.strip().partition(":")
            if not name:
                raise ValueError("RASTRO_WAREHOUSE_USERS: every entry needs a user name")
            if self.env == "prod" and not password:
                raise ValueError(f"RASTRO_WAREHOUSE_USERS: user {name!r} has no password in prod")
            users[name] = password
        return users

    @property
    def warehouse_url(self) -> str:
        """Where clients connect: the server in server mode, the local endpoint otherwise."""
        if self.clickhouse_url:
            return self.clickhouse_url
        user, password = next(iter(self.warehouse_credentials.items()))
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"http://{auth}{self.warehouse_host}:{self.warehouse_port}"

    @property
    def warehouse_data_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def event_log_dir(self) -> Path:
        return self.data_dir / "eventlog"


@lru_cache
def get_settings() -> Settings:
    return Settings()
