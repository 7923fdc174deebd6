"""The API application: the tracking edge (redirect, tag, pixel, conversions) and the
configuration API, served by uvicorn (`rastro api`, or `rastro up`).

`create_app` is the factory uvicorn calls in each worker process. The redirect is answered
by raw ASGI code in front of FastAPI (`TrackingEdge`): it is the hottest path and must not
pay FastAPI's per-request cost. Everything else goes through FastAPI and is documented in
the OpenAPI spec at /docs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from api import console, redirect
from api.routes import (
    access,
    affiliates,
    commissions,
    config,
    conversions,
    events,
    payouts,
    reports,
    webhooks,
)
from api.state import EdgeState
from rastro.settings import Settings, get_settings

ASGIApp = Any

_UNAVAILABLE_PAGE = """<!doctype html><html lang="pt-BR"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Link indisponível / Link unavailable</title>
<body style="font-family:system-ui;max-width:36rem;margin:4rem auto;padding:0 1rem">
<h1>Este link não está mais disponível.</h1>
<p>This link is no longer available. It may have expired or been paused by the store.</p>
</body></html>"""


class TrackingEdge:
    """Raw ASGI in front of FastAPI for the paths that must be fastest."""

    def __init__(self, app: FastAPI, state: EdgeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/r/"):
            await redirect.handle(scope, receive, send, self.state)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> ASGIApp:
    state = EdgeState(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="Rastro API",
        version="0.1.0",
        summary="Affiliate tracking: links, redirects, first-party tag, conversions.",
        description=(
            "Authenticate with `Authorization: Bearer <API key>` (`rastro tenant create` "
            "prints a tenant's first admin key). The redirect `GET /r/{code}` is documented "
            "here but served by a faster path in front of this application."
        ),
        lifespan=lifespan,
    )
    app.state.edge = state
    for module in (
        config,
        affiliates,
        access,
        conversions,
        events,
        reports,
        commissions,
        payouts,
        webhooks,
    ):
        app.include_router(module.router)
    app.include_router(console.router)

    @app.exception_handler(DatabaseError)
    async def warehouse_error(_: Request, error: DatabaseError) -> JSONResponse:
        # The marts (fct_*) exist only after the first dbt build: until then the routes
        # reading them answer 503, not a bare 500. Anything else is a real server error.
        if "(UNKNOWN_TABLE)" in str(error):
            return JSONResponse(
                {"detail": "reports are not built yet: the first dbt build has not run"},
                status_code=503,
                headers={"Retry-After": "60"},
            )
        raise error

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/link-unavailable",
        response_class=HTMLResponse,
        tags=["tracking"],
        summary="Where unknown or paused link codes send visitors (the default fallback)",
    )
    def link_unavailable() -> str:
        return _UNAVAILABLE_PAGE

    return TrackingEdge(app, state)
