"""Console users: passwords (scrypt), invitations (one-time tokens) and sessions (signed,
expiring cookies). API keys are in api/store.py; both end up as a `Principal`.

A session cookie is `<user id>.<tenant id>.<expiry>.<signature>`, signed with an HMAC of the
secret key. It carries no role: each request reads the user (cached for CACHE_TTL_S), so a
disabled user or a changed role takes effect within that time without any session store.

An invitation token works once and for INVITATION_TTL after it was sent (`users.invited_at`);
an expired one is replaced by `reinvite`. Passwords follow `check_password`. Refusals meant
to be shown as they are raise `StateConflict` (the API answers 409), `InvitationExpired` or
`WeakPassword`, each with a message written for people.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from api.store import CACHE_TTL_S, ConfigStore, Principal, TenantScope, TtlCache, UtcDatetime
from rastro.ids import uuid7
from rastro.keys import hash_password, verify_password

Role = Literal["admin", "analyst", "affiliate"]
Locale = Literal["pt-BR", "en"]
SESSION_COOKIE = "rastro_session"
SESSION_TTL_S = 12 * 3600
INVITATION_TTL = timedelta(days=7)
# NIST SP 800-63B: length is what makes a password strong; no composition rules. The upper
# bound only caps the work one login attempt can cost.
MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 10, 256


class StateConflict(Exception):
    """A change the subject's current state does not allow (approving an approved affiliate,
    inviting an email that already has a user...): the API answers 409 with the message."""


class InvitationExpired(Exception):
    """The invitation token is right but older than INVITATION_TTL: ask for a new one."""


class WeakPassword(ValueError):
    """The password does not follow the policy; the message says what is missing."""


class TooManyAttempts(Exception):
    """Too many failed logins for this email lately: wait before trying again."""


# Failed logins allowed per email within the window, per API worker: enough for typos, too
# few for guessing (scrypt already costs ~50 ms per guess).
MAX_FAILED_LOGINS, FAILED_LOGIN_WINDOW_S = 5, 15 * 60


_EMAIL = re.compile(r"[^@\s]+@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _valid_email(value: str) -> str:
    email = normalize_email(value)
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError("is not an email address (name@example.com)")
    return email


# An email address in a request: trimmed, lower-cased (how it is stored and compared), checked.
EmailAddress = Annotated[
    str,
    Field(max_length=320, examples=["ana@example.com"], json_schema_extra={"format": "email"}),
    AfterValidator(_valid_email),
]


def check_password(password: str) -> None:
    """Raises WeakPassword, with what is wrong, unless `password` follows the policy."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("a password cannot be only spaces")


def next_write_time(previous: datetime) -> datetime:
    """Now, or 1 ms after `previous` if the clock has not passed it: a new version of a
    configuration row must sort after the one it replaces (its version is updated_at in ms)."""
    now = datetime.now(UTC)
    previous = previous if previous.tzinfo else previous.replace(tzinfo=UTC)
    return max(now, previous + timedelta(milliseconds=1))


class User(BaseModel):
    id: str
    email: str
    display_name: str
    role: Role
    affiliate_id: str | None
    locale: Locale
    status: Literal["invited", "active", "disabled"]
    invited_at: UtcDatetime | None = None  # of the pending invitation, if any
    created_at: UtcDatetime


_USER_COLUMNS = (
    "id, email, display_name, role, affiliate_id, locale, status, invited_at, created_at"
)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expired(invited_at: datetime | None) -> bool:
    # An invited user always has invited_at; a row without one has no invitation to honour.
    if invited_at is None:
        return True
    sent = invited_at if invited_at.tzinfo else invited_at.replace(tzinfo=UTC)
    return datetime.now(UTC) > sent + INVITATION_TTL


class Users:
    """Console users of every tenant: login and sessions look users up across tenants (the
    login form does not know the tenant); everything else goes through a TenantScope."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store
        self._secret = hmac.new(
            store.settings.secret_key.get_secret_value().encode(), b"sessions", hashlib.sha256
        ).digest()
        self._principals = TtlCache(CACHE_TTL_S)
        self._failed_logins = TtlCache(FAILED_LOGIN_WINDOW_S)

    # -- management, within a tenant ---------------------------------------------------

    def email_taken(self, email: str) -> bool:
        rows = self._store.rows(
            "SELECT count() AS n FROM users FINAL WHERE email = {email:String}",
            email=normalize_email(email),
        )
        return bool(rows[0]["n"])

    def invite(
        self,
        scope: TenantScope,
        email: str,
        display_name: str,
        role: Role,
        affiliate_id: str | None = None,
        locale: Locale = "pt-BR",
        password: str | None = None,
    ) -> tuple[User, str]:
        """A new user and its one-time invitation token (empty when a password is given:
        the user is active at once, as the demo and tests need). Raises StateConflict if
        a user (of any tenant: the email is the login) already has this email."""
        if (role == "affiliate") != (affiliate_id is not None):
            raise ValueError("an affiliate user, and only one, acts for an affiliate")
        if password is not None:
            check_password(password)
        if self.email_taken(email):
            raise StateConflict("a user with this email already exists")
        token = "" if password else secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        user = User(
            id=uuid7(),
            email=normalize_email(email),
            display_name=display_name,
            role=role,
            affiliate_id=affiliate_id,
            locale=locale,
            status="active" if password else "invited",
            invited_at=None if password else now,
            created_at=now,
        )
        scope.write_version(
            "users",
            {
                **user.model_dump(),
                "password_hash": hash_password(password) if password else "",
                "invite_token_hash": _token_hash(token) if token else "",
            },
            now,
        )
        return user, token

    def users(self, scope: TenantScope) -> list[User]:
        rows = scope.rows(f"SELECT {_USER_COLUMNS} FROM users FINAL ORDER BY email")
        return [User(**row) for row in rows]

    def user(self, scope: TenantScope, user_id: str) -> User | None:
        rows = scope.rows(
            f"SELECT {_USER_COLUMNS} FROM users FINAL WHERE id = {{id:String}}", id=user_id
        )
        return User(**rows[0]) if rows else None

    def _rewrite(self, scope: TenantScope, user_id: str, **changes: Any) -> User | None:
        """Writes a new version of a user of `scope` with `changes`; None if there is none."""
        rows = scope.rows(
            "SELECT * EXCEPT (tenant_id, version) FROM users FINAL WHERE id = {id:String}",
            id=user_id,
        )
        if not rows:
            return None
        row = rows[0]
        at = next_write_time(row.pop("updated_at"))
        row.update(changes)
        scope.write_version("users", row, at)
        self._principals.drop(user_id)
        return User(**{k: row[k] for k in User.model_fields})

    def set_status(self, scope: TenantScope, user_id: str, status: str) -> User | None:
        return self._rewrite(scope, user_id, status=status)

    def set_locale(self, scope: TenantScope, user_id: str, locale: Locale) -> User | None:
        """Saves the language a user picked (the console's switch), so it follows the user
        to other browsers. Not audited: a personal preference, not a change to the program."""
        user = self.user(scope, user_id)
        if user is None or user.locale == locale:
            return user  # unchanged: no new row version for every click on the switch
        return self._rewrite(scope, user_id, locale=locale)

    def disable(self, scope: TenantScope, user_id: str) -> User | None:
        """Disables a user (signed in or not): its sessions stop working within CACHE_TTL_S."""
        user = self.user(scope, user_id)
        if user is None:
            return None
        if user.status == "disabled":
            raise StateConflict("the user is already disabled")
        return self._rewrite(scope, user_id, status="disabled")

    def enable(self, scope: TenantScope, user_id: str) -> User | None:
        """Enables a disabled user again: active if it had set a password, else invited
        (its invitation still has to be accepted, or renewed with `reinvite`)."""
        rows = scope.rows(
            "SELECT status, password_hash != '' AS has_password FROM users FINAL "
            "WHERE id = {id:String}",
            id=user_id,
        )
        if not rows:
            return None
        if rows[0]["status"] != "disabled":
            raise StateConflict(f"the user is {rows[0]['status']}, not disabled")
        return self._rewrite(
            scope, user_id, status="active" if rows[0]["has_password"] else "invited"
        )

    def reinvite(self, scope: TenantScope, user_id: str) -> tuple[User, str] | None:
        """A new invitation token for a user who has not accepted one yet (the old token
        stops working), valid for INVITATION_TTL from now."""
        user = self.user(scope, user_id)
        if user is None:
            return None
        if user.status != "invited":
            raise StateConflict(f"the user is {user.status}: only invited users get invitations")
        token = secrets.token_urlsafe(32)
        updated = self._rewrite(
            scope,
            user_id,
            invite_token_hash=_token_hash(token),
            invited_at=next_write_time(user.invited_at or user.created_at),
        )
        assert updated is not None  # it was there a moment ago; users are never deleted
        return updated, token

    # -- invitations, login and sessions -------------------------------------------------

    def _pending_invitation(self, token: str) -> tuple[str, User] | None:
        """(tenant id, invited user) of a token; None if unknown, used or replaced."""
        if not token:
            return None
        rows = self._store.rows(
            f"SELECT tenant_id, {_USER_COLUMNS} FROM users FINAL "
            "WHERE invite_token_hash = {h:String} AND status = 'invited'",
            h=_token_hash(token),
        )
        if not rows:
            return None
        row = rows[0]
        tenant_id = row.pop("tenant_id")
        user = User(**row)
        if _expired(user.invited_at):
            raise InvitationExpired(
                "this invitation has expired: ask whoever invited you to send a new one"
            )
        return tenant_id, user

    def invitation(self, token: str) -> User | None:
        """The invited user a token belongs to (None: unknown, used or replaced token);
        raises InvitationExpired. For the invitation page, before it asks for a password."""
        pending = self._pending_invitation(token)
        return pending[1] if pending else None

    def accept_invite(self, token: str, password: str) -> Principal | None:
        """Sets the invited user's password and activates it; the token works once. None if
        the token is unknown or already used; raises InvitationExpired or WeakPassword."""
        pending = self._pending_invitation(token)
        if pending is None:
            return None
        check_password(password)
        tenant_id, user = pending
        self._rewrite(
            self._store.for_tenant(tenant_id),
            user.id,
            status="active",
            password_hash=hash_password(password),
            invite_token_hash="",
            invited_at=None,
        )
        return self.principal(tenant_id, user.id)

    def login(self, email: str, password: str) -> Principal | None:
        """The user of a right email and password; None if wrong. After MAX_FAILED_LOGINS
        failures for an email within FAILED_LOGIN_WINDOW_S, raises TooManyAttempts (right
        password or not) until the window after the last failure has passed."""
        email = normalize_email(email)
        failures: int = self._failed_logins.get(email) or 0
        if failures >= MAX_FAILED_LOGINS:
            raise TooManyAttempts(email)
        rows = self._store.rows(
            "SELECT tenant_id, id, password_hash FROM users FINAL "
            "WHERE email = {email:String} AND status = 'active'",
            email=email,
        )
        if not rows or not verify_password(password, rows[0]["password_hash"]):
            self._failed_logins.put(email, failures + 1)
            return None
        self._failed_logins.drop(email)
        return self.principal(rows[0]["tenant_id"], rows[0]["id"])

    def principal(self, tenant_id: str, user_id: str) -> Principal | None:
        """The active user as a Principal (its role is its scope), None if not active."""
        cached: Principal | None = self._principals.get(user_id)
        if cached is not None:
            return cached
        rows = self._store.rows(
            "SELECT id, display_name, role, affiliate_id FROM users FINAL "
            "WHERE tenant_id = {tenant:String} AND id = {id:String} AND status = 'active'",
            tenant=tenant_id,
            id=user_id,
        )
        if not rows:
            return None
        row = rows[0]
        principal = Principal(
            tenant_id=tenant_id,
            actor_kind="user",
            actor_id=row["id"],
            actor_name=row["display_name"],
            scopes=[row["role"]],
            affiliate_id=row["affiliate_id"],
        )
        self._principals.put(user_id, principal)
        return principal

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def session_token(self, principal: Principal, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_TTL_S)
        payload = f"{principal.actor_id}.{principal.tenant_id}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def session(self, token: str) -> Principal | None:
        """The principal of a valid, unexpired session token of an active user."""
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            user_id, tenant_id, expires = payload.split(".")
            if int(expires) < time.time():
                return None
        except ValueError:
            return None
        return self.principal(tenant_id, user_id)
