"""Dependencies of the API's routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from api.state import EdgeState
from api.store import Principal, TenantScope

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rk_...`")


def get_state(request: Request) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


StateDep = Annotated[EdgeState, Depends(get_state)]


def _principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = state.store.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid, expired or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def require(*scopes: str) -> Any:
    """A dependency that lets through keys holding one of `scopes` (admin holds them all)."""

    def check(principal: PrincipalDep) -> Principal:
        if "admin" not in principal.scopes and not set(scopes) & set(principal.scopes):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this API key lacks the scope for this call (needs one of: admin, "
                f"{', '.join(scopes)})",
            )
        return principal

    return Depends(check)


def _scope(principal: PrincipalDep, state: StateDep) -> TenantScope:
    return state.store.for_principal(principal)


# The caller's data: its tenant's, and for an affiliate key or user only its affiliate's.
ScopeDep = Annotated[TenantScope, Depends(_scope)]


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields: a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """Every error answer: a message, or for invalid requests one entry per problem."""

    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong; for 422, a list of {loc, msg, type} (the field path in loc)"
    )


# The error answers every authenticated route can give, for the OpenAPI spec.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "The body is not valid JSON"},
    401: {"model": ErrorDetail, "description": "No API key, or an invalid, expired or revoked one"},
    403: {"model": ErrorDetail, "description": "The key lacks the scope for this call"},
    422: {"model": ErrorDetail, "description": "Invalid request: `detail` says what and where"},
}
