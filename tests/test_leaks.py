"""No type leaks: a million mixed operations each, with resident memory bounded.

tracemalloc sees only Python's allocator; the Rust cores allocate through mimalloc, so these
tests read the process's resident set size (``rss_bytes``, from /proc) instead. Each runs a
warm-up first (allocator pools, free lists and caches reach their steady state), then
``OPS`` operations that keep the live data bounded, so a leak of even one small object per
operation (16 bytes or more, 16 MB in all) shows as growth past ``LIMIT``.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
from collections.abc import Callable

from nogilsafe import (
    DELETE,
    AsyncOnceCell,
    AtomicInt,
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    LockTimeoutError,
    OnceCell,
    ReentrancyError,
    ThreadSafeDict,
    ThreadSafeList,
    ThreadSafeState,
)

OPS = 1_000_000
WARMUP = OPS // 10
LIMIT = 8 * 2**20


class Boom(Exception):
    pass


def growth(rss_bytes: Callable[[], int], run: Callable[[int], int]) -> tuple[int, int]:
    """Resident growth over ``OPS`` operations of ``run(n)`` (which returns how many it did)."""
    run(WARMUP)
    gc.collect()
    before = rss_bytes()
    done = run(OPS)
    gc.collect()
    return rss_bytes() - before, done


def check(rss_bytes: Callable[[], int], run: Callable[[int], int]) -> None:
    grown, done = growth(rss_bytes, run)
    assert done >= OPS, f"only {done:,} operations ran"
    assert grown < LIMIT, (
        f"resident memory grew {grown / 2**20:.1f} MiB over {done:,} operations "
        f"({grown / done:.1f} B each): a leak"
    )


def test_the_measurement_sees_a_leak(rss_bytes: Callable[[], int]) -> None:
    # The same measurement, on code that leaks one small object per operation, must fail: RSS is
    # really read, and the bound is tight enough to catch that.
    kept: list[object] = []

    def leaky(n: int) -> int:
        kept.extend(object() for _ in range(n))
        return n

    grown, _ = growth(rss_bytes, leaky)
    assert grown > LIMIT, f"a 1M-object leak grew resident memory by only {grown:,} bytes"


def test_atomic_int(rss_bytes: Callable[[], int]) -> None:
    a = AtomicInt()

    def run(n: int) -> int:
        done = 0
        while done < n:
            view = a.local()
            view.increment()
            view.fetch_add(3)
            a.compare_and_set(a.get(), 7)
            a.swap(1)
            a.update(lambda v: v + 1)
            a.decrement(2)
            view += 5
            try:
                a.set(2**63)  # the error path: OverflowError, value unchanged
            except OverflowError:
                pass
            done += 9
        return done

    check(rss_bytes, run)
    pickle.loads(pickle.dumps(a))


def test_thread_safe_dict(rss_bytes: Callable[[], int]) -> None:
    d: ThreadSafeDict[object, object] = ThreadSafeDict()

    def run(n: int) -> int:
        done = 0
        i = 0
        while done < n:
            k = f"key{i % 500}"
            d[k] = [i]
            d.get(k)
            d.increment(i % 50)
            d.update_value(k, lambda v: v + [1], [])
            d.compute((i % 7, "t"), lambda v: DELETE if i % 3 else i)
            d.get_or_insert_with(f"lazy{i % 100}", lambda: {"made": True})
            d.setdefault(i % 11, None)
            d.compare_and_set(i % 50, 0, 1)
            d.pop(k, None)
            try:
                d.update_value(("absent", i), lambda v: v)  # KeyError path
            except KeyError:
                pass
            done += 10
            if i % 1000 == 0:
                d.snapshot()
                list(d.items())
                d.local().copy()
                done += 3
            i += 1
        return done

    check(rss_bytes, run)
    assert len(d) <= 500 + 50 + 7 + 100 + 11


def test_thread_safe_list(rss_bytes: Callable[[], int]) -> None:
    lst: ThreadSafeList[object] = ThreadSafeList()

    def run(n: int) -> int:
        done = 0
        i = 0
        while done < n:
            lst.append(f"item{i}")
            lst.append_if_absent(i % 100)
            lst.insert(0, (i, "t"))
            lst.update_at(0, lambda v: (v, 1))
            lst.compare_and_set(-1, i % 100, "replaced")
            lst[1:3]
            lst.pop()
            lst.pop_or(None, 0)
            try:
                lst.remove("never there")  # ValueError path
            except ValueError:
                pass
            done += 9
            if len(lst) > 200:
                lst.remove_if(lambda v: isinstance(v, str))
                lst.drain()
                done += 2
            i += 1
        return done

    check(rss_bytes, run)


def test_thread_safe_state(rss_bytes: Callable[[], int]) -> None:
    s: ThreadSafeState[object] = ThreadSafeState({"n": 0}, max_history=100)

    def move(tx):  # type: ignore[no-untyped-def]
        tx["n"] = tx["n"] + 1
        tx["log"] = [tx["n"], {"at": tx.version}]

    def run(n: int) -> int:
        done = 0
        i = 0
        while done < n:
            s.set(f"k{i % 200}", {"i": i, "tags": ["a", "b"], "pair": (i, str(i))})
            s.update({"x": i, "y": [i, i]})
            s.update_with("n", lambda v: v + 1)
            s.transaction(move)
            s.compare_and_set("x", i, i + 1)
            s.snapshot()["n"]
            s.get(f"k{(i * 7) % 200}")
            s.delete(f"k{(i * 3) % 200}")
            done += 8
            if i % 50 == 0:
                s.rollback(s.version - 1)
                s.history(limit=5)
                s.diff(s.version - 2, s.version)
                done += 3
            i += 1
        return done

    check(rss_bytes, run)
    assert s.metrics()["retained_versions"] <= 101


def test_once_cells(rss_bytes: Callable[[], int]) -> None:
    cell: OnceCell[object] = OnceCell()
    acell: AsyncOnceCell[object] = AsyncOnceCell()

    def boom() -> object:
        raise Boom

    def reenter() -> object:
        return cell.get_or_init(lambda: 1)

    async def make() -> object:
        return ["async", 1]

    async def async_ops(n: int) -> int:
        done = 0
        while done < n:
            await acell.get_or_init(make)
            await acell.get_or_init(make, timeout=1)
            acell.reset()
            done += 3
        return done

    def run(n: int) -> int:
        done = 0
        while done < n * 4 // 5:
            cell.get_or_init(lambda: ["value"])
            cell.get()
            cell.take()
            cell.set({"v": 1})
            cell.reset()
            try:
                cell.get_or_init(boom)  # the factory's exception reaches the caller, no value kept
            except Boom:
                pass
            try:
                cell.get_or_init(reenter)
            except ReentrancyError:
                pass
            cell.local().get_or_init(lambda: 1, timeout=1)
            done += 8
        # The async path awaits futures of its own loop: a fifth of the operations.
        return done + asyncio.run(async_ops(n - done))

    check(rss_bytes, run)


def test_channel(rss_bytes: Callable[[], int]) -> None:
    ch: Channel[object] = Channel(64)
    closed: Channel[object] = Channel()
    closed.close()

    async def async_ops(n: int) -> int:
        done = 0
        while done < n:
            await ch.put_async([done])
            await ch.get_async(timeout=1)
            ch.task_done()
            await ch.join_async(timeout=1)
            try:
                await ch.get_async(timeout=0)  # the timeout path
            except LockTimeoutError:
                pass
            done += 5
        return done

    def run(n: int) -> int:
        done = 0
        i = 0
        while done < n * 4 // 5:
            view = ch.local()
            view.put({"i": i})
            ch.put_nowait((i, "t"))
            ch.put([i], timeout=1)
            ch.get()
            view.get_nowait()
            ch.get_many(8, timeout=1)
            ch.task_done()
            ch.task_done()
            view.task_done()
            ch.join(timeout=1)
            try:
                ch.get_nowait()  # the error paths: empty, closed, timed out
            except ChannelEmpty:
                pass
            try:
                closed.put([i])
            except ChannelClosed:
                pass
            try:
                ch.get(timeout=0)
            except LockTimeoutError:
                pass
            done += 15
            if i % 100 == 0:
                for j in range(64):
                    ch.put_nowait(j)
                try:
                    ch.put_nowait("over")
                except ChannelFull:
                    pass
                ch.get_many(64)
                for _ in range(64):
                    ch.task_done()
                dropped: Channel[object] = Channel()  # freed holding items
                dropped.put([i])
                dropped.put({"i": i})
                dropped.close()
                del dropped
                done += 135
            i += 1
        # The async path awaits futures of its own loop: a fifth of the operations.
        return done + asyncio.run(async_ops(n - done))

    check(rss_bytes, run)
    assert ch.empty() and ch.unfinished_tasks == 0
