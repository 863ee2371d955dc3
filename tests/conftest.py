from __future__ import annotations

import os
import sys
import threading

import nogilsafe
import pytest


def pytest_report_header(config: pytest.Config) -> str:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"nogilsafe {nogilsafe.__version__} from {os.path.dirname(nogilsafe.__file__)}; GIL {'on' if gil else 'off'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("NOGILSAFE_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: set NOGILSAFE_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def join_all(threads: list[threading.Thread], timeout: float) -> None:
    """Join every thread; fail (not hang) if any is still alive after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout}s (deadlock?): {alive}"
