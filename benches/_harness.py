"""Shared benchmark machinery: thread scaling with a barrier start, and ratio tables.

A benchmark is a set of implementations (``Impl``), each able to build the shared object and a
per-thread worker. Every worker runs a fixed number of operations; the figure is total operations
over wall time from the barrier release to the last join. Tables print Mops/s per thread count and
the ratio of each implementation to a reference one, all measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def interpreter() -> str:
    ft = not getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"CPython {platform.python_version()} ({'free-threaded' if ft else 'GIL'})"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def thread_counts(max_threads: int | None = None) -> list[int]:
    top = max_threads or int(os.environ.get("BENCH_MAX_THREADS", os.cpu_count() or 1))
    out = [n for n in (1, 2, 4, 8, 16, 32) if n <= top]
    if top not in out:
        out.append(top)
    return out


@dataclass
class Impl:
    """One implementation under test.

    ``make()`` builds the shared object; ``worker(shared, thread_index, ops)`` returns a
    zero-argument callable that performs ``ops`` operations (so per-thread setup, such as taking a
    ``.local()`` view, happens before the clock starts).
    """

    name: str
    make: Callable[[], Any]
    worker: Callable[[Any, int, int], Callable[[], Any]]


@dataclass
class Table:
    title: str
    unit: str = "Mops/s"
    columns: list[str] = field(default_factory=list)
    rows: dict[str, list[float | None]] = field(default_factory=dict)
    reference: str | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, values: list[float | None]) -> None:
        self.rows[name] = values

    def render(self) -> str:
        lines = [f"### {self.title}", "", f"{interpreter()}; {machine()}; {self.unit}"]
        if self.reference:
            lines[-1] += f" (x = ratio to {self.reference} at the same column)"
        lines.append("")
        header = "| implementation | " + " | ".join(self.columns) + " |"
        lines += [header, "|" + "---|" * (len(self.columns) + 1)]
        ref = self.rows.get(self.reference) if self.reference else None
        for name, values in self.rows.items():
            cells = []
            for i, v in enumerate(values):
                if v is None:
                    cells.append("n/a")
                    continue
                cell = f"{v:.3g}" if v < 100 else f"{v:.0f}"
                if ref is not None and ref[i] and name != self.reference:
                    cell += f" ({v / ref[i]:.2g}x)"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for n in self.notes:
            lines.append(f"\n{n}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "columns": self.columns,
            "rows": self.rows,
            "reference": self.reference,
            "notes": self.notes,
            "interpreter": interpreter(),
            "machine": machine(),
        }


def run_threads(bodies: Sequence[Callable[[], Any]], timeout: float = 600.0) -> float:
    """Run each body in its own thread, all released together; return wall seconds."""
    n = len(bodies)
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def run(body: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            body()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout)
    elapsed = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        raise RuntimeError("benchmark threads did not finish")
    if errors:
        raise errors[0]
    return elapsed


def measure(impl: Impl, threads: int, ops_per_thread: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs, in million operations per second."""
    best = 0.0
    for _ in range(repeat):
        shared = impl.make()
        bodies = [impl.worker(shared, i, ops_per_thread) for i in range(threads)]
        secs = run_threads(bodies)
        best = max(best, threads * ops_per_thread / secs / 1e6)
    return best


def scaling_table(
    title: str,
    impls: Sequence[Impl],
    ops_per_thread: int,
    reference: str | None = None,
    threads: Sequence[int] | None = None,
) -> Table:
    counts = list(threads or thread_counts())
    table = Table(title, columns=[f"{n} thr" for n in counts], reference=reference)
    for impl in impls:
        values: list[float | None] = []
        for n in counts:
            try:
                values.append(measure(impl, n, ops_per_thread))
            except Exception as e:
                print(f"  {impl.name} at {n} threads failed: {e!r}", file=sys.stderr)
                values.append(None)
        table.add(impl.name, values)
        print(f"  measured {impl.name}", file=sys.stderr)
    return table


def per_call_us(fn: Callable[[], Any], number: int = 100_000, repeat: int = 5) -> float:
    """Best-of-``repeat`` microseconds per call of ``fn`` (single thread)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def optional_import(name: str) -> Any | None:
    try:
        module = __import__(name)
        for part in name.split(".")[1:]:
            module = getattr(module, part)
        return module
    except Exception:
        return None


def emit(bench: str, tables: Sequence[Table]) -> None:
    """Print the tables and save them for benches/run_all.py."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    for t in tables:
        print(t.render())
    tag = "ft" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "gil"
    with open(os.path.join(RESULTS_DIR, f"{bench}-{tag}.json"), "w") as f:
        json.dump([t.to_json() for t in tables], f, indent=1)


class LoopThread:
    """An event loop running in its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def pingpong_on(a: LoopThread, b: LoopThread, pinger: Any, ponger: Any) -> float:
    """Run the ``ponger`` coroutine on ``b`` and the ``pinger`` on ``a``, stop both loops, and
    return the median of the samples (seconds) the pinger returns, in µs."""
    fb = b.run(ponger)
    samples = a.run(pinger).result(120)
    fb.result(10)
    a.stop()
    b.stop()
    return median_us(samples)
