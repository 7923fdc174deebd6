"""The audit log (merchant admins): every change made through the API or the console, who
made it, when and why, newest first, filtered by subject, actor, action and period (days in
the tenant's time zone), a page at a time. Read through api/audit.py `entries`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api import access, audit
from api.console.web import PREFIX, Admin, Page

router = APIRouter()

PAGE_SIZE = 50
# What the audit log's entries are about, for the filter's suggestions (api/*.py record
# them); any other kind typed in is searched as well.
SUBJECT_KINDS = (
    "affiliate",
    "api_key",
    "campaign",
    "commission",
    "coupon",
    "link",
    "merchant_report",
    "payout",
    "payout_batch",
    "payout_settings",
    "user",
    "webhook_endpoint",
)

Filter = Annotated[str, Query(max_length=200)]


@dataclass(frozen=True)
class Detail:
    key: str
    value: str  # text as is; anything else as compact JSON


@dataclass(frozen=True)
class Row:
    entry: audit.AuditEntry
    details: list[Detail]


def _details(details: dict[str, object]) -> list[Detail]:
    return [
        Detail(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in sorted(details.items())
    ]


def _day(text: str) -> date | None:
    """A date of the period filter; ValueError if it is not an ISO date."""
    return date.fromisoformat(text) if text else None


def _start_of(day: date, timezone: str) -> datetime:
    """The instant a day of the tenant's calendar begins."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))


def _actors(current: Page, chosen: str) -> list[tuple[str, str]]:
    """(actor id, name) for the actor filter: the tenant's users and API keys, and the id
    the query asks for if it is neither (a system worker: each entry's actor links to it)."""
    actors = [(u.id, u.display_name) for u in current.state.users.users(current.scope)]
    actors += [(k.id, k.name) for k in access.api_keys(current.scope)]
    if chosen and chosen not in {actor_id for actor_id, _ in actors}:
        actors.append((chosen, chosen))
    return actors


@router.get("/audit")
def audit_log(
    current: Admin,
    subject_kind: Filter = "",
    subject_id: Filter = "",
    actor_id: Filter = "",
    action: Filter = "",
    first: Annotated[str, Query(max_length=10)] = "",
    last: Annotated[str, Query(max_length=10)] = "",
    after: Annotated[str, Query(max_length=64)] = "",  # the last audit_id of the previous page
) -> Response:
    query = {
        "subject_kind": subject_kind.strip(),
        "subject_id": subject_id.strip(),
        "actor_id": actor_id.strip(),
        "action": action.strip(),
        "first": first,
        "last": last,
    }
    errors: dict[str, str] = {}
    first_day = last_day = None
    try:
        first_day = _day(first)
    except ValueError:
        errors["first"] = "audit.bad_date"
    try:
        last_day = _day(last)
    except ValueError:
        errors["last"] = "audit.bad_date"
    if first_day and last_day and first_day > last_day:
        errors["last"] = "audit.bad_period"
    # The period is whole days of the tenant's calendar: from the first's start (inclusive)
    # to the start of the day after the last (exclusive).
    since = _start_of(first_day, current.timezone) if first_day else None
    until = _start_of(last_day + timedelta(days=1), current.timezone) if last_day else None

    rows: list[Row] = []
    next_url = ""
    if not errors:
        found = audit.entries(
            current.scope,
            query["subject_kind"],
            query["subject_id"],
            PAGE_SIZE + 1,  # one more than shown: whether there is a next page
            actor_id=query["actor_id"],
            action=query["action"],
            since=since,
            until=until,
            after=after,
        )
        rows = [Row(entry, _details(entry.details)) for entry in found[:PAGE_SIZE]]
        if len(found) > PAGE_SIZE:
            next_url = f"{PREFIX}/audit?" + urlencode({**query, "after": rows[-1].entry.audit_id})
    return current.render(
        "audit.html",
        status_code=422 if errors else 200,
        rows=rows,
        query=query,
        errors=errors,
        subject_kinds=SUBJECT_KINDS,
        actors=_actors(current, query["actor_id"]),
        next_url=next_url,
        first_url=f"{PREFIX}/audit?" + urlencode(query) if after else "",
    )
