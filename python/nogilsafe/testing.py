"""Stress-test helpers for concurrent code, used by nogilsafe's own suite and offered to yours.

``run_concurrently`` starts every thread at a barrier, so they really overlap, collects every
exception with the thread that raised it, and turns a deadlock into a test failure that names the
stuck threads and shows where they are, instead of a hung CI job.

With pytest, the ``concurrently`` fixture (registered by nogilsafe's pytest plugin) is this
function.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "ConcurrentFailure",
    "LockWait",
    "StuckThreadsError",
    "find_deadlocks",
    "is_free_threaded",
    "lock_waits",
    "run_concurrently",
]

R = TypeVar("R")

if sys.version_info >= (3, 11):
    _GroupBase: Any = ExceptionGroup  # noqa: F821 - builtin since 3.11
else:  # pragma: no cover - 3.10

    class _GroupBase(Exception):
        def __init__(self, message: str, exceptions: Sequence[BaseException]) -> None:
            super().__init__(message, tuple(exceptions))
            self.message = message
            self.exceptions = tuple(exceptions)


class ConcurrentFailure(_GroupBase):  # type: ignore[misc]
    """One or more worker threads raised; ``.exceptions`` holds them, each noted with its thread."""

    def derive(self, excs: Sequence[Exception]) -> ConcurrentFailure:  # keeps the type on split()
        return ConcurrentFailure(self.message, excs)


class StuckThreadsError(AssertionError, TimeoutError):
    """Threads were still running when the timeout expired: probably a deadlock or livelock."""

    def __init__(self, message: str, stuck: Sequence[str]) -> None:
        super().__init__(message)
        self.stuck = tuple(stuck)
        # The nogilsafe lock waits when it was raised, and the wait-for cycles among them.
        self.lock_waits: tuple[LockWait, ...] = ()
        self.deadlocks: tuple[tuple[LockWait, ...], ...] = ()


class LockWait(NamedTuple):
    """A thread blocked on a nogilsafe primitive right now (see ``lock_waits``)."""

    thread_id: int
    thread: str  # "thread 'worker-1' (id ...)"
    waits_for: str  # "Lock 'db' (acquire)", "RWLock (write)", "Event 'ready' (wait)"
    holders: tuple[tuple[int, str], ...]  # (thread id, description) of each holder; () if none
    uid: int  # nogilsafe's own thread id (never reused), for matching holders to waiters
    holder_uids: tuple[int, ...]


def lock_waits() -> list[LockWait]:
    """Every thread blocked right now in a nogilsafe ``Lock``/``RLock``/``RWLock``/``Semaphore``/
    ``Event``/``CountDownLatch`` wait, with what it waits for and who holds that (locks only:
    events, latches and semaphores have no owner)."""
    from nogilsafe._core import _lock_waits

    return [
        LockWait(
            ident,
            desc,
            what,
            tuple((h_ident, h_desc) for _, h_ident, h_desc in holders),
            uid,
            tuple(h_uid for h_uid, _, _ in holders),
        )
        for uid, ident, desc, what, holders in _lock_waits()
    ]


def find_deadlocks(waits: Sequence[LockWait]) -> list[tuple[LockWait, ...]]:
    """The cycles of the wait-for graph ``waits`` (thread -> holder of what it waits for): each
    is a deadlock, as a tuple of the waits around it, starting from the lowest thread id."""
    by_uid = {w.uid: w for w in waits}
    cycles: list[tuple[LockWait, ...]] = []
    seen: set[tuple[int, ...]] = set()

    def visit(path: list[int]) -> None:
        for nxt in by_uid[path[-1]].holder_uids:
            if nxt in path:
                cycle = path[path.index(nxt) :]
                start = cycle.index(min(cycle))
                key = tuple(cycle[start:] + cycle[:start])
                if key not in seen:
                    seen.add(key)
                    cycles.append(tuple(by_uid[u] for u in key))
            elif nxt in by_uid and len(path) < len(by_uid):
                visit([*path, nxt])

    for uid in sorted(by_uid):
        visit([uid])
    return cycles


def _describe_waits(
    stuck_idents: set[int],
) -> tuple[str, tuple[LockWait, ...], tuple[tuple[LockWait, ...], ...]]:
    try:
        waits = lock_waits()
    except Exception:  # the report must not hide the stuck threads it is about
        return "", (), ()
    deadlocks = tuple(find_deadlocks(waits))
    mine = [w for w in waits if w.thread_id in stuck_idents]
    lines = []
    for w in mine:
        held = ", ".join(d for _, d in w.holders) if w.holders else "nobody in particular"
        lines.append(f"  {w.thread} waits for {w.waits_for}, held by {held}")
    for cycle in deadlocks:
        steps = " -> ".join(f"{w.thread} waits for {w.waits_for}" for w in cycle)
        lines.append(f"  DEADLOCK: {steps} -> back to {cycle[0].thread}")
    text = "nogilsafe lock waits (wait-for graph):\n" + "\n".join(lines) + "\n" if lines else ""
    return text, tuple(waits), deadlocks


def is_free_threaded() -> bool:
    """True when this interpreter runs without the GIL right now."""
    check = getattr(sys, "_is_gil_enabled", None)
    return check is not None and not check()


def _count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}")
    return value


def _timeout(timeout: object) -> float | None:
    """Seconds to wait, or None for no limit (``None``, or anything beyond what the threading
    module can wait for: ``math.inf``, ``1e300``)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    t = float(timeout)
    if math.isnan(t) or t <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return None if t >= threading.TIMEOUT_MAX else t


def run_concurrently(
    fn: Callable[[int], R],
    threads: int = 8,
    iterations: int = 1,
    timeout: float | None = 30.0,
    *,
    name: str = "nogilsafe-worker",
) -> list[list[R]]:
    """Run ``fn(thread_index)`` ``iterations`` times in each of ``threads`` threads at once.

    All threads wait at a barrier and start together. Returns, per thread, the list of what ``fn``
    returned. Raises ``ConcurrentFailure`` (an ``ExceptionGroup``) holding every exception, each
    annotated with the thread that raised it, or ``StuckThreadsError`` naming the threads still
    running after ``timeout`` seconds, with their current stacks. Stuck threads are daemons, so
    they cannot keep the process alive. ``timeout=None`` (or ``math.inf``, or any value beyond
    ``threading.TIMEOUT_MAX``) waits without a limit; NaN, zero or negative is ``ValueError``,
    raised before any thread starts.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    threads = _count(threads, "threads", 1)
    iterations = _count(iterations, "iterations", 0)
    limit = _timeout(timeout)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")

    barrier = threading.Barrier(threads)
    results: list[list[R]] = []  # one list per thread, added as each starts
    errors: list[tuple[str, BaseException]] = []
    errors_lock = threading.Lock()

    def worker(index: int) -> None:
        out = results[index]
        try:
            barrier.wait(limit)
            for _ in range(iterations):
                out.append(fn(index))
        except threading.BrokenBarrierError:
            return  # another thread failed before the start; its error is the one to report
        except BaseException as exc:
            with errors_lock:
                errors.append((threading.current_thread().name, exc))
            barrier.abort()

    workers: list[threading.Thread] = []
    deadline = None if limit is None else time.monotonic() + limit
    try:
        for i in range(threads):
            results.append([])
            t = threading.Thread(target=worker, args=(i,), name=f"{name}-{i}", daemon=True)
            t.start()
            workers.append(t)
    except BaseException:
        # Could not start them all (too many threads?): release those waiting at the barrier.
        barrier.abort()
        for t in workers:
            t.join()
        raise
    for t in workers:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    stuck = [t for t in workers if t.is_alive()]
    if stuck:
        barrier.abort()
        frames = sys._current_frames()
        where = []
        for t in stuck:
            frame = frames.get(t.ident) if t.ident is not None else None
            stack = (
                "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame)\n"
            )
            where.append(f"--- {t.name} ---\n{stack}")
        names = [t.name for t in stuck]
        graph, waits, deadlocks = _describe_waits({t.ident for t in stuck if t.ident is not None})
        err = StuckThreadsError(
            f"{len(stuck)} of {threads} threads still running after {timeout}s "
            f"(deadlock?): {', '.join(names)}\n" + graph + "".join(where),
            names,
        )
        err.lock_waits, err.deadlocks = waits, deadlocks
        raise err
    if errors:
        excs = []
        for thread_name, exc in errors:
            if isinstance(exc, Exception):
                if hasattr(exc, "add_note"):
                    exc.add_note(f"raised in thread {thread_name}")
                excs.append(exc)
            else:  # KeyboardInterrupt, SystemExit: not groupable, wrap them
                excs.append(RuntimeError(f"{thread_name} raised {exc!r}"))
        summary = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in errors[:5])
        raise ConcurrentFailure(f"{len(errors)} of {threads} threads raised ({summary})", excs)
    return results
