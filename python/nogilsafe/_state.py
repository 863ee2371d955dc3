"""asyncio glue for ThreadSafeState.wait_for_async (the core is in Rust, src/state/).

A waiter registers (event loop, future) with the state *before* checking the predicate, so a
commit landing between the check and the await still wakes it. Each commit takes every
registered waiter and completes its future through ``loop.call_soon_threadsafe`` from the
committing thread: the loop is never blocked, and no thread polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nogilsafe._core import LockTimeoutError


def _wake(fut: asyncio.Future[None]) -> None:
    # Runs on the waiter's own loop; a cancelled or already woken future is left alone.
    if not fut.done():
        fut.set_result(None)


async def _wait(state: Any, predicate: Callable[[Any], object]) -> Any:
    loop = asyncio.get_running_loop()
    while True:
        fut = loop.create_future()
        state._register_async_waiter(loop, fut)
        try:
            snap = state.snapshot()
            if predicate(snap):
                return snap
            await fut
        finally:
            # Woken waiters are already gone; a timed-out or failed one is removed here.
            state._discard_async_waiter(fut)


async def wait_for_async(
    state: Any, predicate: Callable[[Any], object], timeout: float | None
) -> Any:
    if timeout is None:
        return await _wait(state, predicate)
    try:
        return await asyncio.wait_for(_wait(state, predicate), timeout)
    except asyncio.TimeoutError:
        raise LockTimeoutError(
            f"ThreadSafeState.wait_for_async: timed out after {timeout}s"
        ) from None
