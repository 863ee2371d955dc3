"""AtomicInt.increment against the anchors, 1..N threads, one run.

Anchors: a Python int behind threading.Lock, ft_utils.concurrency.AtomicInt64 and
cereggii.AtomicInt64 (where they install). nogilsafe is measured on the shared object and
through per-thread ``.local()`` views; ft_utils also through ``LocalWrapper``.
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Impl, emit, optional_import, scaling_table
from nogilsafe import AtomicInt

OPS = int(os.environ.get("BENCH_OPS", 200_000))


class LockedInt:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0

    def increment(self) -> int:
        with self.lock:
            self.value += 1
            return self.value


def loop(method_of: str):  # type: ignore[no-untyped-def]
    def worker(shared, i, ops):  # type: ignore[no-untyped-def]
        fn = getattr(shared, method_of)

        def body() -> None:
            for _ in range(ops):
                fn()

        return body

    return worker


def local_loop(wrap, method: str = "increment"):  # type: ignore[no-untyped-def]
    def worker(shared, i, ops):  # type: ignore[no-untyped-def]
        fn = getattr(wrap(shared), method)

        def body() -> None:
            for _ in range(ops):
                fn()

        return body

    return worker


def main() -> None:
    impls = [
        Impl("Lock + int", LockedInt, loop("increment")),
        Impl("nogilsafe.AtomicInt", AtomicInt, loop("increment")),
        Impl("nogilsafe.AtomicInt .local()", AtomicInt, local_loop(lambda a: a.local())),
    ]
    ftc = optional_import("ft_utils.concurrency")
    ftl = optional_import("ft_utils.local")
    if ftc is not None:
        impls.append(Impl("ft_utils.AtomicInt64", lambda: ftc.AtomicInt64(0), loop("incr")))
        if ftl is not None:
            impls.append(
                Impl(
                    "ft_utils.AtomicInt64 LocalWrapper",
                    lambda: ftc.AtomicInt64(0),
                    local_loop(ftl.LocalWrapper, "incr"),
                )
            )
    cer = optional_import("cereggii")
    if cer is not None:
        impls.append(
            Impl("cereggii.AtomicInt64", lambda: cer.AtomicInt64(0), loop("increment_and_get"))
        )
        impls.append(
            Impl(
                "cereggii.AtomicInt64 get_handle()",
                lambda: cer.AtomicInt64(0),
                local_loop(lambda a: a.get_handle(), "increment_and_get"),
            )
        )
    table = scaling_table(
        "AtomicInt.increment: ops/s by threads", impls, OPS, reference="Lock + int"
    )
    if ftc is None or cer is None:
        table.notes.append(
            "n/a rows: "
            + ", ".join(n for n, m in (("ft_utils", ftc), ("cereggii", cer)) if m is None)
            + " not installed in this interpreter."
        )
    emit("bench_atomic", [table])


if __name__ == "__main__":
    main()
