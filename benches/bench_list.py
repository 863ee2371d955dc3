"""ThreadSafeList against the anchors, 1..N threads, one run.

Tables (Mops/s; an "op" is named in each title):
- append + pop(0), queue-like: builtin list (unsafe for real use), list behind threading.Lock,
  ft_utils.ConcurrentDeque (append + popleft, direct and through LocalWrapper), nogilsafe direct
  and through per-thread ``.local()`` views;
- indexed read ``lst[i]`` and indexed write ``lst[i] = v`` on 1,000 items;
- ``x in lst`` on 1,000 ints (x found half-way: 500 comparisons per op);
- iterating 10,000 items while the other threads append and pop: items iterated per second by one
  iterating thread (Lock + list copies under the lock, then iterates the copy).

BENCH_OPS (default 200,000) sets the operations per thread for the cheap tables; the ``in`` table
uses 1/100 of it. BENCH_MAX_THREADS caps the thread counts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Impl, Table, emit, optional_import, scaling_table, thread_counts
from nogilsafe import ThreadSafeList

OPS = int(os.environ.get("BENCH_OPS", 200_000))
SIZE = 1000


class LockedList:
    """The seeds' pattern: a list behind one threading.Lock."""

    def __init__(self, items: Any = ()) -> None:
        self.lock = threading.Lock()
        self.items = list(items)

    def append(self, x: Any) -> None:
        with self.lock:
            self.items.append(x)

    def pop(self, i: int = -1) -> Any:
        with self.lock:
            return self.items.pop(i)

    def __getitem__(self, i: int) -> Any:
        with self.lock:
            return self.items[i]

    def __setitem__(self, i: int, v: Any) -> None:
        with self.lock:
            self.items[i] = v

    def __contains__(self, x: Any) -> bool:
        with self.lock:
            return x in self.items

    def copy(self) -> list[Any]:
        with self.lock:
            return self.items.copy()


def direct(shared: Any) -> Any:
    return shared


def local(shared: Any) -> Any:
    return shared.local()


def append_pop(wrap: Callable[[Any], Any], popname: str = "pop", front: bool = True):  # type: ignore[no-untyped-def]
    def worker(shared, i, ops):  # type: ignore[no-untyped-def]
        h = wrap(shared)
        append, pop = h.append, getattr(h, popname)

        if front and popname == "pop":

            def body() -> None:
                for k in range(ops):
                    append(k)
                    pop(0)
        else:

            def body() -> None:
                for k in range(ops):
                    append(k)
                    pop()

        return body

    return worker


def read(wrap: Callable[[Any], Any]):  # type: ignore[no-untyped-def]
    def worker(shared, t, ops):  # type: ignore[no-untyped-def]
        h = wrap(shared)

        def body() -> None:
            for k in range(ops):
                h[k % SIZE]

        return body

    return worker


def write(wrap: Callable[[Any], Any]):  # type: ignore[no-untyped-def]
    def worker(shared, t, ops):  # type: ignore[no-untyped-def]
        h = wrap(shared)

        def body() -> None:
            for k in range(ops):
                h[k % SIZE] = k

        return body

    return worker


def contains(wrap: Callable[[Any], Any]):  # type: ignore[no-untyped-def]
    def worker(shared, t, ops):  # type: ignore[no-untyped-def]
        h = wrap(shared)
        x = SIZE // 2

        def body() -> None:
            for _ in range(ops):
                x in h  # noqa: B015

        return body

    return worker


def iteration_table(counts: list[int], rounds: int) -> Table:
    """One thread iterates a 10k-item list ``rounds`` times; the others append and pop meanwhile."""
    table = Table(
        "iterate 10k items while others append+pop: M items iterated/s by the iterating thread",
        columns=[f"{n} thr" for n in counts],
        reference="Lock + list (copy, iterate)",
    )

    def make_list() -> Any:
        return list(range(10_000))

    def make_locked() -> Any:
        return LockedList(range(10_000))

    def make_tsl() -> Any:
        return ThreadSafeList(range(10_000))

    def it_plain(h: Any) -> int:
        n = 0
        for _ in h:
            n += 1
        return n

    def it_locked(h: Any) -> int:
        n = 0
        for _ in h.copy():
            n += 1
        return n

    def writer_plain(h: Any) -> Callable[[], None]:
        def w() -> None:
            h.append(-1)
            h.pop()

        return w

    cases = [
        ("builtin list (unsafe)", make_list, direct, it_plain),
        ("Lock + list (copy, iterate)", make_locked, direct, it_locked),
        ("nogilsafe.ThreadSafeList", make_tsl, direct, it_plain),
        ("nogilsafe.ThreadSafeList .local()", make_tsl, local, it_plain),
    ]
    for name, make, wrap, iterate in cases:
        row: list[float | None] = []
        for n in counts:
            best = 0.0
            for _ in range(3):
                shared = make()
                stop = threading.Event()
                start = threading.Barrier(n)
                total = [0]

                def iterator() -> None:
                    h = wrap(shared)
                    start.wait()
                    t0 = time.perf_counter()
                    for _ in range(rounds):
                        total[0] += iterate(h)
                    total.append(time.perf_counter() - t0)  # type: ignore[arg-type]
                    stop.set()

                def appender() -> None:
                    w = writer_plain(wrap(shared))
                    start.wait()
                    while not stop.is_set():
                        for _ in range(100):
                            w()

                threads = [threading.Thread(target=iterator)] + [
                    threading.Thread(target=appender) for _ in range(n - 1)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(600)
                best = max(best, total[0] / total[1] / 1e6)
            row.append(best)
        table.add(name, row)
        print(f"  measured {name}", file=sys.stderr)
    return table


def main() -> None:
    counts = thread_counts()
    ftc = optional_import("ft_utils.concurrency")
    ftl = optional_import("ft_utils.local")
    tables = []

    impls = [
        Impl("builtin list (unsafe)", list, append_pop(direct)),
        Impl("Lock + list", LockedList, append_pop(direct)),
        Impl("nogilsafe.ThreadSafeList", ThreadSafeList, append_pop(direct)),
        Impl("nogilsafe.ThreadSafeList .local()", ThreadSafeList, append_pop(local)),
    ]
    if ftc is not None:
        impls.append(
            Impl(
                "ft_utils.ConcurrentDeque (popleft)",
                ftc.ConcurrentDeque,
                append_pop(direct, "popleft"),
            )
        )
        if ftl is not None:
            impls.append(
                Impl(
                    "ft_utils.ConcurrentDeque LocalWrapper",
                    ftc.ConcurrentDeque,
                    append_pop(ftl.LocalWrapper, "popleft"),
                )
            )
    tables.append(
        scaling_table("append + pop(0) (one op = the pair)", impls, OPS, reference="Lock + list")
    )

    def filled(cls: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: cls(range(SIZE))

    for title, kind in (
        ("indexed read lst[i], 1k items", read),
        ("indexed write lst[i] = v, 1k items", write),
    ):
        impls = [
            Impl("builtin list (unsafe)", filled(list), kind(direct)),
            Impl("Lock + list", filled(LockedList), kind(direct)),
            Impl("nogilsafe.ThreadSafeList", filled(ThreadSafeList), kind(direct)),
            Impl("nogilsafe.ThreadSafeList .local()", filled(ThreadSafeList), kind(local)),
        ]
        tables.append(scaling_table(title, impls, OPS, reference="Lock + list"))

    impls = [
        Impl("builtin list (unsafe)", filled(list), contains(direct)),
        Impl("Lock + list", filled(LockedList), contains(direct)),
        Impl("nogilsafe.ThreadSafeList", filled(ThreadSafeList), contains(direct)),
        Impl("nogilsafe.ThreadSafeList .local()", filled(ThreadSafeList), contains(local)),
    ]
    tables.append(
        scaling_table(
            "x in lst, 1k ints, found at 500", impls, max(OPS // 100, 100), reference="Lock + list"
        )
    )
    tables.append(iteration_table(counts, max(OPS // 20_000, 3)))
    if ftc is None:
        tables[0].notes.append("n/a rows: ft_utils not installed in this interpreter.")
    emit("bench_list", tables)


if __name__ == "__main__":
    main()
