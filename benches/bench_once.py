"""OnceCell / AsyncOnceCell: the initialised fast path, and contended initialisation.

Fast path (single thread, single loop, value already there), per call:
- sync: a module-level ``if _x is None`` function vs ``OnceCell.get()``, ``OnceCell.get_or_init(f)``
  and a ``@singleton`` function;
- async: the same ``is None`` check in an ``async def`` vs ``await AsyncOnceCell.get_or_init(f)``,
  an ``@async_singleton``, ``await AsyncSingleton.instance()`` and the seeds' class-level
  ``asyncio.Lock`` double-checked singleton (which only works on one loop).
Contended initialisation: 16 threads, each with its own event loop running 100 tasks that all ask
for the value at once (factory: ``await asyncio.sleep(0.01)``); wall time from the barrier release
until every task has its value, and how many tasks failed. The seeds' pattern is run the same
way to show how it breaks across loops.
Thread scaling of the ready sync path (shared cell vs per-thread ``.local()`` views), up to
BENCH_MAX_THREADS (default: the CPU count).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Impl, Table, emit, scaling_table
from nogilsafe import AsyncOnceCell, AsyncSingleton, OnceCell, async_singleton, singleton

N = int(os.environ.get("BENCH_OPS", 200_000))
THREADS = int(os.environ.get("BENCH_THREADS", 16))
TASKS = int(os.environ.get("BENCH_TASKS", 100))

_x: object | None = None


def make() -> object:
    return object()


def get_x() -> object:
    global _x
    if _x is None:
        _x = make()
    return _x


_ax: object | None = None


async def amake() -> object:
    return object()


async def aget_x() -> object:
    global _ax
    if _ax is None:
        _ax = await amake()
    return _ax


class SeedSingleton:
    """The seeds' pattern: a class-level asyncio.Lock around a double-checked instance."""

    _instance: SeedSingleton | None = None
    _lock: asyncio.Lock | None = None

    @classmethod
    async def get_instance(cls) -> SeedSingleton:
        if cls._instance is None:
            if cls._lock is None:  # the seeds' lazy _ensure_locks_initialized
                cls._lock = asyncio.Lock()
            async with cls._lock:
                if cls._instance is None:
                    await asyncio.sleep(0.01)
                    cls._instance = cls()
        return cls._instance


class Service(AsyncSingleton):
    pass


def per_call_ns(fn: Any, *args: Any, number: int = N, repeat: int = 5) -> float:
    """Best-of-``repeat`` ns per ``fn(*args)``; every row pays the same call shape."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e9


def per_await_ns(fn: Any, *args: Any, number: int = N, repeat: int = 5) -> float:
    """Best-of-``repeat`` ns per ``await fn(*args)`` inside one task."""

    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                await fn(*args)
            best = min(best, (time.perf_counter() - t0) / number)
        return best * 1e9

    return asyncio.run(run())


def fast_path_table() -> Table:
    table = Table(
        "Initialised fast path, one thread",
        unit="ns/call",
        columns=["sync", "async"],
        reference="module-level `if _x is None`",
    )
    cell: OnceCell[object] = OnceCell()
    cell.get_or_init(make)
    acell: AsyncOnceCell[object] = AsyncOnceCell()
    asingle = async_singleton(amake)
    single = singleton(make)
    get_x()

    async def prime() -> None:
        await acell.get_or_init(amake)
        await asingle()
        await Service.instance()
        await SeedSingleton.get_instance()
        await aget_x()

    asyncio.run(prime())
    table.add("module-level `if _x is None`", [per_call_ns(get_x), per_await_ns(aget_x)])
    table.add("OnceCell.get()", [per_call_ns(cell.get), None])
    table.add("OnceCell.get_or_init(f)", [per_call_ns(cell.get_or_init, make), None])
    table.add("@singleton / @async_singleton", [per_call_ns(single), per_await_ns(asingle)])
    table.add("AsyncOnceCell.get_or_init(f)", [None, per_await_ns(acell.get_or_init, amake)])
    table.add("AsyncSingleton.instance()", [None, per_await_ns(Service.instance)])
    table.add(
        "seeds: asyncio.Lock double-checked", [None, per_await_ns(SeedSingleton.get_instance)]
    )
    table.notes.append(
        "sync: `fn(*args)` in a loop; async: `await fn(*args)` in a loop inside one "
        "task; best of 5 runs of BENCH_OPS calls."
    )
    return table


def contended(get: Any) -> tuple[float, int, int]:
    """(ms until all resolved, failed tasks, distinct values) for THREADS x TASKS callers."""
    barrier = threading.Barrier(THREADS + 1)
    results: list[Any] = []
    lock = threading.Lock()

    def thread() -> None:
        async def body() -> list[Any]:
            return await asyncio.gather(*(get() for _ in range(TASKS)), return_exceptions=True)

        loop = asyncio.new_event_loop()
        barrier.wait()
        try:
            rs = loop.run_until_complete(body())
        finally:
            loop.close()
        with lock:
            results.extend(rs)

    threads = [threading.Thread(target=thread, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(60)
    ms = (time.perf_counter() - t0) * 1e3
    failed = sum(isinstance(r, BaseException) for r in results)
    distinct = len({id(r) for r in results if not isinstance(r, BaseException)})
    return ms, failed, distinct


def contended_table() -> Table:
    table = Table(
        f"Contended first initialisation: {THREADS} threads x own loop x {TASKS} tasks",
        unit="ms until all resolved / failed tasks / distinct instances",
        columns=["ms", "failed", "instances"],
    )

    async def slow() -> object:
        await asyncio.sleep(0.01)
        return object()

    def best_of(make_get: Any, repeat: int = 3) -> list[float | None]:
        runs = [contended(make_get()) for _ in range(repeat)]
        ms = min(r[0] for r in runs)
        return [ms, float(max(r[1] for r in runs)), float(max(r[2] for r in runs))]

    def fresh_cell() -> Any:
        cell: AsyncOnceCell[object] = AsyncOnceCell()
        return lambda: cell.get_or_init(slow)

    def fresh_seed() -> Any:
        SeedSingleton._instance = None
        SeedSingleton._lock = None
        return SeedSingleton.get_instance

    table.add("AsyncOnceCell.get_or_init", best_of(fresh_cell))
    table.add("seeds: asyncio.Lock double-checked", best_of(fresh_seed))
    table.notes.append(
        "factory = `await asyncio.sleep(0.01)`; best of 3 for ms, worst of 3 for "
        "failures and instances. Failures of the seeds' pattern are "
        "`RuntimeError: ... bound to a different event loop`."
    )
    return table


def ready_cell() -> OnceCell[object]:
    cell: OnceCell[object] = OnceCell()
    cell.set(object())
    return cell


def loop_of(get: Any) -> Any:
    def worker(shared: Any, i: int, ops: int) -> Any:
        fn = get(shared)

        def body() -> None:
            for _ in range(ops):
                fn()

        return body

    return worker


def scaling() -> Table:
    impls = [
        Impl("module-level `if _x is None`", lambda: None, loop_of(lambda _: get_x)),
        Impl(
            "OnceCell.get_or_init(f), shared",
            ready_cell,
            loop_of(lambda c: functools.partial(c.get_or_init, make)),
        ),
        Impl(
            "OnceCell.get_or_init(f), .local()",
            ready_cell,
            loop_of(lambda c: functools.partial(c.local().get_or_init, make)),
        ),
    ]
    return scaling_table(
        "Ready get_or_init by threads (sync)",
        impls,
        N // 4,
        reference="module-level `if _x is None`",
    )


def main() -> None:
    emit("bench_once", [fast_path_table(), contended_table(), scaling()])


if __name__ == "__main__":
    main()
