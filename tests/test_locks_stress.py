"""Locks under load: 16 threads and 4 event loops (each with several tasks) contending on one Lock
that guards a plain Python counter — exact at the end, with timeouts and cancellations mixed in,
and the lock free and unwatched afterwards."""

from __future__ import annotations

import asyncio
import random

import pytest
from nogilsafe import Lock, RLock
from nogilsafe.testing import run_concurrently

THREADS = 16
LOOPS = 4
TASKS = 4
PER_THREAD = 1500
PER_TASK = 300


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
@pytest.mark.parametrize("kind", [Lock, RLock])
def test_sixteen_threads_and_four_loops_increment_exactly(kind: type) -> None:
    lock = kind(name="counter")
    box = [0]
    expected = THREADS * PER_THREAD + LOOPS * TASKS * PER_TASK

    def thread_work(i: int) -> None:
        mine = lock.local() if i % 2 else lock
        rng = random.Random(i)
        n = 0
        while n < PER_THREAD:
            how = rng.randrange(3)
            if how == 0:
                with mine:
                    box[0] += 1
            elif how == 1:
                if not mine.acquire(timeout=rng.choice([0, 0.0001, 30])):
                    continue  # timed out: try again, the increment still has to happen
                box[0] += 1
                mine.release()
            else:
                with mine.hold(timeout=30):
                    v = box[0]
                    box[0] = v + 1
            n += 1

    async def loop_main(i: int) -> None:
        async def task(j: int) -> None:
            rng = random.Random(100 * i + j)
            n = 0
            while n < PER_TASK:
                if rng.randrange(4) == 0:
                    # A waiter that gives up: cancelled or timed out, never holding the lock after.
                    t = asyncio.ensure_future(lock.acquire_async())
                    await asyncio.sleep(0)
                    t.cancel()
                    try:
                        if await t:
                            lock.release()
                    except asyncio.CancelledError:
                        pass
                    continue
                async with lock:
                    v = box[0]
                    await asyncio.sleep(0)  # hold it across a suspension
                    box[0] = v + 1
                n += 1

        await asyncio.gather(*(task(j) for j in range(TASKS)))

    def work(i: int) -> None:
        if i < LOOPS:
            asyncio.run(loop_main(i))
        else:
            thread_work(i)

    run_concurrently(work, threads=THREADS + LOOPS, timeout=300)
    assert box[0] == expected
    assert not lock.locked() and lock.waiting == 0 and lock.owner is None
