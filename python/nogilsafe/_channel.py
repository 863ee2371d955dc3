"""The async side of ``nogilsafe.Channel``: the coroutines ``put_async``, ``get_async``,
``join_async`` and ``__anext__`` return. Each is a few lines over ``_waiting.wait``; the queue and
the waiter lists are in Rust (``src/channel/``).

A woken waiter retries its get or put (nobody is ever handed an item), so a task cancelled while
it waits holds no item; any wakeup it held goes to the next waiter.
"""

from __future__ import annotations

from typing import Any

from nogilsafe._core import ChannelClosed, LockTimeoutError
from nogilsafe._waiting import GRANTED, TIMED_OUT, wait

# Mirrors src/channel/core.rs `Kind`.
GET, PUT, JOIN = 0, 1, 2


def _timed_out(op: str, timeout: float | None) -> LockTimeoutError:
    return LockTimeoutError(f"Channel.{op}: timed out after {timeout}s")


async def put(ch: Any, item: Any, timeout: float | None) -> None:
    """``Channel.put_async``."""
    status, _ = await wait(ch._begin, ch._finish, ch._abandon, timeout, PUT, item)
    if status == GRANTED:
        return
    if status == TIMED_OUT:
        raise _timed_out("put_async", timeout)
    raise ChannelClosed("put on a closed Channel")


async def get(ch: Any, timeout: float | None) -> Any:
    """``Channel.get_async``."""
    status, item = await wait(ch._begin, ch._finish, ch._abandon, timeout, GET, None)
    if status == GRANTED:
        return item
    if status == TIMED_OUT:
        raise _timed_out("get_async", timeout)
    raise ChannelClosed("get_async: the Channel is closed and drained")


async def join(ch: Any, timeout: float | None) -> None:
    """``Channel.join_async``."""
    status, _ = await wait(ch._begin, ch._finish, ch._abandon, timeout, JOIN, None)
    if status != GRANTED:
        raise _timed_out("join_async", timeout)


async def anext(ch: Any) -> Any:
    """``Channel.__anext__``: ``async for`` ends when the channel is closed and drained."""
    status, item = await wait(ch._begin, ch._finish, ch._abandon, None, GET, None)
    if status == GRANTED:
        return item
    raise StopAsyncIteration
