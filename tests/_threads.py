"""Joining the background threads a test starts one by one (a waiter parked on a lock while the
test thread acts). Tests that run one operation mix in many threads at once use
``nogilsafe.testing.run_concurrently`` instead; this is only for staged scenarios it cannot
express."""

from __future__ import annotations

import threading
import time


def join_all(threads: list[threading.Thread], timeout: float) -> None:
    """Join every thread; fail (not hang) if any is still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout}s (deadlock?): {alive}"
