"""Locks and events: uncontended cost, contended throughput, and cross-loop wake-up latency.

- Uncontended, one thread: ``with lock:`` and ``acquire()``/``release()`` separately, against
  ``threading.Lock``/``RLock``/``Semaphore`` and ``ft_utils.RWLock`` (where it installs); and
  ``async with`` in one task against ``asyncio.Lock``/``Semaphore``.
- Contended throughput: N threads each doing ``with lock: counter += 1`` (ops/s, all threads
  together), up to BENCH_MAX_THREADS (default: max(4, CPU count) — beyond the core count the
  figures show how each lock behaves when holders get preempted); tasks on one loop against
  ``asyncio.Lock``; a 90/10 read/write mix against ``ft_utils.RWLock``.
- Wake-up latency: two parties ping-pong through a pair of events, half the round trip: loop to
  loop (two threads, each running its own event loop) with ``nogilsafe.Event`` against
  ``asyncio.Event`` + ``call_soon_threadsafe``; thread to thread against ``threading.Event``;
  thread to loop against ``threading.Event`` one way and ``call_soon_threadsafe`` the other.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (
    Impl,
    LoopThread,
    Table,
    emit,
    median_us,
    optional_import,
    pingpong_on,
    scaling_table,
    thread_counts,
)
from nogilsafe import Event, Lock, RLock, RWLock, Semaphore

N = int(os.environ.get("BENCH_OPS", 200_000))
PINGS = int(os.environ.get("BENCH_PINGS", 2000))
MAX_THREADS = int(os.environ.get("BENCH_MAX_THREADS", max(4, os.cpu_count() or 1)))

ftsync = optional_import("ft_utils.synchronization")


# ---- uncontended ----------------------------------------------------------------------------


def best_ns(body: Callable[[int], None], number: int = N, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        body(number)
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e9


def with_body(lock: Any) -> Callable[[int], None]:
    def body(n: int) -> None:
        for _ in range(n):
            with lock:
                pass

    return body


def pair_body(acquire: Callable[[], Any], release: Callable[[], Any]) -> Callable[[int], None]:
    def body(n: int) -> None:
        for _ in range(n):
            acquire()
            release()

    return body


def uncontended_table() -> Table:
    table = Table(
        "Uncontended acquire + release, one thread",
        unit="ns per acquire+release",
        columns=["with lock:", "acquire()/release()"],
        reference="threading.Lock",
    )
    rows: list[tuple[str, Any, Any]] = []
    tl, nl = threading.Lock(), Lock()
    rows.append(("threading.Lock", with_body(tl), pair_body(tl.acquire, tl.release)))
    rows.append(("nogilsafe.Lock", with_body(nl), pair_body(nl.acquire, nl.release)))
    tr, nr = threading.RLock(), RLock()
    rows.append(("threading.RLock", with_body(tr), pair_body(tr.acquire, tr.release)))
    rows.append(("nogilsafe.RLock", with_body(nr), pair_body(nr.acquire, nr.release)))
    ts, ns_ = threading.Semaphore(1), Semaphore(1)
    rows.append(("threading.Semaphore", with_body(ts), pair_body(ts.acquire, ts.release)))
    rows.append(("nogilsafe.Semaphore", with_body(ns_), pair_body(ns_.acquire, ns_.release)))
    rw = RWLock()
    rows.append(
        ("nogilsafe.RWLock read", None, pair_body(rw.acquire_read, rw.release_read)),
    )
    rows.append(
        ("nogilsafe.RWLock write", None, pair_body(rw.acquire_write, rw.release_write)),
    )
    if ftsync is not None:
        frw = ftsync.RWLock()
        rows.append(
            (
                "ft_utils.RWLock read",
                with_body(ftsync.RWReadContext(frw)),
                pair_body(frw.lock_read, frw.unlock_read),
            )
        )
        rows.append(
            (
                "ft_utils.RWLock write",
                with_body(ftsync.RWWriteContext(frw)),
                pair_body(frw.lock_write, frw.unlock_write),
            )
        )
    # Interleave the rows over the repeats, so a noisy moment on a shared machine does not
    # favour whichever row ran then.
    results: dict[str, list[float]] = {name: [float("inf")] * 2 for name, _, _ in rows}
    for _ in range(3):
        for name, w, p in rows:
            for i, body in enumerate((w, p)):
                if body is not None:
                    results[name][i] = min(results[name][i], best_ns(body, repeat=3))
    for name, w, _ in rows:
        table.add(
            name,
            [results[name][0] if w is not None else None, results[name][1]],
        )
    table.notes.append(
        "A bare `for` loop's own cost is included in every figure (tens of ns). "
        "nogilsafe.RWLock rows use acquire_read()/release_read() (its `with rw.read():` builds a "
        "guard object per use)."
    )
    return table


def async_uncontended_table() -> Table:
    table = Table(
        "Uncontended `async with`, one task",
        unit="ns per async with",
        columns=["async with"],
        reference="asyncio.Lock",
    )

    def run(lock: Any) -> float:
        async def main() -> float:
            best = float("inf")
            n = N // 4
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    async with lock:
                        pass
                best = min(best, (time.perf_counter() - t0) / n)
            return best * 1e9

        return asyncio.run(main())

    async def make_asyncio(cls: Any) -> Any:
        return cls()

    table.add("asyncio.Lock", [run(asyncio.run(make_asyncio(asyncio.Lock)))])
    table.add("nogilsafe.Lock", [run(Lock())])
    table.add("asyncio.Semaphore", [run(asyncio.run(make_asyncio(asyncio.Semaphore)))])
    table.add("nogilsafe.Semaphore", [run(Semaphore(1))])
    table.notes.append(
        "asyncio's primitives bind to the loop that first waits on them and fail on any other; "
        "nogilsafe's work from every loop and thread at once, at this cost."
    )
    return table


# ---- contended --------------------------------------------------------------------------------


class Counter:
    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.value = 0


def counter_worker(view: Callable[[Any], Any] | None = None) -> Any:
    def worker(shared: Counter, i: int, ops: int) -> Callable[[], None]:
        lock = view(shared.lock) if view is not None else shared.lock

        def body() -> None:
            for _ in range(ops):
                with lock:
                    shared.value += 1

        return body

    return worker


def contended_table() -> Table:
    impls = [
        Impl("threading.Lock", lambda: Counter(threading.Lock()), counter_worker()),
        Impl("nogilsafe.Lock", lambda: Counter(Lock()), counter_worker()),
        Impl("nogilsafe.Lock .local()", lambda: Counter(Lock()), counter_worker(Lock.local)),
        Impl("threading.RLock", lambda: Counter(threading.RLock()), counter_worker()),
        Impl("nogilsafe.RLock", lambda: Counter(RLock()), counter_worker()),
        Impl("nogilsafe.RWLock write", lambda: Counter(RWLock()), counter_worker(RWLock.write)),
    ]
    if ftsync is not None:
        impls.append(
            Impl(
                "ft_utils.RWLock write",
                lambda: Counter(ftsync.RWLock()),
                counter_worker(ftsync.RWWriteContext),
            )
        )
    table = scaling_table(
        "Contended `with lock: counter += 1`: ops/s, all threads together",
        impls,
        N // 4,
        reference="threading.Lock",
        threads=[n for n in thread_counts(MAX_THREADS) if n >= 1],
    )
    table.notes.append(
        f"{os.cpu_count()} CPUs: columns past the core count oversubscribe them. nogilsafe.Lock "
        "wakes its oldest waiter to retry on release and hands the lock over outright once that "
        "waiter has waited 1 ms (as CPython's own PyMutex does), so no waiter starves."
    )
    return table


def rw_mix_worker(kind: str) -> Any:
    def worker(shared: Any, i: int, ops: int) -> Callable[[], None]:
        box = [0]
        if kind == "nogilsafe":
            rw = shared.local()
            rlock, runlock = rw.acquire_read, rw.release_read
            wlock, wunlock = rw.acquire_write, rw.release_write
        else:
            rlock, runlock = shared.lock_read, shared.unlock_read
            wlock, wunlock = shared.lock_write, shared.unlock_write

        def body() -> None:
            for n in range(ops):
                if n % 10 == 0:
                    wlock()
                    box[0] += 1
                    wunlock()
                else:
                    rlock()
                    _ = box[0]
                    runlock()

        return body

    return worker


def rw_mix_table() -> Table:
    impls = [Impl("nogilsafe.RWLock", RWLock, rw_mix_worker("nogilsafe"))]
    if ftsync is not None:
        impls.insert(0, Impl("ft_utils.RWLock", ftsync.RWLock, rw_mix_worker("ft_utils")))
    table = scaling_table(
        "RWLock, 90% reads / 10% writes: ops/s, all threads together",
        impls,
        N // 4,
        reference="ft_utils.RWLock" if ftsync is not None else None,
        threads=thread_counts(MAX_THREADS),
    )
    if ftsync is None:
        table.notes.append("ft_utils is not installed in this interpreter: no anchor row.")
    return table


def async_contended_table() -> Table:
    tasks = [1, 4, 16]
    table = Table(
        "Contended `async with lock:` on one loop: ops/s, all tasks together",
        unit="Mops/s",
        columns=[f"{t} tasks" for t in tasks],
        reference="asyncio.Lock",
    )

    def run(make: Callable[[], Any], n_tasks: int) -> float:
        async def main() -> float:
            lock = make()
            box = [0]
            per = N // 8 // n_tasks

            async def task() -> None:
                for _ in range(per):
                    async with lock:
                        box[0] += 1
                        await asyncio.sleep(0)

            t0 = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(n_tasks)))
            return per * n_tasks / (time.perf_counter() - t0) / 1e6

        return max(asyncio.run(main()) for _ in range(3))

    table.add("asyncio.Lock", [run(asyncio.Lock, t) for t in tasks])
    table.add("nogilsafe.Lock", [run(Lock, t) for t in tasks])
    table.notes.append("Each holder awaits `asyncio.sleep(0)` inside, so the others queue.")
    return table


# ---- wake-up latency ----------------------------------------------------------------------------


def pingpong_loops_nogilsafe() -> float:
    a, b = LoopThread(), LoopThread()
    ping, pong = Event(), Event()

    async def ponger() -> None:
        for _ in range(PINGS):
            await ping.wait_async()
            ping.clear()
            pong.set()

    async def pinger() -> list[float]:
        out = []
        for _ in range(PINGS):
            t0 = time.perf_counter()
            ping.set()
            await pong.wait_async()
            pong.clear()
            out.append((time.perf_counter() - t0) / 2)
        return out

    return pingpong_on(a, b, pinger(), ponger())


def pingpong_loops_asyncio() -> float:
    a, b = LoopThread(), LoopThread()

    async def make() -> asyncio.Event:
        return asyncio.Event()

    ping = b.run(make()).result(10)  # each event lives on the loop that waits on it
    pong = a.run(make()).result(10)

    async def ponger() -> None:
        for _ in range(PINGS):
            await ping.wait()
            ping.clear()
            a.loop.call_soon_threadsafe(pong.set)

    async def pinger() -> list[float]:
        out = []
        for _ in range(PINGS):
            t0 = time.perf_counter()
            b.loop.call_soon_threadsafe(ping.set)
            await pong.wait()
            pong.clear()
            out.append((time.perf_counter() - t0) / 2)
        return out

    return pingpong_on(a, b, pinger(), ponger())


def pingpong_threads(make: Callable[[], Any]) -> float:
    ping, pong = make(), make()

    def ponger() -> None:
        for _ in range(PINGS):
            ping.wait()
            ping.clear()
            pong.set()

    t = threading.Thread(target=ponger, daemon=True)
    t.start()
    samples = []
    for _ in range(PINGS):
        t0 = time.perf_counter()
        ping.set()
        pong.wait()
        pong.clear()
        samples.append((time.perf_counter() - t0) / 2)
    t.join(10)
    return median_us(samples)


def pingpong_thread_loop(nogilsafe: bool) -> float:
    """A plain thread pings a task on a loop in another thread, which answers."""
    b = LoopThread()
    if nogilsafe:
        ping, pong = Event(), Event()
    else:

        async def make() -> asyncio.Event:
            return asyncio.Event()

        ping, pong = b.run(make()).result(10), threading.Event()

    async def ponger() -> None:
        for _ in range(PINGS):
            if nogilsafe:
                await ping.wait_async()
            else:
                await ping.wait()
            ping.clear()
            pong.set()

    fb = b.run(ponger())
    samples = []
    for _ in range(PINGS):
        t0 = time.perf_counter()
        if nogilsafe:
            ping.set()
        else:
            b.loop.call_soon_threadsafe(ping.set)
        pong.wait()
        pong.clear()
        samples.append((time.perf_counter() - t0) / 2)
    fb.result(10)
    b.stop()
    return median_us(samples)


def latency_table() -> Table:
    table = Table(
        "Event wake-up latency (one way, median of a ping-pong)",
        unit="µs",
        columns=["loop -> loop", "thread -> thread", "thread -> loop"],
        reference="stdlib",
    )
    table.add(
        "stdlib",
        [
            pingpong_loops_asyncio(),
            pingpong_threads(threading.Event),
            pingpong_thread_loop(False),
        ],
    )
    table.add(
        "nogilsafe.Event",
        [pingpong_loops_nogilsafe(), pingpong_threads(Event), pingpong_thread_loop(True)],
    )
    table.notes.append(
        "stdlib: loop -> loop is asyncio.Event + loop.call_soon_threadsafe(event.set); thread -> "
        "thread is threading.Event; thread -> loop is call_soon_threadsafe one way and "
        "threading.Event back. Each side runs in its own thread; lower is better "
        f"({PINGS} round trips)."
    )
    return table


def main() -> None:
    tables = [
        uncontended_table(),
        async_uncontended_table(),
        contended_table(),
        async_contended_table(),
        rw_mix_table(),
        latency_table(),
    ]
    if ftsync is None:
        tables[0].notes.append("ft_utils is not installed in this interpreter: no ft_utils rows.")
    emit("bench_locks", tables)


if __name__ == "__main__":
    main()
