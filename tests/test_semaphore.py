"""Semaphore and BoundedSemaphore: threading's contract, FIFO service, and async acquisition from
any loop, where a cancelled waiter never loses a permit."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from nogilsafe import BoundedSemaphore, Semaphore
from nogilsafe.testing import run_concurrently

from tests._threads import join_all

KINDS = [Semaphore, BoundedSemaphore]


def start(fn) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind", KINDS)
def test_permits_like_threading(kind: type) -> None:
    s = kind(2)
    assert s.value == 2 and not s.locked()
    assert s.acquire() and s.acquire(timeout=0)
    assert s.value == 0 and s.locked()
    assert s.acquire(blocking=False) is False
    assert s.acquire(timeout=0.01) is False
    s.release()
    s.release()
    assert s.value == 2
    with s as got:
        assert got is True and s.value == 1
    assert s.value == 2


def test_constructor_and_release_arguments_like_threading() -> None:
    for cls in (threading.Semaphore, Semaphore):
        with pytest.raises(ValueError):
            cls(-1)
        s = cls(0)
        with pytest.raises(ValueError):
            s.release(0)
        s.release(3)
        assert s.acquire(timeout=0) and s.acquire(timeout=0) and s.acquire(timeout=0)
        assert not s.acquire(timeout=0)
    with pytest.raises(ValueError):
        Semaphore(1).acquire(False, 1)
    with pytest.raises(ValueError):
        Semaphore(1).acquire(timeout=-1)


def test_bounded_semaphore_refuses_extra_releases_like_threading() -> None:
    for cls in (threading.BoundedSemaphore, BoundedSemaphore):
        s = cls(2)
        with pytest.raises(ValueError, match="too many"):
            s.release()
        s.acquire()
        with pytest.raises(ValueError):
            s.release(2)
        s.release()
    s = BoundedSemaphore(2)
    assert s.value == 2


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_waiters_get_permits_in_arrival_order() -> None:
    s = Semaphore(0)
    order: list[int] = []
    threads = []
    for i in range(5):
        threads.append(start(lambda i=i: (s.acquire(timeout=10), order.append(i))))
        deadline = time.monotonic() + 10
        while s.waiting < i + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    for _ in range(5):
        s.release()
        time.sleep(0.01)
    join_all(threads, 10)
    assert order == list(range(5))


def test_acquire_async_and_async_with() -> None:
    async def main() -> None:
        s = Semaphore(1)
        async with s:
            assert s.value == 0
            assert await s.acquire_async(timeout=0.01) is False
        assert s.value == 1
        assert await s.acquire_async() is True
        s.release()

    asyncio.run(main())


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_caps_concurrency_across_threads_and_loops() -> None:
    cap = Semaphore(3)
    inside = [0]
    peak = [0]
    lock = threading.Lock()

    def enter() -> None:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])

    def leave() -> None:
        with lock:
            inside[0] -= 1

    async def loop_main() -> None:
        async def call() -> None:
            for _ in range(30):
                async with cap:
                    enter()
                    await asyncio.sleep(0.0005)
                    leave()

        await asyncio.gather(*(call() for _ in range(4)))

    def work(i: int) -> None:
        if i < 3:
            asyncio.run(loop_main())
        else:
            for _ in range(60):
                with cap:
                    enter()
                    time.sleep(0.0002)
                    leave()

    run_concurrently(work, threads=6, timeout=120)
    assert peak[0] <= 3 and inside[0] == 0
    assert cap.value == 3 and cap.waiting == 0


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_cancellation_storm_loses_no_permit() -> None:
    sem = BoundedSemaphore(2)

    async def storm() -> None:
        async def worker() -> None:
            for _ in range(50):
                try:
                    async with sem:
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    pass

        tasks = [asyncio.create_task(worker()) for _ in range(8)]
        for n in range(150):
            await asyncio.sleep(0)
            tasks[n % 8].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def work(i: int) -> None:
        if i < 3:
            asyncio.run(storm())
        else:
            for _ in range(200):
                if sem.acquire(timeout=10):
                    sem.release()

    run_concurrently(work, threads=5, timeout=120)
    assert sem.value == 2 and sem.waiting == 0


def test_pickling_refused() -> None:
    for cls in KINDS:
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(cls(1))
