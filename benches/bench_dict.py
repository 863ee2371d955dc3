"""ThreadSafeDict against the anchors: read/write mixes on 1024 keys, 1..N threads, one run.

Workloads: 90/10 and 50/50 reads/writes (writes overwrite existing keys), each with immortal
values (None) and with ordinary objects shared by all threads. Implementations: builtin dict,
dict behind threading.Lock, ft_utils.ConcurrentDict, cereggii.AtomicDict and ThreadSafeDict,
each used directly and through its per-thread view (``.local()``, cereggii's ``get_handle()``,
``ft_utils.local.LocalWrapper`` for the others). Then ``increment`` against one
``ft_utils.AtomicInt64`` per key. BENCH_OPS sets operations per thread.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Impl, emit, optional_import, scaling_table
from nogilsafe import ThreadSafeDict

OPS = int(os.environ.get("BENCH_OPS", 100_000))
NKEYS = 1024
KEYS = [f"key{i}" for i in range(NKEYS)]


class Payload:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


OBJECTS = [Payload(i) for i in range(NKEYS)]


def plan(i: int, ops: int, write_pct: int, objects: bool) -> list[tuple[str, Any]]:
    """Per-thread operation list built before the clock: (key, value or _READ)."""
    rng = random.Random(i)
    out = []
    for _ in range(ops):
        j = rng.randrange(NKEYS)
        if rng.randrange(100) < write_pct:
            out.append((KEYS[j], OBJECTS[j] if objects else None))
        else:
            out.append((KEYS[j], READ))
    return out


READ = object()


def fill(d: Any, objects: bool) -> Any:
    for j, k in enumerate(KEYS):
        d[k] = OBJECTS[j] if objects else None
    return d


class LockedDict:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.d: dict[str, Any] = {}


def mapping_worker(view: Any, write_pct: int, objects: bool):  # type: ignore[no-untyped-def]
    def worker(shared: Any, i: int, ops: int):  # type: ignore[no-untyped-def]
        d = view(shared)
        steps = plan(i, ops, write_pct, objects)
        get, put = d.__getitem__, d.__setitem__

        def body() -> None:
            for k, v in steps:
                if v is READ:
                    get(k)
                else:
                    put(k, v)

        return body

    return worker


def locked_worker(view: Any, write_pct: int, objects: bool):  # type: ignore[no-untyped-def]
    def worker(shared: Any, i: int, ops: int):  # type: ignore[no-untyped-def]
        s = view(shared)
        steps = plan(i, ops, write_pct, objects)

        def body() -> None:
            lock, d = s.lock, s.d
            for k, v in steps:
                with lock:
                    if v is READ:
                        d[k]
                    else:
                        d[k] = v

        return body

    return worker


def same(x: Any) -> Any:
    return x


def impls_for(write_pct: int, objects: bool) -> list[Impl]:
    ftc = optional_import("ft_utils.concurrency")
    ftl = optional_import("ft_utils.local")
    cer = optional_import("cereggii")
    wrap = ftl.LocalWrapper if ftl is not None else None

    def locked() -> LockedDict:
        s = LockedDict()
        fill(s.d, objects)
        return s

    out = [
        Impl("dict", lambda: fill({}, objects), mapping_worker(same, write_pct, objects)),
        Impl("Lock + dict", locked, locked_worker(same, write_pct, objects)),
        Impl(
            "ThreadSafeDict",
            lambda: fill(ThreadSafeDict(), objects),
            mapping_worker(same, write_pct, objects),
        ),
        Impl(
            "ThreadSafeDict .local()",
            lambda: fill(ThreadSafeDict(), objects),
            mapping_worker(lambda d: d.local(), write_pct, objects),
        ),
    ]
    if wrap is not None:
        out.insert(
            1,
            Impl(
                "dict LocalWrapper",
                lambda: fill({}, objects),
                mapping_worker(wrap, write_pct, objects),
            ),
        )
        out.insert(
            3, Impl("Lock + dict LocalWrapper", locked, locked_worker(wrap, write_pct, objects))
        )
    if ftc is not None:
        out.append(
            Impl(
                "ft_utils.ConcurrentDict",
                lambda: fill(ftc.ConcurrentDict(), objects),
                mapping_worker(same, write_pct, objects),
            )
        )
        if wrap is not None:
            out.append(
                Impl(
                    "ft_utils.ConcurrentDict LocalWrapper",
                    lambda: fill(ftc.ConcurrentDict(), objects),
                    mapping_worker(wrap, write_pct, objects),
                )
            )
    if cer is not None:
        out.append(
            Impl(
                "cereggii.AtomicDict",
                lambda: fill(cer.AtomicDict(), objects),
                mapping_worker(same, write_pct, objects),
            )
        )
        out.append(
            Impl(
                "cereggii.AtomicDict get_handle()",
                lambda: fill(cer.AtomicDict(), objects),
                mapping_worker(lambda d: d.get_handle(), write_pct, objects),
            )
        )
    return out


def increment_impls() -> list[Impl]:
    ftc = optional_import("ft_utils.concurrency")

    def steps(i: int, ops: int) -> list[str]:
        rng = random.Random(i)
        return [KEYS[rng.randrange(NKEYS)] for _ in range(ops)]

    def tsd_worker(view: Any):  # type: ignore[no-untyped-def]
        def worker(shared: Any, i: int, ops: int):  # type: ignore[no-untyped-def]
            inc = view(shared).increment
            ks = steps(i, ops)

            def body() -> None:
                for k in ks:
                    inc(k)

            return body

        return worker

    def locked_worker_inc(shared: Any, i: int, ops: int):  # type: ignore[no-untyped-def]
        ks = steps(i, ops)

        def body() -> None:
            lock, d = shared.lock, shared.d
            for k in ks:
                with lock:
                    d[k] = d.get(k, 0) + 1

        return body

    out = [
        Impl("Lock + dict of ints", LockedDict, locked_worker_inc),
        Impl("ThreadSafeDict.increment", ThreadSafeDict, tsd_worker(same)),
        Impl("ThreadSafeDict.increment .local()", ThreadSafeDict, tsd_worker(lambda d: d.local())),
    ]
    if ftc is not None:

        def ft_worker(shared: Any, i: int, ops: int):  # type: ignore[no-untyped-def]
            ks = steps(i, ops)

            def body() -> None:
                for k in ks:
                    shared[k].incr()

            return body

        out.append(
            Impl(
                "dict of ft_utils.AtomicInt64",
                lambda: {k: ftc.AtomicInt64(0) for k in KEYS},
                ft_worker,
            )
        )
    return out


def main() -> None:
    tables = []
    for write_pct in (10, 50):
        for objects in (False, True):
            title = (
                f"{100 - write_pct}/{write_pct} read/write on {NKEYS} keys, "
                f"{'object' if objects else 'None (immortal)'} values: ops/s by threads"
            )
            tables.append(
                scaling_table(title, impls_for(write_pct, objects), OPS, reference="Lock + dict")
            )
    tables.append(
        scaling_table(
            f"increment on {NKEYS} keys: ops/s by threads",
            increment_impls(),
            OPS,
            reference="Lock + dict of ints",
        )
    )
    emit("bench_dict", tables)


if __name__ == "__main__":
    main()
