"""OnceCell (threads), @singleton and sync run_once."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest
from nogilsafe import AtomicInt, LockTimeoutError, OnceCell, ReentrancyError, run_once, singleton
from nogilsafe.testing import run_concurrently


def wait_for_waiters(cell: OnceCell, n: int, timeout: float = 10.0) -> None:
    """Block until ``n`` callers wait on the attempt in progress (test scaffolding, not a sleep)."""
    deadline = time.monotonic() + timeout
    while cell._waiting() < n:
        assert time.monotonic() < deadline, f"only {cell._waiting()} of {n} waiters arrived"
        time.sleep(0.001)


def test_basic_contract() -> None:
    cell: OnceCell[list[int]] = OnceCell()
    assert cell.get() is None and not cell.is_initialized()
    assert repr(cell) == "OnceCell(<uninitialized>)"
    calls = []
    v = cell.get_or_init(lambda: calls.append(1) or [1])
    assert v == [1] and cell.get() is v and cell.is_initialized()
    assert cell.get_or_init(lambda: calls.append(1) or [2]) is v
    assert calls == [1]
    assert repr(cell) == "OnceCell([1])"
    assert cell.set([3]) is False and cell.get() is v
    assert cell.take() is v and cell.get() is None and cell.take() is None
    assert cell.set([4]) is True and cell.get() == [4]
    cell.reset()
    assert not cell.is_initialized()
    assert cell.get_or_init(lambda: 7) == 7


def test_none_is_a_value() -> None:
    cell: OnceCell[None] = OnceCell()
    calls = AtomicInt()
    assert cell.get_or_init(lambda: calls.increment() and None) is None
    assert cell.get_or_init(lambda: calls.increment() and None) is None
    assert cell.is_initialized() and calls.get() == 1


def test_local_view_shares_the_cell() -> None:
    cell: OnceCell[int] = OnceCell()
    view = cell.local()
    assert view.get_or_init(lambda: 5) == 5 and cell.get() == 5


def test_bad_timeout_rejected() -> None:
    with pytest.raises(ValueError):
        OnceCell().get_or_init(lambda: 1, timeout=-1)


@pytest.mark.thread_unsafe(
    reason="starts 16 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_sixteen_threads_slow_factory_runs_once() -> None:
    cell: OnceCell[object] = OnceCell()
    calls = AtomicInt()

    def factory() -> object:
        calls.increment()
        time.sleep(0.05)
        return object()

    results = run_concurrently(
        lambda i: cell.get_or_init(factory, timeout=10), threads=16, iterations=3
    )
    values = {id(v) for per_thread in results for v in per_thread}
    assert calls.get() == 1
    assert values == {id(cell.get())}


@pytest.mark.thread_unsafe(
    reason="starts 16 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_failure_reaches_every_waiter_of_the_attempt_then_retry_succeeds() -> None:
    cell: OnceCell[str] = OnceCell()
    calls = AtomicInt()
    error = ValueError("attempt one failed")

    def factory() -> str:
        if calls.increment() == 1:
            wait_for_waiters(cell, 15)
            raise error
        return "second"

    def caller(i: int) -> object:
        try:
            return cell.get_or_init(factory, timeout=10)
        except ValueError as e:
            return e

    results = [r for per in run_concurrently(caller, threads=16) for r in per]
    assert all(r is error for r in results), results
    assert not cell.is_initialized() and calls.get() == 1
    assert cell.get_or_init(factory) == "second" and calls.get() == 2


@pytest.mark.thread_unsafe(
    reason="starts 4 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_interrupted_owner_hands_over_to_a_waiter() -> None:
    """A BaseException that is not an Exception is not the factory's answer: waiters retry."""

    class Interrupt(BaseException):
        pass

    cell: OnceCell[str] = OnceCell()
    calls = AtomicInt()

    def factory() -> str:
        if calls.increment() == 1:
            wait_for_waiters(cell, 3)
            raise Interrupt
        return "from a waiter"

    def caller(i: int) -> object:
        try:
            return cell.get_or_init(factory, timeout=10)
        except Interrupt:
            return "interrupted"

    results = sorted(r for per in run_concurrently(caller, threads=4) for r in per)
    assert results == ["from a waiter"] * 3 + ["interrupted"]
    assert calls.get() == 2


@pytest.mark.thread_unsafe(
    reason="starts an initialiser thread of its own and times out waiting for it"
)
def test_timeout_raises_lock_timeout_error_and_leaves_the_initialiser_alone() -> None:
    cell: OnceCell[str] = OnceCell()
    release = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(10)
        return "done"

    def body(i: int) -> None:
        if i == 0:
            cell.get_or_init(slow)
            return
        try:
            assert started.wait(10)
            with pytest.raises(LockTimeoutError, match="timed out"):
                cell.get_or_init(lambda: "other", timeout=0.05)
            with pytest.raises(TimeoutError):
                cell.get_or_init(lambda: "other", timeout=0)
            assert cell._waiting() == 0
        finally:
            release.set()

    run_concurrently(body, threads=2, timeout=10)
    assert cell.get() == "done"


@pytest.mark.thread_unsafe(
    reason="runs its scenario in its own thread to turn a deadlock into a failure"
)
def test_reentrant_get_or_init_raises_instead_of_deadlocking() -> None:
    cell: OnceCell[int] = OnceCell()
    seen: list[BaseException] = []

    def factory() -> int:
        try:
            return cell.get_or_init(lambda: 2)
        except ReentrancyError as e:
            seen.append(e)
            raise

    def run() -> None:
        with pytest.raises(ReentrancyError):
            cell.get_or_init(factory)

    # In a thread of its own, so a deadlock fails the test instead of hanging it.
    run_concurrently(lambda _: run(), threads=1, timeout=10)
    assert len(seen) == 1 and not cell.is_initialized()
    assert cell.get_or_init(lambda: 3) == 3


def test_set_during_initialisation_is_refused() -> None:
    cell: OnceCell[str] = OnceCell()

    def factory() -> str:
        assert cell.set("intruder") is False
        cell.reset()  # leaves the initialisation alone
        assert cell.take() is None
        return "owner"

    assert cell.get_or_init(factory) == "owner"


def test_reference_cycle_through_the_cell_is_collected() -> None:
    class Holder:
        pass

    cell: OnceCell[Holder] = OnceCell()
    h = Holder()
    h.cell = cell  # type: ignore[attr-defined]
    cell.set(h)
    ref = weakref.ref(h)
    del h, cell
    gc.collect()
    assert ref() is None


@pytest.mark.thread_unsafe(
    reason="starts 8 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_stress_mixed_operations_keep_one_value_per_generation() -> None:
    cell: OnceCell[tuple[int, int]] = OnceCell()
    made = AtomicInt()

    def worker(i: int) -> None:
        for n in range(200):
            v = cell.get_or_init(lambda: (made.increment(), i), timeout=10)
            assert isinstance(v, tuple)
            if n % 50 == 49:
                cell.reset()
            got = cell.get()
            assert got is None or isinstance(got, tuple)

    run_concurrently(worker, threads=8)
    assert made.get() >= 1


# ---- @singleton -------------------------------------------------------------------------


@pytest.mark.thread_unsafe(
    reason="starts 16 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_singleton_decorator_builds_once_across_threads_and_resets() -> None:
    calls = AtomicInt()

    @singleton
    def config() -> dict[str, int]:
        """The config."""
        calls.increment()
        time.sleep(0.02)
        return {"n": calls.get()}

    assert config.__name__ == "config" and config.__doc__ == "The config."
    results = run_concurrently(lambda i: config(), threads=16)
    assert len({id(r) for per in results for r in per}) == 1 and calls.get() == 1
    first = config()
    config.reset()
    assert config() is not first and calls.get() == 2


# ---- run_once (sync) --------------------------------------------------------------------


class Resource:
    def __init__(self, fail_first: bool = False) -> None:
        self.cleanups = AtomicInt()
        self.fail_first = fail_first

    @run_once
    def close(self) -> str:
        n = self.cleanups.increment()
        time.sleep(0.02)
        if self.fail_first and n == 1:
            raise OSError("flush failed")
        return f"closed after {n}"


@pytest.mark.thread_unsafe(
    reason="starts 16 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_run_once_method_runs_cleanup_exactly_once_per_instance() -> None:
    a, b = Resource(), Resource()
    results = run_concurrently(lambda i: (a if i % 2 else b).close(), threads=16)
    assert a.cleanups.get() == 1 and b.cleanups.get() == 1
    assert {r for per in results for r in per} == {"closed after 1"}
    assert a.close.done() and a.close() == "closed after 1"
    a.close.reset()
    assert not a.close.done() and a.close() == "closed after 2"
    assert b.cleanups.get() == 1
    # Called through the class, the once is still the instance's.
    assert Resource.close(b) == "closed after 1" and b.cleanups.get() == 1
    c = Resource()
    assert Resource.close(c) == "closed after 1" and c.close.done() and not Resource().close.done()


def test_run_once_failure_is_retried() -> None:
    r = Resource(fail_first=True)
    with pytest.raises(OSError):
        r.close()
    assert r.close() == "closed after 2" and r.close() == "closed after 2"


def test_run_once_function_and_reentrance() -> None:
    calls = AtomicInt()

    @run_once
    def shutdown(code: int) -> int:
        calls.increment()
        return code

    assert shutdown(3) == 3 and shutdown(4) == 3 and calls.get() == 1
    shutdown.reset()
    assert shutdown(5) == 5

    @run_once
    def recursive() -> None:
        recursive()

    with pytest.raises(ReentrancyError):
        recursive()


def test_run_once_on_slotted_class_is_a_clear_error() -> None:
    class Slotted:
        __slots__ = ()

        @run_once
        def close(self) -> None:
            pass

    with pytest.raises(TypeError, match="__dict__"):
        Slotted().close()
