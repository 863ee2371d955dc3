"""Stress-test helpers for concurrent code, used by nogilsafe's own suite and offered to yours.

``run_concurrently`` starts every thread at a barrier, so they really overlap, collects every
exception with the thread that raised it, and turns a deadlock into a test failure that names the
stuck threads and shows where they are, instead of a hung CI job.

With pytest, the ``concurrently`` fixture (registered by nogilsafe's pytest plugin) is this
function.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "ConcurrentFailure",
    "StuckThreadsError",
    "is_free_threaded",
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


def is_free_threaded() -> bool:
    """True when this interpreter runs without the GIL right now."""
    check = getattr(sys, "_is_gil_enabled", None)
    return check is not None and not check()


def run_concurrently(
    fn: Callable[[int], R],
    threads: int = 8,
    iterations: int = 1,
    timeout: float = 30.0,
    *,
    name: str = "nogilsafe-worker",
) -> list[list[R]]:
    """Run ``fn(thread_index)`` ``iterations`` times in each of ``threads`` threads at once.

    All threads wait at a barrier and start together. Returns, per thread, the list of what ``fn``
    returned. Raises ``ConcurrentFailure`` (an ``ExceptionGroup``) holding every exception, each
    annotated with the thread that raised it, or ``StuckThreadsError`` naming the threads still
    running after ``timeout`` seconds, with their current stacks. Stuck threads are daemons, so
    they cannot keep the process alive.
    """
    if threads < 1:
        raise ValueError("threads must be at least 1")
    if iterations < 0:
        raise ValueError("iterations must be non-negative")
    if timeout <= 0:
        raise ValueError("timeout must be positive")

    barrier = threading.Barrier(threads)
    results: list[list[R]] = [[] for _ in range(threads)]
    errors: list[tuple[str, BaseException]] = []
    errors_lock = threading.Lock()

    def worker(index: int) -> None:
        out = results[index]
        try:
            barrier.wait(timeout)
            for _ in range(iterations):
                out.append(fn(index))
        except threading.BrokenBarrierError:
            return  # another thread failed before the start; its error is the one to report
        except BaseException as exc:
            with errors_lock:
                errors.append((threading.current_thread().name, exc))
            barrier.abort()

    workers = [
        threading.Thread(target=worker, args=(i,), name=f"{name}-{i}", daemon=True)
        for i in range(threads)
    ]
    deadline = time.monotonic() + timeout
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()))

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
        raise StuckThreadsError(
            f"{len(stuck)} of {threads} threads still running after {timeout}s "
            f"(deadlock?): {', '.join(names)}\n" + "".join(where),
            names,
        )
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
