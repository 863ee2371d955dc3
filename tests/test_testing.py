from __future__ import annotations

import math
import threading

import pytest
from nogilsafe.testing import ConcurrentFailure, StuckThreadsError, run_concurrently


def test_returns_results_per_thread_and_starts_together() -> None:
    arrived = []
    lock = threading.Lock()

    def fn(i: int) -> int:
        with lock:
            arrived.append(i)
        return i * 10

    out = run_concurrently(fn, threads=4, iterations=3, timeout=10)
    assert out == [[0, 0, 0], [10, 10, 10], [20, 20, 20], [30, 30, 30]]
    assert sorted(arrived) == sorted([0, 1, 2, 3] * 3)


def test_exceptions_propagate_with_thread_names() -> None:
    def fn(i: int) -> None:
        if i == 2:
            raise ValueError("bad thread")

    with pytest.raises(ConcurrentFailure) as info:
        run_concurrently(fn, threads=4, timeout=10, name="t")
    assert len(info.value.exceptions) == 1
    exc = info.value.exceptions[0]
    assert isinstance(exc, ValueError)
    assert "t-2" in str(info.value)
    if hasattr(exc, "__notes__"):
        assert "raised in thread t-2" in exc.__notes__


def test_deadlocked_pair_is_reported_within_timeout() -> None:
    a, b = threading.Lock(), threading.Lock()
    both_hold = threading.Barrier(2)

    def fn(i: int) -> None:
        first, second = (a, b) if i == 0 else (b, a)
        with first:
            both_hold.wait(5)
            # Bounded so the daemon threads end soon after the test; far beyond the 1 s timeout.
            if second.acquire(timeout=20):
                second.release()

    import time

    t0 = time.monotonic()
    with pytest.raises(StuckThreadsError) as info:
        run_concurrently(fn, threads=2, timeout=1.0, name="dl")
    assert time.monotonic() - t0 < 10
    assert set(info.value.stuck) == {"dl-0", "dl-1"}
    assert "acquire" in str(info.value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_concurrently(lambda i: None, threads=0)
    with pytest.raises(ValueError):
        run_concurrently(lambda i: None, timeout=0)


def test_pytest_fixture_is_registered(concurrently) -> None:  # type: ignore[no-untyped-def]
    assert concurrently is run_concurrently
    assert concurrently(lambda i: i, threads=2, timeout=5) == [[0], [1]]


@pytest.mark.parametrize("timeout", [math.inf, 1e300, None, threading.TIMEOUT_MAX * 2])
def test_unbounded_timeouts_wait_without_a_limit(timeout: float | None) -> None:
    # threading cannot wait that long (OverflowError); run_concurrently treats it as no limit.
    assert run_concurrently(lambda i: i, threads=3, timeout=timeout) == [[0], [1], [2]]


@pytest.mark.parametrize("timeout", [math.nan, -1.0, 0, -math.inf])
def test_invalid_timeouts_are_value_errors_before_any_thread_starts(timeout: float) -> None:
    ran = []
    with pytest.raises(ValueError, match="timeout"):
        run_concurrently(ran.append, threads=2, timeout=timeout)
    assert ran == []


def test_other_bad_arguments_are_rejected_up_front() -> None:
    ran: list[int] = []
    for kwargs, exc in [
        ({"threads": 2.5}, TypeError),
        ({"threads": True}, TypeError),
        ({"threads": -3}, ValueError),
        ({"iterations": -1}, ValueError),
        ({"iterations": "3"}, TypeError),
        ({"timeout": "3"}, TypeError),
        ({"name": 5}, TypeError),
    ]:
        with pytest.raises(exc):
            run_concurrently(ran.append, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        run_concurrently(5)  # type: ignore[arg-type]
    assert ran == []
    assert run_concurrently(ran.append, threads=2, iterations=0) == [[], []]


@pytest.mark.thread_unsafe(reason="replaces threading.Thread for the duration of the test")
def test_a_thread_that_cannot_start_releases_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[threading.Thread] = []
    real = threading.Thread

    class Limited(real):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            if len(started) == 2:
                raise RuntimeError("can't start new thread")
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Thread", Limited)
    ran: list[int] = []
    with pytest.raises(RuntimeError, match="can't start"):
        run_concurrently(ran.append, threads=5, timeout=30)
    assert len(started) == 2 and not any(t.is_alive() for t in started)
    assert ran == []  # nobody passed the barrier
