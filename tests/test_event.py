"""Event and CountDownLatch: threading.Event's contract from threads, and the same waits from any
event loop; one set() wakes every thread and every task on every loop."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from nogilsafe import CountDownLatch, Event
from nogilsafe.testing import run_concurrently

from tests._threads import join_all


def start(fn) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_event_flag_like_threading_event() -> None:
    for e in (threading.Event(), Event()):
        assert not e.is_set()
        assert e.wait(0) is False
        assert e.wait(timeout=0.01) is False
        e.set()
        assert e.is_set()
        assert e.wait() is True and e.wait(0) is True
        e.set()  # idempotent
        e.clear()
        assert not e.is_set()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_timeouts(bad: float) -> None:
    with pytest.raises(ValueError):
        Event().wait(bad)
    with pytest.raises(ValueError):
        Event().wait_async(bad)
    with pytest.raises(ValueError):
        CountDownLatch(1).wait(bad)


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_set_wakes_every_waiting_thread() -> None:
    e = Event()
    results: list[bool] = []
    threads = [start(lambda: results.append(e.wait(10))) for _ in range(6)]
    deadline = time.monotonic() + 10
    while e.waiting < 6 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert e.waiting == 6
    e.set()
    join_all(threads, 10)
    assert results == [True] * 6 and e.waiting == 0


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_waiter_woken_by_set_returns_true_even_if_cleared_at_once() -> None:
    # threading.Event.wait returns True if the flag was set after the wait started.
    e = Event()
    results: list[bool] = []
    t = start(lambda: results.append(e.wait(10)))
    while e.waiting < 1:
        time.sleep(0.001)
    e.set()
    e.clear()
    join_all([t], 10)
    assert results == [True]


def test_wait_async_on_one_loop() -> None:
    async def main() -> None:
        e = Event()
        assert await e.wait_async(0) is False
        assert await e.wait_async(0.01) is False
        waiters = [asyncio.create_task(e.wait_async()) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert e.waiting == 5
        e.set()
        assert await asyncio.gather(*waiters) == [True] * 5
        assert await e.wait_async() is True

    asyncio.run(main())


def test_cancelled_async_waiter_leaves_no_trace() -> None:
    async def main() -> None:
        e = Event()
        w = asyncio.create_task(e.wait_async())
        await asyncio.sleep(0.01)
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        assert e.waiting == 0

    asyncio.run(main())


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_set_from_a_thread_wakes_four_loops_and_eight_threads_within_milliseconds() -> None:
    e = Event()
    ready = CountDownLatch(4 * 4 + 8)
    woke: list[float] = []
    lock = threading.Lock()

    def record() -> None:
        t = time.perf_counter()
        with lock:
            woke.append(t)

    async def loop_main() -> None:
        async def task() -> None:
            ready.count_down()
            assert await e.wait_async(30)
            record()

        await asyncio.gather(*(task() for _ in range(4)))

    def thread_main() -> None:
        ready.count_down()
        assert e.wait(30)
        record()

    threads = [start(lambda: asyncio.run(loop_main())) for _ in range(4)]
    threads += [start(thread_main) for _ in range(8)]
    assert ready.wait(30)
    while e.waiting < 24:
        time.sleep(0.001)
    t0 = time.perf_counter()
    e.set()
    join_all(threads, 30)
    assert len(woke) == 24
    # Generous for a loaded 2-core CI machine; typical is well under 5 ms.
    assert max(woke) - t0 < 0.5, f"slowest wake-up {1000 * (max(woke) - t0):.1f} ms"


def test_latch_counts_down_to_open() -> None:
    latch = CountDownLatch(3, name="workers")
    assert latch.count == 3 and latch.name == "workers"
    assert latch.wait(0) is False
    assert latch.count_down() == 2
    assert latch.count_down(2) == 0
    assert latch.wait(0) is True and latch.wait() is True
    assert latch.count_down() == 0  # stays open
    assert CountDownLatch(0).wait(0) is True
    with pytest.raises(ValueError):
        CountDownLatch(-1)
    with pytest.raises(ValueError):
        latch.count_down(-1)
    assert "count=0" in repr(latch)


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_latch_start_when_all_ready_and_stop_when_all_finished() -> None:
    n = 8
    ready, go, finished = CountDownLatch(n), Event(), CountDownLatch(n)
    started_before_go: list[int] = []

    def worker(i: int) -> None:
        ready.count_down()
        go.wait(30)
        if not go.is_set():
            started_before_go.append(i)
        finished.count_down()

    threads = [start(lambda i=i: worker(i)) for i in range(n)]
    assert ready.wait(30)
    assert finished.count == n
    go.set()
    assert finished.wait(30)
    join_all(threads, 10)
    assert started_before_go == []


def test_latch_wait_async() -> None:
    async def main() -> None:
        latch = CountDownLatch(2)
        w = asyncio.create_task(latch.wait_async(10))
        await asyncio.sleep(0.01)
        latch.count_down()
        await asyncio.sleep(0.01)
        assert not w.done()
        latch.count_down()
        assert await w is True
        assert await CountDownLatch(1).wait_async(0.01) is False

    asyncio.run(main())


def test_pickling_refused_and_views_share() -> None:
    for obj in (Event(), CountDownLatch(1)):
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(obj)
    e = Event()
    e.local().set()
    assert e.is_set()
    latch = CountDownLatch(1)
    latch.local().count_down()
    assert latch.count == 0


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_set_clear_wait_stress_never_hangs() -> None:
    e = Event()

    def work(i: int) -> None:
        view = e.local()
        for n in range(300):
            if i % 2:
                view.set() if n % 2 else view.clear()
            else:
                view.wait(0.001)
        view.set()

    run_concurrently(work, threads=8, timeout=60)
    assert e.is_set() and e.waiting == 0
