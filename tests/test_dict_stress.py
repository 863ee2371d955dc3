"""Many threads mixing every operation on overlapping keys; exact invariants afterwards."""

from __future__ import annotations

import gc
import itertools
import random
import threading
import tracemalloc

import pytest
from nogilsafe import DELETE, ThreadSafeDict
from nogilsafe.testing import run_concurrently

THREADS = 8


def test_increment_totals_are_exact() -> None:
    t = ThreadSafeDict()
    n = 5000

    def work(i: int) -> None:
        v = t.local() if i % 2 else t
        for j in range(n):
            v.increment(j % 16)
            v.increment("big", 2**62)  # crosses i64: Python-int fallback path
            v.update_value("cb", lambda x: x + 1, 0)

    run_concurrently(work, threads=THREADS, timeout=60)
    assert sum(t[j] for j in range(16)) == THREADS * n
    assert t["big"] == THREADS * n * 2**62
    assert t["cb"] == THREADS * n


def test_get_or_insert_with_runs_one_factory_per_key() -> None:
    t = ThreadSafeDict()
    calls = itertools.count()
    made: list[int] = []
    lock = threading.Lock()
    keys = 50

    def factory() -> object:
        with lock:
            made.append(next(calls))
        return object()

    def work(i: int) -> dict[int, object]:
        rng = random.Random(i)
        got = {}
        for _ in range(1000):
            k = rng.randrange(keys)
            v = t.get_or_insert_with(k, factory, timeout=30)
            assert got.setdefault(k, v) is v
        return got

    results = run_concurrently(work, threads=THREADS, timeout=60)
    assert len(made) == len(t) == keys
    for per_thread in results:
        for k, v in per_thread[0].items():
            assert t[k] is v  # every caller got the one winning value


def test_iteration_during_writes_sees_only_real_keys() -> None:
    t = ThreadSafeDict({f"k{i}": i for i in range(64)})
    universe = {f"k{i}" for i in range(128)}
    stop = threading.Event()

    def work(i: int) -> int:
        rng = random.Random(i)
        checked = 0
        if i < THREADS // 2:
            while not stop.is_set():
                k = f"k{rng.randrange(128)}"
                op = rng.randrange(6)
                if op == 0:
                    t[k] = 1
                elif op == 1:
                    t.pop(k, None)
                elif op == 2:
                    t.setdefault(k, 2)
                elif op == 3:
                    t.compute(k, lambda v: DELETE if rng.random() < 0.5 else 3)
                elif op == 4:
                    t.compare_and_set(k, 1, 4)
                else:
                    t.update({k: 5, f"k{rng.randrange(128)}": 6})
            return 0
        for _ in range(400):
            assert set(t) <= universe
            assert set(t.keys()) <= universe
            items = list(t.items())
            assert len(items) == len({k for k, _ in items})
            assert len(t.values()) >= 0
            checked += 1
        if i == THREADS - 1:
            stop.set()
        return checked

    try:
        run_concurrently(work, threads=THREADS, timeout=60)
    finally:
        stop.set()
    assert set(t) <= universe


def test_update_many_is_never_seen_half_applied() -> None:
    t = ThreadSafeDict({f"k{i}": 0 for i in range(64)})
    keys = [f"k{i}" for i in range(64)]
    stop = threading.Event()

    def work(i: int) -> int:
        if i < 3:
            gen = i * 1_000_000
            while not stop.is_set():
                gen += 1
                t.update_many({k: gen for k in keys})
            return 0
        seen = 0
        for _ in range(500):
            snap = t.snapshot()
            assert len(set(snap.values())) == 1, "update_many observed half-applied"
            assert len(set(t.values())) == 1
            seen += 1
        return seen

    try:
        out = run_concurrently(
            lambda i: (work(i), i == THREADS - 1 and stop.set())[0], threads=THREADS, timeout=60
        )
    finally:
        stop.set()
    assert sum(r[0] for r in out) > 0


def test_mixed_operations_keep_len_exact() -> None:
    t = ThreadSafeDict()

    def work(i: int) -> None:
        rng = random.Random(i)
        mine = [(i, j) for j in range(40)]
        for _ in range(4000):
            k = rng.choice(mine)
            shared = rng.randrange(20)
            op = rng.randrange(5)
            if op == 0:
                t[k] = 1
            elif op == 1:
                t.pop(k, None)
            elif op == 2:
                t.increment(("shared", shared))
            elif op == 3:
                t.swap(k, 2)
            else:
                t.pop_if(k, 2)
        for k in mine:  # leave exactly the even ones
            if k[1] % 2 == 0:
                t[k] = 0
            else:
                t.pop(k, None)

    run_concurrently(work, threads=THREADS, timeout=60)
    own = [k for k in t if k[0] != "shared"]
    assert len(own) == THREADS * 20
    assert len(t) == len(list(t)) == len(t.snapshot())


def test_set_delete_cycles_do_not_leak() -> None:
    t = ThreadSafeDict()

    class Payload:
        pass

    def cycles(n: int) -> None:
        for i in range(n):
            k = ("key", i % 64)
            t[k] = Payload()
            del t[k]
            t.increment("c")

    cycles(5000)  # warm up caches and free lists
    gc.collect()
    objects_before = len(gc.get_objects())
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    cycles(100_000)
    gc.collect()
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(gc.get_objects()) - objects_before < 100
    assert now - base < 64 * 1024


@pytest.mark.soak
def test_million_set_delete_cycles_soak() -> None:
    t = ThreadSafeDict()
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    before = len(gc.get_objects())
    for i in range(1_000_000):
        t[i] = object()
        del t[i]
    gc.collect()
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(gc.get_objects()) - before < 100 and now - base < 64 * 1024


def test_get_or_insert_with_waiters_take_over_after_a_failed_factory() -> None:
    t = ThreadSafeDict()
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def work(i: int) -> object:
        if i == 0:

            def failing() -> object:
                calls.append(0)
                started.set()
                release.wait(10)
                raise ValueError("first factory fails")

            with pytest.raises(ValueError):
                t.get_or_insert_with("k", failing)
            return None
        started.wait(10)
        if i == 1:
            release.set()

        def ok() -> object:
            calls.append(i)
            return ("made by", i)

        return t.get_or_insert_with("k", ok, timeout=10)

    out = [r[0] for r in run_concurrently(work, threads=4, timeout=30)]
    assert calls[0] == 0 and len(calls) == 2  # the failure, then exactly one successful factory
    assert out[1] == out[2] == out[3] == t["k"]


def test_get_or_insert_with_waiter_times_out() -> None:
    from nogilsafe import LockTimeoutError

    t = ThreadSafeDict()
    started = threading.Event()
    release = threading.Event()

    def work(i: int) -> None:
        if i == 0:

            def slow() -> int:
                started.set()
                release.wait(10)
                return 1

            assert t.get_or_insert_with("k", slow) == 1
        else:
            started.wait(10)
            try:
                with pytest.raises(LockTimeoutError):
                    t.get_or_insert_with("k", lambda: 2, timeout=0.05)
            finally:
                release.set()

    run_concurrently(work, threads=2, timeout=30)
    assert t["k"] == 1
