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

Re-entrance: the attempt ids whose factory runs in the current context are kept in a context
variable. Tasks inherit their creator's context, so a factory that awaits ``get_or_init`` of its
own cell, directly or through a task it created, gets ``ReentrancyError`` instead of waiting for
itself forever; other tasks, on the same thread or not, simply wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import time
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

_READY, _OWNER = 0, 1
_FAILED, _ABANDONED = 1, 2

# Attempt ids whose factory is running in this context (see the module docstring).
_RUNNING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "nogilsafe_once_running", default=frozenset()
)


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout != timeout or timeout < 0:
        raise ValueError("timeout must be a non-negative number or None")
    return time.monotonic() + timeout


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


async def _get_or_init(
    cell: OnceCell[T], factory: Callable[[], Awaitable[T]], timeout: float | None
) -> T:
    deadline = _deadline(timeout)
    while True:
        kind, x = cell._begin()
        if kind == _READY:
            return x  # type: ignore[no-any-return]
        if kind == _OWNER:
            return await _run_factory(cell, x.id, factory)
        attempt = x
        if attempt.id in _RUNNING.get():
            raise ReentrancyError(
                "AsyncOnceCell.get_or_init was awaited from inside its own factory (or a task "
                "the factory created); waiting would never finish"
            )
        outcome = attempt.outcome()
        if outcome is None:
            outcome = await _wait(cell, attempt, deadline, timeout)
        kind, payload = outcome
        if kind == _READY:
            return payload  # type: ignore[no-any-return]
        if kind == _FAILED:
            raise payload
        # Abandoned (the owner was cancelled): go round; one of the waiters becomes the owner.


async def _run_factory(
    cell: OnceCell[T], attempt_id: int, factory: Callable[[], Awaitable[T]]
) -> T:
    token = _RUNNING.set(_RUNNING.get() | {attempt_id})
    try:
        value = await factory()
    except Exception as exc:
        cell._fail(attempt_id, exc)
        raise
    except BaseException:
        cell._abandon(attempt_id)
        raise
    finally:
        _RUNNING.reset(token)
    cell._complete(attempt_id, value)
    return value


async def _wait(
    cell: OnceCell[Any], attempt: Any, deadline: float | None, timeout: float | None
) -> tuple[int, Any]:
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
            raise LockTimeoutError(
                f"AsyncOnceCell.get_or_init: waiting for the initialiser: timed out after {timeout}s"
            ) from None
        except BaseException:
            cell._remove_waiter(attempt.id, fut)
            raise
    outcome = attempt.outcome()
    assert outcome is not None, "woken before the attempt ended"
    return outcome  # type: ignore[no-any-return]


class SingletonFunction(Protocol[T_co]):
    """What ``@singleton`` returns: call it for the one value; ``reset()`` for tests."""

    cell: OnceCell[Any]

    def __call__(self) -> T_co: ...
    def reset(self) -> None: ...


class AsyncSingletonFunction(Protocol[T_co]):
    """What ``@async_singleton`` returns: await its call for the one value; ``reset()``."""

    cell: AsyncOnceCell[Any]

    def __call__(self) -> Coroutine[Any, Any, T_co]: ...
    def reset(self) -> None: ...


def singleton(factory: Callable[[], T]) -> SingletonFunction[T]:
    """Decorate a zero-argument factory: every call returns the one value it built, built once
    across all threads (concurrent first callers wait for it; a failure is retried next call)."""
    cell: OnceCell[T] = OnceCell()
    # A partial of the native method: calling it costs one C-level call, no Python frame.
    instance = functools.partial(cell.get_or_init, factory)
    functools.update_wrapper(instance, factory)
    instance.cell = cell  # type: ignore[attr-defined]
    instance.reset = cell.reset  # type: ignore[attr-defined]
    return instance  # type: ignore[return-value]


def async_singleton(factory: Callable[[], Awaitable[T]]) -> AsyncSingletonFunction[T]:
    """Decorate a zero-argument async factory: ``await f()`` returns the one value, built once
    across all threads and event loops (see ``AsyncOnceCell``)."""
    cell: AsyncOnceCell[T] = AsyncOnceCell()
    # inspect.iscoroutinefunction sees through the partial to the async get_or_init.
    instance = functools.partial(cell.get_or_init, factory)
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
