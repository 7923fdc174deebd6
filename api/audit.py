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
    scope.insert(
        "audit_log",
        [
            {
                "at": datetime.now(UTC),
                "audit_id": uuid7(),
                "actor_kind": actor.actor_kind,
                "actor_id": actor.actor_id,
                "actor_name": actor.actor_name,
                "action": action,
                "subject_kind": subject_kind,
                "subject_id": subject_id,
                "reason": reason,
                "details": json.dumps(details or {}, default=str, sort_keys=True),
            }
        ],
    )


def entries(
    scope: TenantScope, subject_kind: str = "", subject_id: str = "", limit: int = 100
) -> list[AuditEntry]:
    """The newest entries first, optionally about one subject."""
    rows = scope.rows(
        "SELECT at, audit_id, actor_kind, actor_id, actor_name, action, subject_kind, "
        "subject_id, reason, details FROM audit_log "
        "WHERE ({kind:String} = '' OR subject_kind = {kind:String}) "
        "AND ({id:String} = '' OR subject_id = {id:String}) "
        "ORDER BY at DESC, audit_id DESC LIMIT {limit:UInt32}",
        kind=subject_kind,
        id=subject_id,
        limit=limit,
    )
    for row in rows:
        row["details"] = json.loads(row["details"])
    return [AuditEntry(**row) for row in rows]
