"""Alerts: what ops must look at now (a failed run, a failed blocking check, a
reconciliation difference, a fraud spike). Every alert is a structured log line from the
logger `rastro.alerts`; with RASTRO_ALERT_WEBHOOK_URL set it is also POSTed as
Slack-compatible JSON (`{"text": ..., "blocks": ...}`). A webhook that fails is logged, never
raised: an alert must not fail the run that raised it."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

from rastro.settings import Settings

log = logging.getLogger("rastro.alerts")

Kind = Literal["run_failed", "check_failed", "reconciliation_difference", "fraud_spike"]
WEBHOOK_TIMEOUT_S = 5


def slack_payload(kind: Kind, title: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body: a text line for any Slack-compatible receiver, and the details as
    a code block."""
    text = f":rotating_light: [{kind}] {title}"
    detail_text = json.dumps(details, indent=2, sort_keys=True, default=str)
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{detail_text}```"}},
        ],
    }


def send_alert(
    settings: Settings, kind: Kind, title: str, details: Mapping[str, Any] | None = None
) -> bool:
    """Logs the alert and, when a webhook is configured, posts it. Returns whether the
    webhook accepted it (False when there is none or it failed)."""
    details = dict(details or {})
    log.warning("%s", json.dumps({"alert": kind, "title": title, "details": details}, default=str))
    if settings.alert_webhook_url is None:
        return False
    body = json.dumps(slack_payload(kind, title, details), default=str).encode()
    request = urllib.request.Request(
        settings.alert_webhook_url.get_secret_value(),
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            return bool(200 <= response.status < 300)
    except OSError as error:  # URLError, HTTPError, timeouts
        log.error("alert webhook failed: %s", error)
        return False
