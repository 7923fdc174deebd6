"""Access: the tenant's API keys and console users, and the audit log of every change.
Admin only. The rules are in api/access.py (keys, users) and api/audit.py (the log)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from api import access, audit
from api.access import ApiKey, ApiKeyCreate, ApiKeyCreated, UserInvite, invitation_url
from api.auth import INVITATION_TTL, StateConflict, User
from api.deps import (
    ERROR_RESPONSES,
    ErrorDetail,
    PrincipalDep,
    ScopeDep,
    StateDep,
    StrictBody,
    require,
)
from api.state import EdgeState
from api.store import Principal, TenantScope

router = APIRouter(
    prefix="/v1", tags=["access"], dependencies=[require("admin")], responses=ERROR_RESPONSES
)

KeyId = Annotated[str, Path(max_length=64, description="The key's id (not the key)")]
UserId = Annotated[str, Path(max_length=64, description="The user's id")]


def _responses(not_found: str, conflict: str) -> dict[int | str, dict[str, Any]]:
    return {
        404: {"model": ErrorDetail, "description": not_found},
        409: {"model": ErrorDetail, "description": conflict},
    }


def _conflict(error: StateConflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, str(error))


# -- API keys ---------------------------------------------------------------------------------


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    description="Answers the key **once**; only its SHA-256 hash is stored. Scopes: `admin` "
    "(everything), `analyst` (reads reports), `ingest` (conversions and order updates only: "
    "for the store's backend), `affiliate` (one affiliate's own data: needs `affiliate_id`, "
    "and cannot be combined with other scopes). Audited.",
    responses={
        422: {"model": ErrorDetail, "description": "Invalid scopes, expiry or affiliate_id"}
    },
)
def create_api_key(body: ApiKeyCreate, scope: ScopeDep, actor: PrincipalDep) -> ApiKeyCreated:
    try:
        issued, key = access.issue_api_key(scope, actor, body)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return ApiKeyCreated(**issued.model_dump(), key=key)


@router.get(
    "/api-keys",
    summary="List API keys",
    description="Every key of the tenant, revoked and expired ones included; never the key.",
)
def list_api_keys(scope: ScopeDep) -> list[ApiKey]:
    return access.api_keys(scope)


@router.delete(
    "/api-keys/{key_id}",
    summary="Revoke an API key",
    description="The key stops working at once on the API worker that answers and within 30 "
    "seconds on the others (each caches keys that long). Revoking a revoked key answers the "
    "same and changes nothing. A key cannot revoke itself (409): create another admin key "
    "first, or use the console. Audited with the optional `reason`.",
    responses=_responses("No key with this id in the tenant", "The key is the caller's own"),
)
def revoke_api_key(
    key_id: KeyId,
    scope: ScopeDep,
    state: StateDep,
    actor: PrincipalDep,
    reason: Annotated[str, Query(max_length=2000, description="Why; kept in the audit log")] = "",
) -> ApiKey:
    try:
        revoked = access.revoke_api_key(scope, state.store, actor, key_id, reason)
    except StateConflict as error:
        raise _conflict(error) from None
    if revoked is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id!r}")
    return revoked


# -- console users ----------------------------------------------------------------------------


class UserInvitation(BaseModel):
    user: User
    invitation_url: str = Field(description="Shown this once: send it to the person invited")
    invitation_expires_at: AwareDatetime


class StatusChange(StrictBody):
    reason: str = Field("", max_length=2000, description="Why; kept in the audit log")


def _invitation(state: EdgeState, user: User, token: str) -> UserInvitation:
    assert user.invited_at is not None  # an invitation was just sent
    return UserInvitation(
        user=user,
        invitation_url=invitation_url(state.settings.public_url, token),
        invitation_expires_at=user.invited_at + INVITATION_TTL,
    )


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Invite a console user (merchant staff)",
    description="Answers the one-time invitation URL, valid for 7 days, where the person sets "
    "a password (at least 10 characters). Roles: `admin`, `analyst`. Affiliates get their "
    "users with `POST /v1/affiliates/invite`. The email is the login, so it may have only "
    "one user in all of Rastro (409 otherwise).",
    responses={409: {"model": ErrorDetail, "description": "The email already has a user"}},
)
def invite_user(
    body: UserInvite, scope: ScopeDep, state: StateDep, actor: PrincipalDep
) -> UserInvitation:
    try:
        user, token = access.invite_user(scope, state, actor, body)
    except StateConflict as error:
        raise _conflict(error) from None
    return _invitation(state, user, token)


@router.get(
    "/users",
    summary="List console users",
    description="Merchant staff and affiliate users of the tenant, by email.",
)
def list_users(scope: ScopeDep, state: StateDep) -> list[User]:
    return state.users.users(scope)


def _set_user_enabled(
    scope: TenantScope,
    state: EdgeState,
    actor: Principal,
    user_id: str,
    enabled: bool,
    body: StatusChange | None,
) -> User:
    try:
        user = access.set_user_enabled(
            scope, state, actor, user_id, enabled, body.reason if body else ""
        )
    except StateConflict as error:
        raise _conflict(error) from None
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id!r}")
    return user


@router.post(
    "/users/{user_id}/disable",
    summary="Disable a console user",
    description="The user can no longer sign in; open sessions stop within 30 seconds. You "
    "cannot disable yourself. Audited.",
    responses=_responses("No user with this id in the tenant", "Already disabled, or yourself"),
)
def disable_user(
    user_id: UserId,
    scope: ScopeDep,
    state: StateDep,
    actor: PrincipalDep,
    body: StatusChange | None = None,
) -> User:
    return _set_user_enabled(scope, state, actor, user_id, False, body)


@router.post(
    "/users/{user_id}/enable",
    summary="Enable a disabled console user",
    description="Back to `active`, or to `invited` if the user never set a password. Audited.",
    responses=_responses("No user with this id in the tenant", "The user is not disabled"),
)
def enable_user(
    user_id: UserId,
    scope: ScopeDep,
    state: StateDep,
    actor: PrincipalDep,
    body: StatusChange | None = None,
) -> User:
    return _set_user_enabled(scope, state, actor, user_id, True, body)


@router.post(
    "/users/{user_id}/reinvite",
    summary="Send a console user a new invitation",
    description="For an invitation that expired or was lost: a new one-time URL, valid for 7 "
    "days; the previous one stops working. Only for users still `invited`.",
    responses=_responses("No user with this id in the tenant", "The user is not invited"),
)
def reinvite_user(
    user_id: UserId, scope: ScopeDep, state: StateDep, actor: PrincipalDep
) -> UserInvitation:
    try:
        renewed = access.reinvite_user(scope, state, actor, user_id)
    except StateConflict as error:
        raise _conflict(error) from None
    if renewed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id!r}")
    return _invitation(state, *renewed)


# -- the audit log ----------------------------------------------------------------------------


class AuditPage(BaseModel):
    items: list[audit.AuditEntry]
    next_after: str | None = Field(description="Pass as `after` for the next (older) page")


Filter = Annotated[str, Query(max_length=200)]


@router.get(
    "/audit",
    summary="The audit log",
    description="Every change made through the API or the console: who (actor), when, what "
    "(action, subject, details) and why (reason). Newest first, `limit` at a time; pass "
    "`next_after` as `after` for older entries. `from` is inclusive, `to` exclusive.",
)
def list_audit(
    scope: ScopeDep,
    subject_kind: Filter = "",
    subject_id: Filter = "",
    actor_id: Filter = "",
    action: Annotated[str, Query(max_length=200, examples=["affiliate.approve"])] = "",
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str, Query(max_length=64, description="The last audit_id seen")] = "",
) -> AuditPage:
    if from_ is not None and to is not None and from_ >= to:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`from` must be before `to`")
    items = audit.entries(
        scope,
        subject_kind,
        subject_id,
        limit,
        actor_id=actor_id,
        action=action,
        since=from_,
        until=to,
        after=after,
    )
    return AuditPage(items=items, next_after=items[-1].audit_id if len(items) == limit else None)
