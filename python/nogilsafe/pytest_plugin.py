"""pytest plugin (entry point ``nogilsafe``): the ``concurrently`` fixture."""

from __future__ import annotations

import pytest

from nogilsafe.testing import run_concurrently


@pytest.fixture
def concurrently():  # type: ignore[no-untyped-def]
    """``nogilsafe.testing.run_concurrently``: start threads at a barrier, fail on deadlock."""
    return run_concurrently
