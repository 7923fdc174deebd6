"""Console users: passwords (scrypt), invitations (one-time tokens) and sessions (signed,
expiring cookies). API keys are in api/store.py; both end up as a `Principal`.

A session cookie is `<user id>.<tenant id>.<expiry>.<signature>`, signed with an HMAC of the
secret key. It carries no role: each request reads the user (cached for CACHE_TTL_S), so a
disabled user or a changed role takes effect within that time without any session store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from api.store import CACHE_TTL_S, ConfigStore, Principal, TenantScope, TtlCache, UtcDatetime
from rastro.ids import uuid7

Role = Literal["admin", "analyst", "affiliate"]
Locale = Literal["pt-BR", "en"]
SESSION_COOKIE = "rastro_session"
SESSION_TTL_S = 12 * 3600
# scrypt cost: n=2^14, r=8 (16 MiB, ~50 ms here): OWASP's minimum for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class User(BaseModel):
    id: str
    email: str
    display_name: str
    role: Role
    affiliate_id: str | None
    locale: Locale
    status: Literal["invited", "active", "disabled"]
    created_at: UtcDatetime


_USER_COLUMNS = "id, email, display_name, role, affiliate_id, locale, status, created_at"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
    except ValueError:
        return False  # no password set yet (an invited user), or not a hash
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest.hex(), expected)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Users:
    """Console users of every tenant: login and sessions look users up across tenants (the
    login form does not know the tenant); everything else goes through a TenantScope."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store
        self._secret = hmac.new(
            store.settings.secret_key.get_secret_value().encode(), b"sessions", hashlib.sha256
        ).digest()
        self._principals = TtlCache(CACHE_TTL_S)

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
        the user is active at once, as the demo and tests need)."""
        if (role == "affiliate") != (affiliate_id is not None):
            raise ValueError("an affiliate user, and only one, acts for an affiliate")
        token = "" if password else secrets.token_urlsafe(32)
        user = User(
            id=uuid7(),
            email=normalize_email(email),
            display_name=display_name,
            role=role,
            affiliate_id=affiliate_id,
            locale=locale,
            status="active" if password else "invited",
            created_at=datetime.now(UTC),
        )
        scope.write_version(
            "users",
            {
                **user.model_dump(),
                "password_hash": hash_password(password) if password else "",
                "invite_token_hash": _token_hash(token) if token else "",
            },
        )
        return user, token

    def users(self, scope: TenantScope) -> list[User]:
        rows = scope.rows(f"SELECT {_USER_COLUMNS} FROM users FINAL ORDER BY email")
        return [User(**row) for row in rows]

    def set_status(self, scope: TenantScope, user_id: str, status: str) -> User | None:
        rows = scope.rows("SELECT * FROM users FINAL WHERE id = {id:String}", id=user_id)
        if not rows:
            return None
        row = rows[0]
        row.update(status=status)
        for column in ("tenant_id", "updated_at", "version"):
            row.pop(column)
        scope.write_version("users", row)
        self._principals.drop(user_id)
        return User(**{k: row[k] for k in User.model_fields})

    # -- invitations, login and sessions -------------------------------------------------

    def accept_invite(self, token: str, password: str) -> Principal | None:
        """Sets the invited user's password; the token works once."""
        rows = self._store.rows(
            "SELECT * FROM users FINAL WHERE invite_token_hash = {h:String} AND status = 'invited'",
            h=_token_hash(token),
        )
        if not rows:
            return None
        row = rows[0]
        tenant_id = row.pop("tenant_id")
        for column in ("updated_at", "version"):
            row.pop(column)
        row.update(status="active", password_hash=hash_password(password), invite_token_hash="")
        self._store.for_tenant(tenant_id).write_version("users", row)
        return self.principal(tenant_id, row["id"])

    def login(self, email: str, password: str) -> Principal | None:
        rows = self._store.rows(
            "SELECT tenant_id, id, password_hash FROM users FINAL "
            "WHERE email = {email:String} AND status = 'active'",
            email=normalize_email(email),
        )
        if not rows or not verify_password(password, rows[0]["password_hash"]):
            return None
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
