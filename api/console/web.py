"""What every console page shares: who is logged in (the session cookie), which language
the page speaks, the CSRF token, the tenant scope, and rendering a template.

Sessions are the signed cookies of api/auth.py (`Users.session_token`). Pages get a `Page`
through `page(*roles)`: not logged in -> redirect to the login form; logged in with a role
the page is not for -> the 403 page. Every POST is checked by `checked_page(*roles)`: the
form field `csrf_token` or the header `X-CSRF-Token` (htmx sends it, from `hx-headers` on
<body>) must be the token of this browser. The token is an HMAC of a random per-browser
cookie and the session cookie: another site can make the browser send the cookies, but
cannot read the token to put in the form (signed double submit, OWASP).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import SESSION_COOKIE, SESSION_TTL_S
from api.console import formatting
from api.console.i18n import CATALOGS, Translator, negotiate, translator
from api.console.templating import render_template
from api.state import EdgeState
from api.store import Principal, Tenant, TenantScope

PREFIX = "/console"
CSRF_COOKIE = "rastro_csrf"  # random per browser: what the CSRF token is bound to
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOCALE_COOKIE = "rastro_locale"
FLASH_COOKIE = "rastro_flash"
STATE_KEY = "rastro.edge"  # where the console's mount puts the API's EdgeState (see app.py)

# Roles, as api/auth.py's users have them: a user's role is its one scope.
MERCHANT_ROLES = ("admin", "analyst")
ADMIN = ("admin",)
AFFILIATE = ("affiliate",)

# The sidebar, in order: (id, path under /console, roles that see it). The id names the
# catalog key nav.<id> and the link's id and data-testid nav-<id>.
NAV: list[tuple[str, str, tuple[str, ...]]] = [
    ("dashboard", "/", MERCHANT_ROLES),
    ("campaigns", "/campaigns", ADMIN),
    ("affiliates", "/affiliates", ADMIN),
    ("links", "/links", ADMIN),
    ("commissions", "/commissions", ADMIN),
    ("payouts", "/payouts", ADMIN),
    ("reports", "/reports", MERCHANT_ROLES),
    ("webhooks", "/webhooks", ADMIN),
    ("audit", "/audit", ADMIN),
    ("settings", "/settings", ADMIN),
    ("affiliate_dashboard", "/affiliate", AFFILIATE),
    ("my_links", "/affiliate/links", AFFILIATE),
    ("my_commissions", "/affiliate/commissions", AFFILIATE),
    ("payout_details", "/affiliate/payout-details", AFFILIATE),
]


@dataclass(frozen=True)
class NavItem:
    id: str
    href: str
    current: bool


def edge_state(request: Request) -> EdgeState:
    state: EdgeState = request.scope[STATE_KEY]
    return state


def secure_cookies(state: EdgeState) -> bool:
    return state.settings.public_url.startswith("https://")


def _csrf_key(state: EdgeState) -> bytes:
    secret = state.settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"console-csrf", hashlib.sha256).digest()


def csrf_token(state: EdgeState, browser_nonce: str, session: str) -> str:
    message = f"{browser_nonce}|{session}".encode()
    return hmac.new(_csrf_key(state), message, hashlib.sha256).hexdigest()


def role_of(principal: Principal) -> str:
    return principal.scopes[0] if principal.actor_kind == "user" and principal.scopes else ""


@dataclass
class Page:
    """One request of a console page: the caller, the language, and the means to answer."""

    request: Request
    state: EdgeState
    principal: Principal | None
    locale: str
    browser_nonce: str
    new_nonce: bool  # the nonce cookie must be set on the answer
    flash: dict[str, Any] | None = None
    _cookies: list[tuple[str, str, int]] = field(default_factory=list)

    # -- who and where ---------------------------------------------------------------------

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "a page for logged-in users only"
        return self.principal

    @property
    def role(self) -> str:
        return role_of(self.principal) if self.principal else ""

    @cached_property
    def scope(self) -> TenantScope:
        """The caller's data: the tenant's, and for an affiliate user only its affiliate's."""
        return self.state.store.for_principal(self.user)

    @cached_property
    def tenant(self) -> Tenant:
        return self.scope.tenant()

    @property
    def currency(self) -> str:
        return self.tenant.default_currency

    @property
    def timezone(self) -> str:
        return self.tenant.timezone

    @property
    def csrf(self) -> str:
        return csrf_token(
            self.state, self.browser_nonce, self.request.cookies.get(SESSION_COOKIE, "")
        )

    # -- words and numbers -------------------------------------------------------------------

    @property
    def t(self) -> Translator:
        return translator(self.locale)

    @property
    def nav(self) -> list[NavItem]:
        """The sidebar: the pages of the caller's role, the current one marked."""
        path = self.request.url.path
        items = []
        for item_id, href, roles in NAV:
            if self.role in roles:
                full = PREFIX + href
                current = path == full or (
                    href not in ("/", "/affiliate") and path.startswith(full)
                )
                items.append(NavItem(item_id, full, current))
        return items

    def money(self, minor: int, currency: str | None = None) -> str:
        return formatting.format_money(int(minor), currency or self.currency, self.locale)

    @cached_property
    def fmt(self) -> Formats:
        return Formats(self.locale, self.timezone if self.principal else "UTC")

    def link_url(self, code: str) -> str:
        """The tracked URL of a link code, as affiliates share it."""
        return f"{self.state.settings.public_url}/r/{code}"

    # -- answers -----------------------------------------------------------------------------

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = render_template(
            template,
            page=self,
            t=self.t,
            catalog=CATALOGS[self.locale],
            fmt=self.fmt,
            status_code=status_code,
            **values,
        )
        response = HTMLResponse(html, status_code=status_code)
        self._finish(response)
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=PREFIX)
        return response

    def redirect(self, path: str, flash: str = "", **flash_args: Any) -> RedirectResponse:
        """303 to `path` (POST, redirect, GET), showing the catalog message `flash` there."""
        response = RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)
        if flash:
            self.t(f"flash.{flash}", **flash_args)  # an unknown key fails here, not later
            value = json.dumps({"key": flash, "args": flash_args}, default=str)
            response.set_cookie(
                FLASH_COOKIE,
                quote(value),
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure_cookies(self.state),
            )
        self._finish(response)
        return response

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        self._cookies.append((name, value, max_age))

    def _finish(self, response: Response) -> None:
        if self.new_nonce:
            self.set_cookie(CSRF_COOKIE, self.browser_nonce, 400 * 86400)
        for name, value, max_age in self._cookies:
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure_cookies(self.state),
            )


@dataclass(frozen=True)
class Formats:
    """Numbers and dates in the page's language, times in the tenant's time zone."""

    locale: str
    timezone: str

    def number(self, value: int) -> str:
        return formatting.format_number(int(value), self.locale)

    def percent(self, rate: str | Decimal) -> str:
        return formatting.format_percent(rate, self.locale)

    def date(self, value: dt.date) -> str:
        return formatting.format_date(value, self.locale)

    def day(self, value: dt.date) -> str:
        return formatting.format_day(value, self.locale)

    def datetime(self, value: dt.datetime) -> str:
        return formatting.format_datetime(value, self.timezone, self.locale)


def _flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
        return {"key": str(value["key"]), "args": dict(value.get("args") or {})}
    except (ValueError, KeyError, TypeError):
        return None


def user_locale(state: EdgeState, principal: Principal) -> str:
    rows = state.store.for_principal(principal).rows(
        "SELECT locale FROM users FINAL WHERE id = {id:String}", id=principal.actor_id
    )
    return str(rows[0]["locale"]) if rows else formatting.DEFAULT_LOCALE


def build_page(request: Request) -> Page:
    """The page as anyone may see it (logged in or not)."""
    state = edge_state(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    principal = state.users.session(token) if token else None
    chosen = request.cookies.get(LOCALE_COOKIE, "")
    if chosen in formatting.LOCALES:
        locale = chosen
    elif principal is not None:
        locale = user_locale(state, principal)
    else:
        locale = negotiate(request.headers.get("accept-language", ""))
    nonce = request.cookies.get(CSRF_COOKIE, "")
    new_nonce = len(nonce) != 43  # token_urlsafe(32); anything else is replaced
    return Page(
        request=request,
        state=state,
        principal=principal,
        locale=locale,
        browser_nonce=secrets.token_urlsafe(32) if new_nonce else nonce,
        new_nonce=new_nonce,
        flash=_flash(request),
    )


AnyPage = Annotated[Page, Depends(build_page)]


class LoginRequired(Exception):
    """Not logged in: the console answers with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def page(*roles: str) -> Any:
    """A page for users with one of `roles` (admin may see every merchant page)."""

    def check(current: AnyPage) -> Page:
        if current.principal is None:
            raise LoginRequired(current.request.url.path)
        if current.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role")
        return current

    return Depends(check)


async def _verify_csrf(current: Page, request: Request) -> Page:
    """403 unless the request carries this browser's CSRF token (header or form field)."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        form: Mapping[str, Any] = await request.form()
        sent = str(form.get(CSRF_FIELD, ""))
    if current.new_nonce or not hmac.compare_digest(sent.encode(), current.csrf.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "csrf")
    return current


def checked_page(*roles: str) -> Any:
    """As `page`, for a POST: also requires the CSRF token."""

    # The dependency as a default value: an annotation naming `roles` (a closure variable)
    # could not be resolved under `from __future__ import annotations`.
    async def check(request: Request, current: Page = page(*roles)) -> Page:  # noqa: B008
        return await _verify_csrf(current, request)

    return Depends(check)


async def check_anonymous_csrf(current: AnyPage, request: Request) -> Page:
    """The CSRF check of the forms anyone may post (login, invitation, language)."""
    return await _verify_csrf(current, request)


AnonymousPost = Annotated[Page, Depends(check_anonymous_csrf)]
Admin = Annotated[Page, page(*ADMIN)]
AdminPost = Annotated[Page, checked_page(*ADMIN)]
Merchant = Annotated[Page, page(*MERCHANT_ROLES)]
AffiliateUser = Annotated[Page, page(*AFFILIATE)]
AffiliatePost = Annotated[Page, checked_page(*AFFILIATE)]


def session_cookie_args(state: EdgeState) -> dict[str, Any]:
    return {
        "max_age": SESSION_TTL_S,
        "path": PREFIX,
        "httponly": True,
        "samesite": "lax",
        "secure": secure_cookies(state),
    }
