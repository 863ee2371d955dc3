"""ThreadSafeState against the seeds' design, one run.

The seeds' design is re-created below from its description: a dict behind an ``RLock``, every
value ``copy.deepcopy``-ed on write and on read, a ``deque`` of change records (old and new
values, deep-copied), ``snapshot()`` = a deep copy of the whole dict, and ``rollback`` replaying
the records backwards. Its ``update_with`` is the corrected one (read, compute, write under the
RLock); the seeds themselves did get-then-set, which loses updates.

Table 1: microseconds per call, single thread. Table 2: ``update_with(key, +1)`` throughput by
threads on one key (the worst case: every writer conflicts).
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Impl, Table, emit, scaling_table
from nogilsafe import ThreadSafeState

OPS = int(os.environ.get("BENCH_OPS", 20_000))
BIG = int(os.environ.get("BENCH_STATE_BIG", 100_000))
_MISSING = object()


class SeedState:
    def __init__(self, initial: dict[str, Any] | None = None, max_history: int = 1000) -> None:
        self._lock = threading.RLock()
        self._state = copy.deepcopy(initial or {})
        self._version = 0
        self._history: deque[tuple[float, int, str, str, Any, Any, Any]] = deque(maxlen=max_history)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return copy.deepcopy(self._state.get(key, default))

    def set(self, key: str, value: Any, changed_by: Any = None) -> int:
        with self._lock:
            old = self._state.get(key, _MISSING)
            self._state[key] = copy.deepcopy(value)
            self._version += 1
            self._history.append(
                (
                    time.time(),
                    self._version,
                    key,
                    "set",
                    copy.deepcopy(old),
                    copy.deepcopy(value),
                    changed_by,
                )
            )
            return self._version

    def update(self, mapping: dict[str, Any], changed_by: Any = None) -> int:
        with self._lock:
            self._version += 1
            for k, v in mapping.items():
                old = self._state.get(k, _MISSING)
                self._state[k] = copy.deepcopy(v)
                self._history.append(
                    (
                        time.time(),
                        self._version,
                        k,
                        "update",
                        copy.deepcopy(old),
                        copy.deepcopy(v),
                        changed_by,
                    )
                )
            return self._version

    def update_with(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        with self._lock:
            new = fn(copy.deepcopy(self._state.get(key, default)))
            self.set(key, new)
            return new

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state)

    def rollback(self, target: int) -> int:
        with self._lock:
            for rec in reversed(self._history):
                if rec[1] <= target:
                    break
                _, _, key, _, old, _, _ = rec
                if old is _MISSING:
                    self._state.pop(key, None)
                else:
                    self._state[key] = copy.deepcopy(old)
            self._version += 1
            return self._version


SMALL = {"status": "running", "progress": 0.5, "tags": ["a", "b"], "meta": {"agent": 3}}


def us(fn: Callable[[], Any], budget: float = 0.3) -> float:
    """Best-of-3 microseconds per call, sizing the loop to about ``budget`` seconds."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(3, min(200_000, int(budget / one)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def rollback_us(s: Any, batches: int = 20, per_batch: int = 200) -> float:
    """Best batch's microseconds per ``rollback`` alone.

    Each batch commits two versions, then rolls back to them alternately: the targets stay
    retained (the batch is far below ``max_history``) and only the rollbacks are timed.
    """
    best = float("inf")
    for _ in range(batches):
        a = s.set("key3", SMALL)
        b = s.set("key3", 1)
        t0 = time.perf_counter()
        for i in range(per_batch):
            s.rollback(a if i & 1 else b)
        best = min(best, (time.perf_counter() - t0) / per_batch)
    return best * 1e6


def per_op_table() -> Table:
    t = Table(
        "ThreadSafeState per operation (single thread)",
        unit="µs per call",
        columns=["seeds' design", "nogilsafe", "speedup"],
    )

    def row(name: str, make: Callable[[type], Any], op: Callable[[Any], Callable[[], Any]]) -> None:
        seed = us(op(make(SeedState)))
        ours = us(op(make(ThreadSafeState)))
        t.add(name, [seed, ours, seed / ours])
        print(f"  {name}: {seed:.3g} / {ours:.3g} µs", file=sys.stderr)

    def with_keys(n: int) -> Callable[[type], Any]:
        return lambda cls: cls({f"key{i}": dict(SMALL, i=i) for i in range(n)})

    row("get (small dict value)", with_keys(10), lambda s: lambda: s.get("key3"))
    row("set (small dict value)", with_keys(10), lambda s: lambda: s.set("key3", SMALL))
    for n in (10, 1000, BIG):
        row(f"snapshot, {n} keys", with_keys(n), lambda s: s.snapshot)

    def rollback_row(n: int) -> None:
        seed = rollback_us(with_keys(n)(SeedState))
        ours = rollback_us(with_keys(n)(ThreadSafeState))
        t.add(f"rollback, {n} keys", [seed, ours, seed / ours])
        print(f"  rollback, {n} keys: {seed:.3g} / {ours:.3g} µs", file=sys.stderr)

    for n in (10, BIG):
        rollback_row(n)
    ints = {f"key{i}": -i for i in range(100)}
    row("update of 100 keys (int values)", with_keys(1000), lambda s: lambda: s.update(ints))
    hundred = {f"key{i}": dict(SMALL, i=-i) for i in range(100)}
    row(
        "update of 100 keys (small dict values)",
        with_keys(1000),
        lambda s: lambda: s.update(hundred),
    )
    t.notes.append(
        "speedup = seeds' design / nogilsafe. Snapshot: the seeds deep-copy the dict; "
        "nogilsafe clones one root pointer (values are converted when read). Rollback: "
        "the seeds replay their records backwards; nogilsafe republishes a retained "
        "root. update: 100 of 1000 keys, one version and 100 history records."
    )
    return t


def incr(n: int) -> int:
    return n + 1


def loop_update_with(wrap: Callable[[Any], Any]) -> Callable[[Any, int, int], Callable[[], None]]:
    def worker(shared: Any, i: int, ops: int) -> Callable[[], None]:
        s = wrap(shared)

        def body() -> None:
            for _ in range(ops):
                s.update_with("n", incr, 0)

        return body

    return worker


def main() -> None:
    tables = [per_op_table()]
    impls = [
        Impl(
            "seeds' design (RLock + deepcopy)",
            lambda: SeedState({"n": 0}),
            loop_update_with(lambda s: s),
        ),
        Impl(
            "nogilsafe.ThreadSafeState",
            lambda: ThreadSafeState({"n": 0}),
            loop_update_with(lambda s: s),
        ),
        Impl(
            "nogilsafe.ThreadSafeState .local()",
            lambda: ThreadSafeState({"n": 0}),
            loop_update_with(lambda s: s.local()),
        ),
    ]
    tables.append(
        scaling_table(
            "update_with(+1) on one key: Mops/s by threads",
            impls,
            max(1, OPS // 4),
            reference="seeds' design (RLock + deepcopy)",
        )
    )
    emit("bench_state", tables)


if __name__ == "__main__":
    main()
