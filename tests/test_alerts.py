"""Alerts: a JSON log line always; the Slack-compatible webhook when configured, and a
failing webhook never raises."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from rastro.alerts import send_alert
from rastro.settings import Settings


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_alert_is_logged_and_posted(
    webhook: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, received = webhook
    settings = Settings(alert_webhook_url=url)
    with caplog.at_level(logging.WARNING, logger="rastro.alerts"):
        assert send_alert(settings, "fraud_spike", "12 flags in an hour", {"tenant": "t1"})
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged == {
        "alert": "fraud_spike",
        "title": "12 flags in an hour",
        "details": {"tenant": "t1"},
    }
    [payload] = received
    assert payload["text"].endswith("[fraud_spike] 12 flags in an hour")
    assert '"tenant": "t1"' in payload["blocks"][1]["text"]["text"]


def test_without_a_webhook_only_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rastro.alerts"):
        assert not send_alert(Settings(alert_webhook_url=None), "run_failed", "boom")
    assert "run_failed" in caplog.text


def test_a_failing_webhook_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(alert_webhook_url="http://127.0.0.1:9/unreachable")
    assert not send_alert(settings, "check_failed", "landing ids")
    assert "alert webhook failed" in caplog.text
