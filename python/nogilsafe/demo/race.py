"""The seeds' ``global_counter += 1`` race, side by side with ``AtomicInt``.

N threads each add 1 M times. A plain Python read-modify-write loses updates once threads really
run in parallel (a free-threaded interpreter); ``AtomicInt`` never does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nogilsafe import AtomicInt
from nogilsafe.testing import run_concurrently


class _PlainCounter:
    value = 0


@dataclass
class RaceRow:
    name: str
    recorded: int
    seconds: float


def race_plain(threads: int, increments: int) -> RaceRow:
    counter = _PlainCounter()

    def work(_: int) -> None:
        for _ in range(increments):
            counter.value += 1  # read, add, write: three steps another thread can interleave

    t0 = time.perf_counter()
    run_concurrently(work, threads=threads, timeout=300)
    return RaceRow("plain int (+= 1)", counter.value, time.perf_counter() - t0)


def race_atomic(threads: int, increments: int) -> RaceRow:
    counter = AtomicInt()

    def work(_: int) -> None:
        mine = counter.local()  # a per-thread view: no shared Python object to contend on
        for _ in range(increments):
            mine.increment()

    t0 = time.perf_counter()
    run_concurrently(work, threads=threads, timeout=300)
    return RaceRow("nogilsafe.AtomicInt", counter.get(), time.perf_counter() - t0)


def run_race(threads: int, increments: int) -> tuple[list[str], int]:
    """Run both counters; return the printed lines and how many increments nogilsafe lost."""
    expected = threads * increments
    rows = [race_plain(threads, increments), race_atomic(threads, increments)]
    lines = [
        f"Counter race: {threads} threads x {increments:,} increments = {expected:,} expected",
        f"  {'implementation':<22}{'recorded':>12}{'lost':>12}{'Mops/s':>9}",
    ]
    for r in rows:
        lines.append(
            f"  {r.name:<22}{r.recorded:>12,}{expected - r.recorded:>12,}"
            f"{expected / r.seconds / 1e6:>9.2f}"
        )
    return lines, expected - rows[1].recorded
