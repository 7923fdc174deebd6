"""What every request handler of a worker process shares: settings, the configuration
store, the event log writer and the tenant-scoped keys for pseudonymous hashes."""

from __future__ import annotations

import hashlib
import hmac
import threading
from functools import lru_cache
from typing import Any

from api.auth import Users
from api.idempotency import IdempotencyIndex
from api.store import CACHE_TTL_S, ConfigStore, TtlCache
from rastro.crypto import Vault
from rastro.eventlog import LogWriter
from rastro.settings import Settings


class EdgeState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ConfigStore(settings)
        self.users = Users(self.store)
        self.vault = Vault(settings)
        # The tag's per-tenant settings (api/routes/events.py), like the store's link cache.
        self.tag_settings = TtlCache(CACHE_TTL_S, max_entries=10_000)
        self._log: LogWriter | None = None
        self._idempotency: IdempotencyIndex | None = None
        self._lock = threading.Lock()
        self._secret = settings.secret_key.get_secret_value().encode()

    @property
    def log(self) -> LogWriter:
        """This process's writer (its own log partition), opened on first use: uvicorn
        workers fork, and a writer must belong to the process that writes."""
        if self._log is None:
            with self._lock:
                if self._log is None:
                    self._log = LogWriter(self.settings.event_log_dir)
        return self._log

    @property
    def idempotency(self) -> IdempotencyIndex:
        """The conversions' idempotency index, shared by the workers through SQLite. Opening
        it finishes what crashed workers left pending (see api/idempotency.py)."""
        if self._idempotency is None:
            log = self.log
            with self._lock:
                if self._idempotency is None:
                    index = IdempotencyIndex(self.settings.data_dir / "idempotency.sqlite3")
                    index.recover(log)
                    self._idempotency = index
        return self._idempotency

    def close(self) -> None:
        if self._idempotency is not None:
            self._idempotency.close()
        if self._log is not None:
            self._log.close()

    @lru_cache(maxsize=4096)  # noqa: B019 (one EdgeState per process, lives as long)
    def tenant_key(self, tenant_id: str, purpose: str) -> bytes:
        """A key for one tenant and one purpose ("ip", "email"): hashes of the same value
        differ across tenants, so no tenant can join its data with another's."""
        return hmac.new(self._secret, f"{purpose}:{tenant_id}".encode(), hashlib.sha256).digest()

    @lru_cache(maxsize=4096)  # noqa: B019
    def _keyed(self, tenant_id: str, purpose: str) -> Any:
        # An HMAC already keyed: copying it skips the key setup on every hash (hot path).
        return hmac.new(self.tenant_key(tenant_id, purpose), digestmod=hashlib.sha256)

    def pseudonym(self, tenant_id: str, purpose: str, value: str) -> str:
        mac = self._keyed(tenant_id, purpose).copy()
        mac.update(value.encode())
        return str(mac.hexdigest()[:32])
