"""What every request handler of a worker process shares: settings, the configuration
store, the event log writer and the tenant-scoped keys for pseudonymous hashes."""

from __future__ import annotations

import hashlib
import hmac
import threading
from functools import lru_cache

from rastro.eventlog import LogWriter

from api.store import ConfigStore
from rastro.settings import Settings


class EdgeState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ConfigStore(settings)
        self._log: LogWriter | None = None
        self._log_lock = threading.Lock()
        self._secret = settings.secret_key.get_secret_value().encode()

    @property
    def log(self) -> LogWriter:
        """This process's writer (its own log partition), opened on first use: uvicorn
        workers fork, and a writer must belong to the process that writes."""
        if self._log is None:
            with self._log_lock:
                if self._log is None:
                    self._log = LogWriter(self.settings.event_log_dir)
        return self._log

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    @lru_cache(maxsize=4096)  # noqa: B019 (one EdgeState per process, lives as long)
    def tenant_key(self, tenant_id: str, purpose: str) -> bytes:
        """A key for one tenant and one purpose ("ip", "email"): hashes of the same value
        differ across tenants, so no tenant can join its data with another's."""
        return hmac.new(self._secret, f"{purpose}:{tenant_id}".encode(), hashlib.sha256).digest()

    def pseudonym(self, tenant_id: str, purpose: str, value: str) -> str:
        key = self.tenant_key(tenant_id, purpose)
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
