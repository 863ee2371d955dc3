"""Type-checked by tests/test_channel_typing.py: the Channel API as users write it."""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterator
from typing import assert_type

from nogilsafe import (
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    LockTimeoutError,
    NogilsafeError,
)

jobs: Channel[int] = Channel(16)
assert_type(Channel[str](), Channel[str])
assert_type(Channel[bytes](maxsize=4), Channel[bytes])
jobs.put(1)
jobs.put(2, timeout=1.5)
jobs.put(3, block=False)
jobs.put(4, False, None)
jobs.put_nowait(5)
assert_type(jobs.get(), int)
assert_type(jobs.get(timeout=0.5), int)
assert_type(jobs.get(block=False), int)
assert_type(jobs.get_nowait(), int)
assert_type(jobs.get_many(10), list[int])
assert_type(jobs.get_many(10, timeout=1), list[int])
assert_type(jobs.qsize(), int)
assert_type(jobs.empty(), bool)
assert_type(jobs.full(), bool)
assert_type(jobs.maxsize, int)
assert_type(jobs.closed, bool)
assert_type(jobs.unfinished_tasks, int)
view: Channel[int] = jobs.local()
jobs.task_done()
jobs.join(timeout=1)
jobs.join()
jobs.close()
as_iterator: Iterator[int] = iter(jobs)
as_async_iterator: AsyncIterator[int] = jobs.__aiter__()
for job in jobs:
    assert_type(job, int)

try:
    jobs.get_nowait()
except ChannelEmpty as empty:
    as_queue_empty: queue.Empty = empty
    as_ours: NogilsafeError = empty
except ChannelClosed as closed:
    as_ours = closed
try:
    jobs.put_nowait(6)
except ChannelFull as full:
    as_queue_full: queue.Full = full
try:
    jobs.get(timeout=1)
except LockTimeoutError as expired:
    as_timeout: TimeoutError = expired


class Lines(Channel[str]):
    def __init__(self, name: str, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.name = name

    def put_line(self, line: str) -> None:
        self.put(line.rstrip("\n"))


lines = Lines("log", 8)
lines.put_line("x\n")
assert_type(lines.get(), str)
generic_function_arg: Channel[str] = lines


def drain(ch: Channel[int]) -> list[int]:
    return ch.get_many(100, timeout=0.1)


async def main() -> None:
    await jobs.put_async(7)
    await jobs.put_async(8, timeout=2)
    assert_type(await jobs.get_async(), int)
    assert_type(await jobs.get_async(timeout=1), int)
    await jobs.join_async()
    await jobs.join_async(timeout=3)
    async for job in view:
        assert_type(job, int)
    async for line in lines:
        assert_type(line, str)
