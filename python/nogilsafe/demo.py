"""nogilsafe demo: ``python -m nogilsafe.demo``.

The seeds' ``global_counter += 1`` race, side by side with ``AtomicInt``: N threads each add 1
M times. A plain Python read-modify-write loses updates once threads really run in parallel;
``AtomicInt`` never does. Exits non-zero if nogilsafe lost anything.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from nogilsafe import AtomicInt
from nogilsafe.testing import is_free_threaded, run_concurrently


class _PlainCounter:
    value = 0


def _race_plain(threads: int, increments: int) -> tuple[int, float]:
    counter = _PlainCounter()

    def work(_: int) -> None:
        for _ in range(increments):
            counter.value += 1  # read, add, write: three steps another thread can interleave

    t0 = time.perf_counter()
    run_concurrently(work, threads=threads, timeout=300)
    return counter.value, time.perf_counter() - t0


def _race_atomic(threads: int, increments: int) -> tuple[int, float]:
    counter = AtomicInt()

    def work(_: int) -> None:
        mine = counter.local()  # a per-thread view: no shared Python object to contend on
        for _ in range(increments):
            mine.increment()

    t0 = time.perf_counter()
    run_concurrently(work, threads=threads, timeout=300)
    return counter.get(), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nogilsafe.demo", description=__doc__.split("\n\n")[1])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--increments", type=int, default=200_000, help="per thread")
    args = parser.parse_args(argv)

    expected = args.threads * args.increments
    interp = f"Python {sys.version.split()[0]} ({'free-threaded, GIL off' if is_free_threaded() else 'GIL'})"
    print(f"{interp}; {args.threads} threads x {args.increments:,} increments = {expected:,} expected")
    rows = [("plain int (+= 1)", *_race_plain(args.threads, args.increments)),
            ("nogilsafe.AtomicInt", *_race_atomic(args.threads, args.increments))]
    print(f"{'implementation':<22}{'recorded':>14}{'lost updates':>14}{'Mops/s':>9}")
    for name, got, secs in rows:
        print(f"{name:<22}{got:>14,}{expected - got:>14,}{expected / secs / 1e6:>9.2f}")
    lost = expected - rows[1][1]
    if lost:
        print(f"ERROR: nogilsafe lost {lost} updates", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
