"""Channel under load from threads and event loops at once, with exact invariants afterwards:
every item put is delivered exactly once, each producer's items reach each consumer in the order
they were put, and close wakes every waiter (each wait has a long timeout and each join a shorter
one, so a waiter that close did not wake fails the test instead of hanging it)."""

from __future__ import annotations

import asyncio
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from nogilsafe import Channel, ChannelClosed, LockTimeoutError
from nogilsafe.testing import run_concurrently

from tests._threads import join_all

Item = tuple[int, int]  # (producer, sequence number)


class Tally:
    """What producers managed to put and consumers received, shared by all threads."""

    def __init__(self, producers: int) -> None:
        self.lock = threading.Lock()
        self.sent = [0] * producers
        self.received: list[list[Item]] = []
        self.finished = 0
        self.delivered = 0

    def consumer(self) -> list[Item]:
        got: list[Item] = []
        with self.lock:
            self.received.append(got)
        return got

    def check(self) -> None:
        everything = Counter(x for got in self.received for x in got)
        expected = Counter((p, s) for p, n in enumerate(self.sent) for s in range(n))
        lost = expected - everything
        extra = everything - expected
        assert not lost and not extra, f"lost {sorted(lost)[:10]}, duplicated/unknown {extra}"
        for got in self.received:
            for p in range(len(self.sent)):
                seqs = [s for q, s in got if q == p]
                assert seqs == sorted(seqs), f"producer {p}'s items out of order: {seqs[:20]}"


PRODUCERS = CONSUMERS = 8
LOOPS = 4


@pytest.mark.parametrize("seed", range(6))
def test_eight_producers_eight_consumers_on_threads_and_four_loops(seed: int) -> None:
    rng = random.Random(seed)
    ch: Channel[Item] = Channel(16)
    per_producer = 5000
    tally = Tally(PRODUCERS)
    # The random closes at the end: once `close_after` producers are done, each one that finishes
    # closes (racing the producers still putting, which then stop at ChannelClosed); with
    # `consumer_closes`, the consumer that receives the item numbered `close_at` closes too.
    close_after = rng.randint(5, PRODUCERS)
    consumer_closes = rng.random() < 0.5
    close_at = int(PRODUCERS * per_producer * rng.uniform(0.85, 0.99))

    def producer_done(p: int, n: int) -> None:
        with tally.lock:
            tally.sent[p] = n
            tally.finished += 1
            closing = tally.finished >= close_after
        if closing:
            ch.close()

    def delivered(got: list[Item], x: Item) -> None:
        got.append(x)
        ch.task_done()
        with tally.lock:
            tally.delivered += 1
            closing = consumer_closes and tally.delivered == close_at
        if closing:
            ch.close()

    def thread_producer(p: int) -> None:
        c = ch.local() if p % 2 else ch
        n = 0
        try:
            for n in range(per_producer):
                c.put((p, n), timeout=60)
            n = per_producer
        except ChannelClosed:
            assert c.closed
        producer_done(p, n)

    def thread_consumer(i: int) -> None:
        got = tally.consumer()
        c = ch.local() if i % 2 else ch
        if i < 2:
            for x in c:
                delivered(got, x)
            return
        batch = random.Random(seed * 100 + i)
        while True:
            try:
                xs = c.get_many(batch.randint(1, 8), timeout=60)
            except ChannelClosed:
                return
            for x in xs:
                delivered(got, x)

    async def loop_producer(p: int) -> None:
        n = 0
        try:
            for n in range(per_producer):
                await ch.put_async((p, n), timeout=60)
            n = per_producer
        except ChannelClosed:
            assert ch.closed
        producer_done(p, n)

    async def loop_consumer(i: int) -> None:
        got = tally.consumer()
        c = ch.local()
        if i % 2:
            async for x in c:
                delivered(got, x)
            return
        while True:
            try:
                x = await c.get_async(timeout=60)
            except ChannelClosed:
                return
            delivered(got, x)

    async def loop_main(i: int) -> None:
        await asyncio.gather(loop_producer(PRODUCERS // 2 + i), loop_consumer(CONSUMERS // 2 + i))

    def work(i: int) -> None:
        if i < LOOPS:
            asyncio.run(loop_main(i))
        elif i < LOOPS + PRODUCERS // 2:
            thread_producer(i - LOOPS)
        else:
            thread_consumer(i - LOOPS - PRODUCERS // 2)

    run_concurrently(work, threads=LOOPS + PRODUCERS // 2 + CONSUMERS // 2, timeout=240)
    assert tally.finished == PRODUCERS and len(tally.received) == CONSUMERS
    tally.check()
    assert ch.closed and ch.empty() and ch.unfinished_tasks == 0
    ch.join(timeout=1)


def stack_of(thread: threading.Thread) -> list[str]:
    """The names of the functions ``thread`` is in now, innermost first."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def blocked_in(threads: list[threading.Thread], where: dict[threading.Thread, str]) -> None:
    """Until every thread runs the function that makes its blocking call, then a moment to park
    (Channel has no waiter count to watch; a waiter not yet parked still meets the close)."""
    deadline = time.monotonic() + 30
    for t in threads:
        while True:
            if where[t] in stack_of(t):
                break
            assert t.is_alive() and time.monotonic() < deadline, f"{t.name} never blocked"
            time.sleep(0.001)
    time.sleep(0.1)


@pytest.mark.parametrize("round_", range(3))
def test_close_storm_wakes_every_waiter_on_threads_and_loops(round_: int) -> None:
    empty: Channel[int] = Channel(4)
    full: Channel[int] = Channel(2)
    full.put(0)
    full.put(1)
    outcomes: list[tuple[str, object]] = []
    lock = threading.Lock()

    def record(kind: str, fn: Callable[[], object]) -> None:
        try:
            r: object = ("returned", fn())
        except BaseException as e:
            r = e
        with lock:
            outcomes.append((kind, r))

    def blocked_get() -> None:
        record("get", lambda: empty.get(timeout=60))

    def blocked_get_many() -> None:
        record("get", lambda: empty.local().get_many(5, timeout=60))

    def blocked_iteration() -> None:
        record("iterate", lambda: list(empty))

    def blocked_put() -> None:
        record("put", lambda: full.put(99, timeout=60))

    def blocked_put_view() -> None:
        record("put", lambda: full.local().put(99, timeout=60))

    bodies = [blocked_get, blocked_get_many, blocked_iteration, blocked_put, blocked_put_view] * 2
    threads = [threading.Thread(target=b, name=b.__name__, daemon=True) for b in bodies]
    where = {t: b.__name__ for t, b in zip(threads, bodies)}
    for t in threads:
        t.start()

    loops_ready = threading.Barrier(3)

    async def loop_waiters() -> None:
        async def get() -> None:
            try:
                r: object = ("returned", await empty.get_async(timeout=60))
            except BaseException as e:
                r = e
            with lock:
                outcomes.append(("get", r))

        async def put() -> None:
            try:
                r: object = ("returned", await full.put_async(99, timeout=60))
            except BaseException as e:
                r = e
            with lock:
                outcomes.append(("put", r))

        async def iterate() -> None:
            got = [x async for x in empty]
            with lock:
                outcomes.append(("iterate", ("returned", got)))

        tasks = [asyncio.ensure_future(f()) for f in (get, put) * 6 + (iterate, iterate)]
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, loops_ready.wait, 30)
        await asyncio.gather(*tasks)

    loop_threads = [
        threading.Thread(target=asyncio.run, args=(loop_waiters(),), daemon=True, name=f"loop-{i}")
        for i in range(2)
    ]
    for t in loop_threads:
        t.start()
    loops_ready.wait(30)
    blocked_in(threads, where)

    # Several closers at once, on both channels.
    run_concurrently(lambda i: (empty if i % 2 else full).close(), threads=4, timeout=30)
    join_all(threads + loop_threads, 30)

    waiters = len(bodies) + 2 * 14
    assert len(outcomes) == waiters, outcomes
    for kind, r in outcomes:
        if kind == "iterate":
            assert r == ("returned", []), r
        else:
            assert isinstance(r, ChannelClosed), (kind, r)
    # The putters' items were never enqueued; what was there is still there, in order.
    assert full.qsize() == 2 and full.unfinished_tasks == 2 and list(full) == [0, 1]
    assert empty.qsize() == 0 and empty.unfinished_tasks == 0


@pytest.mark.parametrize("seed", range(2))
def test_cancellation_storm_conserves_items(seed: int) -> None:
    """Getters and putters on three loops, cancelled at random (before they run, after they
    queued, as they are granted) or timing out, while threads put and get too: every item put is
    delivered exactly once, and a cancelled put_async is one that enqueued nothing (its producer
    puts the same item again)."""
    ch: Channel[Item] = Channel(8)
    per_producer = 3000
    n_loops, thread_producers, thread_consumers = 3, 2, 1
    producers = thread_producers + n_loops
    tally = Tally(producers)
    counts = Counter[str]()

    def finish(p: int, n: int) -> None:
        with tally.lock:
            tally.sent[p] = n
            tally.finished += 1
            last = tally.finished == producers
        if last:
            ch.close()

    def thread_producer(p: int) -> None:
        for n in range(per_producer):
            ch.put((p, n), timeout=60)
        finish(p, per_producer)

    def thread_consumer() -> None:
        got = tally.consumer()
        for x in ch.local():
            got.append(x)

    async def attempt(rng: random.Random, aw: Any) -> tuple[str, Any]:
        """Await ``aw`` as a task that is cancelled at a random moment, or not."""
        task = asyncio.ensure_future(aw)
        r = rng.random()
        if r < 0.25:
            task.cancel()  # before it ran at all
        elif r < 0.5:
            for _ in range(rng.randint(1, 3)):
                await asyncio.sleep(0)
            task.cancel()  # while queued, or as a grant reaches it
        try:
            return "ok", await task
        except asyncio.CancelledError:
            return "cancelled", None
        except LockTimeoutError:
            return "timeout", None
        except ChannelClosed:
            return "closed", None

    async def loop_producer(p: int, rng: random.Random) -> None:
        n = 0
        while n < per_producer:
            how, _ = await attempt(rng, ch.put_async((p, n), timeout=rng.choice([None, 0.002])))
            counts["put " + how] += 1
            if how == "ok":
                n += 1
            else:
                assert how in ("cancelled", "timeout"), how
        finish(p, n)

    async def loop_consumer(rng: random.Random) -> None:
        got = tally.consumer()
        while True:
            how, x = await attempt(rng, ch.get_async(timeout=rng.choice([None, 0.002])))
            counts["get " + how] += 1
            if how == "ok":
                got.append(x)
            elif how == "closed":
                return

    async def loop_main(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        await asyncio.gather(
            loop_producer(thread_producers + i, rng), *(loop_consumer(rng) for _ in range(6))
        )

    def work(i: int) -> None:
        if i < n_loops:
            asyncio.run(loop_main(i))
        elif i < n_loops + thread_producers:
            thread_producer(i - n_loops)
        else:
            thread_consumer()

    run_concurrently(work, threads=n_loops + thread_producers + thread_consumers, timeout=240)
    assert tally.sent == [per_producer] * producers
    tally.check()
    assert counts["get cancelled"] > 0 and counts["put cancelled"] > 0, counts
    assert ch.closed and ch.empty()


def test_task_done_too_many_times_raises_while_puts_fail_on_a_full_channel() -> None:
    # Every put_nowait below fails (the channel is full) and must change nothing; every
    # task_done is one too many (the one item was already marked done) and must raise, as
    # queue.Queue's does, leaving unfinished_tasks at 0 for join.
    ch: Channel[int] = Channel(1)
    ch.put(0)
    ch.task_done()
    accepted = [0]

    def work(i: int) -> None:
        for _ in range(50_000):
            if i == 0:
                try:
                    ch.task_done()
                    accepted[0] += 1
                except ValueError:
                    pass
            else:
                try:
                    ch.put_nowait(i)
                except queue.Full:
                    pass

    run_concurrently(work, threads=3, timeout=120)
    assert (accepted[0], ch.unfinished_tasks) == (0, 0)
    ch.join(timeout=1)
    assert ch.get_nowait() == 0
