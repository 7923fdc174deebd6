"""Login, logout, invitations and the language switch: the pages anyone may open."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from api.auth import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    SESSION_COOKIE,
    InvitationExpired,
    TooManyAttempts,
    User,
    WeakPassword,
    check_password,
)
from api.console.formatting import LOCALES
from api.console.web import (
    LOCALE_COOKIE,
    PREFIX,
    AnonymousPost,
    AnyPage,
    Page,
    role_of,
    session_cookie_args,
)
from api.store import Principal

router = APIRouter()


def home_of(principal: Principal) -> str:
    return f"{PREFIX}/affiliate" if role_of(principal) == "affiliate" else f"{PREFIX}/"


def _safe_next(next_path: str) -> str:
    # Only a path inside the console: never an open redirect to another site.
    if next_path.startswith(PREFIX + "/") and not next_path.startswith("//"):
        return next_path
    return ""


def _logged_in(current: Page, principal: Principal, next_path: str = "") -> Response:
    response = current.redirect(_safe_next(next_path) or home_of(principal))
    token = current.state.users.session_token(principal)
    response.set_cookie(SESSION_COOKIE, token, **session_cookie_args(current.state))
    return response


@router.get("/login")
def login_form(current: AnyPage, next: str = "") -> Response:
    if current.principal is not None:
        return current.redirect(home_of(current.principal))
    return current.render("login.html", next=_safe_next(next), error="", email="")


@router.post("/login")
def login(
    current: AnonymousPost,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    try:
        principal = current.state.users.login(email, password) if email and password else None
    except TooManyAttempts:
        return current.render(
            "login.html", status_code=429, next=_safe_next(next), error="login.locked", email=email
        )
    if principal is None:
        # One message for an unknown email and a wrong password: no account enumeration.
        return current.render(
            "login.html", status_code=401, next=_safe_next(next), error="login.failed", email=email
        )
    return _logged_in(current, principal, next)


@router.post("/logout")
def logout(current: AnonymousPost) -> Response:
    response = current.redirect(f"{PREFIX}/login", flash="logged_out")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


def _invitation(current: Page, token: str) -> tuple[User | None, str]:
    """The invited user of a token, or the catalog key of why there is none."""
    try:
        user = current.state.users.invitation(token)
    except InvitationExpired:
        return None, "invite.expired"
    return user, "" if user else "invite.invalid"


def _invite_page(current: Page, token: str, status_code: int, error: str) -> Response:
    user, problem = _invitation(current, token)
    return current.render(
        "invite.html",
        status_code=404 if problem else status_code,
        token=token,
        invited=user,
        error=problem or error,
        min_password=MIN_PASSWORD_LENGTH,
        max_password=MAX_PASSWORD_LENGTH,
    )


@router.get("/invite/{token}")
def invite_form(current: AnyPage, token: str) -> Response:
    return _invite_page(current, token, 200, "")


@router.post("/invite/{token}")
def accept_invite(
    current: AnonymousPost,
    token: str,
    password: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    if password != confirm:
        return _invite_page(current, token, 422, "invite.mismatch")
    try:
        check_password(password)  # first, so the policy's message is in the user's language
        principal = current.state.users.accept_invite(token, password)
    except WeakPassword:
        return _invite_page(current, token, 422, "invite.weak")
    except InvitationExpired:
        return _invite_page(current, token, 404, "invite.expired")
    if principal is None:
        return _invite_page(current, token, 404, "invite.invalid")
    return _logged_in(current, principal)


@router.post("/locale")
def switch_locale(
    current: AnonymousPost,
    locale: Annotated[str, Form()] = "",
    back: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    if locale not in LOCALES:
        return current.render("error.html", status_code=422, message="error.locale")
    current.locale = locale
    current.set_cookie(LOCALE_COOKIE, locale, 400 * 86400)
    if current.principal is not None:
        # Also the user's own preference: it speaks in other browsers (no cookie) too.
        current.state.users.set_locale(
            current.scope, current.principal.actor_id, "en" if locale == "en" else "pt-BR"
        )
    return current.redirect(_safe_next(back) or f"{PREFIX}/login")
