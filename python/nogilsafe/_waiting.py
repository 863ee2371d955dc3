"""Async waits on nogilsafe's Rust primitives, from any event loop in any thread.

The waiter lists live in Rust (``src/waiters.rs``, whose module doc is the contract). A primitive
exposes, per kind of wait, three methods that this module drives:

- ``begin(loop, future, retry, *args) -> (status, value)``: take what is asked for right away
  (``GRANTED``, value = the payload), report ``CLOSED``, or, when ``future`` is ``None``, report
  ``BUSY`` (it would have to wait); with a future, queue it and return ``(WAITING, ticket)``.
- ``finish(ticket) -> (status, value)``, once the future completed: ``GRANTED`` (value = the
  payload, now this caller's), ``CLOSED``, ``TIMED_OUT`` (the deadline completed the future and the
  waiter was withdrawn) or ``RETRY`` (woken to try again: ``begin`` is called again with
  ``retry=value``, which keeps the waiter's place in line).
- ``abandon(ticket)``, when the awaiting task is cancelled (or the coroutine closed): withdraws
  the waiter, and whatever was granted to it meanwhile is handed on to the next waiter, so a
  cancellation never loses an item, a permit or a lock.

The future is created on the caller's running loop and completed by the Rust side with
``loop.call_soon_threadsafe`` after the primitive's lock is released: the loop is never blocked and
nobody polls. The payload travels through the Rust list, never through the future, so a future
cancelled at the same moment as its grant cannot take the grant with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["BUSY", "CLOSED", "DONE", "GRANTED", "RETRY", "TIMED_OUT", "WAITING", "wait"]

# Mirrors src/waiters.rs.
GRANTED, BUSY, WAITING, CLOSED, RETRY, TIMED_OUT = 0, 1, 2, 3, 4, 5


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait(
    begin: Callable[..., tuple[int, Any]],
    finish: Callable[[int], tuple[int, Any]],
    abandon: Callable[[int], Any],
    timeout: float | None,
    *args: Any,
) -> tuple[int, Any]:
    """Wait on a primitive (see the module doc); returns ``(GRANTED, payload)``, ``(CLOSED, _)``
    or ``(TIMED_OUT, None)``. ``timeout`` must already be validated (the primitive's public
    method does so when it is called, as a blocking call would)."""
    loop = asyncio.get_running_loop()
    status, value = begin(loop, None, None, *args)
    if status != BUSY:
        return status, value
    if timeout is not None and timeout <= 0:
        return TIMED_OUT, None
    deadline = None if timeout is None else loop.time() + timeout
    retry = None
    while True:
        fut = loop.create_future()
        status, value = begin(loop, fut, retry, *args)
        if status != WAITING:
            return status, value
        ticket = value
        handle = None if deadline is None else loop.call_at(deadline, _expire, fut)
        try:
            await fut
        except BaseException:
            # Cancelled, or the coroutine closed: whatever was granted meanwhile goes on.
            abandon(ticket)
            raise
        finally:
            if handle is not None:
                handle.cancel()
        status, value = finish(ticket)
        if status != RETRY:
            return status, value
        retry = value


class _Done:
    """An awaitable that is already complete (``__aexit__`` of a synchronous release)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


DONE = _Done()
