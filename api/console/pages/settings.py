"""Settings (merchant admins), one page with a section each: the tenant's API keys (a new
key shown once; revoking), its console users (inviting staff, the invitation URL shown once;
disabling, enabling, inviting again), the payout minimum of each currency, and the user's
own language. The rules and the audit are api/access.py's and api/payouts.py's; the
language form posts to the switch every page has (pages/auth.py), which saves it on the user.

What is shown once (a key, an invitation URL) is rendered in the answer to the POST, never
redirected: it must not travel in a URL or a cookie."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, get_args
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, status
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from api import access, payouts
from api.access import ApiKeyCreate, KeyScope, UserInvite
from api.affiliates import list_affiliates
from api.auth import EmailAddress, StateConflict, User
from api.console import formatting
from api.console.web import PREFIX, Admin, AdminPost, Page
from rastro.money import CURRENCY_EXPONENTS, MAX_MINOR

router = APIRouter()

SETTINGS = f"{PREFIX}/settings"
KEY_SCOPES: tuple[str, ...] = get_args(KeyScope)
STAFF_ROLES = ("admin", "analyst")  # affiliates get their users from the affiliates page
AFFILIATE_CHOICES = 1000  # affiliates offered for an affiliate key, as on the links page
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailAddress)


@dataclass(frozen=True)
class ShownOnce:
    """A secret the answer shows this once: a new API key or an invitation URL."""

    kind: str  # "api_key" | "invitation"
    name: str  # whose: the key's or the user's name
    value: str


def _settings_page(
    current: Page,
    errors: dict[str, str] | None = None,
    values: dict[str, object] | None = None,
    shown_once: ShownOnce | None = None,
    status_code: int = 200,
) -> Response:
    minimums = payouts.payout_settings(current.scope)
    return current.render(
        "settings.html",
        status_code=status_code,
        api_keys=access.api_keys(current.scope),
        users=current.state.users.users(current.scope),
        affiliates=list_affiliates(current.scope, limit=AFFILIATE_CHOICES),
        minimums=minimums,
        currencies=sorted(CURRENCY_EXPONENTS),
        key_scopes=KEY_SCOPES,
        staff_roles=STAFF_ROLES,
        locales=formatting.LOCALES,
        errors=errors or {},
        values=values or {},
        shown_once=shown_once,
    )


@router.get("/settings")
def settings_page(current: Admin) -> Response:
    return _settings_page(current)


# -- API keys -------------------------------------------------------------------------------------


def _expiry(expires_on: str, timezone: str) -> datetime | None:
    """A key valid through `expires_on` (a day of the tenant's calendar) expires when the
    next day begins. ValueError if it is not an ISO date."""
    if not expires_on:
        return None
    day_after = date.fromisoformat(expires_on) + timedelta(days=1)
    return datetime.combine(day_after, time(0), tzinfo=ZoneInfo(timezone))


def _key_problems(
    name: str, scopes: list[str], affiliate_id: str, expires_at: datetime | None
) -> dict[str, str]:
    """Field -> catalog key: the rules of ApiKeyCreate, said next to the field they concern."""
    errors = {}
    if not name.strip():
        errors["key_name"] = "form.required"
    if not scopes or not set(scopes) <= set(KEY_SCOPES) or len(set(scopes)) != len(scopes):
        errors["key_scopes"] = "settings.pick_scope"
    elif "affiliate" in scopes and len(scopes) > 1:
        errors["key_scopes"] = "settings.affiliate_alone"
    if "affiliate" in scopes and not affiliate_id:
        errors["key_affiliate"] = "links.pick_affiliate"
    elif affiliate_id and "affiliate" not in scopes:
        errors["key_affiliate"] = "settings.affiliate_only"
    if expires_at is not None and expires_at <= datetime.now(UTC):
        errors["key_expires"] = "settings.expiry_past"
    return errors


@router.post("/settings/api-keys")
def create_api_key(
    current: AdminPost,
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    affiliate_id: Annotated[str, Form(max_length=64)] = "",
    expires_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    chosen = scopes or []
    values: dict[str, object] = {
        "key_name": name,
        "key_scopes": chosen,
        "key_affiliate": affiliate_id,
        "key_expires": expires_on,
    }
    errors: dict[str, str] = {}
    expires_at = None
    try:
        expires_at = _expiry(expires_on, current.timezone)
    except ValueError:
        errors["key_expires"] = "form.date"
    errors = {**_key_problems(name, chosen, affiliate_id, expires_at), **errors}
    if errors:
        return _settings_page(current, errors=errors, values=values, status_code=422)
    request = ApiKeyCreate(
        name=name.strip(),
        scopes=chosen,  # checked against KEY_SCOPES above
        affiliate_id=affiliate_id or None,
        expires_at=expires_at,
    )
    try:
        issued, key = access.issue_api_key(current.scope, current.user, request)
    except ValueError:  # the affiliate is not one of this tenant's (another tenant's id)
        errors = {"key_affiliate": "settings.unknown_affiliate"}
        return _settings_page(current, errors=errors, values=values, status_code=422)
    return _settings_page(
        current,
        shown_once=ShownOnce("api_key", issued.name, key),
        status_code=status.HTTP_201_CREATED,
    )


@router.post("/settings/api-keys/{key_id}/revoke")
def revoke_api_key(
    current: AdminPost, key_id: str, reason: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    """Revoked at once on this worker, within the key cache's TTL on the others."""
    try:
        revoked = access.revoke_api_key(
            current.scope, current.state.store, current.user, key_id, reason.strip()
        )
    except StateConflict:  # only a key revoking itself: a console user never is one
        return current.redirect(f"{SETTINGS}#api-keys", flash="key_conflict")
    if revoked is None:  # another tenant's key too: 404, never 403
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.redirect(f"{SETTINGS}#api-keys", flash="key_revoked", name=revoked.name)


# -- console users ------------------------------------------------------------------------------


def _invitation(current: Page, user: User, token: str, status_code: int = 200) -> Response:
    url = access.invitation_url(current.state.settings.public_url, token)
    shown = ShownOnce("invitation", user.display_name, url)
    return _settings_page(current, shown_once=shown, status_code=status_code)


@router.post("/settings/users")
def invite_user(
    current: AdminPost,
    display_name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form()] = "analyst",
    locale: Annotated[str, Form()] = formatting.DEFAULT_LOCALE,
) -> Response:
    values: dict[str, object] = {
        "user_name": display_name,
        "user_email": email,
        "user_role": role,
        "user_locale": locale,
    }
    errors = {}
    if not display_name.strip():
        errors["user_name"] = "form.required"
    try:
        _EMAIL.validate_python(email)
    except ValidationError:
        errors["user_email"] = "form.email"
    if role not in STAFF_ROLES:
        errors["user_role"] = "settings.pick_role"
    if locale not in formatting.LOCALES:
        errors["user_locale"] = "error.locale"
    if errors:
        return _settings_page(current, errors=errors, values=values, status_code=422)
    request = UserInvite.model_validate(
        {"email": email, "display_name": display_name.strip(), "role": role, "locale": locale}
    )
    try:
        user, token = access.invite_user(current.scope, current.state, current.user, request)
    except StateConflict:  # the email is the login: one user per email in all of Rastro
        errors = {"user_email": "affiliates.email_taken"}
        return _settings_page(current, errors=errors, values=values, status_code=409)
    return _invitation(current, user, token, status.HTTP_201_CREATED)


@router.post("/settings/users/{user_id}/status")
def change_user_status(
    current: AdminPost,
    user_id: str,
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Disable (sessions stop within the user cache's TTL) or enable again."""
    if action not in ("enable", "disable"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        user = access.set_user_enabled(
            current.scope,
            current.state,
            current.user,
            user_id,
            action == "enable",
            reason.strip(),
        )
    except StateConflict:  # already so, or an admin disabling themselves
        return current.redirect(f"{SETTINGS}#users", flash="user_conflict")
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.redirect(
        f"{SETTINGS}#users",
        flash="user_status",
        name=user.display_name,
        status=current.t.label("user_status", user.status),
    )


@router.post("/settings/users/{user_id}/reinvite")
def reinvite_user(current: AdminPost, user_id: str) -> Response:
    """A new invitation URL, shown once; the previous one stops working."""
    try:
        renewed = access.reinvite_user(current.scope, current.state, current.user, user_id)
    except StateConflict:  # the user is not (or no longer) invited
        return current.redirect(f"{SETTINGS}#users", flash="user_conflict")
    if renewed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return _invitation(current, *renewed)


# -- payout minimums ----------------------------------------------------------------------------


@router.post("/settings/payout-minimums")
def set_minimum(
    current: AdminPost,
    currency: Annotated[str, Form(max_length=3)] = "",
    minimum: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The smallest approved balance of `currency` a batch pays (smaller ones wait)."""
    values: dict[str, object] = {"minimum_currency": currency, "minimum_amount": minimum}
    errors = {}
    minimum_minor = 0
    if currency not in CURRENCY_EXPONENTS:
        errors["minimum_currency"] = "settings.pick_currency"
    elif not minimum.strip():
        errors["minimum_amount"] = "form.required"
    else:
        try:
            minimum_minor = formatting.parse_money(minimum, currency, current.locale)
        except ValueError:
            errors["minimum_amount"] = "form.money"
        else:
            if minimum_minor > MAX_MINOR:
                errors["minimum_amount"] = "form.money"
    if errors:
        return _settings_page(current, errors=errors, values=values, status_code=422)
    payouts.set_minimums(current.scope, current.user, {currency: minimum_minor})
    return current.redirect(
        f"{SETTINGS}#payout-minimums",
        flash="minimum_saved",
        currency=currency,
        amount=current.money(minimum_minor, currency),
    )
