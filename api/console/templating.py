"""The console's Jinja2 environment: templates from `templates/`, HTML autoescaped, and
`static_url` giving each static file a content-hash version (so it can be cached for a
year: a changed file gets a new URL)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/console/static/"


@lru_cache(maxsize=256)
def static_url(path: str) -> str:
    """`/console/static/<path>?v=<hash>`; a missing file (assets not installed) gets no
    version, and its 404 shows up in the browser's console and the browser tests."""
    file = STATIC_DIR / path
    if not file.is_file():
        return STATIC_PREFIX + path
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    return f"{STATIC_PREFIX}{path}?v={digest}"


# StrictUndefined: a template naming a value the page did not pass fails (in tests), it
# does not render an empty string.
_environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.globals["static_url"] = static_url


def render_template(name: str, **values: Any) -> str:
    return _environment.get_template(name).render(**values)
