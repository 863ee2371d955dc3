"""AsyncOnceCell, singletons and run_once: thin glue over the Rust ``OnceCell`` state machine.

The state (empty, initialising, ready), the attempt that owns an initialisation, its outcome and
the waiters all live in Rust. This module only does what must happen in Python: awaiting the
factory in the owner's task, and giving every other caller a future of its *own* running loop to
await. The Rust side completes those futures with ``loop.call_soon_threadsafe`` when the attempt
ends, so no loop is ever blocked and nobody polls.

Cancellation: if the task running the factory is cancelled (or interrupted by any
``BaseException`` that is not an ``Exception``), the attempt is *abandoned*: the cell stays empty
and every waiter wakes up and retries, so one of them becomes the next initialiser. Setting
``CancelledError`` on the waiters instead would look to them as if they had been cancelled.

A closed loop: if the event loop running the factory is closed while the factory is pending,
its task will never run again. The owner schedules a far-future timer on its loop whose only
reference to a small watch object is the loop's own timer queue; closing the loop drops the queue,
the watch is freed at once (no garbage collection needed) and abandons the attempt, so one waiter
takes over. The factory's normal end ends the attempt first and then cancels the timer.

Re-entrance: the attempt ids whose factory runs in the current context are kept in a context
variable. Tasks inherit their creator's context, so a factory that awaits ``get_or_init`` of its
own cell, directly or through a task it created, gets ``ReentrancyError`` instead of waiting for
itself forever; other tasks, on the same thread or not, simply wait.

Reference cycles: an attempt (a Rust object the collector cannot see into) holds the factory's
exception once it failed, and that exception's traceback holds every frame it passed through. So
no frame here keeps an attempt in a local when an exception it may hold passes through.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from nogilsafe._core import LockTimeoutError, OnceCell, ReentrancyError

if sys.version_info >= (3, 11):
    from typing import ParamSpec, Self
else:  # pragma: no cover - 3.10
    from typing_extensions import ParamSpec, Self

__all__ = [
    "AsyncOnceCell",
    "AsyncSingleton",
    "AsyncSingletonFunction",
    "SingletonFunction",
    "async_singleton",
    "run_once",
    "singleton",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")
R = TypeVar("R")

# The protocol's codes, defined once, in Rust (src/once.rs).
_BEGIN_READY: int = OnceCell._BEGIN_READY  # (code, value)
_BEGIN_OWNER: int = OnceCell._BEGIN_OWNER  # (code, attempt id): run the factory
_BEGIN_WAIT: int = OnceCell._BEGIN_WAIT  # (code, attempt): wait for another caller's factory
_OUTCOME_READY: int = OnceCell._OUTCOME_READY  # (code, value)
_OUTCOME_FAILED: int = OnceCell._OUTCOME_FAILED  # (code, exception)
_OUTCOME_ABANDONED: int = OnceCell._OUTCOME_ABANDONED  # (code, None): retry

# How far ahead the loop-closed watch's timer is set: never reached in practice (the loop only
# wakes for it once a day, asyncio's longest select timeout).
_FOREVER = 1e9

# Attempt ids whose factory is running in this context (see the module docstring).
_RUNNING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "nogilsafe_once_running", default=frozenset()
)


def _deadline(timeout: float | None) -> float | None:
    """As the Rust side's ``sync::deadline``: the same values are refused with the same words."""
    if timeout is None:
        return None
    if timeout != timeout or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number or None, not {timeout}")
    if timeout > threading.TIMEOUT_MAX:
        raise ValueError(
            f"timeout {timeout} is too large (the limit is threading.TIMEOUT_MAX, "
            f"{threading.TIMEOUT_MAX}); pass None to wait without a limit"
        )
    return time.monotonic() + timeout


_NOT_COPYABLE = (
    "cannot pickle or copy a once-cell: it is shared by identity (the value is computed once "
    "for everyone holding this cell, and waiters and an initialisation in progress belong to "
    "it); share the cell itself, or make a new one"
)


def _lock_timeout(timeout: float | None) -> LockTimeoutError:
    return LockTimeoutError(
        f"AsyncOnceCell.get_or_init: waiting for the initialiser: timed out after {timeout}s"
    )


class AsyncOnceCell(Generic[T]):
    """A value computed once by an async factory, shared by every thread and event loop.

    ``await cell.get_or_init(factory)`` runs ``await factory()`` in the first caller's task;
    every other caller, on any thread and any loop, awaits a future of its own loop that is
    completed when the value is ready. If ``factory`` raises, every caller that waited for that
    attempt gets the exception and the cell stays empty, so a later call retries. If the
    initialising task is cancelled, one of the waiters takes over.
    """

    __slots__ = ("__weakref__", "_cell", "_peek")

    def __init__(self) -> None:
        self._cell: OnceCell[T] = OnceCell()
        # The bound method, so the ready path is one slot read and one native call.
        self._peek = self._cell.get

    async def get_or_init(
        self, factory: Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> T:
        """The value, initialising it with ``await factory()`` if the cell is empty.

        ``timeout`` bounds the time spent waiting for *another* caller's initialisation
        (``LockTimeoutError`` on expiry); a factory run by this caller is not interrupted.
        """
        value = self._peek()
        if value is not None:
            return value
        return await _get_or_init(self._cell, factory, timeout)

    def local(self) -> AsyncOnceCell[T]:
        """A per-thread view sharing this cell (see the package docs on ``.local()``)."""
        view: AsyncOnceCell[T] = AsyncOnceCell.__new__(AsyncOnceCell)
        view._cell = self._cell.local()
        view._peek = view._cell.get
        return view

    def get(self) -> T | None:
        """The value, or ``None`` if the cell is not initialised. Never waits."""
        return self._cell.get()

    def is_initialized(self) -> bool:
        return self._cell.is_initialized()

    def set(self, value: T) -> bool:
        """Store ``value`` if the cell is empty and no initialisation runs; True if stored."""
        return self._cell.set(value)

    def take(self) -> T | None:
        """Empty the cell and return its value (``None`` if it was not initialised)."""
        return self._cell.take()

    def reset(self) -> None:
        """Empty the cell, so the next ``get_or_init`` runs its factory again."""
        self._cell.reset()

    def __repr__(self) -> str:
        return "Async" + repr(self._cell)

    # A copy sharing ``_cell`` would be an alias whose reset() empties this cell: refused, as
    # OnceCell refuses (views included).
    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(_NOT_COPYABLE)

    def __copy__(self) -> AsyncOnceCell[T]:
        raise TypeError(_NOT_COPYABLE)

    def __deepcopy__(self, memo: object) -> AsyncOnceCell[T]:
        raise TypeError(_NOT_COPYABLE)


async def _get_or_init(
    cell: OnceCell[T], factory: Callable[[], Awaitable[T]], timeout: float | None
) -> T:
    deadline = _deadline(timeout)
    while True:
        kind, x = cell._begin()
        if kind == _BEGIN_READY:
            return x  # type: ignore[no-any-return]
        if kind == _BEGIN_OWNER:
            return await _run_factory(cell, x, factory)
        outcome = await _outcome_of(cell, x, deadline, timeout)
        x = None  # the attempt: gone before its exception is raised here (module docstring)
        kind, payload = outcome
        if kind == _OUTCOME_READY:
            return payload  # type: ignore[no-any-return]
        if kind == _OUTCOME_FAILED:
            raise payload
        # Abandoned (the owner was cancelled, or its loop closed): go round; one of the waiters
        # becomes the owner. Attempts abandoned one after another must not keep this caller
        # past its deadline.
        if deadline is not None and time.monotonic() >= deadline:
            raise _lock_timeout(timeout)


class _LoopClosedWatch:
    """Abandons an attempt when freed, which happens when the owner's loop is closed with the
    factory pending (the loop drops the timer holding it) — or after the attempt ended, when it
    is a no-op (see the module docstring)."""

    __slots__ = ("_cell", "_id")

    def __init__(self, cell: OnceCell[Any], attempt_id: int) -> None:
        self._cell = cell
        self._id = attempt_id

    def __del__(self) -> None:
        self._cell._abandon(self._id)


def _never_called(_watch: _LoopClosedWatch) -> None:  # pragma: no cover - 31 years away
    pass


async def _run_factory(
    cell: OnceCell[T], attempt_id: int, factory: Callable[[], Awaitable[T]]
) -> T:
    loop = asyncio.get_running_loop()
    # Only the loop holds the timer (and so the watch): a weak reference lets us cancel it.
    timer = weakref.ref(
        loop.call_later(_FOREVER, _never_called, _LoopClosedWatch(cell, attempt_id))
    )
    token = _RUNNING.set(_RUNNING.get() | {attempt_id})
    try:
        try:
            value = await factory()
        except Exception as exc:
            cell._fail(attempt_id, exc)
            raise
        except BaseException:
            cell._abandon(attempt_id)
            raise
        cell._complete(attempt_id, value)
        return value
    finally:
        # The attempt has ended: the watch, freed with the timer, finds nothing to abandon.
        handle = timer()
        if handle is not None:
            handle.cancel()
        try:
            _RUNNING.reset(token)
        except ValueError:
            # The coroutine was closed by the collector, outside its task's context (its loop
            # was closed under it): that context is gone, nothing to restore.
            pass


async def _outcome_of(
    cell: OnceCell[Any], attempt: Any, deadline: float | None, timeout: float | None
) -> tuple[int, Any]:
    """How another caller's attempt ended, waiting on a future of this loop until it does."""
    if attempt.id in _RUNNING.get():
        raise ReentrancyError(
            "AsyncOnceCell.get_or_init was awaited from inside its own factory (or a task "
            "the factory created); waiting would never finish"
        )
    outcome = attempt.outcome()
    if outcome is not None:
        return outcome  # type: ignore[no-any-return]
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    if cell._add_waiter(attempt.id, loop, fut):
        try:
            if deadline is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
        except (TimeoutError, asyncio.TimeoutError):  # distinct types before 3.11
            cell._remove_waiter(attempt.id, fut)
            outcome = attempt.outcome()
            if outcome is not None:  # it ended just as the deadline expired
                return outcome  # type: ignore[no-any-return]
            raise _lock_timeout(timeout) from None
        except BaseException:
            cell._remove_waiter(attempt.id, fut)
            raise
    outcome = attempt.outcome()
    assert outcome is not None, "woken before the attempt ended"
    return outcome  # type: ignore[no-any-return]


class SingletonFunction(Protocol[T_co]):
    """What ``@singleton`` returns: call it for the one value; ``reset()`` for tests."""

    cell: OnceCell[Any]

    def __call__(self, *, timeout: float | None = None) -> T_co: ...
    def reset(self) -> None: ...


class AsyncSingletonFunction(Protocol[T_co]):
    """What ``@async_singleton`` returns: await its call for the one value; ``reset()``."""

    cell: AsyncOnceCell[Any]

    def __call__(self, *, timeout: float | None = None) -> Coroutine[Any, Any, T_co]: ...
    def reset(self) -> None: ...


def singleton(factory: Callable[[], T]) -> SingletonFunction[T]:
    """Decorate a zero-argument factory: every call returns the one value it built, built once
    across all threads (concurrent first callers wait for it; a failure is retried next call).
    The decorated function takes no arguments but the keyword ``timeout=``."""
    cell: OnceCell[T] = OnceCell()
    # A partial of the native method: calling it costs one C-level call, no Python frame. It
    # refuses positional arguments with an error naming the decorated function.
    instance = functools.partial(cell._call_singleton, factory)
    functools.update_wrapper(instance, factory)
    instance.cell = cell  # type: ignore[attr-defined]
    instance.reset = cell.reset  # type: ignore[attr-defined]
    return instance  # type: ignore[return-value]


async def _call_async_singleton(
    peek: Callable[[], T | None],
    cell: OnceCell[T],
    factory: Callable[[], Awaitable[T]],
    /,
    *args: object,
    timeout: float | None = None,
) -> T:
    # `peek` is the cell's bound `get`, passed in so the ready path looks nothing up.
    if args:
        name = getattr(factory, "__qualname__", "async_singleton")
        n = len(args)
        raise TypeError(
            f"{name}() takes no positional arguments but {n} {'was' if n == 1 else 'were'} "
            "given (an @async_singleton function takes no arguments; its only option is the "
            "keyword timeout=)"
        )
    value = peek()
    if value is not None:
        return value
    return await _get_or_init(cell, factory, timeout)


def async_singleton(factory: Callable[[], Awaitable[T]]) -> AsyncSingletonFunction[T]:
    """Decorate a zero-argument async factory: ``await f()`` returns the one value, built once
    across all threads and event loops (see ``AsyncOnceCell``). The decorated function takes no
    arguments but the keyword ``timeout=``."""
    cell: AsyncOnceCell[T] = AsyncOnceCell()
    # inspect.iscoroutinefunction sees through the partial to the async function.
    instance = functools.partial(_call_async_singleton, cell._peek, cell._cell, factory)
    functools.update_wrapper(instance, factory)
    instance.cell = cell  # type: ignore[attr-defined]
    instance.reset = cell.reset  # type: ignore[attr-defined]
    return instance  # type: ignore[return-value]


class AsyncSingleton:
    """Base class: ``await Cls.instance()`` returns the one instance of ``Cls``.

    Each subclass has its own instance (a subclass of a singleton is another singleton). The
    instance is built by the async classmethod ``create()``, which by default calls ``cls()``:
    override it to pass constructor arguments or to await setup. ``Cls.reset_instance()`` forgets
    the instance (for tests).
    """

    __slots__ = ()
    _nogilsafe_instance_cell: ClassVar[AsyncOnceCell[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._nogilsafe_instance_cell = AsyncOnceCell()

    @classmethod
    async def create(cls) -> Self:
        """Build the instance; runs once per class. Override for arguments or async setup."""
        return cls()

    @classmethod
    async def instance(cls, timeout: float | None = None) -> Self:
        """The one instance of this class, created by ``create()`` on first use."""
        cell = cls._nogilsafe_instance_cell
        value = cell._peek()
        if value is not None:
            return value  # type: ignore[no-any-return]
        return await cell.get_or_init(cls.create, timeout)  # type: ignore[no-any-return]

    @classmethod
    def get_instance(cls, timeout: float | None = None) -> Coroutine[Any, Any, Self]:
        """The seeds' spelling of ``instance()``."""
        return cls.instance(timeout)

    @classmethod
    def peek_instance(cls) -> Self | None:
        """The instance if it exists, else None. Never waits."""
        return cls._nogilsafe_instance_cell.get()

    @classmethod
    def reset_instance(cls) -> None:
        """Forget this class's instance (not its subclasses')."""
        cls._nogilsafe_instance_cell.reset()


AsyncSingleton._nogilsafe_instance_cell = AsyncOnceCell()


class run_once(Generic[P, R]):
    """Run a function at most once (successfully): for ``close()``-style operations.

    Concurrent callers trigger one run; the others wait for it to finish and get its result.
    Later calls return that result without running again. If the run raises, every caller that
    waited for it gets the exception and the next call runs it again. On a method, each instance
    has its own once (``obj.close.reset()`` re-arms it). Works for ``async def`` too: callers
    await, on any thread and loop. Only the first caller's arguments are used. Calling it again
    from inside the run (the same thread, or the same task) raises ``ReentrancyError``.
    """

    def __init__(self, fn: Callable[P, R]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self._cell = self._new_cell()
        self._attr = f"_nogilsafe_run_once_{getattr(fn, '__name__', 'fn')}_{id(self):x}"
        # Set when assigned in a class body: then the first argument is the instance whose
        # once this is, even when called as Class.method(obj).
        self._is_method = False

    def __set_name__(self, owner: type, name: str) -> None:
        self._is_method = True

    def _new_cell(self) -> Any:
        return AsyncOnceCell() if self._is_async else OnceCell()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._is_method and args:
            obj = args[0]
            return self.__get__(obj, type(obj))(*args[1:], **kwargs)  # type: ignore[no-any-return]
        return self._cell.get_or_init(functools.partial(self._fn, *args, **kwargs))  # type: ignore[no-any-return]

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            d = obj.__dict__
        except AttributeError:
            raise TypeError(
                f"run_once needs a per-instance __dict__ on {type(obj).__name__} to keep its state"
            ) from None
        cell = d.get(self._attr)
        if cell is None:
            # setdefault is atomic on dicts: concurrent first callers agree on one cell.
            cell = d.setdefault(self._attr, self._new_cell())
        return _BoundRunOnce(self._fn.__get__(obj, objtype), cell)

    def reset(self) -> None:
        """Re-arm (the function form; for a method use ``obj.method.reset()``)."""
        self._cell.reset()

    def done(self) -> bool:
        return bool(self._cell.is_initialized())


class _BoundRunOnce:
    __slots__ = ("_cell", "_fn")

    def __init__(self, fn: Callable[..., Any], cell: Any) -> None:
        self._fn = fn
        self._cell = cell

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cell.get_or_init(functools.partial(self._fn, *args, **kwargs))

    def reset(self) -> None:
        self._cell.reset()

    def done(self) -> bool:
        return bool(self._cell.is_initialized())
