"""AsyncOnceCell across threads and event loops, AsyncSingleton, @async_singleton, async run_once."""

from __future__ import annotations

import asyncio
import inspect
import sysconfig
import threading
import time
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from typing import Any

import pytest
from nogilsafe import (
    AsyncOnceCell,
    AsyncSingleton,
    AtomicInt,
    LockTimeoutError,
    ReentrancyError,
    async_singleton,
    run_once,
)
from nogilsafe.testing import run_concurrently


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    # uvloop is a required test dependency (conftest.py) wherever it has a wheel; free-threaded
    # CPython has none yet.
    if sysconfig.get_config_var("Py_GIL_DISABLED") == 1 and find_spec("uvloop") is None:
        pytest.skip("uvloop has no wheel for free-threaded CPython")
    import uvloop

    return uvloop.new_event_loop  # type: ignore[no-any-return]


LOOPS = [pytest.param(None, id="asyncio"), pytest.param("uvloop", id="uvloop")]


def loop_factory(kind: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    return _uvloop_factory() if kind == "uvloop" else None


def on_loops(
    threads: int,
    body: Callable[[int], Awaitable[Any]],
    kind: str | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """Run ``body(i)`` on a fresh event loop in each of ``threads`` threads, started together."""
    factory = loop_factory(kind)

    def thread(i: int) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(body(i))  # type: ignore[arg-type]

    return [r for per in run_concurrently(thread, threads=threads, timeout=timeout) for r in per]


async def until_waiting(cell: AsyncOnceCell[Any], n: int, timeout: float = 20.0) -> None:
    """Yield to the loop until ``n`` callers wait on the attempt in progress (test scaffolding)."""
    deadline = time.monotonic() + timeout
    while cell._cell._waiting() < n:
        assert time.monotonic() < deadline, f"only {cell._cell._waiting()} of {n} waiters arrived"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("kind", LOOPS)
def test_sixteen_threads_own_loops_hundred_tasks_factory_runs_once(kind: str | None) -> None:
    cell: AsyncOnceCell[object] = AsyncOnceCell()
    calls = AtomicInt()

    async def factory() -> object:
        calls.increment()
        await asyncio.sleep(0.05)
        return object()

    async def body(i: int) -> list[Any]:
        return await asyncio.gather(
            *(cell.get_or_init(factory, timeout=20) for _ in range(100)), return_exceptions=True
        )

    results = [r for per in on_loops(16, body, kind) for r in per]
    assert len(results) == 1600
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert calls.get() == 1
    assert {id(r) for r in results} == {id(cell.get())}


def test_failure_reaches_all_waiters_of_attempt_one_and_attempt_two_succeeds() -> None:
    cell: AsyncOnceCell[str] = AsyncOnceCell()
    calls = AtomicInt()
    error = ConnectionError("attempt one failed")

    async def factory() -> str:
        if calls.increment() == 1:
            await until_waiting(cell, 16 * 100 - 1)
            raise error
        await asyncio.sleep(0.01)
        return "attempt two"

    async def body(i: int) -> tuple[list[Any], list[Any]]:
        first = await asyncio.gather(
            *(cell.get_or_init(factory, timeout=20) for _ in range(100)), return_exceptions=True
        )
        second = await asyncio.gather(
            *(cell.get_or_init(factory, timeout=20) for _ in range(100)), return_exceptions=True
        )
        return first, second

    out = on_loops(16, body)
    first = [r for f, _ in out for r in f]
    second = [r for _, s in out for r in s]
    assert len(first) == 1600 and all(r is error for r in first)
    assert second == ["attempt two"] * 1600
    assert calls.get() == 2


def test_cancelled_initialiser_hands_over_to_a_waiter() -> None:
    cell: AsyncOnceCell[str] = AsyncOnceCell()
    calls = AtomicInt()
    started = threading.Event()

    async def factory() -> str:
        n = calls.increment()
        if n == 1:
            started.set()
            await asyncio.sleep(3600)
        return f"attempt {n}"

    outcome: dict[str, Any] = {}
    waiter_results: list[Any] = []
    lock = threading.Lock()
    expected_waiters = 3 * 10 + 5

    async def owner_main() -> None:
        owner = asyncio.create_task(cell.get_or_init(factory))
        assert await asyncio.to_thread(started.wait, 10)
        # Tasks on the owner's own loop wait too, and must not be confused with the owner.
        neighbours = [asyncio.create_task(cell.get_or_init(factory, timeout=20)) for _ in range(5)]
        await until_waiting(cell, expected_waiters)
        owner.cancel()
        try:
            await owner
        except asyncio.CancelledError:
            outcome["owner"] = "cancelled"
        outcome["neighbours"] = await asyncio.gather(*neighbours, return_exceptions=True)

    async def waiter_main() -> None:
        rs = await asyncio.gather(
            *(cell.get_or_init(factory, timeout=20) for _ in range(10)), return_exceptions=True
        )
        with lock:
            waiter_results.extend(rs)

    def body(i: int) -> None:
        if i == 0:
            asyncio.run(owner_main())
        else:
            assert started.wait(10)
            asyncio.run(waiter_main())

    run_concurrently(body, threads=4, timeout=30)
    assert outcome["owner"] == "cancelled"
    assert outcome["neighbours"] == ["attempt 2"] * 5
    assert waiter_results == ["attempt 2"] * 30
    assert calls.get() == 2 and cell.get() == "attempt 2"


def test_timeout_raises_lock_timeout_error_and_unregisters_the_waiter() -> None:
    cell: AsyncOnceCell[str] = AsyncOnceCell()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ready"

    async def main() -> None:
        owner = asyncio.create_task(cell.get_or_init(slow))
        patient = asyncio.create_task(cell.get_or_init(slow))
        await until_waiting(cell, 1)
        with pytest.raises(LockTimeoutError, match=r"timed out after 0\.05s"):
            await cell.get_or_init(slow, timeout=0.05)
        with pytest.raises(TimeoutError):
            await cell.get_or_init(slow, timeout=0)
        assert cell._cell._waiting() == 1  # the timed-out waiters are gone, the patient one stays
        with pytest.raises(ValueError):
            await cell.get_or_init(slow, timeout=-1)
        release.set()
        assert await owner == "ready" and await patient == "ready"

    asyncio.run(main())


def test_cancelled_waiter_unregisters_and_does_not_disturb_the_owner() -> None:
    cell: AsyncOnceCell[str] = AsyncOnceCell()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ready"

    async def main() -> None:
        owner = asyncio.create_task(cell.get_or_init(slow))
        waiter = asyncio.create_task(cell.get_or_init(slow))
        await until_waiting(cell, 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cell._cell._waiting() == 0
        release.set()
        assert await owner == "ready"

    asyncio.run(main())


def test_reentrant_await_from_inside_the_factory_raises() -> None:
    cell: AsyncOnceCell[int] = AsyncOnceCell()

    async def direct() -> int:
        return await cell.get_or_init(direct)

    async def via_child_task() -> int:
        return await asyncio.create_task(cell.get_or_init(via_child_task))

    async def main() -> None:
        for factory in (direct, via_child_task):
            with pytest.raises(ReentrancyError):
                await asyncio.wait_for(cell.get_or_init(factory), 5)
            assert not cell.is_initialized()

        async def slow() -> int:
            await asyncio.sleep(0.02)
            return 1

        # Other tasks of the same thread and loop are not re-entrant: they simply wait.
        assert (
            await asyncio.wait_for(asyncio.gather(*(cell.get_or_init(slow) for _ in range(5))), 5)
            == [1] * 5
        )

    asyncio.run(main())


def test_waiter_on_a_closed_loop_is_skipped() -> None:
    cell: AsyncOnceCell[str] = AsyncOnceCell()
    release = threading.Event()
    started = threading.Event()
    result: list[str] = []

    async def factory() -> str:
        started.set()
        await asyncio.to_thread(release.wait, 10)
        return "value"

    tasks: list[asyncio.Task[str]] = []

    def body(i: int) -> None:
        if i == 0:
            result.append(asyncio.run(cell.get_or_init(factory)))
            return
        try:
            assert started.wait(10)
            doomed = asyncio.new_event_loop()
            tasks.append(doomed.create_task(cell.get_or_init(factory)))
            doomed.run_until_complete(until_waiting(cell, 1))
            doomed.close()  # its waiter is still registered
        finally:
            release.set()

    run_concurrently(body, threads=2, timeout=10)
    (task,) = tasks
    assert result == ["value"] and not task.done()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # abandoned on purpose


def test_set_take_reset_and_none_values() -> None:
    cell: AsyncOnceCell[int | None] = AsyncOnceCell()
    calls = AtomicInt()

    async def none() -> None:
        calls.increment()

    async def main() -> None:
        assert await cell.get_or_init(none) is None
        assert await cell.get_or_init(none) is None
        assert calls.get() == 1 and cell.is_initialized()
        assert cell.take() is None and not cell.is_initialized()
        assert cell.set(4) is True and cell.set(5) is False and cell.get() == 4
        assert repr(cell) == "AsyncOnceCell(4)"
        cell.reset()
        assert cell.get() is None
        view = cell.local()
        assert await view.get_or_init(none) is None and cell.is_initialized()

    asyncio.run(main())


# ---- AsyncSingleton ---------------------------------------------------------------------


class Service(AsyncSingleton):
    built = AtomicInt()

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    async def create(cls) -> Service:
        cls.built.increment()
        await asyncio.sleep(0.02)
        return cls(f"{cls.__name__} configured")


class SubService(Service):
    pass


class Plain(AsyncSingleton):
    pass


def test_async_singleton_one_instance_per_class_across_threads_and_loops() -> None:
    Service.reset_instance()
    SubService.reset_instance()
    Service.built.set(0)

    async def body(i: int) -> list[Any]:
        cls = Service if i % 2 else SubService
        return await asyncio.gather(*(cls.instance(timeout=20) for _ in range(20)))

    results = [r for per in on_loops(8, body) for r in per]
    svc, sub = Service.peek_instance(), SubService.peek_instance()
    assert svc is not None and sub is not None and svc is not sub
    assert type(svc) is Service and type(sub) is SubService and sub.name == "SubService configured"
    assert {id(r) for r in results} == {id(svc), id(sub)}
    assert Service.built.get() == 2

    async def again() -> tuple[Service, Service, Plain]:
        return await Service.get_instance(), await SubService.instance(), await Plain.instance()

    a, b, plain = asyncio.run(again())
    assert a is svc and b is sub and type(plain) is Plain
    SubService.reset_instance()
    assert Service.peek_instance() is svc and SubService.peek_instance() is None
    assert asyncio.run(again())[1] is not sub


# ---- @async_singleton -------------------------------------------------------------------


def test_async_singleton_decorator() -> None:
    calls = AtomicInt()

    @async_singleton
    async def client() -> dict[str, int]:
        """The client."""
        calls.increment()
        await asyncio.sleep(0.02)
        return {"id": calls.get()}

    assert client.__name__ == "client" and client.__doc__ == "The client."
    assert inspect.iscoroutinefunction(client)

    async def body(i: int) -> list[Any]:
        return await asyncio.gather(*(client() for _ in range(20)))

    results = [r for per in on_loops(4, body) for r in per]
    assert calls.get() == 1 and len({id(r) for r in results}) == 1
    client.reset()
    assert asyncio.run(client()) == {"id": 2}


# ---- run_once (async) -------------------------------------------------------------------


class Connection:
    def __init__(self, fail_first: bool = False) -> None:
        self.closes = AtomicInt()
        self.fail_first = fail_first

    @run_once
    async def close(self) -> int:
        n = self.closes.increment()
        await asyncio.sleep(0.02)
        if self.fail_first and n == 1:
            raise OSError("flush failed")
        return n


def test_async_run_once_close_runs_once_across_threads_and_loops() -> None:
    conn = Connection()

    async def body(i: int) -> list[Any]:
        return await asyncio.gather(*(conn.close() for _ in range(25)))

    results = [r for per in on_loops(4, body) for r in per]
    assert results == [1] * 100 and conn.closes.get() == 1
    assert conn.close.done()


def test_async_run_once_failure_reaches_waiters_then_retries() -> None:
    conn = Connection(fail_first=True)

    async def main() -> None:
        first = await asyncio.gather(*(conn.close() for _ in range(10)), return_exceptions=True)
        assert len(first) == 10 and all(isinstance(e, OSError) for e in first)
        assert len({id(e) for e in first}) == 1
        assert await conn.close() == 2 and await conn.close() == 2

    asyncio.run(main())


def test_stress_get_or_init_with_resets_across_loops() -> None:
    cell: AsyncOnceCell[int] = AsyncOnceCell()
    made = AtomicInt()
    running = AtomicInt()
    overlaps = AtomicInt()

    async def factory() -> int:
        if running.increment() > 1:
            overlaps.increment()
        n = made.increment()
        await asyncio.sleep(0)
        running.decrement()
        return n

    async def body(i: int) -> list[int]:
        async def task(j: int) -> list[int]:
            seen = []
            for n in range(30):
                seen.append(await cell.get_or_init(factory, timeout=20))
                if (i + j + n) % 17 == 0:
                    cell.reset()
            return seen

        return [v for vs in await asyncio.gather(*(task(j) for j in range(20))) for v in vs]

    values = [v for per in on_loops(8, body) for v in per]
    assert len(values) == 8 * 20 * 30
    # Every value came from a completed factory run, and runs were serialised (ids 1..made).
    assert set(values) <= set(range(1, made.get() + 1))
    assert made.get() > 1 and overlaps.get() == 0  # re-initialised after resets, never two at once
    assert cell._cell._waiting() == 0
