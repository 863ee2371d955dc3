"""Type-checked by tests/test_processor_typing.py: SequentialProcessor as users write it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import assert_type

from nogilsafe import ProcessorMetrics, SequentialProcessor


def render(order_id: int) -> str:
    return f"order {order_id}"


async def post(order_id: int) -> str:
    await asyncio.sleep(0)
    return f"posted {order_id}"


def log_failure(item: int, exc: BaseException) -> None:
    print(item, exc)


plain: SequentialProcessor[int, str] = SequentialProcessor(render, maxsize=10, name="render")
inferred = SequentialProcessor(render, on_error=log_failure)
assert_type(inferred, SequentialProcessor[int, str])
with plain:
    fut = plain.submit(1, timeout=5)
    assert_type(fut, concurrent.futures.Future[str])
    assert_type(fut.result(), str)
assert_type(plain.stop(timeout=1.0, drain=False), bool)
assert_type(plain.in_progress, int | None)
assert_type(plain.name, str)
metrics = plain.metrics()
assert_type(metrics, ProcessorMetrics)
assert_type(metrics.mean_processing_time, float)
assert_type(metrics.submitted + metrics.processed + metrics.failed + metrics.queued, int)

own_loop = SequentialProcessor(post)  # an async def: the awaited result is R
assert_type(own_loop, SequentialProcessor[int, str])


async def main() -> None:
    on_this_loop: SequentialProcessor[int, str] = SequentialProcessor(
        post, loop=asyncio.get_running_loop()
    )
    async with on_this_loop as p:
        assert_type(p, SequentialProcessor[int, str])
        pending = await p.submit_async(2, timeout=1)
        assert_type(pending, asyncio.Future[str])
        assert_type(await pending, str)
    assert_type(await on_this_loop.stop_async(timeout=1), bool)
    started = SequentialProcessor(render).start()
    assert_type(started, SequentialProcessor[int, str])
    started.stop()


asyncio.run(main())
