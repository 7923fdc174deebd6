"""kill -9 of the API under load: every click that got a 302 and every conversion that got a
2xx is in the event log, and no corrupt record is ever read."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from api import links
from api.store import ConfigStore, Principal
from rastro.contracts import Click, Conversion, decode
from rastro.eventlog import LogReader, Offset
from rastro.settings import Settings
from tests.api.conftest import TenantFixture, running_api

LOAD_LIMIT_S = 8.0  # the load stops by itself, killed API or not
CLIENT_THREADS = 4


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_acknowledged(
    settings: Settings, tenant: TenantFixture
) -> None:
    store = ConfigStore(settings).for_tenant(tenant.tenant_id)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    link = links.create_link(
        store, setup, tenant.affiliate_id, tenant.campaign_id, f"https://{tenant.domain}/", []
    )
    acknowledged_clicks: set[str] = set()
    acknowledged_orders: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    run = uuid.uuid4().hex[:8]

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        deadline = time.monotonic() + LOAD_LIMIT_S
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            try:
                if n % 4:
                    # A new visitor each time (a repeat visitor would reuse the click id).
                    agent = f"Mozilla/5.0 (X11; Linux x86_64) load/{worker}.{n}"
                    connection.request(
                        "GET", f"/r/{link.code}?sub1=w{worker}", headers={"User-Agent": agent}
                    )
                    response = connection.getresponse()
                    response.read()
                    if response.status == 302:
                        location = urlsplit(response.headers["Location"])
                        with lock:
                            acknowledged_clicks.add(parse_qs(location.query)["rclid"][0])
                else:
                    order = f"crash-{run}-{worker}-{n}"
                    body = json.dumps({"order_id": order, "amount": "10.00", "currency": "BRL"})
                    connection.request(
                        "POST",
                        "/v1/conversions",
                        body,
                        {**tenant.auth, "Content-Type": "application/json"},
                    )
                    response = connection.getresponse()
                    response.read()
                    if response.status in (200, 201):
                        with lock:
                            acknowledged_orders.add(order)
            except (OSError, http.client.HTTPException):
                connection.close()
                if stop.is_set():
                    return
                time.sleep(0.01)
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    with running_api(settings, workers=2) as (api, port):
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(random.uniform(1.5, 3.0))
        os.killpg(api.pid, signal.SIGKILL)
        api.wait(10)
        stop.set()
        for thread in threads:
            thread.join(10)

    assert acknowledged_clicks and acknowledged_orders, "the load did not get going"
    logged_clicks, logged_orders = _read_everything(settings.event_log_dir)
    print(
        f"acknowledged before kill -9: {len(acknowledged_clicks)} clicks, "
        f"{len(acknowledged_orders)} conversions; in the log: {len(logged_clicks)} clicks, "
        f"{len(logged_orders)} conversions"
    )
    assert acknowledged_clicks <= logged_clicks
    assert acknowledged_orders <= logged_orders


def _read_everything(root: Path) -> tuple[set[str], set[str]]:
    """Every record of every partition; CorruptRecord or an invalid payload fails the test."""
    reader = LogReader(root)
    clicks: set[str] = set()
    orders: set[str] = set()
    for partition in reader.partitions():
        offset = Offset.start()
        while records := reader.read(partition, offset, max_records=10_000):
            for record in records:
                event = decode(record.payload)
                if isinstance(event, Click):
                    clicks.add(event.click_id)
                elif isinstance(event, Conversion):
                    orders.add(event.order_id)
            offset = records[-1].next_offset
    return clicks, orders
