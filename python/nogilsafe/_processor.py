"""SequentialProcessor: one worker runs ``process(item)`` for every submitted item, strictly in
order, one at a time, fed by a ``nogilsafe.Channel``.

Where the worker runs:

- a plain ``process``: on the processor's own daemon thread, which blocks in ``Channel.get``;
- an ``async def`` ``process``: on the processor's own event loop, in a daemon thread of its own
  (``asyncio.run``), awaiting ``Channel.get_async``;
- an ``async def`` ``process`` with ``loop=``: as a task on that loop, which the caller runs, so
  ``process`` may use what belongs to that loop (an HTTP session, a database pool).

Submitting puts an entry on the channel: the item and its submitter's future, a
``concurrent.futures.Future`` (``submit``) or a future of the submitter's loop (``submit_async``),
which the worker completes on that loop with ``call_soon_threadsafe``. A bounded channel makes
submitters wait for room. ``stop()`` closes the channel, so nothing new gets in and
the worker's get raises ``ChannelClosed`` once it has taken everything before the close: no
sentinel item. ``drain=False`` takes the queued entries out and cancels their futures.

What could deadlock is refused with ``ReentrancyError`` instead: a blocking ``stop()`` (or a
``submit()`` into a full queue) on the thread the worker needs — its own thread, or the thread of
the loop it runs on — and ``await stop_async()`` from inside ``process``.

A loop given with ``loop=`` may stop or close with the worker on it. Closing it frees a timer
holding a small watch object (the loop's own timer queue is its only holder), and freeing the
watch ends the processor: the queued items and the one in progress are cancelled, as for
``AsyncOnceCell`` (see ``_once.py``). ``stop()`` does not wait for a loop that is not running (it
cancels what is queued and returns False); one that stops while ``stop()`` waits may run again,
so ``stop()`` goes on waiting, up to its timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from nogilsafe._core import (
    AtomicInt,
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    Event,
    NogilsafeError,
    ReentrancyError,
)
from nogilsafe._once import _deadline

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover - 3.10
    from typing_extensions import Self

__all__ = ["ProcessorMetrics", "ProcessorStopped", "SequentialProcessor"]

T = TypeVar("T")
R = TypeVar("R")

_log = logging.getLogger("nogilsafe")
_ids = AtomicInt(0)

# The loop-closed watch's timer (see the module doc): a day-long select timeout at most.
_FOREVER = 1e9
# How much of an item's repr a warning shows.
_REPR_LIMIT = 200


class ProcessorStopped(NogilsafeError, RuntimeError):
    """``submit``/``submit_async`` on a processor that was stopped (or whose event loop ended
    it): as ``ThreadPoolExecutor.submit`` after ``shutdown``, a ``RuntimeError``."""


@dataclass(frozen=True)
class ProcessorMetrics:
    """``SequentialProcessor.metrics()``: counts since the processor was made.

    ``submitted`` items were accepted; each is then ``queued``, in progress, ``processed``
    (``process`` returned), ``failed`` (it raised) or ``cancelled`` (its future was cancelled
    before it started, ``stop(drain=False)`` dropped it, or the worker was ended under it).
    ``mean_processing_time`` is in seconds over processed and failed items (0.0 before any).
    """

    submitted: int
    processed: int
    failed: int
    queued: int
    mean_processing_time: float
    cancelled: int


class _Entry(Generic[T, R]):
    """A submitted item and its submitter's future; the worker calls ``begin`` when it takes
    the entry (False: skip it, its future was cancelled), then ``finish``, or ``cancel`` /
    ``abort`` when it is dropped before / while it runs."""

    __slots__ = ("item",)

    def __init__(self, item: T) -> None:
        self.item = item

    def begin(self) -> bool:
        raise NotImplementedError

    def finish(self, ok: bool, value: Any, retrieved: bool) -> bool:
        """Deliver the outcome; False if nobody holds the future any more."""
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def abort(self, message: str) -> bool:
        raise NotImplementedError


class _ThreadEntry(_Entry[T, R]):
    """``submit``: a ``concurrent.futures.Future``, driven as an executor drives it."""

    __slots__ = ("future",)

    def __init__(self, item: T) -> None:
        self.item = item
        self.future: concurrent.futures.Future[R] = concurrent.futures.Future()

    def begin(self) -> bool:
        return self.future.set_running_or_notify_cancel()

    def finish(self, ok: bool, value: Any, retrieved: bool) -> bool:
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)
        return True

    def cancel(self) -> None:
        self.future.cancel()
        # As an executor must: this wakes concurrent.futures.wait() and as_completed().
        self.future.set_running_or_notify_cancel()

    def abort(self, message: str) -> bool:
        try:
            self.future.set_exception(concurrent.futures.CancelledError(message))
        except concurrent.futures.InvalidStateError:  # the worker failed after settling it
            return False
        return True


class _LoopEntry(_Entry[T, R]):
    """``submit_async``: a future of the submitter's loop, completed on that loop (the worker
    hands it over with ``call_soon_threadsafe``; asyncio futures are not thread-safe).

    The entry holds the future weakly. A submitter that drops it (fire and forget, as the seeds'
    ``enqueue``) costs its loop no wake-up when the item is done: there is nobody to tell. A
    failure nobody can see any more is logged instead (``_settle``), as asyncio logs an exception
    never retrieved from a future."""

    __slots__ = ("future", "loop")

    def __init__(self, item: T, loop: asyncio.AbstractEventLoop, future: asyncio.Future[R]):
        self.item = item
        self.loop = loop
        self.future = weakref.ref(future)

    def begin(self) -> bool:
        # Read from the worker's thread: a cancellation that lands later is honoured on the
        # loop (``_complete`` finds the future done) but the item is processed all the same.
        fut = self.future()
        return fut is None or not fut.cancelled()

    def _call(self, fn: Callable[..., None], *args: Any) -> bool:
        """Run ``fn(future, *args)`` on the future's loop; False if nobody holds the future."""
        fut = self.future()
        if fut is None:
            return False
        try:
            self.loop.call_soon_threadsafe(fn, fut, *args)
        except RuntimeError:  # the submitter's loop is closed: nobody is left to await it
            pass
        return True

    def finish(self, ok: bool, value: Any, retrieved: bool) -> bool:
        return self._call(_complete, ok, value, retrieved)

    def cancel(self) -> None:
        self._call(_cancel, None)

    def abort(self, message: str) -> bool:
        self._call(_cancel, message)
        return True


def _complete(fut: asyncio.Future[Any], ok: bool, value: Any, retrieved: bool) -> None:
    """On the future's loop: ``process``'s outcome, as an asyncio future can hold it."""
    if fut.done():  # cancelled by its holder meanwhile
        return
    if ok:
        fut.set_result(value)
    elif isinstance(value, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        fut.cancel(str(value) or None)
    elif type(value) is StopIteration:  # asyncio futures refuse it (it would end a generator)
        fut.set_exception(RuntimeError(f"process raised StopIteration: {value}"))
    else:
        fut.set_exception(value)
        if retrieved:  # on_error had it: no "exception was never retrieved" log
            fut.exception()


def _cancel(fut: asyncio.Future[Any], message: str | None) -> None:
    fut.cancel(message)


def _describe(item: object) -> str:
    """``repr(item)`` for a log line: truncated, and never raising."""
    try:
        text = repr(item)
    except Exception as exc:
        text = f"<{type(item).__qualname__} object; repr() raised {type(exc).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _is_coroutine_function(fn: object) -> bool:
    # inspect sees through functools.partial; an object with ``async def __call__`` counts too.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method itself is what is asked about
    )


def _cancel_requested(task: asyncio.Task[Any]) -> bool | None:
    """Whether the worker task itself was cancelled (rather than ``process`` raising
    ``CancelledError`` of its own accord); None on Python 3.10, which cannot tell. There any
    ``CancelledError`` from ``process`` ends the worker: carrying on under a cancelled task
    would hang the loop's shutdown (``asyncio.run`` waits for the tasks it cancels)."""
    cancelling = getattr(task, "cancelling", None)
    return None if cancelling is None else cancelling() > 0


class _LoopClosedWatch:
    """Ends its processor when freed (see the module doc); a no-op once the worker ended."""

    __slots__ = ("_processor",)

    def __init__(self, processor: SequentialProcessor[Any, Any]) -> None:
        self._processor = processor

    def __del__(self) -> None:
        self._processor._end(completed=False, why="its event loop was closed")


def _never_called(_watch: _LoopClosedWatch) -> None:  # pragma: no cover - 31 years away
    pass


class SequentialProcessor(Generic[T, R]):
    """Runs ``process(item)`` for each submitted item, in submission order, one at a time.

    ``process`` is a plain function (run on the processor's own thread) or an ``async def``
    (run on the processor's own event loop thread, or, with ``loop=``, as a task on that loop,
    which the caller runs). Whether it is async is decided once, by
    ``inspect.iscoroutinefunction`` (``functools.partial`` of an ``async def`` and objects with
    an ``async def __call__`` count); a plain function that returns an awaitable fails that item
    with ``TypeError``, since there is no loop on its thread to await it.

    ``submit(item)`` (any thread) and ``await submit_async(item)`` (any loop) queue the item and
    return a future of ``process(item)``'s result, which may be ignored. Items may be submitted
    before ``start()``; they wait for it. With ``maxsize`` > 0 (0: unbounded) submitters wait for
    room. An exception from ``process`` goes to that item's future and to ``on_error(item,
    exc)``, is counted in ``metrics()``, and the worker goes on with the next item.

    ``stop(timeout=None, drain=True)`` refuses new items (``ProcessorStopped``), lets the worker
    finish the queued ones (``drain=False``: cancels them; the item in progress still finishes)
    and returns whether the worker ended within ``timeout``. Use it as a context manager
    (``with`` / ``async with``) to start and stop it.
    """

    @overload
    def __init__(
        self,
        process: Callable[[T], Awaitable[R]],
        maxsize: int = 100,
        on_error: Callable[[T, BaseException], object] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        name: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        process: Callable[[T], R],
        maxsize: int = 100,
        on_error: Callable[[T, BaseException], object] | None = None,
        *,
        name: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        process: Callable[[T], Any],
        maxsize: int = 100,
        on_error: Callable[[T, BaseException], object] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(process):
            raise TypeError(f"process must be callable, not {type(process).__name__}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0 (0 for unbounded), not {maxsize}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable or None, not {type(on_error).__name__}")
        if on_error is not None and _is_coroutine_function(on_error):
            raise TypeError("on_error must be a plain function: it is called, not awaited")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self._is_async = _is_coroutine_function(process)
        if loop is not None:
            if not isinstance(loop, asyncio.AbstractEventLoop):
                raise TypeError(f"loop must be an asyncio event loop, not {type(loop).__name__}")
            if not self._is_async:
                raise TypeError(
                    "loop= is for an async def process (run as a task on that loop); a plain "
                    "process runs on the processor's own thread"
                )
        if name is None:
            what = getattr(process, "__qualname__", type(process).__qualname__)
            name = f"SequentialProcessor-{_ids.increment()} ({what})"
        self._name = name
        self._process = process
        self._on_error = on_error
        self._loop = loop
        self._channel: Channel[_Entry[T, R]] = Channel(maxsize)
        self._lock = threading.Lock()  # the lifecycle flags and the counters below
        self._started = False
        self._stopping = False
        self._cancel_queued = False  # stop(drain=False) was called
        self._completed = False  # the worker took everything and ended normally
        self._ended = Event(name=f"{name}: worker ended")
        self._exited = Event(name=f"{name}: worker thread exited")  # its thread, if it has one
        self._end_reason = ""
        self._thread: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = loop
        self._task: asyncio.Task[None] | None = None
        self._handoff: concurrent.futures.Future[None] | None = None
        self._current: _Entry[T, R] | None = None
        self._submitted = 0
        self._processed = 0
        self._failed = 0
        self._cancelled = 0
        self._busy = 0.0

    # --- introspection -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def maxsize(self) -> int:
        return self._channel.maxsize

    @property
    def in_progress(self) -> T | None:
        """The item ``process`` is working on now, or None."""
        entry = self._current
        return None if entry is None else entry.item

    def metrics(self) -> ProcessorMetrics:
        with self._lock:
            submitted, processed, failed = self._submitted, self._processed, self._failed
            cancelled, busy = self._cancelled, self._busy
        done = processed + failed
        return ProcessorMetrics(
            submitted=submitted,
            processed=processed,
            failed=failed,
            queued=self._channel.qsize(),
            mean_processing_time=busy / done if done else 0.0,
            cancelled=cancelled,
        )

    def __repr__(self) -> str:
        if not self._started:
            state = "stopped" if self._stopping else "not started"
        elif self._ended.is_set():
            state = "stopped"
        else:
            state = "stopping" if self._stopping else "running"
        return f"<SequentialProcessor {self._name!r} {state}, {self._channel.qsize()} queued>"

    # --- submitting --------------------------------------------------------------------------

    def submit(self, item: T, timeout: float | None = None) -> concurrent.futures.Future[R]:
        """Queue ``item``; a future of ``process(item)``'s result. Waits up to ``timeout``
        seconds for room (``LockTimeoutError``); ``ProcessorStopped`` once stopped."""
        _deadline(timeout)
        entry: _ThreadEntry[T, R] = _ThreadEntry(item)
        self._count_submitted(1)
        try:
            if self._on_worker_thread():
                instead = "another thread" if self._thread_sync_mode() else "submit_async()"
                self._put_nowait(entry, "submit()", instead)
            else:
                self._channel.put(entry, timeout=timeout)
        except BaseException as exc:
            self._count_submitted(-1)
            if isinstance(exc, ChannelClosed):
                raise self._stopped_error() from None
            raise
        return entry.future

    async def submit_async(self, item: T, timeout: float | None = None) -> asyncio.Future[R]:
        """Queue ``item``, awaiting room for up to ``timeout`` seconds; an asyncio future of the
        running loop for ``process(item)``'s result (``fut = await p.submit_async(x)``, then
        ``await fut``). Cancelling that future before the item starts skips the item."""
        loop = asyncio.get_running_loop()
        _deadline(timeout)
        future: asyncio.Future[R] = loop.create_future()
        entry: _LoopEntry[T, R] = _LoopEntry(item, loop, future)
        self._count_submitted(1)
        try:
            if self._task is not None and asyncio.current_task() is self._task:
                self._put_nowait(entry, "submit_async() from inside process", "another task")
            else:
                await self._channel.put_async(entry, timeout)
        except BaseException as exc:
            self._count_submitted(-1)
            if isinstance(exc, ChannelClosed):
                raise self._stopped_error() from None
            raise
        return future

    def _put_nowait(self, entry: _Entry[T, R], what: str, instead: str) -> None:
        try:
            self._channel.put_nowait(entry)
        except ChannelFull:
            raise ReentrancyError(
                f"{what} on {self._name!r}'s own worker thread (or event loop), with its queue "
                f"full: waiting for room would wait for the worker, which is waiting for this "
                f"call; use {instead}, or a larger maxsize"
            ) from None

    def _count_submitted(self, n: int) -> None:
        with self._lock:
            self._submitted += n

    def _stopped_error(self) -> ProcessorStopped:
        why = f" ({self._end_reason})" if self._end_reason else ""
        return ProcessorStopped(f"SequentialProcessor {self._name!r} is stopped{why}")

    def _thread_sync_mode(self) -> bool:
        return self._loop is None and not self._is_async

    def _on_worker_thread(self) -> bool:
        """Whether blocking here would block the worker: on its own thread, or (``loop=``) on
        the thread running its loop."""
        if self._loop is not None:
            return asyncio._get_running_loop() is self._loop
        return self._worker_ident == threading.get_ident()

    # --- starting ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the worker (once; ``RuntimeError`` if already started or stopped)."""
        with self._lock:
            if self._started or self._stopping:
                raise RuntimeError(
                    f"SequentialProcessor {self._name!r} was already "
                    f"{'started' if self._started else 'stopped'}; it can be started only once"
                )
            self._started = True
        if self._loop is None:
            target = self._thread_async if self._is_async else self._thread_sync
            thread = threading.Thread(target=target, name=self._name, daemon=True)
            self._thread = thread
            thread.start()
            self._worker_ident = thread.ident
            return self
        coro = self._work_async()
        try:
            if asyncio._get_running_loop() is self._loop:
                self._task = self._loop.create_task(coro, name=self._name)
            else:  # the handoff holds the task until it runs (the loop holds tasks weakly)
                self._handoff = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            with self._lock:
                self._started = False
            raise RuntimeError(
                f"SequentialProcessor {self._name!r}: cannot start, its event loop is closed"
            ) from None
        return self

    # --- the worker --------------------------------------------------------------------------

    def _take(self, entry: _Entry[T, R]) -> bool:
        """Make ``entry`` the one in progress; False (and it is counted as cancelled) if its
        future was cancelled or ``stop(drain=False)`` was called."""
        if self._cancel_queued:
            entry.cancel()
        elif entry.begin():
            self._current = entry
            return True
        with self._lock:
            self._cancelled += 1
        return False

    def _settle(self, entry: _Entry[T, R], ok: bool, value: Any, elapsed: float) -> None:
        with self._lock:
            if ok:
                self._processed += 1
            else:
                self._failed += 1
            self._busy += elapsed
        if not ok and self._on_error is not None:
            try:
                self._on_error(entry.item, value)
            except BaseException:
                _log.exception(
                    "SequentialProcessor %r: on_error raised while handling %s for item %s",
                    self._name,
                    type(value).__name__,
                    _describe(entry.item),
                )
        delivered = entry.finish(ok, value, self._on_error is not None)
        if not delivered and not ok and self._on_error is None:
            _log.error(
                "SequentialProcessor %r: process raised %s for item %s, whose future was "
                "dropped: exception never retrieved",
                self._name,
                type(value).__name__,
                _describe(entry.item),
                exc_info=value,
            )
        self._current = None

    def _call_sync(self, item: T) -> Any:
        result = self._process(item)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited, on purpose: no warning about it
            raise TypeError(
                f"process returned an awaitable ({type(result).__name__}), but it is not an "
                "async def function, so it runs on the processor's own thread where no event "
                "loop awaits it; declare it async def (inspect.iscoroutinefunction(process) "
                "must be true)"
            )
        return result

    def _thread_sync(self) -> None:
        completed = False
        try:
            get = self._channel.local().get
            call = self._call_sync
            while True:
                try:
                    entry = get()
                except ChannelClosed:
                    break
                if self._take(entry):
                    start = time.perf_counter()
                    try:
                        result = call(entry.item)
                    except BaseException as exc:
                        self._settle(entry, False, exc, time.perf_counter() - start)
                    else:
                        self._settle(entry, True, result, time.perf_counter() - start)
                        del result
                # Nothing of an item outlives its turn in this frame: its future (and what the
                # result refers to) are freed when its submitter drops them, not when the
                # worker thread exits.
                del entry
            completed = True
        except BaseException:
            _log.exception("SequentialProcessor %r: the worker failed", self._name)
        finally:
            self._end(completed, "its worker failed")
            self._exited.set()

    def _thread_async(self) -> None:
        try:
            asyncio.run(self._work_async())
        except BaseException:
            _log.exception("SequentialProcessor %r: the worker's event loop failed", self._name)
        finally:
            self._end(False, "its worker's event loop failed")
            self._exited.set()

    async def _work_async(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._task, self._worker_loop = task, loop
        timer = None
        if self._loop is not None:  # only the loop holds the timer (module doc)
            timer = weakref.ref(loop.call_later(_FOREVER, _never_called, _LoopClosedWatch(self)))
        completed = False
        why = "its worker task was cancelled"
        try:
            get = self._channel.local().get_async
            process = self._process
            while True:
                try:
                    entry = await get()
                except ChannelClosed:
                    break
                if not self._take(entry):
                    del entry
                    continue
                start = time.perf_counter()
                try:
                    result = await process(entry.item)
                except GeneratorExit:  # this coroutine is being closed, not process failing
                    raise
                except asyncio.CancelledError as exc:
                    if _cancel_requested(task) is not False:
                        self._abort_current(why)
                        raise
                    self._settle(entry, False, exc, time.perf_counter() - start)
                except BaseException as exc:
                    self._settle(entry, False, exc, time.perf_counter() - start)
                else:
                    self._settle(entry, True, result, time.perf_counter() - start)
                    del result
                del entry  # as in _thread_sync
                if _cancel_requested(task):  # process swallowed the worker's cancellation
                    raise asyncio.CancelledError
            completed = True
        except GeneratorExit:  # closed by the collector: its loop was closed under it
            why = "its event loop was closed"
            raise
        finally:
            self._end(completed, why)
            handle = None if timer is None else timer()
            if handle is not None:  # frees the watch, which finds the worker ended
                handle.cancel()

    def _abort_current(self, why: str) -> None:
        entry, self._current = self._current, None
        if entry is None:
            return
        if entry.abort(f"{self._name!r} ended in process: {why}"):
            with self._lock:
                self._cancelled += 1

    def _end(self, completed: bool, why: str) -> None:
        """The worker will run no more: normally (``completed``, everything taken), or because
        it failed, its task was cancelled or its loop closed — then the processor stops and
        what is queued and in progress is cancelled. Idempotent."""
        with self._lock:
            if self._ended.is_set():
                return
            self._completed = completed
            if not completed:
                self._stopping = True
                self._end_reason = why
        if not completed:
            self._channel.close()
            self._cancel_queued_items()
            self._abort_current(why)
        self._ended.set()
        if self._loop is not None:  # no thread of its own to wait for
            self._exited.set()

    def _cancel_queued_items(self) -> None:
        """Take every queued entry out of the channel and cancel its future."""
        n = 0
        while True:
            try:
                entry = self._channel.get_nowait()
            except (ChannelEmpty, ChannelClosed):
                break
            entry.cancel()
            n += 1
        if n:
            with self._lock:
                self._cancelled += n

    # --- stopping ----------------------------------------------------------------------------

    def _close(self, drain: bool) -> bool:
        """Refuse new items and (``drain=False``) cancel the queued ones; whether the worker
        was ever started (if not, the processor is already stopped)."""
        with self._lock:
            self._stopping = True
            if not drain:
                self._cancel_queued = True
            started = self._started
        self._channel.close()
        if not drain or not started:
            self._cancel_queued_items()
        if not started:
            with self._lock:
                self._completed = True
            self._ended.set()
            self._exited.set()
        return started

    def _loop_not_running(self) -> bool:
        """``loop=`` mode: the worker's loop is not running, so waiting for it could be forever;
        what is queued is cancelled and the caller does not wait."""
        loop = self._loop
        if loop is None or loop.is_running() or self._ended.is_set():
            return False
        self._cancel_queued_items()
        _log.warning(
            "SequentialProcessor %r: stop() could not wait: its event loop is %s; queued items "
            "were cancelled%s",
            self._name,
            "closed" if loop.is_closed() else "not running",
            "" if self._current is None else f", item in progress: {_describe(self.in_progress)}",
        )
        return True

    def _stop_check(self, sync: bool) -> None:
        if not self._started:
            return
        if sync and self._on_worker_thread():
            if self._loop is not None:
                where = "on the thread running its event loop would block the loop it runs on"
                instead = "await stop_async(...) (or async with) there"
            elif self._is_async:
                where = "on its own event loop's thread would block the loop it runs on"
                instead = "await stop_async(...) from another task, or stop() from another thread"
            else:
                where = "from inside process would wait for itself"
                instead = "stop() from another thread"
            raise ReentrancyError(
                f"SequentialProcessor {self._name!r}: a blocking stop() {where}; use {instead}"
            )
        if not sync and self._task is not None and asyncio.current_task() is self._task:
            raise ReentrancyError(
                f"SequentialProcessor {self._name!r}: stop_async() from inside process would "
                "wait for itself; call it from another task"
            )

    def _finished(self, ended: bool, timeout: float | None) -> bool:
        if not ended:
            item = self._current
            _log.warning(
                "SequentialProcessor %r: stop(timeout=%s) timed out; %s",
                self._name,
                timeout,
                "no item in progress (the worker's event loop is still shutting down)"
                if item is None
                else f"item in progress: {_describe(item.item)}",
            )
            return False
        return self._completed

    def stop(self, timeout: float | None = None, drain: bool = True) -> bool:
        """Refuse new items, finish (``drain=False``: cancel) the queued ones and wait up to
        ``timeout`` seconds for the worker to end. True if it ended having taken every item;
        False on timeout (logged with the item in progress, see ``in_progress``), or when the
        worker could not finish (its ``loop=`` loop is not running, or was closed). May be
        called again, to wait longer or to cancel what is left with ``drain=False``."""
        deadline = _deadline(timeout)
        self._stop_check(sync=True)
        if not self._close(drain):
            return True
        if self._loop_not_running():
            return False
        return self._finished(self._exited.wait(timeout), timeout) and self._join(deadline)

    async def stop_async(self, timeout: float | None = None, drain: bool = True) -> bool:
        """``stop`` for a coroutine, from any loop (the ``loop=`` loop included): awaits the
        worker's end without blocking the loop."""
        _deadline(timeout)
        self._stop_check(sync=False)
        if not self._close(drain):
            return True
        if self._loop_not_running():
            return False
        # On the worker's own event loop thread, that loop cannot exit while this task awaits.
        on_own_loop = self._loop is None and asyncio.get_running_loop() is self._worker_loop
        event = self._ended if on_own_loop else self._exited
        return self._finished(await event.wait_async(timeout), timeout)

    def _join(self, deadline: float | None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()
