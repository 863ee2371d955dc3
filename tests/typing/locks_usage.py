"""Type-checked by tests/test_locks_typing.py: the locks API as users write it."""

from __future__ import annotations

import asyncio
from typing import assert_type

from nogilsafe import (
    AtomicBool,
    AtomicRef,
    BoundedSemaphore,
    CountDownLatch,
    Event,
    Lock,
    RLock,
    RWLock,
    Semaphore,
)

lock = Lock(name="db")
assert_type(lock.acquire(timeout=1.0), bool)
assert_type(lock.locked(), bool)
assert_type(lock.owner, tuple[int, str] | None)
assert_type(lock.waiting, int)
with lock:
    pass
with lock.hold(timeout=5) as held:
    assert_type(held, Lock | RLock)
rlock: RLock = RLock().local()
rw = RWLock(name="index")
with rw.read(timeout=1) as r:
    assert_type(r, RWLock)
assert_type(rw.acquire_write(blocking=False), bool)
event = Event()
assert_type(event.wait(0.5), bool)
latch = CountDownLatch(3)
assert_type(latch.count_down(), int)
sem = BoundedSemaphore(2)
plain: Semaphore = Semaphore(3).local()
with sem:
    pass
ref: AtomicRef[list[int]] = AtomicRef([1])
assert_type(ref.get(), list[int])
assert_type(ref.update(lambda v: [*v, 2]), list[int])
assert_type(ref.compare_and_set(ref.get(), [3]), bool)
flag = AtomicBool()
assert_type(flag.toggle(), bool)


async def main() -> None:
    async with lock:
        pass
    async with lock.hold(timeout=1):
        pass
    assert_type(await lock.acquire_async(timeout=1), bool)
    async with rw.write():
        pass
    assert_type(await event.wait_async(), bool)
    assert_type(await latch.wait_async(1), bool)
    async with sem:
        pass
    assert_type(await sem.acquire_async(), bool)


asyncio.run(main())
