"""The console as its own small FastAPI application, mounted at /console by the API.

Its own application because its answers are HTML, not the API's JSON: its error pages
(login redirect, 403, 404, 422) are its own exception handlers, and its routes stay out of
the API's OpenAPI spec. The mount hands it the API's `EdgeState` (one per process) through
the ASGI scope."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api.console.pages import (
    affiliate,
    affiliates,
    audit,
    auth,
    campaigns,
    links,
    payouts,
    reports,
    review,
    settings,
    webhooks,
)
from api.console.templating import STATIC_DIR
from api.console.web import PREFIX, STATE_KEY, LoginRequired, build_page

# Static URLs carry a content hash (templating.static_url): a year of caching is safe.
CACHE_CONTROL = "public, max-age=31536000, immutable"


class CachedStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = CACHE_CONTROL
        return response


console_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
console_app.mount(
    "/static", CachedStaticFiles(directory=STATIC_DIR, check_dir=False), name="static"
)
for module in (
    auth,
    reports,
    campaigns,
    affiliates,
    links,
    review,
    payouts,
    webhooks,
    audit,
    settings,
    affiliate,
):
    console_app.include_router(module.router)


@console_app.exception_handler(LoginRequired)
async def _login_required(request: Request, error: LoginRequired) -> Response:
    target = f"{PREFIX}/login?next={quote(error.next_path)}"
    if request.headers.get("HX-Request"):
        # htmx follows a redirect inside the page; this makes it load the login page whole.
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


_MESSAGES = {403: "error.forbidden", 404: "error.not_found", 405: "error.not_allowed"}


@console_app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    message = _MESSAGES.get(error.status_code, "error.generic")
    if error.status_code == 403 and error.detail == "csrf":
        message = "error.csrf"
    return build_page(request).render("error.html", status_code=error.status_code, message=message)


@console_app.exception_handler(RequestValidationError)
async def _invalid(request: Request, error: RequestValidationError) -> Response:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return build_page(request).render(
        "error.html", status_code=422, message="error.invalid", problems=problems
    )


@console_app.exception_handler(DatabaseError)
async def _warehouse_error(request: Request, error: DatabaseError) -> Response:
    # The marts exist only after the first dbt build; until then their pages say so.
    if "(UNKNOWN_TABLE)" not in str(error):
        raise error
    return build_page(request).render("error.html", status_code=503, message="error.not_built")


class _WithEdgeState:
    """Puts the API's EdgeState in the scope before the console app replaces scope["app"]."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[STATE_KEY] = scope["app"].state.edge
        await self.app(scope, receive, send)


router = APIRouter()
router.mount(PREFIX, _WithEdgeState(console_app), name="console")
