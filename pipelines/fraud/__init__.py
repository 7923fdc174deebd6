"""Fraud batch detection (issue 6; docs/fraud.md): explainable rules over the warehouse's
commissions, touches, identities and daily traffic, each flag with its rule, evidence and
threshold; flagged commissions are put on hold for review, never deleted.

    flags = detect(client, database, as_of, Thresholds())   # a polars frame, per tenant
    record(client, database, flags, run_id)                   # fraud_flags + hold decisions
"""

from pipelines.fraud.detect import detect
from pipelines.fraud.record import Recorded, reason, record
from pipelines.fraud.rules import FLAGS, RULES, apply, flag_id
from pipelines.fraud.thresholds import Thresholds

__all__ = [
    "FLAGS",
    "RULES",
    "Recorded",
    "Thresholds",
    "apply",
    "detect",
    "flag_id",
    "reason",
    "record",
]
