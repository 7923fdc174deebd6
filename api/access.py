"""Who may call: a tenant's API keys (issued once, stored hashed, scoped, revocable) and its
console users (invited by email, disabled and enabled). Every change is audited here, so
the API and the console audit alike. Functions return None for an id the scope cannot see
(another tenant's): the API answers 404.

A revoked key stops working at once on the worker that revoked it and within CACHE_TTL_S
(api/store.py) on the others, which cache authenticated keys. A key cannot revoke itself:
the caller would lose the key it is using, and the tenant perhaps its last admin key (a new
admin key is made first, then the old one is revoked with it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from api import audit
from api.affiliates import affiliate
from api.auth import EmailAddress, Locale, StateConflict, User, next_write_time
from api.state import EdgeState
from api.store import ConfigStore, Principal, TenantScope, UtcDatetime
from rastro.ids import uuid7

KeyScope = Literal["admin", "analyst", "affiliate", "ingest"]


def invitation_url(public_url: str, token: str) -> str:
    """Where an invited user sets a password (the console's page)."""
    return f"{public_url}/console/invite/{token}"


# -- API keys ---------------------------------------------------------------------------------


class ApiKeyCreate(BaseModel):
    """What a new key may do. An affiliate key acts for one affiliate and does nothing else,
    so that no key mixes a tenant-wide scope with an affiliate's limited view."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=200, examples=["Loja backend"])
    scopes: list[KeyScope] = Field(min_length=1, max_length=4, examples=[["ingest"]])
    affiliate_id: str | None = Field(
        None, max_length=64, description="Required with the affiliate scope, refused without"
    )
    expires_at: AwareDatetime | None = Field(
        None, description="RFC 3339 with an offset; omitted: the key never expires"
    )

    @field_validator("scopes")
    @classmethod
    def _unique(cls, scopes: list[KeyScope]) -> list[KeyScope]:
        if len(set(scopes)) != len(scopes):
            raise ValueError("each scope once")
        return scopes

    @model_validator(mode="after")
    def _consistent(self) -> ApiKeyCreate:
        if "affiliate" in self.scopes:
            if self.scopes != ["affiliate"]:
                raise ValueError("the affiliate scope cannot be combined with other scopes")
            if self.affiliate_id is None:
                raise ValueError("an affiliate key needs the affiliate_id it acts for")
        elif self.affiliate_id is not None:
            raise ValueError("affiliate_id is only for keys with the affiliate scope")
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            raise ValueError("expires_at must be in the future")
        return self


class ApiKey(BaseModel):
    """A key as listed: never the key itself (it is shown once, when created)."""

    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    affiliate_id: str | None
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    status: Literal["active", "expired", "revoked"]


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key: shown this once, stored only as a hash")


_KEY_COLUMNS = (
    "id, name, prefix, scopes, affiliate_id, created_at, expires_at, revoked_at, "
    "multiIf(revoked_at IS NOT NULL, 'revoked', expires_at <= now64(3), 'expired', 'active') "
    "AS status"
)


def api_keys(scope: TenantScope) -> list[ApiKey]:
    rows = scope.rows(f"SELECT {_KEY_COLUMNS} FROM api_keys FINAL ORDER BY id")
    return [ApiKey(**row) for row in rows]


def api_key(scope: TenantScope, key_id: str) -> ApiKey | None:
    rows = scope.rows(
        f"SELECT {_KEY_COLUMNS} FROM api_keys FINAL WHERE id = {{id:String}}", id=key_id
    )
    return ApiKey(**rows[0]) if rows else None


def issue_api_key(
    scope: TenantScope, actor: Principal, request: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """A new key and the key itself (to show once). Raises ValueError if the affiliate it
    would act for is not one of the tenant's."""
    if request.affiliate_id is not None and affiliate(scope, request.affiliate_id) is None:
        raise ValueError(f"no affiliate {request.affiliate_id!r} in this tenant")
    key_id = uuid7()
    key = scope.create_api_key(
        request.name, list(request.scopes), request.affiliate_id, request.expires_at, key_id
    )
    issued = api_key(scope, key_id)
    assert issued is not None  # just written, read back through the same scope
    audit.record(
        scope, actor, "api_key.create", "api_key", key_id,
        details={"name": request.name, "scopes": request.scopes,
                 "affiliate_id": request.affiliate_id, "expires_at": request.expires_at},
    )  # fmt: skip
    return issued, key


def revoke_api_key(
    scope: TenantScope, store: ConfigStore, actor: Principal, key_id: str, reason: str = ""
) -> ApiKey | None:
    """Revokes a key. Revoking a revoked key changes nothing and answers the same (a retried
    DELETE is harmless). Raises StateConflict if `actor` is that key."""
    rows = scope.rows(
        "SELECT * EXCEPT (tenant_id, version) FROM api_keys FINAL WHERE id = {id:String}",
        id=key_id,
    )
    if not rows:
        return None
    row = rows[0]
    if actor.actor_kind == "api_key" and actor.actor_id == key_id:
        raise StateConflict(
            "a key cannot revoke itself: revoke it with another admin key or a console admin"
        )
    if row["revoked_at"] is None:
        at = next_write_time(row.pop("updated_at"))
        row["revoked_at"] = at
        scope.write_version("api_keys", row, at)
        store.forget_api_key(row["key_hash"])
        audit.record(
            scope, actor, "api_key.revoke", "api_key", key_id, reason,
            details={"name": row["name"], "scopes": row["scopes"]},
        )  # fmt: skip
    return api_key(scope, key_id)


# -- console users ----------------------------------------------------------------------------


class UserInvite(BaseModel):
    """A merchant's staff member to invite (affiliates are invited with their affiliate)."""

    model_config = {"extra": "forbid"}

    email: EmailAddress
    display_name: str = Field(min_length=1, max_length=200, examples=["Marina Souza"])
    role: Literal["admin", "analyst"]
    locale: Locale = "pt-BR"


def invite_user(
    scope: TenantScope, state: EdgeState, actor: Principal, request: UserInvite
) -> tuple[User, str]:
    """A new invited user and its one-time token. Raises StateConflict if the email has a
    user already (in any tenant: the email is the login)."""
    user, token = state.users.invite(
        scope, request.email, request.display_name, request.role, locale=request.locale
    )
    # The email stays out of the audit log: it is append-only, personal data there never goes.
    audit.record(
        scope, actor, "user.invite", "user", user.id,
        details={"role": request.role, "display_name": request.display_name},
    )  # fmt: skip
    return user, token


def reinvite_user(
    scope: TenantScope, state: EdgeState, actor: Principal, user_id: str
) -> tuple[User, str] | None:
    """A fresh invitation (the previous token stops working). Raises StateConflict unless
    the user is still invited."""
    renewed = state.users.reinvite(scope, user_id)
    if renewed is not None:
        audit.record(scope, actor, "user.reinvite", "user", user_id)
    return renewed


def set_user_enabled(
    scope: TenantScope,
    state: EdgeState,
    actor: Principal,
    user_id: str,
    enabled: bool,
    reason: str = "",
) -> User | None:
    """Disables or enables a user. Raises StateConflict if it already is, or if a user
    would disable themselves (an admin locking themselves out)."""
    if not enabled and actor.actor_kind == "user" and actor.actor_id == user_id:
        raise StateConflict("you cannot disable yourself: ask another admin")
    change = state.users.enable if enabled else state.users.disable
    user = change(scope, user_id)
    if user is not None:
        action = "user.enable" if enabled else "user.disable"
        audit.record(scope, actor, action, "user", user_id, reason, details={"status": user.status})
    return user
