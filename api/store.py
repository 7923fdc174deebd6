"""The configuration the tracking edge needs (tenants, API keys, affiliates, campaigns,
links), kept in the warehouse's configuration tables and cached where the hot paths read it.

Tenancy lives here, not in the handlers: a handler gets a `TenantScope` for the caller's
tenant (and, for an affiliate, the caller's affiliate), and every query it runs is filtered
by the warehouse itself: `additional_table_filters` adds `tenant_id = <the caller's>` to
every read of every table that has a tenant_id column, whatever the SQL says. A handler that
forgets its WHERE clause still reads only its own tenant's rows.

Caches are per worker process. A link created on another worker is not in this worker's
cache: a miss reads the warehouse, so a new link resolves at once on every worker. A paused
link or a revoked key takes effect on other workers within `CACHE_TTL_S`.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel

from rastro.ids import uuid7
from rastro.keys import display_prefix, hash_api_key, new_api_key
from rastro.settings import Settings
from rastro.warehouse.client import connect, insert_rows
from rastro.warehouse.sql import quote_literal

CACHE_TTL_S = 30.0
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _utc(value: datetime) -> datetime:
    # The warehouse's DateTime64(3, 'UTC') comes back naive: it is UTC, say so (RFC 3339).
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class Principal(BaseModel):
    """Who is calling: an API key or a console user of a tenant, with its scopes (a user's
    role is its one scope). An affiliate principal sees only its own affiliate's rows."""

    tenant_id: str
    actor_kind: Literal["api_key", "user", "system"] = "api_key"
    actor_id: str
    actor_name: str = ""
    scopes: list[str]
    affiliate_id: str | None = None


class Tenant(BaseModel):
    tenant_id: str
    name: str
    status: str
    default_currency: str
    timezone: str
    created_at: UtcDatetime


@dataclass(frozen=True)
class ResolvedLink:
    """Everything the redirect needs about a code, in one cached object."""

    tenant_id: str
    link_id: str
    code: str
    status: str  # the link's; "paused" also when its campaign is not active
    affiliate_id: str
    campaign_id: str
    terms_version: int
    destination_url: str
    subs: tuple[str, str, str, str, str]
    click_id_param: str
    consent_policy: str
    cookie_max_age_s: int  # the campaign's attribution window
    allowed_hosts: frozenset[str]


def _now() -> datetime:
    return datetime.now(UTC)


def _version(at: datetime) -> int:
    return int(at.timestamp() * 1000)


_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


def host_allowed(url: str, allowed_hosts: frozenset[str]) -> bool:
    """A destination must be http(s) on an allowed host or one of its subdomains. The host
    must be made of host-name characters only: `https://evil.example\\.shop.com` is parsed
    here as a subdomain of shop.com but sent by browsers to evil.example."""
    if any(c in url for c in "\\\t\r\n ") or not url.isprintable():
        return False
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not _HOSTNAME.fullmatch(host):
        return False
    if parts.username or parts.password:
        return False
    return any(host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts)


class TtlCache:
    """A bounded map whose entries expire: the per-worker caches of the hot paths."""

    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # crude but bounded; a miss only costs a query
            self._entries[key] = (time.monotonic() + self._ttl, value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


class ConfigStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._keys = TtlCache(CACHE_TTL_S)
        self._scoped_tables = TtlCache(CACHE_TTL_S)
        self.links = TtlCache(CACHE_TTL_S)

    @property
    def client(self) -> Any:
        """Created on first use, in the process that uses it (uvicorn workers fork)."""
        with self._client_lock:
            if self._client is None:
                # No session: the client is shared by threads, and sessions serialize.
                self._client = connect(
                    self.settings,
                    database=self.settings.clickhouse_database,
                    autogenerate_session_id=False,
                )
            return self._client

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.client.insert(table, [list(row.values())], column_names=list(row))

    def rows(
        self, sql: str, settings: dict[str, Any] | None = None, **parameters: Any
    ) -> list[dict[str, Any]]:
        result = self.client.query(sql, parameters=parameters, settings=settings)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    # -- tenants and keys ----------------------------------------------------------------

    def create_tenant(
        self, name: str, currency: str = "BRL", timezone: str = "America/Sao_Paulo"
    ) -> tuple[Tenant, str]:
        """A new tenant and its first admin API key (returned once, stored hashed)."""
        now = _now()
        tenant = Tenant(
            tenant_id=uuid7(),
            name=name,
            status="active",
            default_currency=currency,
            timezone=timezone,
            created_at=now,
        )
        self.insert(
            "tenants",
            {
                **tenant.model_dump(),
                "updated_at": now,
                "version": _version(now),
            },
        )
        key = self.for_tenant(tenant.tenant_id).create_api_key("first admin key", ["admin"])
        return tenant, key

    def authenticate(self, key: str) -> Principal | None:
        key_hash = hash_api_key(key)
        principal: Principal | None = self._keys.get(key_hash)
        if principal is not None:
            return principal
        rows = self.rows(
            "SELECT tenant_id, id, name, scopes, affiliate_id FROM api_keys FINAL "
            "WHERE key_hash = {h:String} AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now64(3))",
            h=key_hash,
        )
        if not rows:
            return None
        row = rows[0]
        principal = Principal(
            tenant_id=row["tenant_id"],
            actor_id=row["id"],
            actor_name=row["name"],
            scopes=list(row["scopes"]),
            affiliate_id=row["affiliate_id"],
        )
        self._keys.put(key_hash, principal)
        return principal

    def forget_api_key(self, key_hash: str) -> None:
        """Drops a key from this worker's cache (after a revocation): other workers keep
        theirs for at most CACHE_TTL_S."""
        self._keys.drop(key_hash)

    def for_tenant(self, tenant_id: str, affiliate_id: str | None = None) -> TenantScope:
        """The data of one tenant; with `affiliate_id`, only what that affiliate may see."""
        return TenantScope(self, tenant_id, affiliate_id)

    def for_principal(self, principal: Principal) -> TenantScope:
        return TenantScope(self, principal.tenant_id, principal.affiliate_id)

    def scoped_columns(self) -> dict[str, frozenset[str]]:
        """Table -> which of tenant_id, affiliate_id it has, for every table of Rastro's
        database (the dbt models included). Refreshed every CACHE_TTL_S, so tables dbt
        creates after this process started are filtered too."""
        cached: dict[str, frozenset[str]] | None = self._scoped_tables.get("tables")
        if cached is not None:
            return cached
        rows = self.rows(
            "SELECT table, groupArray(name) AS columns FROM system.columns "
            "WHERE database = {db:String} AND name IN ('tenant_id', 'affiliate_id') "
            "GROUP BY table",
            db=self.settings.clickhouse_database,
        )
        tables = {row["table"]: frozenset(row["columns"]) for row in rows}
        self._scoped_tables.put("tables", tables)
        return tables

    # -- the redirect's lookup -------------------------------------------------------------

    def resolve_link(self, code: str) -> ResolvedLink | None:
        """The link behind a code (any tenant: codes are globally unique), or None."""
        cached: ResolvedLink | None = self.links.get(code)
        if cached is not None:
            return cached
        rows = self.rows(
            """
            SELECT l.tenant_id AS tenant_id, l.id AS link_id, l.code AS code,
                   l.status AS link_status, l.affiliate_id AS affiliate_id,
                   l.campaign_id AS campaign_id, l.destination_url AS destination_url,
                   l.sub1 AS sub1, l.sub2 AS sub2, l.sub3 AS sub3, l.sub4 AS sub4,
                   l.sub5 AS sub5, c.terms_version AS terms_version, c.status AS campaign_status,
                   c.click_id_param AS click_id_param, c.consent_policy AS consent_policy,
                   c.attribution_window_days AS window_days,
                   c.destination_domains AS campaign_domains,
                   (SELECT groupArrayArray(domains) FROM merchants FINAL
                     WHERE tenant_id = l.tenant_id AND is_deleted = 0) AS merchant_domains
            FROM (SELECT * FROM links FINAL WHERE code = {code:String} AND kind = 'link'
                  AND is_deleted = 0) AS l
            INNER JOIN (SELECT * FROM campaigns FINAL WHERE is_deleted = 0
                        AND valid_from <= now64(3)
                        ORDER BY terms_version DESC LIMIT 1 BY tenant_id, campaign_id) AS c
              ON c.tenant_id = l.tenant_id AND c.campaign_id = l.campaign_id
            LIMIT 1
            """,
            code=code,
        )
        if not rows:
            return None
        row = rows[0]
        domains = row["campaign_domains"] or row["merchant_domains"]
        resolved = ResolvedLink(
            tenant_id=row["tenant_id"],
            link_id=row["link_id"],
            code=row["code"],
            status=row["link_status"] if row["campaign_status"] == "active" else "paused",
            affiliate_id=row["affiliate_id"],
            campaign_id=row["campaign_id"],
            terms_version=row["terms_version"],
            destination_url=row["destination_url"],
            subs=(row["sub1"], row["sub2"], row["sub3"], row["sub4"], row["sub5"]),
            click_id_param=row["click_id_param"],
            consent_policy=row["consent_policy"],
            cookie_max_age_s=int(row["window_days"]) * 86400,
            allowed_hosts=frozenset(d.lower() for d in domains),
        )
        self.links.put(code, resolved)
        return resolved


class TenantScope:
    """One tenant's data (or one affiliate's within it): every read and write is scoped.

    Reads go through `rows`, which makes the warehouse filter every table with a tenant_id
    column to this tenant and, for an affiliate scope, every table with an affiliate_id
    column (and `affiliates` by its id) to this affiliate. `{tenant:String}` and
    `{affiliate:String}` are bound in every query too, for the SQL's own clauses. Writes go
    through `insert`, which sets tenant_id itself."""

    def __init__(self, store: ConfigStore, tenant_id: str, affiliate_id: str | None = None) -> None:
        # An empty affiliate id is refused too: it would filter on '' rather than not at all.
        for value in (tenant_id, *([] if affiliate_id is None else [affiliate_id])):
            if not _SAFE_ID.fullmatch(value):
                raise ValueError(f"not an id: {value!r}")
        self._store = store
        self.tenant_id = tenant_id
        self.affiliate_id = affiliate_id

    @property
    def settings(self) -> Settings:
        return self._store.settings

    def _table_filters(self) -> str:
        """The `additional_table_filters` map: {'db.table': 'tenant_id = ...', ...}."""
        database = self._store.settings.clickhouse_database
        tenant = f"tenant_id = {quote_literal(self.tenant_id)}"
        filters = {}
        for table, columns in self._store.scoped_columns().items():
            conditions = [tenant] if "tenant_id" in columns else []
            if self.affiliate_id is not None:
                affiliate = quote_literal(self.affiliate_id)
                if "affiliate_id" in columns:
                    conditions.append(f"affiliate_id = {affiliate}")
                elif table == "affiliates":
                    conditions.append(f"id = {affiliate}")
            if conditions:
                filters[f"{database}.{table}"] = " AND ".join(conditions)
        entries = ", ".join(
            f"{quote_literal(table)}: {quote_literal(condition)}"
            for table, condition in sorted(filters.items())
        )
        return "{" + entries + "}"

    def rows(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        """The rows of a query, as dicts, seen through this scope."""
        return self._store.rows(
            sql,
            settings={"additional_table_filters": self._table_filters()},
            tenant=self.tenant_id,
            affiliate=self.affiliate_id or "",
            **parameters,
        )

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Appends rows to a table of this tenant (tenant_id is set here)."""
        insert_rows(
            self._store.client, table, [{**row, "tenant_id": self.tenant_id} for row in rows]
        )

    def write_version(self, table: str, row: dict[str, Any], at: datetime | None = None) -> None:
        """Writes a new version of a row of a configuration table (ReplacingMergeTree on
        version): the highest version wins, so this is how rows are created and changed."""
        at = at or _now()
        self.insert(table, [{**row, "updated_at": at, "version": _version(at)}])

    def create_api_key(
        self,
        name: str,
        scopes: list[str],
        affiliate_id: str | None = None,
        expires_at: datetime | None = None,
        key_id: str | None = None,
    ) -> str:
        """A new key (returned once, stored hashed); `key_id` names it (default: a new id).
        Checking what may be asked for is api/access.py's job."""
        key, now = new_api_key(), _now()
        self.write_version(
            "api_keys",
            {
                "id": key_id or uuid7(),
                "name": name,
                "prefix": display_prefix(key),
                "key_hash": hash_api_key(key),
                "scopes": scopes,
                "affiliate_id": affiliate_id,
                "expires_at": expires_at,
                "revoked_at": None,
                "created_at": now,
            },
            now,
        )
        return key

    def tenant(self) -> Tenant:
        rows = self.rows(
            "SELECT tenant_id, name, status, default_currency, timezone, created_at "
            "FROM tenants FINAL WHERE tenant_id = {tenant:String}"
        )
        return Tenant(**rows[0])

    def status(self) -> str | None:
        """The tenant's status (active, suspended, closed), None if there is no such tenant."""
        rows = self.rows("SELECT status FROM tenants FINAL WHERE tenant_id = {tenant:String}")
        return str(rows[0]["status"]) if rows else None

    def merchant_domains(self) -> list[tuple[str, tuple[str, ...]]]:
        """(merchant id, its host names) of the tenant's active stores."""
        rows = self.rows(
            "SELECT id, domains FROM merchants FINAL WHERE tenant_id = {tenant:String} "
            "AND is_deleted = 0 AND status = 'active' ORDER BY id"
        )
        return [(row["id"], tuple(d.lower() for d in row["domains"])) for row in rows]

    def create_merchant(self, name: str, domains: list[str], platform: str = "custom") -> str:
        merchant_id, now = uuid7(), _now()
        self.write_version(
            "merchants",
            {
                "id": merchant_id,
                "name": name,
                "platform": platform,
                "domains": [d.lower() for d in domains],
                "tracking_domain": "",
                "currency": "",
                "timezone": "",
                "status": "active",
                "created_at": now,
            },
            now,
        )
        return merchant_id
