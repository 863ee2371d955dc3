"""The async side of nogilsafe's locks, events, latches and semaphores: the coroutines their
``*_async`` methods, ``__aenter__`` and ``hold()`` return. Each is a few lines over
``_waiting.wait``: the waiter lists, the handoffs and the bookkeeping are in Rust.

An async holder of a ``Lock``/``RLock``/``RWLock`` is the *task* that acquired it (on its loop's
thread): another task must wait, the same task re-acquiring an ``RLock`` counts.
"""

from __future__ import annotations

from asyncio import current_task
from typing import Any

from nogilsafe._waiting import GRANTED, wait


async def lock_acquire(lock: Any, timeout: float | None) -> bool:
    """``Lock.acquire_async`` / ``RLock.acquire_async``."""
    status, _ = await wait(lock._begin, lock._finish, lock._abandon, timeout, current_task())
    return status == GRANTED


async def lock_enter(lock: Any) -> None:
    """``async with lock:`` (returns None, as ``asyncio.Lock`` does)."""
    await wait(lock._begin, lock._finish, lock._abandon, None, current_task())


async def lock_hold(lock: Any, timeout: float | None) -> Any:
    """``async with lock.hold(timeout):``: the lock, or ``LockTimeoutError`` naming its holder."""
    status, _ = await wait(lock._begin, lock._finish, lock._abandon, timeout, current_task())
    if status != GRANTED:
        raise lock._timeout_error(timeout)
    return lock


async def rw_acquire(rw: Any, write: bool, timeout: float | None) -> bool:
    """``RWLock.acquire_read_async`` / ``acquire_write_async``."""
    status, _ = await wait(rw._begin, rw._finish, rw._abandon, timeout, current_task(), write)
    return status == GRANTED


async def rw_hold(rw: Any, write: bool, timeout: float | None) -> Any:
    """``async with rw.read(timeout)`` / ``rw.write(timeout)``."""
    status, _ = await wait(rw._begin, rw._finish, rw._abandon, timeout, current_task(), write)
    if status != GRANTED:
        raise rw._timeout_error(write, timeout)
    return rw


async def wait_unit(obj: Any, timeout: float | None) -> bool:
    """``Event.wait_async``, ``CountDownLatch.wait_async``, ``Semaphore.acquire_async``."""
    status, _ = await wait(obj._begin, obj._finish, obj._abandon, timeout)
    return status == GRANTED


async def enter_unit(obj: Any) -> None:
    """``async with semaphore:``."""
    await wait(obj._begin, obj._finish, obj._abandon, None)
