"""Hypothesis stateful test of Channel's single-threaded semantics: under any sequence of
operations (through the channel or a view of it, blocking forms with ``timeout=0``, async forms
awaited on one loop) it behaves like a model made of a deque, a closed flag and an unfinished-task
count, and, until it is closed, like a queue.Queue of the same maxsize driven alongside it."""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from nogilsafe import Channel, ChannelClosed, ChannelEmpty, ChannelFull, LockTimeoutError

items = st.one_of(st.integers(-3, 3), st.none(), st.sampled_from(["a", "b"]), st.just((1, 2)))

PUTS = ["put_nowait", "put(block=False)", "put(timeout=0)", "put", "put_async(timeout=0)"]
GETS = ["get_nowait", "get(block=False)", "get(timeout=0)", "get", "get_async(timeout=0)"]


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as e:
        return "raise", type(e)


def category(result: tuple[str, Any]) -> tuple[str, Any]:
    """Exceptions by the queue module's category (ChannelFull is a queue.Full)."""
    status, value = result
    if status == "raise":
        for base in (queue.Full, queue.Empty):
            if issubclass(value, base):
                return status, base
    return result


class ChannelModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: deque[Any] = deque()
        self.closed = False
        self.unfinished = 0
        self.maxsize = 0
        self.ch: Channel[Any] = Channel()
        self.view: Channel[Any] = self.ch.local()
        self.mirror: queue.Queue[Any] | None = queue.Queue()

    def teardown(self) -> None:
        self.loop.close()

    @initialize(maxsize=st.integers(0, 4))
    def create(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.ch = Channel(maxsize)
        self.view = self.ch.local()
        self.mirror = queue.Queue(maxsize)

    def await_(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            return await make()  # made on the running loop, as callers do

        return self.loop.run_until_complete(main())

    def full(self) -> bool:
        return self.maxsize > 0 and len(self.model) >= self.maxsize

    def pick(self, view: bool) -> Channel[Any]:
        return self.view if view else self.ch

    @rule(x=items, how=st.sampled_from(PUTS), view=st.booleans())
    def put(self, x: Any, how: str, view: bool) -> None:
        if how == "put" and self.full() and not self.closed:
            how = "put(timeout=0)"  # a blocking put on a full channel would wait forever
        c = self.pick(view)
        calls: dict[str, Callable[[], Any]] = {
            "put_nowait": lambda: c.put_nowait(x),
            "put(block=False)": lambda: c.put(x, block=False),
            "put(timeout=0)": lambda: c.put(x, timeout=0),
            "put": lambda: c.put(x),
            "put_async(timeout=0)": lambda: self.await_(lambda: c.put_async(x, timeout=0)),
        }
        got = outcome(calls[how])
        if self.closed:
            assert got == ("raise", ChannelClosed)
        elif self.full():
            nowait = how in ("put_nowait", "put(block=False)")
            assert got == ("raise", ChannelFull if nowait else LockTimeoutError)
        else:
            assert got == ("ok", None)
            self.model.append(x)
            self.unfinished += 1
        if self.mirror is not None and how in ("put_nowait", "put(block=False)"):
            assert category(outcome(lambda: self.mirror.put_nowait(x))) == category(got)  # type: ignore[union-attr]
        elif self.mirror is not None and got == ("ok", None):
            self.mirror.put_nowait(x)

    @rule(how=st.sampled_from(GETS), view=st.booleans())
    def get(self, how: str, view: bool) -> None:
        if how == "get" and not self.model and not self.closed:
            how = "get(timeout=0)"  # a blocking get on an empty open channel would wait forever
        c = self.pick(view)
        calls: dict[str, Callable[[], Any]] = {
            "get_nowait": c.get_nowait,
            "get(block=False)": lambda: c.get(block=False),
            "get(timeout=0)": lambda: c.get(timeout=0),
            "get": c.get,
            "get_async(timeout=0)": lambda: self.await_(lambda: c.get_async(timeout=0)),
        }
        got = outcome(calls[how])
        if self.model:
            assert got == ("ok", self.model.popleft())
        elif self.closed:
            assert got == ("raise", ChannelClosed)
        else:
            nowait = how in ("get_nowait", "get(block=False)")
            assert got == ("raise", ChannelEmpty if nowait else LockTimeoutError)
        if self.mirror is not None and how in ("get_nowait", "get(block=False)"):
            assert category(outcome(self.mirror.get_nowait)) == category(got)
        elif self.mirror is not None and got[0] == "ok":
            assert self.mirror.get_nowait() == got[1]

    @rule(n=st.integers(-1, 5), view=st.booleans())
    def get_many(self, n: int, view: bool) -> None:
        got = outcome(lambda: self.pick(view).get_many(n, timeout=0))
        if n < 1:
            assert got == ("raise", ValueError)
        elif self.model:
            taken = [self.model.popleft() for _ in range(min(n, len(self.model)))]
            assert got == ("ok", taken)
            if self.mirror is not None:
                assert [self.mirror.get_nowait() for _ in taken] == taken
        elif self.closed:
            assert got == ("raise", ChannelClosed)
        else:
            assert got == ("raise", LockTimeoutError)

    @rule(view=st.booleans())
    def task_done(self, view: bool) -> None:
        got = outcome(self.pick(view).task_done)
        if self.unfinished:
            self.unfinished -= 1
            assert got == ("ok", None)
        else:
            assert got == ("raise", ValueError)
        if self.mirror is not None:
            assert outcome(self.mirror.task_done) == got

    @rule(asynchronous=st.booleans())
    def join(self, asynchronous: bool) -> None:
        if asynchronous:
            got = outcome(lambda: self.await_(lambda: self.ch.join_async(timeout=0)))
        else:
            got = outcome(lambda: self.view.join(timeout=0))
        assert got == (("raise", LockTimeoutError) if self.unfinished else ("ok", None))

    @rule(view=st.booleans())
    def close(self, view: bool) -> None:
        assert outcome(self.pick(view).close) == ("ok", None)
        self.closed = True
        self.mirror = None  # queue.Queue has no close: it stops being a reference here

    @precondition(lambda self: self.closed)
    @rule(asynchronous=st.booleans())
    def drain_by_iteration(self, asynchronous: bool) -> None:
        if asynchronous:

            async def collect() -> list[Any]:
                return [x async for x in self.view]

            got = self.await_(collect)
        else:
            got = list(self.ch)
        assert got == list(self.model)
        self.model.clear()

    @invariant()
    def agree(self) -> None:
        for c in (self.ch, self.view):
            assert c.qsize() == len(self.model)
            assert c.empty() == (not self.model)
            assert c.full() == self.full()
            assert c.closed == self.closed
            assert c.unfinished_tasks == self.unfinished
            assert c.maxsize == self.maxsize
        if self.mirror is not None:
            q = self.mirror
            assert (q.qsize(), q.empty(), q.full()) == (
                len(self.model),
                not self.model,
                self.full(),
            )
            assert q.unfinished_tasks == self.unfinished


TestChannelModel = ChannelModel.TestCase
TestChannelModel.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
