"""Lock and RLock from event loops: asyncio.Lock's documented contract where we mirror it, and what
asyncio.Lock cannot do — two loops in two threads sharing one lock, threads and tasks mixed,
timeouts, cancellation that never leaves the lock held by nobody in particular.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from nogilsafe import Lock, LockTimeoutError, ReentrancyError, RLock

from tests._threads import join_all

KINDS = [Lock, RLock]


def run_in_thread(coro_fn, name: str = "loop-thread") -> tuple[threading.Thread, list]:  # type: ignore[no-untyped-def]
    out: list = []

    def main() -> None:
        try:
            out.append(asyncio.run(coro_fn()))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=main, name=name, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("kind", KINDS)
def test_async_with_and_acquire_async(kind: type) -> None:
    lock = kind()

    async def main() -> None:
        async with lock as got:
            assert got is None  # as asyncio.Lock's __aenter__
            assert lock.locked()
        assert not lock.locked()
        assert await lock.acquire_async() is True
        lock.release()
        assert await lock.acquire_async(timeout=1) is True
        lock.release()
        with pytest.raises(ZeroDivisionError):
            async with lock:
                raise ZeroDivisionError
        assert not lock.locked()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_bad_timeout_is_a_value_error_at_the_call(kind: type) -> None:
    lock = kind()
    with pytest.raises(ValueError):
        lock.acquire_async(timeout=-1)
    with pytest.raises(ValueError):
        lock.acquire_async(timeout=float("nan"))


def test_tasks_of_one_loop_exclude_each_other_in_fifo_order() -> None:
    lock = Lock()
    order: list[int] = []

    async def main() -> None:
        async def worker(i: int) -> None:
            async with lock:
                order.append(i)
                await asyncio.sleep(0)

        await lock.acquire_async()
        tasks = [asyncio.create_task(worker(i)) for i in range(5)]
        while lock.waiting < 5:
            await asyncio.sleep(0)
        lock.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(5))


def test_same_task_reacquiring_a_lock_raises_and_an_rlock_counts() -> None:
    async def main() -> None:
        lock, rlock = Lock(name="l"), RLock()
        async with lock:
            with pytest.raises(ReentrancyError, match="already held by this task"):
                await lock.acquire_async()
        async with rlock, rlock:
            assert rlock.locked()
        assert not rlock.locked()

    asyncio.run(main())


def test_a_blocking_acquire_on_the_loop_thread_of_a_holding_task_raises() -> None:
    # The task cannot release while its loop's thread is blocked: a certain deadlock.
    async def main() -> None:
        for lock in (Lock(), RLock()):
            async with lock:
                with pytest.raises(ReentrancyError, match="event loop"):
                    lock.acquire(timeout=1)

    asyncio.run(main())


def test_other_tasks_on_the_same_loop_wait_for_the_holder() -> None:
    lock = Lock()

    async def main() -> list[str]:
        log: list[str] = []

        async def second() -> None:
            async with lock:
                log.append("second")

        async with lock:
            t = asyncio.create_task(second())
            await asyncio.sleep(0.01)
            log.append("first done")
        await t
        return log

    assert asyncio.run(main()) == ["first done", "second"]


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_async_with_from_two_loops_in_two_threads() -> None:
    lock = Lock()
    inside = [0]
    box = [0]

    async def loop_main() -> int:
        async def task() -> None:
            for _ in range(200):
                async with lock:
                    inside[0] += 1
                    assert inside[0] == 1
                    v = box[0]
                    await asyncio.sleep(0)
                    box[0] = v + 1
                    inside[0] -= 1

        await asyncio.gather(*(task() for _ in range(4)))
        return 0

    runs = [run_in_thread(loop_main, f"loop-{i}") for i in range(2)]
    join_all([t for t, _ in runs], 60)
    assert [out for _, out in runs] == [[0], [0]]
    assert box[0] == 2 * 4 * 200
    assert not lock.locked()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_thread_and_a_task_hand_the_lock_to_each_other() -> None:
    lock = Lock()
    lock.acquire()
    got: list[float] = []

    async def main() -> bool:
        t0 = time.monotonic()
        ok = await lock.acquire_async(timeout=10)
        got.append(time.monotonic() - t0)
        lock.release()
        return ok

    t, out = run_in_thread(main)
    time.sleep(0.05)
    assert lock.waiting == 1
    lock.release()
    join_all([t], 10)
    assert out == [True] and got[0] >= 0.04
    assert not lock.locked()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_acquire_async_timeout_returns_false_and_hold_raises() -> None:
    lock = Lock(name="slow")
    lock.acquire()

    async def main() -> tuple[bool, str]:
        ok = await lock.acquire_async(timeout=0.05)
        try:
            async with lock.hold(timeout=0.05):
                pass
        except LockTimeoutError as e:
            return ok, str(e)
        return ok, ""

    t, out = run_in_thread(main)
    join_all([t], 10)
    lock.release()
    ok, msg = out[0]
    assert ok is False
    assert "'slow'" in msg and "MainThread" in msg
    assert lock.waiting == 0 and not lock.locked()


def test_cancelled_waiter_does_not_take_the_lock() -> None:
    lock = Lock()

    async def main() -> None:
        await lock.acquire_async()
        waiter = asyncio.create_task(lock.acquire_async())
        await asyncio.sleep(0.01)
        assert lock.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert lock.waiting == 0
        lock.release()
        assert not lock.locked()

    asyncio.run(main())


def test_waiter_cancelled_after_the_lock_was_handed_to_it_releases_it() -> None:
    # The grant (call_soon_threadsafe) and the cancellation land in the same loop iteration:
    # the task sees CancelledError, and the lock must not stay held on its behalf.
    lock = Lock()

    async def main() -> None:
        for _ in range(50):
            await lock.acquire_async()
            waiter = asyncio.create_task(lock.acquire_async())
            await asyncio.sleep(0.002)  # long enough to be handed the lock directly
            lock.release()
            waiter.cancel()
            try:
                got = await waiter
            except asyncio.CancelledError:
                pass
            else:
                assert got is True
                lock.release()
            assert not lock.locked(), "cancelled waiter left the lock held"
            assert lock.waiting == 0

    asyncio.run(main())


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_cancellation_storm_leaves_the_lock_free() -> None:
    lock = Lock()
    box = [0]

    async def storm() -> int:
        async def worker() -> None:
            for _ in range(100):
                try:
                    async with lock:
                        box[0] += 1
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    pass

        tasks = [asyncio.create_task(worker()) for _ in range(8)]
        for _ in range(200):
            await asyncio.sleep(0)
            for t in tasks:
                if not t.done() and (id(t) + box[0]) % 3 == 0:
                    t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return 0

    def threads_too() -> None:
        for _ in range(300):
            if lock.acquire(timeout=10):
                box[0] += 1
                lock.release()

    runs = [run_in_thread(storm, f"storm-{i}") for i in range(3)]
    th = threading.Thread(target=threads_too, daemon=True)
    th.start()
    join_all([t for t, _ in runs] + [th], 60)
    assert [out for _, out in runs] == [[0]] * 3
    assert not lock.locked() and lock.waiting == 0
    assert lock.acquire(blocking=False)
    lock.release()


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_a_grant_to_a_closed_loop_is_passed_on() -> None:
    lock = Lock()
    lock.acquire()
    queued = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []

    def orphan() -> None:
        loop = asyncio.new_event_loop()
        loop_box.append(loop)
        task = loop.create_task(lock.acquire_async())
        # The task is orphaned on purpose: asyncio need not report it as destroyed while pending.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        # Run until the waiter is queued, then stop the loop for good and close it.
        while lock.waiting == 0:
            loop.run_until_complete(asyncio.sleep(0.001))
        queued.set()
        loop.close()
        del task

    t = threading.Thread(target=orphan, daemon=True)
    t.start()
    assert queued.wait(10)
    join_all([t], 10)
    time.sleep(0.002)  # the waiter has waited long enough to be handed the lock
    lock.release()
    # The orphan's loop is closed: its grant is reclaimed and the lock is free again.
    assert lock.acquire(timeout=5)
    lock.release()
