from __future__ import annotations

import pytest

from tests.warehouse.conformance import Target


@pytest.fixture
def target(warehouse_url: str) -> Target:
    """The warehouse under test, for raw HTTP requests."""
    return Target.from_url(warehouse_url)
