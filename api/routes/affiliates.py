"""Affiliates: onboarding (create, invite), review (approve, reject, suspend, reactivate),
segments, payout details, and the affiliate's own view (`/v1/me`). The rules are in
api/affiliates.py; these routes check who may call and translate its answers to HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from pydantic import BaseModel, Field, model_validator

from api import affiliates
from api.access import invitation_url
from api.affiliates import (
    REASON_REQUIRED,
    TRANSITIONS,
    Affiliate,
    AffiliateStatus,
    PayoutDetails,
    PayoutDetailsView,
    Transition,
)
from api.auth import INVITATION_TTL, EmailAddress, Locale, StateConflict
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
from api.store import Principal, Tenant, TenantScope, UtcDatetime

router = APIRouter(prefix="/v1", tags=["affiliates"], responses=ERROR_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No affiliate with this id in the caller's view"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorDetail, "description": "The affiliate's status does not allow this"}
}

AffiliateId = Annotated[str, Path(max_length=64, description="The affiliate's id")]
Segment = Annotated[
    str,
    Field(
        max_length=64,
        description="The affiliate's group or tier; commission rules may target it",
        examples=["influencers"],
    ),
]
Country = Annotated[
    str, Field(pattern=r"^([A-Z]{2})?$", description="ISO 3166-1 alpha-2", examples=["BR"])
]
DisplayName = Annotated[str, Field(min_length=1, max_length=200, examples=["Canal do Léo"])]


def _missing(affiliate_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no affiliate {affiliate_id!r}")


def _found(found: Affiliate | None, affiliate_id: str) -> Affiliate:
    if found is None:
        raise _missing(affiliate_id)
    return found


# -- bodies and answers -----------------------------------------------------------------------


class AffiliateCreate(StrictBody):
    display_name: DisplayName
    segment: Segment = ""
    country: Country = ""
    email: EmailAddress | None = Field(
        None,
        description="Stored only encrypted and as a keyed hash (for the self-referral check)",
    )


class AffiliateInvite(StrictBody):
    email: EmailAddress
    display_name: DisplayName
    segment: Segment = ""
    country: Country = ""
    locale: Locale = "pt-BR"


class AffiliateInvitation(BaseModel):
    affiliate: Affiliate
    user_id: str = Field(description="The affiliate's console user, invited")
    invitation_url: str = Field(description="Shown this once: send it to the affiliate")
    invitation_expires_at: UtcDatetime


class AffiliatePatch(StrictBody):
    """The fields to change; those left out stay as they are."""

    display_name: DisplayName | None = None
    segment: Segment | None = None
    country: Country | None = None

    @model_validator(mode="after")
    def _something(self) -> AffiliatePatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of display_name, segment, country")
        if any(getattr(self, name) is None for name in self.model_fields_set):
            raise ValueError("a field given cannot be null")
        return self


class AffiliateList(BaseModel):
    items: list[Affiliate]
    next_after: str | None = Field(description="Pass as `after` for the next page")


class Decision(StrictBody):
    reason: str = Field("", max_length=2000, description="Why; kept in the audit log")


class DecisionWithReason(StrictBody):
    reason: str = Field(
        min_length=1,
        max_length=2000,
        pattern=r"\S",
        description="Why (required); kept in the audit log",
        examples=["Cupons publicados em site de cupons, contra os termos do programa"],
    )


class Me(BaseModel):
    """Who is calling: the key or user, its tenant and, for an affiliate, the affiliate."""

    actor_kind: Literal["api_key", "user"]
    actor_id: str
    actor_name: str
    scopes: list[str]
    tenant: Tenant
    affiliate: Affiliate | None


_PAYOUT_EXAMPLES: dict[str, Any] = {
    "pix_cpf": {
        "summary": "Pix, key by CPF",
        "value": {"method": "pix", "key_type": "cpf", "key": "123.456.789-09"},
    },
    "pix_phone": {
        "summary": "Pix, key by phone (E.164)",
        "value": {"method": "pix", "key_type": "phone", "key": "+5511987654321"},
    },
    "bank_transfer": {
        "summary": "Bank transfer (Brazilian account)",
        "value": {
            "method": "bank_transfer",
            "bank_code": "341",
            "branch": "0001",
            "account": "12345-6",
            "account_type": "checking",
            "holder_name": "Ana Lima",
            "holder_tax_id": "11.222.333/0001-81",
        },
    },
    "paypal": {"summary": "PayPal", "value": {"method": "paypal", "email": "ana@example.com"}},
}
PayoutBody = Annotated[PayoutDetails, Body(openapi_examples=_PAYOUT_EXAMPLES)]
Reveal = Annotated[
    bool, Query(description="Show the details in full (the reveal is audited); default masked")
]


# -- merchants' routes ------------------------------------------------------------------------


@router.post(
    "/affiliates",
    status_code=status.HTTP_201_CREATED,
    dependencies=[require("admin")],
    summary="Create an affiliate (approved)",
    description="For merchants who onboard affiliates by hand: the affiliate is approved at "
    "once and has no console user (invite one with `POST /v1/affiliates/invite` instead).",
)
def create_affiliate(
    body: AffiliateCreate, scope: ScopeDep, state: StateDep, actor: PrincipalDep
) -> Affiliate:
    return affiliates.create_affiliate(
        scope, state, actor, body.display_name, body.segment, body.country, email=body.email
    )


@router.post(
    "/affiliates/invite",
    status_code=status.HTTP_201_CREATED,
    dependencies=[require("admin")],
    responses={409: {"model": ErrorDetail, "description": "The email already has a user"}},
    summary="Invite an affiliate",
    description="Creates the affiliate (status `invited`) and its console user, and answers "
    "the one-time invitation URL, valid for 7 days: send it to the affiliate, who sets a "
    "password there. The affiliate is approved separately (`.../approve`), before or after "
    "accepting. The email is stored only encrypted and as a keyed hash.",
)
def invite_affiliate(
    body: AffiliateInvite, scope: ScopeDep, state: StateDep, actor: PrincipalDep
) -> AffiliateInvitation:
    try:
        created, user, token = affiliates.invite_affiliate(
            scope, state, actor, body.email, body.display_name, body.segment, body.country,
            body.locale,
        )  # fmt: skip
    except StateConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    assert user.invited_at is not None  # an invitation was just sent
    return AffiliateInvitation(
        affiliate=created,
        user_id=user.id,
        invitation_url=invitation_url(state.settings.public_url, token),
        invitation_expires_at=user.invited_at + INVITATION_TTL,
    )


@router.get(
    "/affiliates",
    dependencies=[require("analyst", "affiliate")],
    summary="List affiliates",
    description="In id (creation) order, `limit` at a time: pass `next_after` as `after` for "
    "the next page. An affiliate key or user sees only its own affiliate.",
)
def list_affiliates(
    scope: ScopeDep,
    status_: Annotated[AffiliateStatus | None, Query(alias="status")] = None,
    segment: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str, Query(max_length=64, description="The last id of the previous page")
    ] = "",
) -> AffiliateList:
    items = affiliates.list_affiliates(scope, status_, segment, limit, after)
    return AffiliateList(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.get(
    "/affiliates/{affiliate_id}",
    dependencies=[require("analyst", "affiliate")],
    responses=NOT_FOUND,
    summary="One affiliate",
    description="An affiliate key or user can read only its own affiliate (404 for others).",
)
def get_affiliate(affiliate_id: AffiliateId, scope: ScopeDep) -> Affiliate:
    return _found(affiliates.affiliate(scope, affiliate_id), affiliate_id)


@router.patch(
    "/affiliates/{affiliate_id}",
    dependencies=[require("admin")],
    responses=NOT_FOUND,
    summary="Change an affiliate's name, segment or country",
    description="Fields left out stay as they are. A new segment changes which commission "
    "rules apply from the next ledger build on. Audited with the old and new values.",
)
def update_affiliate(
    affiliate_id: AffiliateId, body: AffiliatePatch, scope: ScopeDep, actor: PrincipalDep
) -> Affiliate:
    changes = body.model_dump(exclude_unset=True)
    return _found(affiliates.update_affiliate(scope, actor, affiliate_id, changes), affiliate_id)


def _decide(scope: TenantScope, actor: Principal, affiliate_id: str, action: Transition,
            reason: str) -> Affiliate:  # fmt: skip
    try:
        decided = affiliates.transition(scope, actor, affiliate_id, action, reason)
    except StateConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return _found(decided, affiliate_id)


def _with_reason(action: Transition) -> Callable[..., Affiliate]:
    def decide(
        affiliate_id: AffiliateId, body: DecisionWithReason, scope: ScopeDep, actor: PrincipalDep
    ) -> Affiliate:
        return _decide(scope, actor, affiliate_id, action, body.reason)

    return decide


def _reason_optional(action: Transition) -> Callable[..., Affiliate]:
    def decide(
        affiliate_id: AffiliateId,
        scope: ScopeDep,
        actor: PrincipalDep,
        body: Decision | None = None,
    ) -> Affiliate:
        return _decide(scope, actor, affiliate_id, action, body.reason if body else "")

    return decide


def _add_transition_route(action: Transition) -> None:
    """POST /v1/affiliates/{id}/<action>: one route per decision, each documented."""
    sources, target = TRANSITIONS[action]
    required = action in REASON_REQUIRED
    description = (
        f"From {', '.join(sorted(sources))} to {target}; any other status answers 409. "
        f"Audited with the reason, which is {'required' if required else 'optional'}."
    )
    if action == "suspend":
        description += (
            " A suspended affiliate's clicks are still recorded but earn no credit; it can "
            "still sign in to see what it earned before."
        )
    router.add_api_route(
        f"/affiliates/{{affiliate_id}}/{action}",
        _with_reason(action) if required else _reason_optional(action),
        methods=["POST"],
        response_model=Affiliate,
        dependencies=[require("admin")],
        responses={**NOT_FOUND, **CONFLICT},
        summary=f"{action.capitalize()} an affiliate",
        description=description,
        name=f"{action}_affiliate",
    )


for _action in TRANSITIONS:
    _add_transition_route(_action)


def _payout_view(
    scope: TenantScope, state: EdgeState, actor: Principal, affiliate_id: str, reveal: bool
) -> PayoutDetailsView:
    view = affiliates.payout_details_view(scope, state, actor, affiliate_id, reveal)
    if view is not None:
        return view
    if affiliates.affiliate(scope, affiliate_id) is None:
        raise _missing(affiliate_id)
    raise HTTPException(status.HTTP_404_NOT_FOUND, "no payout details have been set yet")


def _set_payout(
    scope: TenantScope, state: EdgeState, actor: Principal, affiliate_id: str,
    details: PayoutDetails,
) -> PayoutDetailsView:  # fmt: skip
    view = affiliates.set_payout_details(scope, state, actor, affiliate_id, details)
    if view is None:
        raise _missing(affiliate_id)
    return view


_PAYOUT_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such affiliate, or no payout details set"}
}


@router.put(
    "/affiliates/{affiliate_id}/payout-details",
    dependencies=[require("admin")],
    responses=NOT_FOUND,
    summary="Set an affiliate's payout details",
    description="Typed by `method`: `pix` (a key of type cpf, cnpj, email, phone or random, "
    "checked: CPF/CNPJ check digits, E.164 phone, UUID random key), `bank_transfer` or "
    "`paypal`. Stored encrypted; answers them masked. Audited (without the details).",
)
def set_payout_details(
    affiliate_id: AffiliateId,
    body: PayoutBody,
    scope: ScopeDep,
    state: StateDep,
    actor: PrincipalDep,
) -> PayoutDetailsView:
    return _set_payout(scope, state, actor, affiliate_id, body)


@router.get(
    "/affiliates/{affiliate_id}/payout-details",
    dependencies=[require("admin")],
    responses=_PAYOUT_NOT_FOUND,
    summary="An affiliate's payout details",
    description="Masked unless `reveal=true`; each reveal is recorded in the audit log.",
)
def get_payout_details(
    affiliate_id: AffiliateId,
    scope: ScopeDep,
    state: StateDep,
    actor: PrincipalDep,
    reveal: Reveal = False,
) -> PayoutDetailsView:
    return _payout_view(scope, state, actor, affiliate_id, reveal)


# -- the caller's own view --------------------------------------------------------------------


@router.get(
    "/me",
    tags=["me"],
    summary="Who am I",
    description="The calling key or user, its scopes and tenant, and for an affiliate key or "
    "user its affiliate. Any valid key may ask.",
)
def me(actor: PrincipalDep, scope: ScopeDep) -> Me:
    own = affiliates.affiliate(scope, actor.affiliate_id) if actor.affiliate_id else None
    return Me(
        actor_kind=actor.actor_kind,
        actor_id=actor.actor_id,
        actor_name=actor.actor_name,
        scopes=actor.scopes,
        tenant=scope.tenant(),
        affiliate=own,
    )


def _own_affiliate(actor: Principal) -> str:
    if actor.affiliate_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "only an affiliate key or user has payout details of its own: merchants use "
            "/v1/affiliates/{id}/payout-details",
        )
    return actor.affiliate_id


@router.put(
    "/me/payout-details",
    tags=["me"],
    dependencies=[require("affiliate")],
    responses=NOT_FOUND,
    summary="Set my payout details (affiliates)",
    description="As `PUT /v1/affiliates/{id}/payout-details`, for the calling affiliate.",
)
def set_my_payout_details(
    body: PayoutBody, scope: ScopeDep, state: StateDep, actor: PrincipalDep
) -> PayoutDetailsView:
    return _set_payout(scope, state, actor, _own_affiliate(actor), body)


@router.get(
    "/me/payout-details",
    tags=["me"],
    dependencies=[require("affiliate")],
    responses=_PAYOUT_NOT_FOUND,
    summary="My payout details (affiliates)",
    description="Masked unless `reveal=true` (audited), as for merchants.",
)
def get_my_payout_details(
    scope: ScopeDep, state: StateDep, actor: PrincipalDep, reveal: Reveal = False
) -> PayoutDetailsView:
    return _payout_view(scope, state, actor, _own_affiliate(actor), reveal)
