"""RWLock: many readers or one writer, writer-preferring, from threads and loops; re-entrance that
would deadlock raises; a stress test checks that no reader sees a writer's half-done update."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from nogilsafe import LockTimeoutError, ReentrancyError, RWLock
from nogilsafe.testing import run_concurrently

from tests._threads import join_all


def wait_until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def start(fn) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_readers_share_writers_exclude() -> None:
    rw = RWLock(name="cfg")
    with rw.read() as got:
        assert got is rw
        assert rw.readers == 1 and rw.writer is None
        with rw.read():  # a reader may read again
            assert rw.readers == 2
    assert rw.readers == 0
    with rw.write():
        assert rw.writer == (threading.get_ident(), threading.current_thread().name)
    assert rw.writer is None


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_many_readers_at_once_and_a_writer_waits_for_them() -> None:
    rw = RWLock()
    inside = threading.Barrier(3)
    release = threading.Event()

    def reader() -> None:
        with rw.read(timeout=10):
            inside.wait(10)  # all three read at the same time
            release.wait(10)

    threads = [start(reader) for _ in range(2)]
    with rw.read(timeout=10):
        inside.wait(10)
        got: list[bool] = []
        writer = start(lambda: got.append(rw.acquire_write(timeout=0.05)))
        join_all([writer], 10)
        assert got == [False]
        release.set()
    join_all(threads, 10)
    assert rw.acquire_write(timeout=1)
    rw.release_write()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_waiting_writer_holds_back_new_readers() -> None:
    rw = RWLock()
    rw.acquire_read()
    order: list[str] = []

    def writer() -> None:
        with rw.write(timeout=10):
            order.append("writer")

    def late_reader() -> None:
        with rw.read(timeout=10):
            order.append("reader")

    w = start(writer)
    wait_until(lambda: rw.waiting == 1)
    r = start(late_reader)
    wait_until(lambda: rw.waiting == 2)
    # A stream of new readers cannot get past the waiting writer.
    assert rw.acquire_read(blocking=True, timeout=0.0) is True  # re-entrant: this thread reads
    rw.release_read()
    rw.release_read()
    join_all([w, r], 10)
    assert order == ["writer", "reader"]


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_readers_queued_during_a_write_go_before_the_next_writer() -> None:
    rw = RWLock()
    rw.acquire_write()
    order: list[str] = []

    def reader(i: int) -> None:
        with rw.read(timeout=10):
            order.append(f"r{i}")
            time.sleep(0.01)

    def writer() -> None:
        with rw.write(timeout=10):
            order.append("w2")

    threads = [start(lambda i=i: reader(i)) for i in range(3)]
    wait_until(lambda: rw.waiting == 3)
    threads.append(start(writer))
    wait_until(lambda: rw.waiting == 4)
    rw.release_write()
    join_all(threads, 10)
    assert sorted(order[:3]) == ["r0", "r1", "r2"] and order[3] == "w2"


def test_upgrade_and_nested_write_raise_instead_of_hanging() -> None:
    rw = RWLock()
    with rw.read(), pytest.raises(ReentrancyError, match="upgrading"):
        rw.acquire_write(timeout=5)
    with rw.write():
        with pytest.raises(ReentrancyError):
            rw.acquire_write()
        with pytest.raises(ReentrancyError):
            rw.acquire_read()
    assert rw.readers == 0 and rw.writer is None


def test_releasing_what_is_not_held_is_a_runtime_error() -> None:
    rw = RWLock()
    with pytest.raises(RuntimeError, match="read"):
        rw.release_read()
    with pytest.raises(RuntimeError, match="write"):
        rw.release_write()
    with rw.read(), pytest.raises(RuntimeError):
        rw.release_write()
    assert rw.readers == 0


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_timeout_names_the_holder() -> None:
    rw = RWLock(name="index")
    rw.acquire_write()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with rw.read(timeout=0.05):
                pass
        except LockTimeoutError as e:
            errors.append(e)

    join_all([start(reader)], 10)
    rw.release_write()
    assert len(errors) == 1
    msg = str(errors[0])
    assert "'index'" in msg and "(read)" in msg and "the writer" in msg and "MainThread" in msg
    assert rw.waiting == 0


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_bad_timeouts(bad: float) -> None:
    rw = RWLock()
    for call in (rw.read, rw.write, rw.acquire_read_async, rw.acquire_write_async):
        with pytest.raises(ValueError):
            call(timeout=bad)
    with pytest.raises(ValueError):
        rw.acquire_read(False, 1)


def test_async_read_and_write_from_one_loop() -> None:
    rw = RWLock()

    async def reentrance() -> None:
        assert await rw.acquire_read_async(timeout=1)
        rw.release_read()
        assert await rw.acquire_write_async(timeout=1)
        with pytest.raises(ReentrancyError):
            await rw.acquire_read_async(timeout=0.01)
        rw.release_write()

    asyncio.run(reentrance())
    rw2 = RWLock()

    async def main2() -> list[str]:
        log: list[str] = []

        async def reader(i: int) -> None:
            async with rw2.read():
                log.append("r+")
                await asyncio.sleep(0.01)
                log.append("r-")

        async def writer() -> None:
            await asyncio.sleep(0.001)
            async with rw2.write(timeout=5):
                log.append("w+")
                log.append("w-")

        await asyncio.gather(reader(0), reader(1), writer())
        return log

    log = asyncio.run(main2())
    assert log[:2] == ["r+", "r+"] and log[-2:] == ["w+", "w-"]


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_cancelled_async_writer_lets_queued_readers_in() -> None:
    rw = RWLock()

    async def main() -> None:
        rw.acquire_read()
        writer = asyncio.create_task(rw.acquire_write_async())
        await asyncio.sleep(0.01)
        reader_done = threading.Event()

        def reader() -> None:
            with rw.read(timeout=10):
                reader_done.set()

        t = start(reader)
        while rw.waiting < 2:
            await asyncio.sleep(0.001)
        writer.cancel()  # the reader queued behind it must not stay stuck
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert reader_done.wait(10)
        join_all([t], 10)
        rw.release_read()

    asyncio.run(main())
    assert rw.readers == 0 and rw.writer is None and rw.waiting == 0


def test_pickling_refused() -> None:
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(RWLock())


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_stress_no_reader_sees_half_an_update() -> None:
    rw = RWLock()
    pair = [0, 0]  # a writer keeps both equal; a reader must never see them differ
    torn: list[tuple[int, int]] = []

    def work(i: int) -> None:
        view = rw.local()
        for n in range(300):
            if (n + i) % 5 == 0:
                with view.write(timeout=30):
                    pair[0] += 1
                    pair[1] += 1
            else:
                with view.read(timeout=30):
                    a, b = pair[0], pair[1]
                    if a != b:
                        torn.append((a, b))

    async def loop_work() -> None:
        async def task(i: int) -> None:
            for n in range(100):
                if n % 4 == 0:
                    async with rw.write(timeout=30):
                        pair[0] += 1
                        await asyncio.sleep(0)
                        pair[1] += 1
                else:
                    async with rw.read(timeout=30):
                        a = pair[0]
                        await asyncio.sleep(0)
                        if a != pair[1]:
                            torn.append((a, pair[1]))

        await asyncio.gather(*(task(i) for i in range(4)))

    def in_loop(i: int) -> None:
        if i < 2:
            asyncio.run(loop_work())
        else:
            work(i)

    run_concurrently(in_loop, threads=10, timeout=120)
    assert torn == []
    writes = 8 * 60 + 2 * 4 * 25
    assert pair == [writes, writes]
    assert rw.readers == 0 and rw.writer is None and rw.waiting == 0


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_writer_that_waited_gets_the_lock_handed_over() -> None:
    # A writer at the head of the queue for longer than FAIR_AFTER (1 ms) is handed the lock on
    # release, so the releasing thread cannot take it straight back.
    rw = RWLock()
    rw.acquire_write()
    got, done = threading.Event(), threading.Event()

    def writer() -> None:
        with rw.write(timeout=10):
            got.set()
            done.wait(10)

    t = start(writer)
    wait_until(lambda: rw.waiting == 1)
    time.sleep(0.005)  # let it wait well past FAIR_AFTER at the head of the queue
    rw.release_write()
    assert rw.acquire_write(blocking=False) is False
    assert got.wait(10)
    done.set()
    join_all([t], 10)
    assert rw.writer is None and rw.waiting == 0


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_writers_barging_retrying_timing_out_and_cancelled_stay_exclusive() -> None:
    # Releases wake writers to retry while others barge in; timeouts and cancellations land on
    # waiters that were woken meanwhile. Every increment must still be exclusive and no wakeup
    # lost (a lost one hangs a waiter until run_concurrently's timeout).
    import random

    rw = RWLock()
    box = [0]
    per_thread, per_task, threads, loops, tasks = 400, 100, 6, 2, 3

    def thread_work(i: int) -> None:
        view = rw.local() if i % 2 else rw
        rng = random.Random(i)
        n = 0
        while n < per_thread:
            if not view.acquire_write(timeout=rng.choice([0, 0.0001, 30])):
                continue
            v = box[0]
            box[0] = v + 1
            view.release_write()
            n += 1

    async def loop_main(i: int) -> None:
        async def task(j: int) -> None:
            rng = random.Random(100 * i + j)
            n = 0
            while n < per_task:
                if rng.randrange(4) == 0:
                    t = asyncio.ensure_future(rw.acquire_write_async())
                    await asyncio.sleep(0)
                    t.cancel()
                    try:
                        if await t:
                            rw.release_write()
                    except asyncio.CancelledError:
                        pass
                    continue
                async with rw.write(timeout=30):
                    v = box[0]
                    await asyncio.sleep(0)
                    box[0] = v + 1
                n += 1

        await asyncio.gather(*(task(j) for j in range(tasks)))

    def work(i: int) -> None:
        if i < loops:
            asyncio.run(loop_main(i))
        else:
            thread_work(i)

    run_concurrently(work, threads=threads + loops, timeout=120)
    assert box[0] == threads * per_thread + loops * tasks * per_task
    assert rw.writer is None and rw.readers == 0 and rw.waiting == 0
