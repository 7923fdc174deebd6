"""The console: server-rendered pages for merchants and affiliates, at /console
(docs/console.md). `router` is what api/main.py includes."""

from api.console.app import router

__all__ = ["router"]
