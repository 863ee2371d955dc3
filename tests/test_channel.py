"""Channel: queue.Queue's and asyncio.Queue's documented contract where we mirror them (each such
test runs on the stdlib queue too), then what they cannot do — close, get_many, timeouts that raise
LockTimeoutError, any number of threads and event loops on one channel, cancellation that never
loses an item — and the fault list: bad arguments, pickling, views, subclasses, item lifetimes.

Where we differ from queue.Queue on purpose, the test says so: a negative maxsize is a ValueError
(queue.Queue reads it as unbounded), and an expired ``timeout=`` raises LockTimeoutError, a
TimeoutError, where queue.Queue raises Empty/Full (``block=False`` still raises ChannelEmpty and
ChannelFull, which are queue.Empty and queue.Full).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import math
import pickle
import queue
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from nogilsafe import (
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    LockTimeoutError,
    NogilsafeError,
)

from tests._child import run_child
from tests._threads import join_all

# ---------------------------------------------------------------------------------------------
# helpers


def start(fn: Callable[[], object], name: str | None = None) -> threading.Thread:
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    return t


def outcome_of(fn: Callable[[], object], out: list[object]) -> Callable[[], None]:
    """A thread body that records what ``fn`` returned or raised in ``out``."""

    def body() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as e:
            out.append(("raised", e))

    return body


def stack_of(thread: threading.Thread) -> list[str]:
    """The names of the functions ``thread`` is in now, innermost first."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def wait_inside(thread: threading.Thread, where: str, timeout: float = 10.0) -> None:
    """Until ``thread`` runs the function named ``where`` (the one that makes the blocking call),
    then a moment for the call to park. Channel has no waiter count to watch; the tests that use
    this hold whether or not the wait had begun, it only makes the interesting order likely."""
    deadline = time.monotonic() + timeout
    while True:
        if where in stack_of(thread):
            break
        assert thread.is_alive(), f"{thread.name} ended before it blocked in {where}"
        assert time.monotonic() < deadline, f"{thread.name} never reached {where}"
        time.sleep(0.001)
    time.sleep(0.05)


def arun(main: Callable[[], Awaitable[Any]], limit: float = 60.0) -> Any:
    """asyncio.run with a limit, so a waiter that never wakes fails the test instead of hanging."""

    async def limited() -> Any:
        return await asyncio.wait_for(main(), limit)

    return asyncio.run(limited())


def run_in_loop_thread(
    main: Callable[[], Awaitable[Any]], name: str = "loop-thread"
) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    return start(outcome_of(lambda: arun(main), out), name), out


async def settle() -> None:
    """Let every ready task of this loop run until it awaits (queues its future)."""
    for _ in range(5):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------------
# queue.Queue's contract, on queue.Queue and on Channel

KINDS: dict[str, Callable[..., Any]] = {"queue.Queue": queue.Queue, "Channel": Channel}


@pytest.fixture(params=sorted(KINDS))
def make(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return KINDS[request.param]


def test_fifo_and_sizes_unbounded(make: Callable[..., Any]) -> None:
    q = make()
    assert q.maxsize == 0 and q.qsize() == 0 and q.empty() and not q.full()
    for i in range(100):
        q.put(i)
    assert q.qsize() == 100 and not q.empty() and not q.full()  # unbounded: never full
    assert [q.get() for _ in range(50)] == list(range(50))
    q.put_nowait("x")
    assert [q.get_nowait() for _ in range(51)] == [*range(50, 100), "x"]
    assert q.qsize() == 0 and q.empty()


def test_bounded_full_and_nonblocking_put(make: Callable[..., Any]) -> None:
    q = make(maxsize=2)
    assert q.maxsize == 2
    q.put("a")
    q.put("b", timeout=0.01)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    with pytest.raises(queue.Full):
        q.put("c", False, 5)  # block=False: the timeout is ignored
    assert q.qsize() == 2 and q.unfinished_tasks == 2  # the refused puts left no trace
    assert q.get() == "a" and not q.full()
    q.put("c", block=False)
    assert [q.get_nowait(), q.get_nowait()] == ["b", "c"]


def test_nonblocking_get_on_empty(make: Callable[..., Any]) -> None:
    q = make()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(False, 5)  # block=False: the timeout is ignored
    q.put(1)
    assert q.get(timeout=0.01) == 1


def test_items_are_any_objects_and_keep_their_identity(make: Callable[..., Any]) -> None:
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared")

        def __hash__(self) -> int:
            raise AssertionError("hashed")

        def __bool__(self) -> bool:
            raise AssertionError("truth-tested")

        def __len__(self) -> int:
            raise AssertionError("measured")

    q = make()
    items = [None, [], {}, Hostile(), 2**200, Ellipsis, NotImplemented, ValueError("x"), q, len]
    for x in items:
        q.put(x)
    got = [q.get_nowait() for _ in items]
    assert all(a is b for a, b in zip(got, items))


def test_task_done_and_unfinished_tasks(make: Callable[..., Any]) -> None:
    q = make()
    assert q.unfinished_tasks == 0
    q.join()  # nothing unfinished: returns at once
    for i in range(3):
        q.put(i)
    assert q.unfinished_tasks == 3
    q.get()
    assert q.unfinished_tasks == 3  # a get does not finish the task
    q.task_done()
    q.task_done()
    q.task_done()
    assert q.unfinished_tasks == 0
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    assert q.unfinished_tasks == 0
    q.join()


def test_negative_timeout_is_a_value_error(make: Callable[..., Any]) -> None:
    q = make(1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.put(1)
    with pytest.raises(ValueError):
        q.put(2, timeout=-1)
    assert q.qsize() == 1 and q.get_nowait() == 1


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_blocked_get_receives_a_put_from_another_thread(make: Callable[..., Any]) -> None:
    q = make()
    out: list[object] = []

    def blocked_get() -> object:
        return q.get(timeout=30)

    t = start(outcome_of(blocked_get, out))
    wait_inside(t, "blocked_get")
    q.put("x")
    join_all([t], 30)
    assert out == [("ok", "x")] and q.empty()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_blocked_put_proceeds_when_a_get_frees_space(make: Callable[..., Any]) -> None:
    q = make(1)
    q.put("a")
    out: list[object] = []

    def blocked_put() -> object:
        return q.put("b", timeout=30)

    t = start(outcome_of(blocked_put, out))
    wait_inside(t, "blocked_put")
    assert q.get() == "a"
    join_all([t], 30)
    assert out == [("ok", None)]
    assert q.get_nowait() == "b" and q.empty() and q.unfinished_tasks == 2


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_join_waits_for_every_task_done(make: Callable[..., Any]) -> None:
    q = make()
    for i in range(3):
        q.put(i)
    joined = threading.Event()

    def joiner() -> None:
        q.join()
        joined.set()

    t = start(joiner)
    wait_inside(t, "joiner")
    for _ in range(3):
        assert not joined.is_set()
        q.get()
        q.task_done()
    join_all([t], 30)
    assert joined.is_set() and q.unfinished_tasks == 0


# ---------------------------------------------------------------------------------------------
# Channel's own contract, single-threaded


def test_exception_types() -> None:
    assert issubclass(ChannelEmpty, NogilsafeError) and issubclass(ChannelEmpty, queue.Empty)
    assert issubclass(ChannelFull, NogilsafeError) and issubclass(ChannelFull, queue.Full)
    assert issubclass(ChannelClosed, NogilsafeError)
    assert issubclass(LockTimeoutError, TimeoutError)
    ch: Channel[int] = Channel(1)
    with pytest.raises(ChannelEmpty):
        ch.get_nowait()
    ch.put(1)
    with pytest.raises(ChannelFull):
        ch.put_nowait(2)


def test_maxsize_must_be_a_non_negative_int() -> None:
    assert Channel().maxsize == 0 and Channel(0).maxsize == 0 and Channel(maxsize=7).maxsize == 7
    # queue.Queue(-1) is unbounded; a negative size is a mistake here.
    for bad in (-1, -(2**70)):
        with pytest.raises(ValueError):
            Channel(bad)
    for wrong in (1.5, "2", None, [2]):
        with pytest.raises(TypeError):
            Channel(wrong)  # type: ignore[arg-type]


@pytest.mark.thread_unsafe(reason="runs a child process")
def test_absurd_maxsize_is_refused_or_lazy_never_a_crash() -> None:
    # A data path that reserved `maxsize` slots up front would abort the process here.
    r = run_child(
        """
        import sys
        from nogilsafe import Channel
        for size in (10**7, 2**40, 10**15, sys.maxsize, 2**63, 2**64, 2**100):
            try:
                ch = Channel(size)
            except (ValueError, OverflowError, MemoryError) as e:
                print(size, "refused", type(e).__name__)
                continue
            ch.put(1)
            ch.put(2)
            assert ch.maxsize == size and ch.qsize() == 2 and not ch.full()
            assert ch.get_many(5) == [1, 2]
            print(size, "ok")
        print("done")
        """,
        timeout=60,
    )
    assert r.returncode == 0 and "done" in r.stdout.splitlines(), r.describe()


def test_properties_are_read_only() -> None:
    ch: Channel[int] = Channel(3)
    for name, value in (("maxsize", 5), ("closed", True), ("unfinished_tasks", 9)):
        with pytest.raises(AttributeError):
            setattr(ch, name, value)
    assert ch.maxsize == 3 and not ch.closed and ch.unfinished_tasks == 0


BAD_TIMEOUTS = [-1, -0.001, -math.inf, math.nan, math.inf, 1e300, threading.TIMEOUT_MAX * 2]


def waiting_calls(ch: Channel[Any]) -> dict[str, Callable[[Any], object]]:
    """Every blocking call, each on a channel where it would have to wait (``ch``: full, one
    unfinished task)."""
    empty: Channel[Any] = Channel()
    return {
        "get": lambda t: empty.get(timeout=t),
        "put": lambda t: ch.put("x", timeout=t),
        "get_many": lambda t: empty.get_many(3, timeout=t),
        "join": lambda t: ch.join(timeout=t),
        "get_async": lambda t: arun(lambda: empty.get_async(timeout=t)),
        "put_async": lambda t: arun(lambda: ch.put_async("x", timeout=t)),
        "join_async": lambda t: arun(lambda: ch.join_async(timeout=t)),
    }


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_bad_timeout_is_a_value_error(timeout: float) -> None:
    ch: Channel[Any] = Channel(1)
    ch.put(0)
    for name, call in waiting_calls(ch).items():
        with pytest.raises(ValueError, match="timeout"):
            call(timeout)
        assert ch.qsize() == 1 and ch.unfinished_tasks == 1, name


def test_timeout_of_the_wrong_type_is_a_type_error() -> None:
    ch: Channel[Any] = Channel(1)
    ch.put(0)
    for name, call in waiting_calls(ch).items():
        for wrong in ("1", [1], object()):
            with pytest.raises(TypeError):
                call(wrong)
        assert ch.qsize() == 1, name


def test_timeout_max_is_allowed() -> None:
    ch: Channel[int] = Channel()
    ch.put(1)
    assert ch.get(timeout=threading.TIMEOUT_MAX) == 1
    ch.put(2, timeout=threading.TIMEOUT_MAX)
    assert ch.get_many(2, timeout=threading.TIMEOUT_MAX) == [2]
    ch.task_done()
    ch.task_done()
    ch.join(timeout=threading.TIMEOUT_MAX)


@pytest.mark.parametrize("timeout", [0, 0.0, 0.02])
def test_expired_waits_raise_lock_timeout_error_and_change_nothing(timeout: float) -> None:
    ch: Channel[str] = Channel(1)
    empty: Channel[str] = Channel(1)
    ch.put("a")
    for call in (
        lambda: empty.get(timeout=timeout),
        lambda: empty.get_many(2, timeout=timeout),
        lambda: ch.put("b", timeout=timeout),
        lambda: ch.join(timeout=timeout),
    ):
        with pytest.raises(LockTimeoutError) as info:
            call()
        assert isinstance(info.value, TimeoutError)
    assert ch.qsize() == 1 and ch.unfinished_tasks == 1 and empty.qsize() == 0
    assert ch.get_nowait() == "a" and ch.empty()  # the timed-out put enqueued nothing


@pytest.mark.parametrize("timeout", [0, 0.02])
def test_expired_async_waits_raise_lock_timeout_error_and_change_nothing(timeout: float) -> None:
    ch: Channel[str] = Channel(1)
    empty: Channel[str] = Channel(1)
    ch.put("a")

    async def main() -> None:
        for call in (
            lambda: empty.get_async(timeout=timeout),
            lambda: ch.put_async("b", timeout=timeout),
            lambda: ch.join_async(timeout=timeout),
        ):
            with pytest.raises(LockTimeoutError):
                await call()

    arun(main)
    assert ch.qsize() == 1 and ch.unfinished_tasks == 1 and empty.qsize() == 0
    assert ch.get_nowait() == "a" and ch.empty()
    empty.put("later")  # no timed-out getter swallows it
    assert empty.get_nowait() == "later"


def test_get_many_takes_what_is_ready_in_fifo_order() -> None:
    ch: Channel[int] = Channel()
    for i in range(5):
        ch.put(i)
    assert ch.get_many(3) == [0, 1, 2]
    assert ch.get_many(10) == [3, 4]
    assert ch.unfinished_tasks == 5  # get_many does not finish tasks either
    ch.put(5)
    assert ch.get_many(1, timeout=1) == [5]
    with pytest.raises(LockTimeoutError):
        ch.get_many(1, timeout=0.01)


def test_get_many_max_items_is_checked() -> None:
    ch: Channel[int] = Channel()
    ch.put(1)
    for bad in (0, -1, -(2**70)):
        with pytest.raises(ValueError):
            ch.get_many(bad)
    for wrong in (1.5, "2", None):
        with pytest.raises(TypeError):
            ch.get_many(wrong)  # type: ignore[arg-type]
    assert ch.qsize() == 1
    # A huge max_items is a bound, not a size to reserve.
    for huge in (2**31, sys.maxsize):
        assert ch.get_many(huge) == [1]
        ch.put(1)
    with pytest.raises((OverflowError, ValueError)):
        ch.get_many(2**64)
    assert ch.get_many(2) == [1]


@pytest.mark.parametrize("maxsize", [1, 2**16, 2**16 + 1], ids=["small", "largest array", "lazy"])
def test_a_bound_of_any_size_is_exact(maxsize: int) -> None:
    # Small bounds and large ones are stored differently (preallocated or grown on demand).
    ch: Channel[int] = Channel(maxsize)
    for i in range(maxsize):
        ch.put_nowait(i)
    assert ch.full() and ch.qsize() == maxsize and ch.unfinished_tasks == maxsize
    with pytest.raises(ChannelFull):
        ch.put_nowait(-1)
    with pytest.raises(LockTimeoutError):
        ch.put(-1, timeout=0.01)
    assert ch.qsize() == maxsize and ch.unfinished_tasks == maxsize
    assert ch.get_nowait() == 0 and not ch.full()
    ch.put_nowait(maxsize)
    assert ch.full()
    assert ch.get_many(maxsize + 10) == list(range(1, maxsize + 1))
    assert ch.empty() and not ch.full()


def test_get_many_frees_space_in_a_bounded_channel() -> None:
    ch: Channel[int] = Channel(3)
    for i in range(3):
        ch.put(i)
    assert ch.get_many(2) == [0, 1]
    ch.put_nowait(3)
    ch.put_nowait(4)
    assert ch.full() and ch.get_many(5) == [2, 3, 4]


def test_close_is_idempotent_refuses_puts_and_drains_gets() -> None:
    ch: Channel[int] = Channel()
    ch.put(1)
    ch.put(2)
    assert not ch.closed
    ch.close()
    ch.close()
    assert ch.closed
    for refused in (
        lambda: ch.put(3),
        lambda: ch.put_nowait(3),
        lambda: ch.put(3, block=False),
        lambda: ch.put(3, timeout=0.01),
    ):
        with pytest.raises(ChannelClosed):
            refused()
    # Not enqueued, not counted.
    assert ch.qsize() == 2 and ch.unfinished_tasks == 2
    assert ch.get() == 1 and ch.get_nowait() == 2
    for drained in (
        ch.get,
        ch.get_nowait,
        lambda: ch.get(block=False),
        lambda: ch.get(timeout=0),
        lambda: ch.get(timeout=30),  # closed and drained: raises at once, never waits
        lambda: ch.get_many(4),
    ):
        with pytest.raises(ChannelClosed):
            drained()
    assert ch.empty() and ch.qsize() == 0
    ch.task_done()
    ch.task_done()
    ch.join(timeout=1)


def test_put_on_a_closed_full_channel_is_channel_closed() -> None:
    ch: Channel[str] = Channel(1)
    ch.put("a")
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.put_nowait("b")
    with pytest.raises(ChannelClosed):
        ch.put("b", timeout=1)
    assert ch.get_many(3) == ["a"]
    with pytest.raises(ChannelClosed):
        ch.get_many(3)


def test_async_forms_on_a_closed_channel() -> None:
    ch: Channel[int] = Channel()
    ch.put(1)
    ch.close()

    async def main() -> None:
        with pytest.raises(ChannelClosed):
            await ch.put_async(2)
        assert await ch.get_async() == 1
        with pytest.raises(ChannelClosed):
            await ch.get_async()
        with pytest.raises(ChannelClosed):
            await ch.get_async(timeout=30)

    arun(main)
    assert ch.unfinished_tasks == 1


def test_async_items_are_any_objects_none_included() -> None:
    ch: Channel[Any] = Channel(2)
    marker = object()

    async def main() -> list[Any]:
        got = []
        for x in (None, marker, None, 0, "", [], None):
            await ch.put_async(x, timeout=5)
            got.append(await ch.get_async(timeout=5))
        return got

    got = arun(main)
    assert got == [None, marker, None, 0, "", [], None] and got[1] is marker


def test_iteration_drains_then_ends_at_close() -> None:
    ch: Channel[int] = Channel()
    for i in range(5):
        ch.put(i)
    ch.close()
    assert list(ch) == [0, 1, 2, 3, 4]
    assert list(ch) == []

    ach: Channel[int] = Channel()
    for i in range(5):
        ach.put(i)
    ach.close()

    async def main() -> list[int]:
        return [x async for x in ach]

    assert arun(main) == [0, 1, 2, 3, 4]


def test_async_put_get_and_join() -> None:
    ch: Channel[int] = Channel(2)

    async def main() -> None:
        await ch.put_async(1)
        await ch.put_async(2, timeout=1)
        assert ch.full()
        assert await ch.get_async() == 1
        assert await ch.get_async(timeout=1) == 2
        ch.task_done()
        ch.task_done()
        await ch.join_async()
        await ch.join_async(timeout=1)

    arun(main)


def test_local_views_share_the_core() -> None:
    ch: Channel[int] = Channel(4)
    view = ch.local()
    assert view is not ch and isinstance(view, Channel)
    assert view.maxsize == 4
    view.put(1)
    view.local().put(2)
    assert ch.qsize() == 2 and view.qsize() == 2
    assert ch.get() == 1 and view.unfinished_tasks == 2
    view.task_done()
    assert ch.unfinished_tasks == 1
    assert view.get_many(5) == [2]
    view.close()
    assert ch.closed and view.closed
    with pytest.raises(ChannelClosed):
        ch.put(3)


def test_pickling_and_copying_refused() -> None:
    ch: Channel[int] = Channel()
    ch.put(1)
    for obj in (ch, ch.local()):
        for refuse in (pickle.dumps, copy.copy, copy.deepcopy, lambda o: pickle.dumps([o])):
            with pytest.raises(TypeError, match="Channel"):
                refuse(obj)
    assert ch.get_nowait() == 1


def test_class_getitem_at_runtime() -> None:
    alias = Channel[int]
    ch = alias(3)
    assert type(ch) is Channel and ch.maxsize == 3


class Jobs(Channel[str]):
    """A subclass with its own __init__ signature, an attribute and overridden methods."""

    def __init__(self, name: str, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.name = name
        self.log: list[str] = []

    def put(self, item: str, block: bool = True, timeout: float | None = None) -> None:
        self.log.append(item)
        super().put(item.upper(), block, timeout)

    def describe(self) -> str:
        return f"{self.name}: {self.qsize()}/{self.maxsize}"


def test_subclass_with_its_own_init_attributes_and_methods() -> None:
    jobs = Jobs("q", 2)
    assert isinstance(jobs, Channel) and type(jobs) is Jobs
    assert jobs.name == "q" and jobs.describe() == "q: 0/2"
    jobs.put("a")
    jobs.put("b")
    assert jobs.log == ["a", "b"] and jobs.describe() == "q: 2/2"
    with pytest.raises(ChannelFull):
        jobs.put_nowait("c")
    assert jobs.get() == "A" and jobs.get_nowait() == "B"
    jobs.extra = 1  # type: ignore[attr-defined]
    jobs.close()
    assert list(jobs) == [] and jobs.closed
    view = jobs.local()
    assert isinstance(view, Channel) and view.closed


def test_subclass_keyword_construction() -> None:
    class Sized(Channel[int]):
        def __init__(self, *, maxsize: int, tag: str) -> None:
            super().__init__(maxsize=maxsize)
            self.tag = tag

    s = Sized(maxsize=1, tag="t")
    assert s.maxsize == 1 and s.tag == "t"
    s.put(1)
    assert s.full()


# ---------------------------------------------------------------------------------------------
# item lifetimes


class Tracked:
    pass


def test_items_left_in_a_dropped_channel_are_released() -> None:
    for maxsize in (0, 3):
        ch: Channel[Tracked] = Channel(maxsize)
        view = ch.local()
        items = [Tracked() for _ in range(3)]
        refs = [weakref.ref(x) for x in items]
        for x in items:
            ch.put(x)
        del items, x
        assert ch.get() is refs[0]()
        del ch
        gc.collect()
        assert [r() is None for r in refs] == [True, False, False]  # the view keeps the core
        assert view.qsize() == 2
        del view
        gc.collect()
        assert all(r() is None for r in refs)


def test_items_released_when_dropped_may_use_another_channel() -> None:
    sink: Channel[int] = Channel()  # holds one count, taken and put back by each death
    sink.put(0)

    class Dies:
        def __del__(self) -> None:
            sink.put(sink.get_nowait() + 1)

    ch: Channel[Dies] = Channel()
    for _ in range(5):
        ch.put(Dies())
    del ch
    gc.collect()
    assert sink.get_many(10) == [5]


@pytest.mark.parametrize("through_view", [False, True], ids=["owner", "view"])
def test_a_cycle_through_a_channel_is_collected(through_view: bool) -> None:
    class Holder:
        pass

    ch: Channel[Holder] = Channel()
    h = Holder()
    h.ch = ch.local() if through_view else ch  # type: ignore[attr-defined]
    ch.put(h)
    ref = weakref.ref(h)
    del ch, h
    gc.collect()
    assert ref() is None


def test_a_live_view_keeps_the_items_of_a_collected_owner() -> None:
    class Holder:
        pass

    ch: Channel[Holder] = Channel()
    h = Holder()
    h.ch = ch  # type: ignore[attr-defined]
    ch.put(h)
    view = ch.local()
    ref = weakref.ref(h)
    del ch, h
    gc.collect()
    assert view.get_nowait() is ref() and ref() is not None


# Each releases `Dies` items in its own way, many times. A Dies' __del__ uses the channel it came
# from (`home`), and, under a user lock that another thread holds while it writes `ch`, uses `ch`
# too: a channel must release items with none of its own locks held, and its finalizers may
# re-enter it.
RELEASES = {
    "get": "src.put(Dies(src)); src.get()",
    "get_many": "src.put(Dies(src)); src.put(Dies()); src.get_many(5)",
    "get_async": "asyncio.run(async_get())",
    "put refused by a closed channel": "refuse(closed, Dies(closed))",
    "put timed out on a full channel": "refuse(full, Dies(full))",
    "put_async cancelled on a full channel": "asyncio.run(cancelled_put())",
    "dropped channel": "c = Channel(); c.put(Dies()); c.put(Dies()); del c",
    "dropped owner and view": "c = Channel(); v = c.local(); v.put(Dies()); del c, v",
    "collected cycle": "c = Channel(); c.put(Dies(c)); c.put(Dies()); del c; gc.collect()",
    "collected cycle through a view": (
        "c = Channel(); c.put(Dies(c.local())); c.put(Dies()); del c; gc.collect()"
    ),
}


@pytest.mark.thread_unsafe(reason="runs a child process")
@pytest.mark.parametrize("how", sorted(RELEASES))
def test_del_of_a_released_item_may_use_the_channel(how: str) -> None:
    code = """
        import asyncio, gc, sys, threading
        from nogilsafe import Channel, ChannelClosed, ChannelFull, LockTimeoutError

        problems = []
        sys.unraisablehook = lambda u: problems.append(repr(u.exc_value))
        ch, src = Channel(), Channel()
        closed = Channel()
        closed.close()
        full = Channel(1)
        full.put(0)
        user_lock = threading.Lock()
        stop = threading.Event()
        deaths = [0]

        class Dies:
            def __init__(self, home=None):
                self.home = home

            def __del__(self):
                deaths[0] += 1
                h = self.home
                if h is not None:
                    h.qsize(), h.empty(), h.closed
                    try:
                        h.put_nowait("del")
                    except (ChannelClosed, ChannelFull):
                        pass
                    else:
                        h.get_nowait()
                with user_lock:  # held by `other` while it writes `ch`
                    ch.put("del")
                    ch.get_nowait()

        def refuse(c, item):
            try:
                c.put(item, timeout=0.0005)
            except (ChannelClosed, LockTimeoutError):
                pass

        async def async_get():
            src.put(Dies(src))
            await src.get_async()

        async def cancelled_put():
            waiting = asyncio.ensure_future(full.put_async(Dies(full)))
            for _ in range(3):
                await asyncio.sleep(0)
            waiting.cancel()
            try:
                await waiting
            except asyncio.CancelledError:
                pass

        def other():
            while not stop.is_set():
                with user_lock:
                    ch.put("b")
                    ch.get_nowait()

        t = threading.Thread(target=other)
        t.start()
        try:
            for _ in range(200):
                RELEASE
        finally:
            stop.set()
            t.join(30)
        gc.collect()
        assert not t.is_alive(), "the writer thread is stuck"
        assert not problems, problems
        assert deaths[0] >= 200, deaths
        assert ch.empty() and full.get_nowait() == 0 and full.empty(), (ch.qsize(), full.qsize())
        print("ok")
        """.replace("RELEASE", RELEASES[how])
    r = run_child(code, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout.splitlines(), r.describe()


# ---------------------------------------------------------------------------------------------
# threads and loops on one channel


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_get_many_waits_for_one_item_then_takes_what_is_ready() -> None:
    ch: Channel[int] = Channel()
    out: list[object] = []

    def blocked_get_many() -> object:
        return ch.get_many(10, timeout=30)

    t = start(outcome_of(blocked_get_many, out))
    wait_inside(t, "blocked_get_many")
    ch.put(7)
    join_all([t], 30)
    assert out == [("ok", [7])] and ch.empty()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_get_many_lets_a_blocked_putter_in() -> None:
    ch: Channel[int] = Channel(2)
    ch.put(0)
    ch.put(1)
    out: list[object] = []

    def blocked_put() -> object:
        return ch.put(2, timeout=30)

    t = start(outcome_of(blocked_put, out))
    wait_inside(t, "blocked_put")
    first = ch.get_many(5)
    join_all([t], 30)
    assert out == [("ok", None)]
    rest = ch.get_many(5) if len(first) < 3 else []
    assert first[:2] == [0, 1] and first + rest == [0, 1, 2]


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_close_wakes_every_blocked_getter_and_putter() -> None:
    empty: Channel[str] = Channel()
    full: Channel[str] = Channel(1)
    full.put("kept")
    results: dict[str, list[object]] = {}

    def blocked_get() -> object:
        return empty.get(timeout=60)

    def blocked_get_many() -> object:
        return empty.get_many(3, timeout=60)

    def blocked_iteration() -> object:
        return list(empty)

    def blocked_put() -> object:
        return full.put("refused", timeout=60)

    threads = []
    for fn in (blocked_get, blocked_get_many, blocked_iteration, blocked_put, blocked_put):
        out = results.setdefault(fn.__name__, [])
        t = start(outcome_of(fn, out), fn.__name__)
        wait_inside(t, fn.__name__)
        threads.append(t)

    queued = threading.Event()

    async def loop_waiters() -> list[object]:
        async def collect() -> list[int]:
            return [x async for x in empty]

        tasks = [
            asyncio.ensure_future(empty.get_async(timeout=60)),
            asyncio.ensure_future(full.put_async("refused", timeout=60)),
            asyncio.ensure_future(collect()),
        ]
        await settle()
        queued.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    lt, lout = run_in_loop_thread(loop_waiters)
    assert queued.wait(30)
    closers = [start(empty.close), start(full.close), start(empty.close)]
    join_all([*threads, lt, *closers], 30)

    def closed(r: object) -> bool:
        return isinstance(r, tuple) and r[0] == "raised" and isinstance(r[1], ChannelClosed)

    assert all(closed(r) for r in results["blocked_get"] + results["blocked_get_many"])
    assert results["blocked_iteration"] == [("ok", [])]
    assert len(results["blocked_put"]) == 2 and all(closed(r) for r in results["blocked_put"])
    assert len(lout) == 1 and lout[0][0] == "ok", lout  # type: ignore[index]
    got, put, collected = lout[0][1]  # type: ignore[index, misc]
    assert isinstance(got, ChannelClosed) and isinstance(put, ChannelClosed) and collected == []
    # The refused items were not enqueued.
    assert full.qsize() == 1 and full.unfinished_tasks == 1 and list(full) == ["kept"]


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_thread_blocked_in_join_wakes_when_tasks_finish_from_a_loop() -> None:
    ch: Channel[int] = Channel()
    for i in range(3):
        ch.put(i)
    out: list[object] = []

    def blocked_join() -> object:
        return ch.join(timeout=30)

    t = start(outcome_of(blocked_join, out))
    wait_inside(t, "blocked_join")

    async def consume() -> None:
        for _ in range(3):
            await ch.get_async()
            ch.task_done()

    arun(consume)
    join_all([t], 30)
    assert out == [("ok", None)]


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_loops_in_two_threads_and_a_thread_share_one_channel() -> None:
    ch: Channel[tuple[str, int]] = Channel(4)
    n = 300

    async def producer() -> int:
        for i in range(n):
            await ch.put_async(("loop", i), timeout=30)
        return n

    async def consumer() -> list[tuple[str, int]]:
        got = []
        for _ in range(2 * n):
            got.append(await ch.get_async(timeout=30))
            ch.task_done()
        return got

    def thread_producer() -> int:
        for i in range(n):
            ch.put(("thread", i), timeout=30)
        return n

    pt, pout = run_in_loop_thread(producer, "loop-producer")
    ct, cout = run_in_loop_thread(consumer, "loop-consumer")
    tout: list[object] = []
    tt = start(outcome_of(thread_producer, tout))
    join_all([pt, ct, tt], 60)
    assert pout == [("ok", n)] and tout == [("ok", n)]
    assert cout[0][0] == "ok", cout  # type: ignore[index]
    got: list[tuple[str, int]] = cout[0][1]  # type: ignore[index]
    for who in ("loop", "thread"):
        assert [i for w, i in got if w == who] == list(range(n))  # FIFO per producer
    assert ch.empty() and ch.unfinished_tasks == 0
    ch.join(timeout=1)


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_views_made_in_many_threads_feed_one_consumer() -> None:
    from nogilsafe.testing import run_concurrently

    ch: Channel[tuple[int, int]] = Channel(8)
    n, producers = 200, 4

    def work(i: int) -> list[tuple[int, int]]:
        if i == producers:  # the consumer
            view = ch.local()
            return [view.get(timeout=30) for _ in range(n * producers)]
        view = ch.local()
        for j in range(n):
            view.put((i, j), timeout=30)
        return []

    results = run_concurrently(work, threads=producers + 1, timeout=60)
    got = results[producers][0]
    for p in range(producers):
        assert [j for q, j in got if q == p] == list(range(n))


@pytest.mark.thread_unsafe(reason="starts its own threads and loops")
def test_a_grant_to_a_closed_loop_is_passed_on() -> None:
    ch: Channel[str] = Channel()
    queued = threading.Event()

    def orphan() -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(ch.get_async())
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
        queued.set()
        loop.close()  # the waiter stays queued with a loop that will never run again

    t = start(orphan)
    assert queued.wait(10)
    join_all([t], 10)
    ch.put("x")
    assert ch.get(timeout=10) == "x"  # reclaimed from the dead loop's waiter


# ---------------------------------------------------------------------------------------------
# asyncio.Queue's contract, on asyncio.Queue and on Channel (put/get/join are put_async,
# get_async and join_async)


def asyncio_flavour(maxsize: int = 0) -> SimpleNamespace:
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize)
    return SimpleNamespace(
        put=q.put, get=q.get, join=q.join, put_nowait=q.put_nowait, get_nowait=q.get_nowait,
        task_done=q.task_done, qsize=q.qsize,
    )  # fmt: skip


def channel_flavour(maxsize: int = 0) -> SimpleNamespace:
    ch: Channel[Any] = Channel(maxsize)
    return SimpleNamespace(
        put=ch.put_async, get=ch.get_async, join=ch.join_async, put_nowait=ch.put_nowait,
        get_nowait=ch.get_nowait, task_done=ch.task_done, qsize=ch.qsize,
    )  # fmt: skip


FLAVOURS = {"asyncio.Queue": asyncio_flavour, "Channel": channel_flavour}


@pytest.fixture(params=sorted(FLAVOURS))
def amake(request: pytest.FixtureRequest) -> Callable[..., SimpleNamespace]:
    return FLAVOURS[request.param]


def test_async_fifo(amake: Callable[..., SimpleNamespace]) -> None:
    async def main() -> list[int]:
        q = amake(3)
        got = []
        for i in range(10):
            await q.put(i)
            if q.qsize() == 3:
                got.append(await q.get())
        while q.qsize():
            got.append(await q.get())
        return got

    assert arun(main) == list(range(10))


def test_async_getters_are_served_in_arrival_order(amake: Callable[..., SimpleNamespace]) -> None:
    async def main() -> list[str]:
        q = amake()
        getters = [asyncio.ensure_future(q.get()) for _ in range(4)]
        await settle()
        for x in "abcd":
            q.put_nowait(x)
        return list(await asyncio.gather(*getters))

    assert arun(main) == ["a", "b", "c", "d"]


def test_async_putters_are_served_in_arrival_order(amake: Callable[..., SimpleNamespace]) -> None:
    async def main() -> list[int]:
        q = amake(1)
        await q.put(0)
        putters = [asyncio.ensure_future(q.put(i)) for i in range(1, 5)]
        await settle()
        assert q.qsize() == 1
        got = [await q.get() for _ in range(5)]
        await asyncio.gather(*putters)
        return got

    assert arun(main) == [0, 1, 2, 3, 4]


def test_a_cancelled_getter_hands_its_item_to_the_next(
    amake: Callable[..., SimpleNamespace],
) -> None:
    async def main() -> None:
        q = amake()
        first = asyncio.ensure_future(q.get())
        second = asyncio.ensure_future(q.get())
        await settle()
        q.put_nowait("x")  # woken: the first getter
        first.cancel()  # ... cancelled before it could run
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError) and results[1] == "x"
        assert q.qsize() == 0

    arun(main)


def test_a_getter_cancelled_while_waiting_takes_nothing(
    amake: Callable[..., SimpleNamespace],
) -> None:
    async def main() -> None:
        q = amake()
        first = asyncio.ensure_future(q.get())
        second = asyncio.ensure_future(q.get())
        await settle()
        first.cancel()
        await settle()
        q.put_nowait("x")
        q.put_nowait("y")
        assert await second == "x"
        assert first.cancelled() and q.get_nowait() == "y"

    arun(main)


def test_a_putter_cancelled_while_waiting_enqueues_nothing(
    amake: Callable[..., SimpleNamespace],
) -> None:
    async def main() -> None:
        q = amake(1)
        await q.put("a")
        putter = asyncio.ensure_future(q.put("b"))
        await settle()
        putter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await putter
        assert q.qsize() == 1 and q.get_nowait() == "a" and q.qsize() == 0
        await q.put("c")
        assert q.get_nowait() == "c"

    arun(main)


def test_a_putter_cancelled_as_space_is_granted_enqueues_iff_it_returned(
    amake: Callable[..., SimpleNamespace],
) -> None:
    async def main() -> None:
        q = amake(1)
        await q.put("a")
        putter = asyncio.ensure_future(q.put("b"))
        await settle()
        assert q.get_nowait() == "a"  # space for the putter...
        putter.cancel()  # ... cancelled before it could run
        done = await asyncio.gather(putter, return_exceptions=True)
        cancelled = isinstance(done[0], asyncio.CancelledError)
        items = [q.get_nowait() for _ in range(q.qsize())]
        assert items == ([] if cancelled else ["b"]), (done, items)
        await q.put("c")  # the space it did not use is free
        assert q.get_nowait() == "c"

    arun(main)


def test_join_waits_for_task_done_async(amake: Callable[..., SimpleNamespace]) -> None:
    async def main() -> list[str]:
        q = amake()
        log: list[str] = []
        for i in range(3):
            await q.put(i)

        async def joiner() -> None:
            await q.join()
            log.append("joined")

        j = asyncio.ensure_future(joiner())
        for _ in range(3):
            await q.get()
            await settle()
            log.append("done")
            q.task_done()
        await j
        return log

    assert arun(main) == ["done", "done", "done", "joined"]


# ---------------------------------------------------------------------------------------------
# cancellation, Channel only


def test_cancelled_getters_hand_each_item_to_the_survivor() -> None:
    ch: Channel[int] = Channel()

    async def main() -> None:
        for i in range(100):
            getters = [asyncio.ensure_future(ch.get_async(timeout=10)) for _ in range(3)]
            await settle()
            ch.put(i)  # granted to the first getter, which has not run yet
            # Two of the three are cancelled, sometimes the one woken, sometimes after the first
            # cancelled one ran (never after the woken one could have returned the item).
            getters[i % 3].cancel()
            if i % 2 and (i + 1) % 3 != 0:
                await asyncio.sleep(0)
            getters[(i + 1) % 3].cancel()
            results = await asyncio.gather(*getters, return_exceptions=True)
            survivor = results.pop((i + 2) % 3)
            assert survivor == i, (i, survivor, results)
            assert all(isinstance(r, asyncio.CancelledError) for r in results), results
            assert ch.empty()

    arun(main)


def test_get_async_with_a_timeout_that_expires_as_the_item_arrives() -> None:
    ch: Channel[int] = Channel()

    async def main() -> list[int]:
        got: list[int] = []
        for i in range(50):
            getter = asyncio.ensure_future(ch.get_async(timeout=0.001))
            await asyncio.sleep(0.001)
            ch.put(i)
            try:
                got.append(await getter)
            except LockTimeoutError:
                got.append(await ch.get_async(timeout=10))
        return got

    assert arun(main) == list(range(50)) and ch.empty()
