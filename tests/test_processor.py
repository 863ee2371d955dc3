"""SequentialProcessor: results and order, failures, metrics, stopping (drained, cancelled, timed
out), the three ways a worker runs (own thread, own event loop, a task on the caller's loop),
what would deadlock, 16 concurrent submitters from threads and loops, and interpreter exit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nogilsafe import (
    LockTimeoutError,
    NogilsafeError,
    ProcessorMetrics,
    ProcessorStopped,
    ReentrancyError,
    SequentialProcessor,
)
from nogilsafe.testing import run_concurrently

from tests._child import run_child

# Every processor runs a worker thread or task of its own, and most tests start more threads.
pytestmark = pytest.mark.thread_unsafe(reason="each test runs its own worker threads and loops")

WAIT = 10.0  # seconds any event in these tests may take before the test fails instead of hanging


def double(x: int) -> int:
    return 2 * x


async def double_async(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@contextlib.contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running forever in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        assert not thread.is_alive()
        loop.close()


class Gate:
    """``process`` for staged tests: records each item and waits at ``release`` for the items
    listed in ``hold``; ``entered[item]`` is set when that item's call begins."""

    def __init__(self, hold: tuple[Any, ...] = ()) -> None:
        self.release = threading.Event()
        self.hold = hold
        self.entered: dict[Any, threading.Event] = {x: threading.Event() for x in hold}
        self.seen: list[Any] = []

    def __call__(self, item: Any) -> Any:
        self.seen.append(item)
        if item in self.hold:
            self.entered[item].set()
            assert self.release.wait(WAIT), "the test never released the gate"
        return item


# --- results, order, failures ------------------------------------------------------------------


def test_results_come_back_in_submission_order() -> None:
    seen: list[int] = []

    def process(x: int) -> str:
        seen.append(x)
        return f"<{x}>"

    with SequentialProcessor(process) as p:
        futures = [p.submit(i) for i in range(200)]
    assert [f.result(0) for f in futures] == [f"<{i}>" for i in range(200)]
    assert seen == list(range(200))


def test_an_exception_goes_to_its_future_and_on_error_and_the_worker_goes_on() -> None:
    errors: list[tuple[int, BaseException]] = []

    def process(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        if x == 4:
            raise KeyboardInterrupt  # a BaseException is that item's outcome, too
        if x == 5:
            raise SystemExit(5)
        return x

    with SequentialProcessor(process, on_error=lambda i, e: errors.append((i, e))) as p:
        futures = [p.submit(i) for i in range(7)]
    assert [f.result(0) for i, f in enumerate(futures) if i not in (2, 4, 5)] == [0, 1, 3, 6]
    for i, kind in ((2, ValueError), (4, KeyboardInterrupt), (5, SystemExit)):
        assert isinstance(futures[i].exception(0), kind)
    assert [(i, type(e)) for i, e in errors] == [
        (2, ValueError),
        (4, KeyboardInterrupt),
        (5, SystemExit),
    ]
    assert errors[0][1] is futures[2].exception(0)
    m = p.metrics()
    assert (m.submitted, m.processed, m.failed, m.cancelled, m.queued) == (7, 4, 3, 0, 0)


def test_on_error_raising_is_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_error(item: int, exc: BaseException) -> None:
        raise RuntimeError("on_error itself failed")

    def process(x: int) -> int:
        if x == 0:
            raise ValueError("zero")
        return x

    p = SequentialProcessor(process, on_error=on_error, name="fragile")
    with caplog.at_level(logging.ERROR, logger="nogilsafe"), p:
        first, second = p.submit(0), p.submit(1)
    assert isinstance(first.exception(0), ValueError)
    assert second.result(0) == 1
    [record] = caplog.records
    assert "'fragile'" in record.getMessage() and "ValueError" in record.getMessage()
    assert record.exc_info is not None and "on_error itself failed" in str(record.exc_info[1])


def test_a_plain_process_returning_a_coroutine_fails_that_item_with_type_error() -> None:
    def process(x: int) -> Any:
        return double_async(x)  # a plain function: there is no loop on the worker's thread

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with SequentialProcessor(process) as p:
            fut = p.submit(1)
        with pytest.raises(TypeError, match="async def"):
            fut.result(0)
    assert p.metrics().failed == 1


def test_async_detection_sees_partials_and_async_call() -> None:
    class Handler:
        async def __call__(self, x: int) -> int:
            return x + 1

    async def tagged(tag: str, x: int) -> str:
        await asyncio.sleep(0)
        return f"{tag}{x} on {threading.current_thread().name}"

    # Were either taken for a plain function, its item would fail with TypeError.
    with SequentialProcessor(Handler()) as p:
        assert p.submit(1).result(WAIT) == 2
    with SequentialProcessor(functools.partial(tagged, "t"), name="detect") as q:
        assert q.submit(1).result(WAIT) == "t1 on detect"


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_count_every_outcome_and_the_mean_processing_time() -> None:
    inner: list[float] = []
    gate = Gate(hold=("hold",))

    def process(x: Any) -> Any:
        t0 = time.perf_counter()
        try:
            if x == "fail":
                raise ValueError(x)
            time.sleep(0.002)
            return gate(x)
        finally:
            inner.append(time.perf_counter() - t0)

    p: SequentialProcessor[Any, Any] = SequentialProcessor(process)
    assert p.metrics() == ProcessorMetrics(0, 0, 0, 0, 0.0, 0)
    p.submit(1)
    p.submit("fail")
    p.submit("hold")
    queued = [p.submit(i) for i in range(3)]
    assert p.metrics().queued == 6 and p.metrics().submitted == 6
    p.start()
    assert gate.entered["hold"].wait(WAIT)
    m = p.metrics()
    assert (m.submitted, m.processed, m.failed, m.queued, m.cancelled) == (6, 1, 1, 3, 0)
    queued[0].cancel()  # not started yet: skipped, counted as cancelled
    gate.release.set()
    assert p.stop(WAIT)
    m = p.metrics()
    assert (m.submitted, m.processed, m.failed, m.queued, m.cancelled) == (6, 4, 1, 0, 1)
    # Measured around the call, so at least the mean of what process measured inside itself.
    assert m.mean_processing_time >= sum(inner) / len(inner) > 0


# --- stopping ----------------------------------------------------------------------------------


def test_stop_drains_what_was_queued_and_refuses_new_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate(hold=(0,))
    p = SequentialProcessor(gate, maxsize=0).start()
    futures = [p.submit(i) for i in range(100)]
    assert gate.entered[0].wait(WAIT)
    with caplog.at_level(logging.WARNING, logger="nogilsafe"):
        assert p.stop(timeout=0) is False  # item 0 is held: not finished, but stopping
    with pytest.raises(ProcessorStopped, match="is stopped"):
        p.submit(-1)
    assert p.metrics().queued == 99
    gate.release.set()
    assert p.stop(WAIT) is True
    assert [f.result(0) for f in futures] == list(range(100))
    assert gate.seen == list(range(100))
    assert p.metrics().submitted == p.metrics().processed == 100


def test_stop_without_drain_cancels_the_queue_and_the_item_in_progress_finishes() -> None:
    gate = Gate(hold=(0,))
    p = SequentialProcessor(gate).start()
    futures = [p.submit(i) for i in range(10)]
    assert gate.entered[0].wait(WAIT)
    results: list[bool] = []
    stopper = threading.Thread(target=lambda: results.append(p.stop(WAIT, drain=False)))
    stopper.start()
    concurrent.futures.wait(futures[1:], WAIT)  # cancelled by stop() before it waits
    assert all(f.cancelled() for f in futures[1:])
    assert not futures[0].done()
    gate.release.set()
    stopper.join(WAIT)
    assert results == [True]
    assert futures[0].result(0) == 0 and gate.seen == [0]
    m = p.metrics()
    assert (m.processed, m.cancelled, m.queued) == (1, 9, 0)


def test_stop_times_out_on_a_hanging_process_and_says_which_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    item = {"order": 17, "payload": "x" * 1000}
    gate = Gate(hold=("never",))
    p: SequentialProcessor[Any, Any] = SequentialProcessor(
        lambda x: gate("never") if x is item else x, name="billing"
    ).start()
    fut = p.submit(item)
    later = p.submit(2)
    assert gate.entered["never"].wait(WAIT)
    with caplog.at_level(logging.WARNING, logger="nogilsafe"):
        assert p.stop(timeout=0.05) is False
    assert p.in_progress is item
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "'billing'" in message and "timed out" in message and "'order': 17" in message
    assert len(message) < 400  # the item's repr is truncated
    # Stopping again waits again; once process returns, the rest is drained.
    gate.release.set()
    assert p.stop(WAIT) is True
    assert fut.result(0) == "never" and later.result(0) == 2 and p.in_progress is None


def test_stop_before_start_cancels_what_was_queued() -> None:
    p = SequentialProcessor(double)
    fut = p.submit(1)
    assert p.stop() is True
    assert fut.cancelled() and p.metrics().cancelled == 1
    with pytest.raises(RuntimeError, match="only once"):
        p.start()
    with pytest.raises(ProcessorStopped):
        p.submit(2)


def test_start_twice_and_submitted_errors() -> None:
    with SequentialProcessor(double) as p, pytest.raises(RuntimeError, match="already started"):
        p.start()
    with pytest.raises(RuntimeError, match="only once"):
        p.start()
    with pytest.raises(ProcessorStopped) as info:
        p.submit(1)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, NogilsafeError)
    assert p.metrics().submitted == 0
    assert p.stop() is True  # again: nothing left to do


def test_items_submitted_before_start_wait_for_it() -> None:
    p = SequentialProcessor(double)
    futures = [p.submit(i) for i in range(5)]
    assert not any(f.done() for f in futures)
    with p:
        pass
    assert [f.result(0) for f in futures] == [0, 2, 4, 6, 8]


def test_submit_waits_for_room_up_to_its_timeout() -> None:
    p = SequentialProcessor(double, maxsize=2)  # not started: nothing makes room
    p.submit(1)
    p.submit(2)
    with pytest.raises(LockTimeoutError):
        p.submit(3, timeout=0.05)
    assert p.metrics().submitted == 2 and p.metrics().queued == 2

    async def main() -> None:
        with pytest.raises(LockTimeoutError):
            await p.submit_async(3, timeout=0.05)

    asyncio.run(main())
    assert p.metrics().submitted == 2
    p.start()
    assert p.stop(WAIT)
    assert p.metrics().processed == 2


def test_a_full_queue_makes_submitters_wait_until_the_worker_makes_room() -> None:
    gate = Gate(hold=(0,))
    with SequentialProcessor(gate, maxsize=1) as p:
        p.submit(0)
        assert gate.entered[0].wait(WAIT)
        p.submit(1)  # fills the queue
        blocked = concurrent.futures.Future[concurrent.futures.Future[int]]()
        t = threading.Thread(target=lambda: blocked.set_result(p.submit(2)))
        t.start()
        with pytest.raises(concurrent.futures.TimeoutError):
            blocked.result(0.05)
        gate.release.set()
        assert blocked.result(WAIT).result(WAIT) == 2
        t.join(WAIT)


def test_a_cancelled_future_skips_its_item() -> None:
    gate = Gate(hold=(0,))
    with SequentialProcessor(gate) as p:
        p.submit(0)
        assert gate.entered[0].wait(WAIT)
        skipped = p.submit(1)
        assert skipped.cancel()
        kept = p.submit(2)
        gate.release.set()
        assert kept.result(WAIT) == 2
    assert gate.seen == [0, 2] and p.metrics().cancelled == 1


def test_name_maxsize_repr_and_generic_alias() -> None:
    p = SequentialProcessor[int, int](double, maxsize=7, name="reporter")
    assert (p.name, p.maxsize, p.in_progress) == ("reporter", 7, None)
    assert repr(p) == "<SequentialProcessor 'reporter' not started, 0 queued>"
    p.submit(1)
    assert repr(p) == "<SequentialProcessor 'reporter' not started, 1 queued>"
    with p:
        assert "running" in repr(p)
    assert repr(p) == "<SequentialProcessor 'reporter' stopped, 0 queued>"
    assert SequentialProcessor(double).name.endswith("(double)")


def test_leaving_a_with_block_by_an_exception_still_drains() -> None:
    gate = Gate(hold=(0,))
    with pytest.raises(KeyError), SequentialProcessor(gate) as p:
        futures = [p.submit(i) for i in range(5)]
        assert gate.entered[0].wait(WAIT)
        gate.release.set()
        raise KeyError("the caller's own error")
    assert [f.result(0) for f in futures] == list(range(5))


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"maxsize": -1}, ValueError, "maxsize must be >= 0"),
        ({"maxsize": "10"}, TypeError, "maxsize must be an int"),
        ({"maxsize": 2.0}, TypeError, "maxsize must be an int"),
        ({"maxsize": True}, TypeError, "maxsize must be an int"),
        ({"on_error": 3}, TypeError, "on_error must be callable"),
        ({"on_error": double_async}, TypeError, "on_error must be a plain function"),
        ({"name": 7}, TypeError, "name must be a str"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        SequentialProcessor(double, **kwargs)


def test_bad_process_and_loop_arguments() -> None:
    with pytest.raises(TypeError, match="process must be callable"):
        SequentialProcessor(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="must be an asyncio event loop"):
        SequentialProcessor(double_async, loop="loop")  # type: ignore[call-overload]
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="loop= is for an async def process"):
            SequentialProcessor(double, loop=loop)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_bad_timeouts_are_refused_before_anything_happens() -> None:
    p = SequentialProcessor(double)
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError):
            p.submit(1, timeout=bad)
        with pytest.raises(ValueError):
            p.stop(timeout=bad)
    assert p.metrics().submitted == 0
    with p:
        assert p.submit(1).result(WAIT) == 2


def test_a_closed_loop_cannot_start_a_processor() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    p = SequentialProcessor(double_async, loop=loop)
    with pytest.raises(RuntimeError, match="event loop is closed"):
        p.start()


# --- where the worker runs ---------------------------------------------------------------------


def test_a_plain_process_runs_on_a_daemon_thread_named_after_the_processor() -> None:
    where: list[threading.Thread] = []

    def process(x: int) -> None:
        where.append(threading.current_thread())

    with SequentialProcessor(process, name="w") as p:
        p.submit(1).result(WAIT)
    assert where[0].name == "w" and where[0].daemon and where[0] is not threading.current_thread()
    assert not where[0].is_alive()  # stop() joined it


def test_async_process_runs_on_the_processors_own_event_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def process(x: int) -> str:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return threading.current_thread().name

    async def main() -> None:
        async with SequentialProcessor(process, name="own-loop") as p:
            fut = await p.submit_async(1)
            assert await fut == "own-loop"
            assert p.submit(2).result(WAIT) == "own-loop"
        assert loops[0] is loops[1] is not asyncio.get_running_loop()

    asyncio.run(main())


def test_loop_mode_runs_process_on_the_callers_loop_with_its_resources() -> None:
    with loop_in_thread() as loop:
        # A resource bound to that loop: an asyncio.Lock used there first.
        lock = asyncio.run_coroutine_threadsafe(_make_lock(), loop).result(WAIT)
        seen: list[int] = []

        async def process(x: int) -> int:
            assert asyncio.get_running_loop() is loop
            async with lock:
                await asyncio.sleep(0)
                seen.append(x)
            return x * 10

        p = SequentialProcessor(process, loop=loop).start()  # from another thread
        futures = [p.submit(i) for i in range(20)]

        async def from_the_loop() -> list[int]:
            mine = [await p.submit_async(i) for i in range(20, 25)]
            return list(await asyncio.gather(*mine))

        assert asyncio.run_coroutine_threadsafe(from_the_loop(), loop).result(WAIT) == [
            200,
            210,
            220,
            230,
            240,
        ]
        assert p.stop(WAIT) is True
        assert [f.result(0) for f in futures] == [i * 10 for i in range(20)]
        assert seen == list(range(25))


async def _make_lock() -> asyncio.Lock:
    lock = asyncio.Lock()
    async with lock:
        pass
    return lock


def test_loop_mode_started_and_stopped_on_that_loop_with_async_with() -> None:
    async def main() -> list[int]:
        async with SequentialProcessor(double_async, loop=asyncio.get_running_loop()) as p:
            futures = [await p.submit_async(i) for i in range(10)]
            # From another thread, too, while this loop runs:
            more = await asyncio.to_thread(lambda: [p.submit(i) for i in range(10, 12)])
        assert all(f.done() for f in more)
        return [*(f.result() for f in futures), *(f.result() for f in more)]

    assert asyncio.run(main()) == [2 * i for i in range(12)]


def test_submit_async_results_and_cancellation() -> None:
    gate = Gate(hold=(0,))

    async def main() -> None:
        async with SequentialProcessor(gate) as p:
            first = await p.submit_async(0)
            await asyncio.to_thread(gate.entered[0].wait, WAIT)
            skipped = await p.submit_async(1)
            skipped.cancel()  # before it started: the item is skipped
            last = await p.submit_async(2)
            gate.release.set()
            assert await first == 0 and await last == 2
        assert skipped.cancelled()

    asyncio.run(main())
    assert gate.seen == [0, 2]


@pytest.mark.parametrize("on_error", [None, print])
def test_a_failure_nobody_awaits_is_logged_unless_on_error_had_it(
    on_error: Callable[..., Any] | None, caplog: pytest.LogCaptureFixture
) -> None:
    def process(x: int) -> int:
        raise ValueError(f"no {x}")

    async def main() -> None:
        p = SequentialProcessor(process, on_error=on_error).start()
        await p.submit_async(1)  # fire and forget: the future is dropped at once
        assert await p.stop_async(WAIT)

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
        gc.collect()
    # Logged once, by the processor (its future was gone) or by asyncio (freed unretrieved).
    logged = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert len(logged) == (1 if on_error is None else 0), logged


def test_a_dropped_future_costs_its_loop_no_wakeup() -> None:
    # Fire and forget from a loop: the worker finds the future gone and schedules nothing there.
    scheduled = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            scheduled.append(args[0])
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        with SequentialProcessor(lambda x: x) as p:
            for i in range(50):
                await p.submit_async(i)
            kept = await p.submit_async(50)
        assert await kept == 50

    asyncio.run(main())
    completions = [f for f in scheduled if getattr(f, "__name__", "") == "_complete"]
    assert len(completions) == 1, scheduled


def test_stop_iteration_from_process_reaches_an_asyncio_caller_as_runtime_error() -> None:
    def process(x: int) -> int:
        raise StopIteration(x)

    async def main() -> None:
        async with SequentialProcessor(process) as p:
            fut = await p.submit_async(1)
            with pytest.raises(RuntimeError, match="StopIteration"):
                await fut

    asyncio.run(main())


# --- what would deadlock -----------------------------------------------------------------------


def test_stop_from_inside_process_raises_reentrancy_error() -> None:
    holder: list[SequentialProcessor[int, bool]] = []

    def process(x: int) -> bool:
        return holder[0].stop()

    with SequentialProcessor(process) as p:
        holder.append(p)
        with pytest.raises(RuntimeError, match="from inside process") as info:
            p.submit(1).result(WAIT)
    assert type(info.value) is ReentrancyError


def test_submit_from_inside_process_into_a_full_queue_raises_instead_of_deadlocking() -> None:
    holder: list[SequentialProcessor[int, Any]] = []
    gate = Gate(hold=(0,))

    def process(x: int) -> Any:
        gate(x)
        if x == 0:
            return holder[0].submit(100)  # the queue is full: waiting would never end
        if x == 1:
            return holder[0].submit(101)  # room now: queued behind the others
        return x

    with SequentialProcessor(process, maxsize=1) as p:
        holder.append(p)
        first = p.submit(0)
        assert gate.entered[0].wait(WAIT)
        second = p.submit(1)
        gate.release.set()
        with pytest.raises(ReentrancyError, match="use another thread"):
            first.result(WAIT)
        assert second.result(WAIT).result(WAIT) == 101


def test_loop_mode_refuses_a_blocking_stop_on_its_own_loop() -> None:
    async def main() -> None:
        p = SequentialProcessor(double_async, loop=asyncio.get_running_loop())
        p.start()
        with pytest.raises(ReentrancyError, match="would block the loop"):
            p.stop()
        assert await (await p.submit_async(4)) == 8  # still running
        assert await p.stop_async(WAIT) is True

    asyncio.run(main())


def test_stop_async_from_inside_process_raises_reentrancy_error() -> None:
    holder: list[SequentialProcessor[int, Any]] = []

    async def process(x: int) -> Any:
        return await holder[0].stop_async()

    async def main() -> None:
        async with SequentialProcessor(process, loop=asyncio.get_running_loop()) as p:
            holder.append(p)
            with pytest.raises(ReentrancyError, match="another task"):
                await (await p.submit_async(1))

    asyncio.run(main())


# --- the loop= loop stops, closes or shuts down under the worker -------------------------------


def test_loop_mode_stop_does_not_wait_for_a_loop_that_is_not_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        p = SequentialProcessor(double_async, loop=loop).start()
        futures = [p.submit(i) for i in range(3)]
        with caplog.at_level(logging.WARNING, logger="nogilsafe"):
            assert p.stop(WAIT) is False  # the loop is not running: no wait
        assert all(f.cancelled() for f in futures)
        assert "not running" in caplog.records[0].getMessage()
        # Run again, the loop starts the worker, which finds the queue closed and empty.
        assert loop.run_until_complete(p.stop_async(WAIT)) is True
    finally:
        loop.close()


def test_loop_mode_a_closed_loop_ends_the_processor() -> None:
    loop = asyncio.new_event_loop()
    entered = loop.create_future()

    async def process(x: int) -> int:
        entered.set_result(x)
        await loop.create_future()  # never done: the loop is stopped and closed under it
        return x

    p = SequentialProcessor(process, loop=loop).start()
    futures = [p.submit(i) for i in range(3)]
    assert loop.run_until_complete(entered) == 0
    assert p._task is not None
    p._task._log_destroy_pending = False  # type: ignore[attr-defined] # pending on purpose
    loop.close()
    with pytest.raises(concurrent.futures.CancelledError, match="event loop was closed"):
        futures[0].result(0)
    assert futures[1].cancelled() and futures[2].cancelled()
    assert p.stop(WAIT) is False
    with pytest.raises(ProcessorStopped, match="event loop was closed"):
        p.submit(9)


def test_loop_mode_the_loops_shutdown_cancels_the_worker() -> None:
    entered = asyncio.Event()
    futures: list[concurrent.futures.Future[int]] = []

    async def process(x: int) -> int:
        entered.set()
        await asyncio.sleep(3600)
        return x

    async def main() -> SequentialProcessor[int, int]:
        p = SequentialProcessor(process, loop=asyncio.get_running_loop()).start()
        futures.extend(p.submit(i) for i in range(3))
        await entered.wait()
        return p  # asyncio.run cancels the worker task on the way out

    p = asyncio.run(main())
    with pytest.raises(concurrent.futures.CancelledError, match="cancelled"):
        futures[0].result(0)
    assert futures[1].cancelled() and futures[2].cancelled()
    assert p.stop(WAIT) is False
    with pytest.raises(ProcessorStopped):
        p.submit(1)


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell it from the worker's own cancellation"
)
def test_process_raising_cancelled_error_of_its_own_fails_only_that_item() -> None:
    async def process(x: int) -> int:
        if x == 1:
            fut = asyncio.get_running_loop().create_future()
            fut.cancel()
            await fut  # CancelledError, while the worker task is not being cancelled
        return x

    with SequentialProcessor(process) as p:
        futures = [p.submit(i) for i in range(3)]
    assert futures[0].result(0) == 0 and futures[2].result(0) == 2
    assert isinstance(futures[1].exception(0), asyncio.CancelledError)
    assert p.metrics().failed == 1


# --- concurrency -------------------------------------------------------------------------------

SUBMITTERS_THREADS = 8
LOOPS = 4
TASKS_PER_LOOP = 2
PER_SUBMITTER = 150


def _one_at_a_time_process(mode: str) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """A process that records each item and the most calls ever in it at once."""
    record: dict[str, Any] = {"seen": [], "in_flight": 0, "most": 0}
    lock = threading.Lock()

    def enter(item: Any) -> None:
        with lock:
            record["in_flight"] += 1
            record["most"] = max(record["most"], record["in_flight"])
            record["seen"].append(item)

    def leave() -> None:
        with lock:
            record["in_flight"] -= 1

    if mode == "thread":

        def process(item: Any) -> Any:
            enter(item)
            time.sleep(0)  # let other threads run while this call is in flight
            leave()
            return item

        return process, record

    async def aprocess(item: Any) -> Any:
        enter(item)
        await asyncio.sleep(0)  # let other tasks on this loop run while in flight
        leave()
        return item

    return aprocess, record


@pytest.mark.parametrize("mode", ["thread", "own loop", "loop="])
def test_sixteen_submitters_from_threads_and_loops_one_at_a_time_in_order(mode: str) -> None:
    process, record = _one_at_a_time_process(mode)
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(loop_in_thread()) if mode == "loop=" else None
        p = SequentialProcessor(process, maxsize=16, loop=loop).start()
        accepted: list[list[tuple[int, int]]] = [[] for _ in range(16)]

        def submitter(index: int) -> None:
            if index < SUBMITTERS_THREADS:
                futures = [p.submit((index, i)) for i in range(PER_SUBMITTER)]
                assert [f.result(WAIT) for f in futures] == [
                    (index, i) for i in range(PER_SUBMITTER)
                ]
                accepted[index] = [(index, i) for i in range(PER_SUBMITTER)]
                return

            async def task(who: int) -> None:
                futures = [await p.submit_async((who, i)) for i in range(PER_SUBMITTER)]
                assert list(await asyncio.gather(*futures)) == [
                    (who, i) for i in range(PER_SUBMITTER)
                ]
                accepted[who] = [(who, i) for i in range(PER_SUBMITTER)]

            async def main() -> None:
                first = SUBMITTERS_THREADS + (index - SUBMITTERS_THREADS) * TASKS_PER_LOOP
                await asyncio.gather(*(task(first + k) for k in range(TASKS_PER_LOOP)))

            asyncio.run(main())

        run_concurrently(submitter, threads=SUBMITTERS_THREADS + LOOPS, timeout=60)
        assert p.stop(WAIT) is True
    assert record["most"] == 1
    seen = record["seen"]
    assert len(seen) == 16 * PER_SUBMITTER
    for who in range(16):
        mine = [item for item in seen if item[0] == who]
        assert mine == accepted[who], f"submitter {who}'s items out of order"
    m = p.metrics()
    assert (m.submitted, m.processed, m.failed, m.cancelled, m.queued) == (2400, 2400, 0, 0, 0)


@pytest.mark.parametrize("mode", ["thread", "own loop"])
def test_stop_during_concurrent_submits_processes_every_accepted_item(mode: str) -> None:
    process, record = _one_at_a_time_process(mode)
    hundred = threading.Event()

    def counting(item: Any) -> Any:
        if len(record["seen"]) >= 100:
            hundred.set()
        return process(item)

    if mode == "own loop":

        async def counting_async(item: Any) -> Any:
            if len(record["seen"]) >= 100:
                hundred.set()
            return await process(item)

        p: SequentialProcessor[Any, Any] = SequentialProcessor(counting_async, maxsize=8)
    else:
        p = SequentialProcessor(counting, maxsize=8)
    p.start()
    accepted: list[list[concurrent.futures.Future[Any]]] = [[] for _ in range(8)]
    refused: list[bool] = [False] * 8

    def actor(index: int) -> None:
        if index == 8:
            # With room for 8 queued items, 100 processed means at most a few more than 100
            # accepted of the 80,000 the submitters offer: they are all still submitting.
            assert hundred.wait(WAIT)
            assert p.stop(WAIT) is True
            return
        for i in range(10_000):
            try:
                accepted[index].append(p.submit((index, i)))
            except ProcessorStopped:
                refused[index] = True
                return

    run_concurrently(actor, threads=9, timeout=60)
    assert all(refused)
    futures = [f for mine in accepted for f in mine]
    assert all(f.done() and not f.cancelled() for f in futures)
    assert sorted(f.result() for f in futures) == sorted(record["seen"])
    assert record["most"] == 1
    m = p.metrics()
    assert m.submitted == m.processed == len(futures) and m.queued == 0


# --- interpreter exit --------------------------------------------------------------------------

EXIT_SCENARIOS = {
    "idle worker blocked in get": """
        p = SequentialProcessor(lambda x: x).start()
        p.submit(1).result(10)
    """,
    "hung process": """
        entered = threading.Event()
        def hang(x):
            entered.set()
            threading.Event().wait()
        p = SequentialProcessor(hang).start()
        p.submit(1)
        entered.wait(10)
        print("stopped in time:", p.stop(timeout=0.1))
    """,
    "submitters blocked on a full queue": """
        entered = threading.Event()
        def hang(x):
            entered.set()
            threading.Event().wait()
        p = SequentialProcessor(hang, maxsize=1).start()
        p.submit(0)
        entered.wait(10)
        p.submit(1)
        for _ in range(3):
            threading.Thread(target=p.submit, args=(2,), daemon=True).start()
        time.sleep(0.1)
    """,
    "own event loop, idle and busy": """
        async def slow(x):
            await asyncio.sleep(3600)
        idle = SequentialProcessor(slow).start()
        busy = SequentialProcessor(slow).start()
        busy.submit(1)
        time.sleep(0.1)
    """,
    "a busy worker thread re-entering Python": """
        def spin(x):
            for _ in range(10**9):
                pass
        p = SequentialProcessor(spin, maxsize=1).start()
        for i in range(3):
            threading.Thread(target=p.submit, args=(i,), daemon=True).start()
        time.sleep(0.1)
    """,
}


@pytest.mark.parametrize("scenario", list(EXIT_SCENARIOS))
def test_interpreter_exit_with_a_processor_running_neither_hangs_nor_crashes(
    scenario: str,
) -> None:
    code = (
        "import asyncio, threading, time\n"
        "from nogilsafe import SequentialProcessor\n"
        + __import__("textwrap").dedent(EXIT_SCENARIOS[scenario])
        + "\nprint('main done', flush=True)\n"
    )
    for _ in range(3):
        child = run_child(code, timeout=30)
        assert child.returncode == 0, child.describe()
        assert "main done" in child.stdout, child.describe()
        if scenario == "hung process":
            assert "stopped in time: False" in child.stdout, child.describe()
            assert "timed out" in child.stderr, child.describe()  # logging's last resort
