"""The audit log: every change made through the API or the console, with who made it,
when and why (table audit_log, append-only). Handlers call `record` after the change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from api.store import Principal, TenantScope, UtcDatetime
from rastro.ids import uuid7


class AuditEntry(BaseModel):
    at: UtcDatetime
    audit_id: str
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    subject_kind: str
    subject_id: str
    reason: str
    details: dict[str, Any]


def record(
    scope: TenantScope,
    actor: Principal,
    action: str,
    subject_kind: str,
    subject_id: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    record_many(scope, actor, action, subject_kind, [(subject_id, details or {})], reason)


def record_many(
    scope: TenantScope,
    actor: Principal,
    action: str,
    subject_kind: str,
    subjects: list[tuple[str, dict[str, Any]]],
    reason: str = "",
    at: datetime | None = None,
) -> None:
    """One entry per (subject id, details), in one insert: a bulk action (up to a thousand
    commissions decided at once) is audited per subject without as many inserts."""
    at = at or datetime.now(UTC)
    scope.insert(
        "audit_log",
        [
            {
                "at": at,
                "audit_id": uuid7(),
                "actor_kind": actor.actor_kind,
                "actor_id": actor.actor_id,
                "actor_name": actor.actor_name,
                "action": action,
                "subject_kind": subject_kind,
                "subject_id": subject_id,
                "reason": reason,
                "details": json.dumps(details, default=str, sort_keys=True),
            }
            for subject_id, details in subjects
        ],
    )


# The span DateTime64(3) holds: the bounds of `entries` when none is given.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2299, 12, 31, tzinfo=UTC)


def _time_parameter(at: datetime) -> str:
    """`at` as a DateTime64(3, 'UTC') parameter. clickhouse-connect renders datetime values
    to the whole second, so milliseconds are passed as text; naive values are taken as UTC."""
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return min(max(at, _EARLIEST), _LATEST).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def entries(
    scope: TenantScope,
    subject_kind: str = "",
    subject_id: str = "",
    limit: int = 100,
    *,
    actor_id: str = "",
    action: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    after: str = "",
) -> list[AuditEntry]:
    """The newest entries first, filtered by whichever of subject, actor, action and time
    span (`since` <= at < `until`) are given; `after` (an audit_id) continues a listing
    after that entry."""
    rows = scope.rows(
        "SELECT at, audit_id, actor_kind, actor_id, actor_name, action, subject_kind, "
        "subject_id, reason, details FROM audit_log "
        "WHERE ({kind:String} = '' OR subject_kind = {kind:String}) "
        "AND ({id:String} = '' OR subject_id = {id:String}) "
        "AND ({actor:String} = '' OR actor_id = {actor:String}) "
        "AND ({action:String} = '' OR action = {action:String}) "
        "AND at >= {since:DateTime64(3, 'UTC')} AND at < {until:DateTime64(3, 'UTC')} "
        "AND ({after:String} = '' OR (at, audit_id) < "
        "    (SELECT at, audit_id FROM audit_log WHERE audit_id = {after:String} LIMIT 1)) "
        "ORDER BY at DESC, audit_id DESC LIMIT {limit:UInt32}",
        kind=subject_kind,
        id=subject_id,
        actor=actor_id,
        action=action,
        since=_time_parameter(since or _EARLIEST),
        until=_time_parameter(until or _LATEST),
        after=after,
        limit=limit,
    )
    for row in rows:
        row["details"] = json.loads(row["details"])
    return [AuditEntry(**row) for row in rows]
