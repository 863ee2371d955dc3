"""Type stubs for nogilsafe's native core."""

import queue as _queue
from collections.abc import Awaitable as _Awaitable
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableSequence,
    ValuesView,
)
from collections.abc import Iterator as _Iterator
from collections.abc import Mapping as _Mapping
from numbers import Real
from types import GenericAlias
from types import TracebackType as _TracebackType
from typing import Any, Generic, SupportsIndex, TypeVar, final, overload
from typing import ClassVar as _ClassVar
from typing import Generic as _Generic
from typing import Literal as _Literal
from typing import NoReturn as _NoReturn
from typing import TypeVar as _TypeVar
from typing import overload as _overload

from typing_extensions import Self, disjoint_base

__all__ = [
    "DELETE",
    "MISSING",
    "AtomicBool",
    "AtomicInt",
    "AtomicRef",
    "BoundedSemaphore",
    "Channel",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelFull",
    "CountDownLatch",
    "Event",
    "Lock",
    "LockHold",
    "LockTimeoutError",
    "NogilsafeError",
    "OnceCell",
    "RLock",
    "RWLock",
    "RWLockGuard",
    "ReentrancyError",
    "Semaphore",
    "Sentinel",
    "StateChange",
    "StateConflictError",
    "StateKeyError",
    "StateRollbackError",
    "StateSnapshot",
    "StateSubscription",
    "StateTransaction",
    "StateVersionError",
    "ThreadSafeDict",
    "ThreadSafeList",
    "ThreadSafeState",
    "ThreadSafeStateError",
    "_OnceAttempt",
    "_lock_waits",
    "_restore_snapshot",
]

class NogilsafeError(Exception): ...
class LockTimeoutError(NogilsafeError, TimeoutError): ...
class ReentrancyError(NogilsafeError, RuntimeError): ...
class ChannelClosed(NogilsafeError): ...
class ChannelEmpty(NogilsafeError, _queue.Empty): ...
class ChannelFull(NogilsafeError, _queue.Full): ...
class ThreadSafeStateError(NogilsafeError): ...
class StateKeyError(ThreadSafeStateError, KeyError): ...
class StateVersionError(ThreadSafeStateError, ValueError): ...
class StateRollbackError(ThreadSafeStateError): ...
class StateConflictError(ThreadSafeStateError): ...

@final
class AtomicInt:
    """A 64-bit signed integer updated atomically, without locks."""

    def __new__(cls, value: SupportsIndex = 0) -> Self: ...
    def local(self) -> AtomicInt:
        """A per-thread view sharing this integer (pickled and deep-copied as a view of its
        owner's copy)."""
    def get(self) -> int: ...
    def set(self, value: SupportsIndex) -> None: ...
    def increment(self, delta: SupportsIndex = 1) -> int:
        """Add ``delta``; return the new value."""
    def decrement(self, delta: SupportsIndex = 1) -> int:
        """Subtract ``delta``; return the new value."""
    def fetch_add(self, delta: SupportsIndex) -> int:
        """Add ``delta``; return the old value."""
    def fetch_sub(self, delta: SupportsIndex) -> int:
        """Subtract ``delta``; return the old value."""
    def swap(self, value: SupportsIndex) -> int:
        """Store ``value``; return the old value."""
    def compare_and_set(self, expected: SupportsIndex, new: SupportsIndex) -> bool: ...
    def update(self, fn: Callable[[int], int]) -> int:
        """Replace the value with ``fn(value)`` atomically (``fn`` may rerun); return it."""
    @property
    def update_retries(self) -> int: ...
    def __iadd__(self, delta: SupportsIndex) -> Self: ...
    def __isub__(self, delta: SupportsIndex) -> Self: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    def __float__(self) -> float: ...
    def __bool__(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    # Compares with any number (int, float, Fraction, Decimal, ...) as an int does.
    def __lt__(self, other: float | Real | AtomicInt) -> bool: ...
    def __le__(self, other: float | Real | AtomicInt) -> bool: ...
    def __gt__(self, other: float | Real | AtomicInt) -> bool: ...
    def __ge__(self, other: float | Real | AtomicInt) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __copy__(self) -> AtomicInt: ...

_T = TypeVar("_T")
_S = TypeVar("_S")

@disjoint_base
class ThreadSafeList(MutableSequence[_T]):
    """A list shared by threads: the whole ``list`` contract, atomic compound operations.

    Every call is atomic. Iteration (``iter``, ``reversed``) runs over a snapshot taken when it
    starts, so concurrent writes never break it. Python code an operation runs (``__eq__``, sort
    keys, predicates, update functions) runs with no lock held; if such code modifies the list
    the operation is running for, it raises ``ReentrancyError`` (``ValueError`` for a sort, as
    ``list.sort`` raises). Elements of exact ``int``, ``float``, ``bool``, ``str``, ``bytes`` and
    ``None`` (and tuples of them) are compared without running Python code. Compound operations
    never give up under contention; only ``sort`` may. Subclassable like ``list``.
    Registered as a ``collections.abc.MutableSequence``.
    """

    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self, iterable: Iterable[_T], /) -> None:
        """The elements become those of ``iterable``; on an existing list, replacing them."""
    def local(self) -> Self:
        """A per-thread view sharing this list (of the same class, sharing its attributes)."""
    def snapshot(self) -> list[_T]:
        """An atomic copy of the elements as a builtin list."""
    @property
    def conflict_retries(self) -> int:
        """How many optimistic rounds restarted because another thread wrote meanwhile."""
    def append(self, object: _T, /) -> None: ...
    def extend(self, iterable: Iterable[_T], /) -> None: ...
    def insert(self, index: SupportsIndex, object: _T, /) -> None: ...
    def pop(self, index: SupportsIndex | None = None, /) -> _T: ...
    @overload
    def pop_or(self, default: None = None, index: SupportsIndex | None = None) -> _T | None:
        """Remove and return the element at ``index`` (default last), or ``default`` if none."""
    @overload
    def pop_or(self, default: _S, index: SupportsIndex | None = None) -> _T | _S: ...
    def remove(self, value: _T, /) -> None: ...
    def clear(self) -> None: ...
    def index(
        self, value: Any, start: SupportsIndex | None = None, stop: SupportsIndex | None = None, /
    ) -> int: ...
    def count(self, value: Any, /) -> int: ...
    def reverse(self) -> None: ...
    def sort(self, *, key: Callable[[_T], Any] | None = None, reverse: bool | None = None) -> None:
        """Stable sort, atomic to observers; ``key`` and comparisons run with no lock held on a
        snapshot committed only if the list did not change meanwhile (else redone). On an error
        the list is unchanged; if they modify the list, ``ValueError`` ("list modified during
        sort"). Gives up with ``RuntimeError`` after 1000 conflicting attempts."""
    def drain(self) -> list[_T]:
        """Remove every element atomically and return them."""
    def append_if_absent(self, object: _T, /) -> bool:
        """Append unless an equal element (identity, then ``==``) is present; True if appended."""
    def extend_if_absent(self, iterable: Iterable[_T], /) -> int:
        """Append each element not equal to one in the list or earlier in ``iterable``, in one
        atomic step; return how many were appended."""
    def remove_if(self, predicate: Callable[[_T], object], /) -> int:
        """Remove every element for which ``predicate`` is true, atomically; return how many."""
    def update_at(self, index: SupportsIndex, fn: Callable[[_T], _T], /) -> _T:
        """Replace the element at ``index`` with ``fn(element)`` atomically; return it. ``fn``
        runs with no lock held and reruns if that element was replaced meanwhile."""
    def compare_and_set(self, index: SupportsIndex, expected: Any, new: _T, /) -> bool:
        """Store ``new`` at ``index`` if the element there equals ``expected`` (identity, then
        ``==``); True if it did."""
    def copy(self) -> ThreadSafeList[_T]:
        """A new, independent ``ThreadSafeList`` (of the base class for a subclass instance)."""
    def __copy__(self) -> Self: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __contains__(self, value: object, /) -> bool: ...
    def __iter__(self) -> Iterator[_T]: ...
    def __reversed__(self) -> Iterator[_T]: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> _T: ...
    @overload
    def __getitem__(self, index: slice, /) -> ThreadSafeList[_T]: ...
    @overload
    def __setitem__(self, index: SupportsIndex, value: _T, /) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[_T], /) -> None: ...
    def __delitem__(self, index: SupportsIndex | slice, /) -> None: ...
    def __add__(self, other: list[_T] | ThreadSafeList[_T], /) -> ThreadSafeList[_T]: ...
    def __radd__(self, other: list[_T], /) -> ThreadSafeList[_T]: ...
    def __iadd__(self, other: Iterable[_T], /) -> Self: ...
    def __mul__(self, n: SupportsIndex, /) -> ThreadSafeList[_T]: ...
    def __rmul__(self, n: SupportsIndex, /) -> ThreadSafeList[_T]: ...
    def __imul__(self, n: SupportsIndex, /) -> Self: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __lt__(self, other: list[_T] | ThreadSafeList[_T], /) -> bool: ...
    def __le__(self, other: list[_T] | ThreadSafeList[_T], /) -> bool: ...
    def __gt__(self, other: list[_T] | ThreadSafeList[_T], /) -> bool: ...
    def __ge__(self, other: list[_T] | ThreadSafeList[_T], /) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

@final
class OnceCell(Generic[_T]):
    """A value computed at most once, shared by every thread.

    ``get_or_init(factory)`` runs ``factory()`` in exactly one caller; concurrent callers wait
    with the GIL released. If ``factory`` raises, every caller that waited for that attempt gets
    the exception and the cell stays empty, so a later call retries. Reading a ready value never
    locks.
    """

    def __new__(cls) -> Self: ...
    def local(self) -> OnceCell[_T]:
        """A per-thread view sharing this cell."""
    def get_or_init(self, factory: Callable[[], _T], timeout: float | None = None) -> _T:
        """The value, computing it with ``factory()`` if the cell is empty.

        ``timeout`` bounds the wait for another thread's initialisation (``LockTimeoutError``);
        calling it from inside its own factory raises ``ReentrancyError``.
        """
    def get(self) -> _T | None:
        """The value, or ``None`` if not initialised. Never blocks."""
    def is_initialized(self) -> bool: ...
    def set(self, value: _T) -> bool:
        """Store ``value`` if the cell is empty and no initialisation runs; True if stored."""
    def take(self) -> _T | None:
        """Empty the cell and return its value; an initialisation in progress is left alone."""
    def reset(self) -> None:
        """Empty the cell, so the next ``get_or_init`` runs its factory again."""
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> _NoReturn:
        """Refused (``TypeError``): a once-cell is shared by identity, views included."""
    def __reduce__(self) -> _NoReturn: ...
    def _call_singleton(
        self, factory: Callable[[], _T], *args: object, timeout: float | None = None
    ) -> _T:
        """What a ``@singleton`` function calls; positional arguments are a ``TypeError``."""
    # The protocol driven by nogilsafe._once.AsyncOnceCell (private); the codes are defined once,
    # here, and read by the glue.
    _BEGIN_READY: _ClassVar[int]
    _BEGIN_OWNER: _ClassVar[int]
    _BEGIN_WAIT: _ClassVar[int]
    _OUTCOME_READY: _ClassVar[int]
    _OUTCOME_FAILED: _ClassVar[int]
    _OUTCOME_ABANDONED: _ClassVar[int]
    def _begin(self) -> tuple[int, Any]:
        """``(_BEGIN_READY, value)``, ``(_BEGIN_OWNER, attempt id)`` or ``(_BEGIN_WAIT,
        _OnceAttempt)``."""
    def _add_waiter(self, id: int, loop: Any, future: Any) -> bool: ...
    def _remove_waiter(self, id: int, future: Any) -> None: ...
    def _complete(self, id: int, value: _T) -> bool:
        """End the attempt with its value; False if it had already ended."""
    def _fail(self, id: int, exc: BaseException) -> bool: ...
    def _abandon(self, id: int) -> bool: ...
    def _waiting(self) -> int:
        """How many callers wait for the initialisation in progress (for tests)."""
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

@final
class _OnceAttempt:
    @property
    def id(self) -> int: ...
    def outcome(self) -> tuple[int, Any] | None:
        """``None`` while running, then ``(OnceCell._OUTCOME_*, value or exception or None)``."""

_K = TypeVar("_K")
_V = TypeVar("_V")

@final
class Sentinel:
    """The type of ``DELETE`` and ``MISSING``."""

    def __bool__(self) -> bool: ...

DELETE: Sentinel
"""Returned by a ``compute``/``update_value`` function: remove the key."""
MISSING: Sentinel
"""Passed to a ``compute`` function when the key is absent."""

@disjoint_base
class ThreadSafeDict(Generic[_K, _V]):
    """A dict shared by threads: sharded, every operation atomic, iteration on snapshots.

    Registered as a ``collections.abc.MutableMapping``; subclassable like ``dict`` (``__init__``
    builds it, ``__missing__`` is honoured). Iteration, ``keys()``, ``values()`` and ``items()``
    work on a consistent snapshot taken at the call and never raise because of concurrent
    writes. Whole-table operations (``update``, ``clear``, ``snapshot``, ``len``, ``==``) see or
    make a consistent cut. Callables (``compute``, factories, a key's ``__eq__``) never run under
    a lock; a ``compute``-style function or factory that modifies the same dict gets
    ``ReentrancyError``.
    """

    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self: ThreadSafeDict[str, _V], **kwargs: _V) -> None: ...
    @overload
    def __init__(self, arg: Mapping[_K, _V] | Iterable[tuple[_K, _V]], /) -> None: ...
    @overload
    def __init__(
        self: ThreadSafeDict[str, _V],
        arg: Mapping[str, _V] | Iterable[tuple[str, _V]],
        /,
        **kwargs: _V,
    ) -> None: ...
    def local(self) -> Self:
        """A per-thread view sharing this dict's table (of the same class; pickled and
        deep-copied as a view of its owner's copy)."""
    def __getitem__(self, key: _K, /) -> _V: ...
    def __setitem__(self, key: _K, value: _V, /) -> None: ...
    def __delitem__(self, key: _K, /) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> Iterator[_K]:
        """Iterate over a snapshot of the keys taken now."""
    def __reversed__(self) -> Iterator[_K]: ...
    @overload
    def get(self, key: _K, default: None = None, /) -> _V | None: ...
    @overload
    def get(self, key: _K, default: _V | _T, /) -> _V | _T: ...
    def setdefault(self, key: _K, default: _V = ..., /) -> _V:
        """Insert ``key`` with ``default`` if absent, atomically; return the stored value."""
    @overload
    def pop(self, key: _K, /) -> _V: ...
    @overload
    def pop(self, key: _K, default: _V | _T, /) -> _V | _T: ...
    def popitem(self) -> tuple[_K, _V]:
        """Remove and return the most recently inserted pair (O(n))."""
    def update(self, arg: Mapping[_K, _V] | Iterable[tuple[_K, _V]] = ..., /, **kwargs: _V) -> None:
        """Like ``dict.update``, but all-or-nothing and never seen half-applied."""
    def update_many(self, mapping: Mapping[_K, _V] | Iterable[tuple[_K, _V]]) -> None:
        """Apply every pair atomically."""
    def clear(self) -> None: ...
    def copy(self) -> ThreadSafeDict[_K, _V]:
        """A shallow, independent copy taken atomically."""
    def __copy__(self) -> Self: ...
    def snapshot(self) -> dict[_K, _V]:
        """A plain ``dict`` copy taken atomically."""
    def keys(self) -> KeysView[_K]:
        """The keys of a snapshot taken now (set operations work)."""
    def values(self) -> ValuesView[_V]:
        """The values of a snapshot taken now."""
    def items(self) -> ItemsView[_K, _V]:
        """The items of a snapshot taken now."""
    @classmethod
    def fromkeys(cls, iterable: Iterable[_T], value: Any = None, /) -> ThreadSafeDict[_T, Any]: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    def __or__(self, other: Mapping[_T, _V], /) -> ThreadSafeDict[_K | _T, _V]: ...
    def __ror__(self, other: Mapping[_T, _V], /) -> ThreadSafeDict[_K | _T, _V]: ...
    # Narrower than __or__ on purpose, as typeshed's dict.__ior__: in place, the key and value
    # types cannot widen.
    def __ior__(self, other: Mapping[_K, _V] | Iterable[tuple[_K, _V]], /) -> Self: ...  # type: ignore[misc]
    def __reduce__(self) -> tuple[Any, ...]: ...
    def get_or_insert_with(
        self, key: _K, factory: Callable[[], _V], *, timeout: float | None = None
    ) -> _V:
        """Return ``key``'s value, inserting ``factory()`` first if absent.

        ``factory`` runs with no lock held, once per successful insert: concurrent callers for
        the same key wait (``LockTimeoutError`` after ``timeout`` seconds) and get the same value.
        """
    def compute(self, key: _K, fn: Callable[[_V | Sentinel], _V | Sentinel]) -> _V | None:
        """Store ``fn(value)`` (``fn(MISSING)`` when absent) atomically; ``DELETE`` removes the key.

        ``fn`` runs with no lock held and reruns if the entry changed meanwhile. Returns the new
        value, or None when the key was deleted.
        """
    def update_value(
        self, key: _K, fn: Callable[[_V], _V | Sentinel], default: _V | Sentinel = ...
    ) -> _V | None:
        """Store ``fn(value)``, ``fn(default)`` when absent (KeyError without a default)."""
    def compare_and_set(self, key: _K, expected: object, new: _V) -> bool:
        """Set ``key`` to ``new`` if its value is ``expected`` (identity, or C-level equality of
        int/float/str/bytes/bool/None/tuples of those; never a Python ``__eq__``)."""
    def pop_if(self, key: _K, expected: object) -> bool:
        """Remove ``key`` if its value is ``expected`` (same rule as ``compare_and_set``)."""
    def swap(self, key: _K, value: _V, default: Any = None) -> Any:
        """Store ``value``; return the previous value (``default`` if absent)."""
    def increment(self, key: _K, delta: Any = ..., default: Any = ...) -> Any:
        """Add ``delta`` (1 when omitted) to the value (``default`` when absent, 0 when omitted)
        atomically; return the result. ``None`` for either is a ``TypeError``."""
    @property
    def compute_retries(self) -> int:
        """How many times an optimistic operation reran its function."""

# --- ThreadSafeState ------------------------------------------------------------------------------

_D = _TypeVar("_D")
_R = _TypeVar("_R")

@final
class StateSnapshot(_Mapping[str, _T]):
    """An immutable view of one version of a ThreadSafeState (a ``collections.abc.Mapping``).

    Taking one is O(1) whatever the size; each access returns a fresh copy of the value.
    Immutable: ``copy.copy`` and ``copy.deepcopy`` return it; it pickles as its version and
    values (so it can be stored as a state value)."""

    @property
    def version(self) -> int:
        """The version this snapshot shows."""
    def __getitem__(self, key: str, /) -> _T: ...
    def __iter__(self) -> _Iterator[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    @_overload
    def get(self, key: str) -> _T | None: ...
    @_overload
    def get(self, key: str, default: _D) -> _T | _D: ...
    def keys(self) -> list[str]: ...  # type: ignore[override]
    def values(self) -> list[_T]: ...  # type: ignore[override]
    def items(self) -> list[tuple[str, _T]]: ...  # type: ignore[override]
    def to_dict(self) -> dict[str, _T]:
        """A new dict of this version's keys and (fresh) values."""
    def __copy__(self) -> Self: ...
    def __deepcopy__(self, memo: Any, /) -> Self: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

def _restore_snapshot(version: int, items: dict[str, Any], isolation: str) -> StateSnapshot[Any]:
    """Unpickles a ``StateSnapshot``."""

@final
class StateChange:
    """One recorded change (immutable). For a ``"rollback"`` record ``key`` is None and
    ``old_value``/``new_value`` are the version rolled back from and the target version."""

    @property
    def version(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def operation(self) -> str:
        """``set``, ``update``, ``delete``, ``clear``, ``rollback``, ``update_with``,
        ``compare_and_set`` or ``transaction``."""
    @property
    def old_value(self) -> Any: ...
    @property
    def new_value(self) -> Any: ...
    @property
    def changed_by(self) -> str | None: ...
    @property
    def timestamp(self) -> float:
        """Seconds since the epoch (``time.time()``) of the commit."""
    def __copy__(self) -> Self: ...
    def __deepcopy__(self, memo: Any, /) -> Self: ...
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> _NoReturn:
        """Refused (``TypeError``): a record of a live state's history; pickle its fields."""
    def __reduce__(self) -> _NoReturn: ...

@final
class StateTransaction(_Generic[_T]):
    """The mutable view ``ThreadSafeState.transaction(fn)`` passes to ``fn``; valid during that call.

    Reads are recorded: the writes commit only if no key read changed meanwhile (``keys()``
    makes the transaction depend on every key)."""

    @property
    def version(self) -> int:
        """The version this attempt started from."""
    @_overload
    def get(self, key: str) -> _T | None: ...
    @_overload
    def get(self, key: str, default: _D) -> _T | _D: ...
    def __getitem__(self, key: str, /) -> _T: ...
    def __contains__(self, key: str, /) -> bool: ...
    def set(self, key: str, value: _T) -> None: ...
    def __setitem__(self, key: str, value: _T, /) -> None: ...
    def delete(self, key: str) -> bool: ...
    def __delitem__(self, key: str, /) -> None: ...
    def keys(self) -> list[str]: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

@final
class StateSubscription:
    """Returned by ``ThreadSafeState.subscribe``; ``close()`` (or leaving ``with``) unsubscribes.

    The handle does not keep its state alive: once the state is gone it reads as closed."""

    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, _a: object, _b: object, _c: object) -> None: ...

@disjoint_base
class ThreadSafeState(_Generic[_T]):
    """Versioned shared state: a persistent map of ``str`` keys to isolated values.

    Readers never lock; writers commit new immutable versions. ``snapshot()`` and ``rollback()``
    are O(1); the history keeps the last ``max_history`` change records (one per key written),
    and a version stays retained for ``rollback``/``diff`` while the history holds a change made
    after it; retained versions share all unchanged structure. ``isolation``: ``"freeze"``
    (plain data is stored immutably and rebuilt on read; other objects are deep-copied on write
    and read), ``"deepcopy"`` (every value deep-copied on write and read) or ``"reference"``
    (values stored as given: they must not be mutated). Values come back with the aliasing
    ``copy.deepcopy`` gives them.

    Subclassable: ``__new__`` takes any arguments and ``__init__`` configures the state (once,
    before it is first written). Neither picklable nor copyable (``TypeError``): pickle or copy
    a ``snapshot()``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self: ...
    def __init__(
        self,
        initial_state: _Mapping[str, _T] | Any | None = None,
        *,
        max_history: int = 1000,
        isolation: _Literal["freeze", "deepcopy", "reference"] = "freeze",
    ) -> None: ...
    def local(self) -> ThreadSafeState[_T]:
        """A per-thread view sharing this state (a plain ``ThreadSafeState``, also for a
        subclass)."""
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> _NoReturn: ...
    def __reduce__(self) -> _NoReturn: ...
    @_overload
    def get(self, key: str) -> _T | None: ...
    @_overload
    def get(self, key: str, default: _D) -> _T | _D: ...
    def get_required(self, key: str) -> _T:
        """The value of ``key``; ``StateKeyError`` naming the available keys if absent."""
    def __getitem__(self, key: str, /) -> _T: ...
    def set(self, key: str, value: _T, changed_by: str | None = None) -> int:
        """Store ``value``; return the new version."""
    def update(self, mapping: _Mapping[str, _T], changed_by: str | None = None) -> int:
        """Store every item as one new version (one history record per key); return it."""
    def delete(self, key: str, changed_by: str | None = None) -> bool:
        """Remove ``key``; return whether it was present (no new version if not)."""
    def clear(self, changed_by: str | None = None) -> int:
        """Remove every key; return the (new) version."""
    def has(self, key: str) -> bool: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[_T]: ...
    def items(self) -> list[tuple[str, _T]]: ...
    def snapshot(self) -> StateSnapshot[_T]:
        """An immutable Mapping of the current version, O(1)."""
    @property
    def version(self) -> int: ...
    def get_version(self) -> int: ...
    def rollback(self, target_version: int, changed_by: str | None = None) -> int:
        """Make a retained version current again as a new version (recorded); return it.
        ``StateVersionError`` for a future version, ``StateRollbackError`` for an evicted one."""
    def history(
        self, key: str | None = None, limit: int | None = None, since_version: int | None = None
    ) -> list[StateChange]:
        """Change records, oldest first; ``limit`` keeps the newest ones."""
    def clear_history(self) -> None:
        """Forget every change record and every retained version but the current one."""
    def metrics(self) -> dict[str, Any]:
        """Commit counts per operation, retries, conflicts, versions and sizes."""
    def update_with(
        self,
        key: str,
        fn: Callable[[_T], _T],
        default: _T | None = None,
        changed_by: str | None = None,
    ) -> _T:
        """Replace the value with ``fn(value)`` atomically; ``fn`` runs with no lock held and
        reruns if another writer changed the key meanwhile. Returns the new value."""
    def compare_and_set(
        self, key: str, expected: _T, new: _T, changed_by: str | None = None
    ) -> bool:
        """Set ``key`` to ``new`` if its value == ``expected`` (a missing key never matches)."""
    def transaction(
        self, fn: Callable[[StateTransaction[_T]], _R], changed_by: str | None = None
    ) -> _R:
        """Run ``fn(view)``; commit its writes atomically if nothing it read changed, else rerun
        it (``StateConflictError`` after 1000 attempts). An exception commits nothing."""
    def wait_for(
        self, predicate: Callable[[StateSnapshot[_T]], object], timeout: float | None = None
    ) -> StateSnapshot[_T]:
        """Block (GIL released) until ``predicate(snapshot)`` is true, re-checked on each commit."""
    def wait_for_async(
        self, predicate: Callable[[StateSnapshot[_T]], object], timeout: float | None = None
    ) -> _Awaitable[StateSnapshot[_T]]:
        """Await until ``predicate(snapshot)`` is true, from any thread's running event loop."""
    # Driven by nogilsafe._state.wait_for_async (private).
    def _register_async_waiter(self, event_loop: Any, future: Any) -> None: ...
    def _discard_async_waiter(self, future: Any) -> None: ...
    def subscribe(self, callback: Callable[[list[StateChange]], object]) -> StateSubscription:
        """Call ``callback(changes)`` for each commit after this call, in version order, outside
        any lock, in a committing thread (the one delivering when commits overlap); an exception
        goes to ``sys.unraisablehook``."""
    def diff(self, from_version: int, to_version: int) -> dict[str, tuple[Any, Any]]:
        """``{key: (old, new)}`` for each key that differs (a missing side is None)."""
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

# --- Locks, events, latches, semaphores, atomic references ---------------------------------------

_LV = TypeVar("_LV")

@final
class LockHold:
    """``with lock.hold(timeout):`` / ``async with``: the lock, or ``LockTimeoutError`` naming the
    holder and how long it has held it."""

    def __enter__(self) -> Lock | RLock: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[Lock | RLock]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...

@disjoint_base
class Lock:
    """A lock for threads and for any event loop. ``acquire``/``release``/``with`` as
    ``threading.Lock`` (but owned: only its holder may release it); ``async with`` and
    ``await acquire_async()`` from any loop; re-acquiring it from its holder raises
    ``ReentrancyError``; FIFO among waiters."""

    def __new__(cls, name: str | None = None) -> Self: ...
    def local(self) -> Lock:
        """A per-thread view sharing this lock."""
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire, waiting (detached) at most ``timeout`` seconds; True if acquired."""
    def release(self) -> None:
        """Release; ``RuntimeError`` if this thread does not hold it."""
    def locked(self) -> bool: ...
    def hold(self, timeout: float | None = None) -> LockHold:
        """``with lock.hold(timeout=5):`` acquire or raise ``LockTimeoutError`` naming the holder."""
    def acquire_async(self, timeout: float | None = None) -> _Awaitable[bool]:
        """Acquire from a coroutine without blocking its loop; False if ``timeout`` expired."""
    @property
    def owner(self) -> tuple[int, str] | None:
        """``(thread id, thread name)`` of the holder (a task's: its loop's thread), or None."""
    @property
    def waiting(self) -> int:
        """How many threads and tasks wait for it."""
    @property
    def name(self) -> str | None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[None]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...
    # The async protocol driven by nogilsafe._locks (private).
    def _begin(
        self, event_loop: Any, future: Any | None, retry: int | None, task: Any
    ) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...
    def _timeout_error(self, timeout: float | None = None) -> LockTimeoutError: ...

@disjoint_base
class RLock:
    """A re-entrant ``Lock``: its holder (a thread, or a task) may acquire it again and must
    release it as many times."""

    def __new__(cls, name: str | None = None) -> Self: ...
    def local(self) -> RLock:
        """A per-thread view sharing this lock."""
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire, waiting (detached) at most ``timeout`` seconds; True if acquired."""
    def release(self) -> None:
        """Release; ``RuntimeError`` if this thread does not hold it."""
    def locked(self) -> bool: ...
    def hold(self, timeout: float | None = None) -> LockHold:
        """``with lock.hold(timeout=5):`` acquire or raise ``LockTimeoutError`` naming the holder."""
    def acquire_async(self, timeout: float | None = None) -> _Awaitable[bool]:
        """Acquire from a coroutine without blocking its loop; False if ``timeout`` expired."""
    @property
    def owner(self) -> tuple[int, str] | None:
        """``(thread id, thread name)`` of the holder (a task's: its loop's thread), or None."""
    @property
    def waiting(self) -> int:
        """How many threads and tasks wait for it."""
    @property
    def name(self) -> str | None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[None]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...
    # The async protocol driven by nogilsafe._locks (private).
    def _begin(
        self, event_loop: Any, future: Any | None, retry: int | None, task: Any
    ) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...
    def _timeout_error(self, timeout: float | None = None) -> LockTimeoutError: ...

@final
class RWLockGuard:
    """``with rw.read(timeout)`` / ``rw.write(timeout)`` (also ``async with``)."""

    def __enter__(self) -> RWLock: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[RWLock]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...

@disjoint_base
class RWLock:
    """Many readers or one writer, for threads and any event loop; writer-preferring. Upgrading a
    read to a write (or writing twice) raises ``ReentrancyError`` instead of deadlocking."""

    def __new__(cls, *, name: str | None = None) -> Self: ...
    def local(self) -> RWLock:
        """A per-thread view sharing this lock."""
    def read(self, timeout: float | None = None) -> RWLockGuard:
        """``with rw.read(timeout=None):`` shared access; ``LockTimeoutError`` on expiry."""
    def write(self, timeout: float | None = None) -> RWLockGuard:
        """``with rw.write(timeout=None):`` exclusive access; ``LockTimeoutError`` on expiry."""
    def acquire_read(self, blocking: bool = True, timeout: float | None = None) -> bool: ...
    def acquire_write(self, blocking: bool = True, timeout: float | None = None) -> bool: ...
    def release_read(self) -> None: ...
    def release_write(self) -> None: ...
    def acquire_read_async(self, timeout: float | None = None) -> _Awaitable[bool]: ...
    def acquire_write_async(self, timeout: float | None = None) -> _Awaitable[bool]: ...
    @property
    def readers(self) -> int:
        """Read holds taken now (re-entrant ones counted)."""
    @property
    def writer(self) -> tuple[int, str] | None:
        """``(thread id, thread name)`` of the writer, or None."""
    @property
    def waiting(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    def _begin(
        self, event_loop: Any, future: Any | None, retry: int | None, task: Any, write: bool
    ) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...
    def _timeout_error(self, write: bool, timeout: float | None = None) -> LockTimeoutError: ...

@disjoint_base
class Event:
    """``threading.Event`` for threads and for any event loop: ``set`` wakes every waiter."""

    def __new__(cls, *, name: str | None = None) -> Self: ...
    def local(self) -> Event:
        """A per-thread view sharing this event."""
    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool:
        """Block until set (True) or ``timeout`` expires (False)."""
    def wait_async(self, timeout: float | None = None) -> _Awaitable[bool]:
        """Await until set (True) or ``timeout`` expires (False), from any loop."""
    @property
    def waiting(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    def _begin(self, event_loop: Any, future: Any | None, retry: int | None) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...

@disjoint_base
class CountDownLatch:
    """Opens after ``count`` calls of ``count_down()``; ``wait``/``wait_async`` until then."""

    def __new__(cls, count: int, *, name: str | None = None) -> Self: ...
    def local(self) -> CountDownLatch:
        """A per-thread view sharing this latch."""
    def count_down(self, n: int = 1) -> int:
        """Lower the count by ``n`` (not below 0); returns the new count."""
    @property
    def count(self) -> int: ...
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the count is 0 (True) or ``timeout`` expires (False)."""
    def wait_async(self, timeout: float | None = None) -> _Awaitable[bool]: ...
    @property
    def waiting(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    def _begin(self, event_loop: Any, future: Any | None, retry: int | None) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...

@disjoint_base
class Semaphore:
    """``threading.Semaphore`` for threads and for any event loop, served in FIFO order."""

    def __new__(cls, value: int = 1, *, name: str | None = None) -> Self: ...
    def local(self) -> Semaphore:
        """A per-thread view sharing this semaphore."""
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit, waiting (detached, FIFO) at most ``timeout`` seconds."""
    def release(self, n: int = 1) -> None: ...
    def acquire_async(self, timeout: float | None = None) -> _Awaitable[bool]: ...
    def locked(self) -> bool:
        """Whether ``acquire`` would have to wait."""
    @property
    def value(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[None]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...
    def _begin(self, event_loop: Any, future: Any | None, retry: int | None) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...

@disjoint_base
class BoundedSemaphore:
    """A ``Semaphore`` whose releases may not exceed its initial value (``ValueError``)."""

    def __new__(cls, value: int = 1, *, name: str | None = None) -> Self: ...
    def local(self) -> BoundedSemaphore:
        """A per-thread view sharing this semaphore."""
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit, waiting (detached, FIFO) at most ``timeout`` seconds."""
    def release(self, n: int = 1) -> None: ...
    def acquire_async(self, timeout: float | None = None) -> _Awaitable[bool]: ...
    def locked(self) -> bool:
        """Whether ``acquire`` would have to wait."""
    @property
    def value(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> bool: ...
    def __aenter__(self) -> _Awaitable[None]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
        /,
    ) -> _Awaitable[None]: ...
    def _begin(self, event_loop: Any, future: Any | None, retry: int | None) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...

@disjoint_base
class AtomicRef(Generic[_LV]):
    """An atomic reference to any object: ``compare_and_set`` compares identity; ``update(fn)``
    reruns ``fn`` (with nothing held) when another write came first."""

    def __new__(cls, value: _LV = ...) -> Self: ...
    def local(self) -> AtomicRef[_LV]:
        """A per-thread view sharing this reference."""
    def get(self) -> _LV: ...
    def set(self, value: _LV) -> None: ...
    def swap(self, value: _LV) -> _LV: ...
    def compare_and_set(self, expected: object, new: _LV) -> bool: ...
    def update(self, fn: Callable[[_LV], _LV]) -> _LV: ...
    @property
    def update_retries(self) -> int: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...

@disjoint_base
class AtomicBool:
    """A boolean changed by single atomic instructions."""

    def __new__(cls, value: object = None) -> Self: ...
    def local(self) -> AtomicBool:
        """A per-thread view sharing this flag."""
    def get(self) -> bool: ...
    def set(self, value: object) -> None: ...
    def swap(self, value: object) -> bool: ...
    def compare_and_set(self, expected: bool, new: bool) -> bool: ...
    def toggle(self) -> bool:
        """Invert the value; returns the new value."""
    def __bool__(self) -> bool: ...

def _lock_waits() -> list[tuple[int, int, str, str, list[tuple[int, int, str]]]]: ...

_CT = TypeVar("_CT")

@disjoint_base
class Channel(Generic[_CT]):
    """A multi-producer multi-consumer FIFO channel for threads and for any event loop.
    ``maxsize`` 0 is unbounded; N bounds it (a put waits for space). ``close()`` ends it."""

    def __init__(self, maxsize: int = 0) -> None: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...
    def local(self) -> Self:
        """A per-thread view sharing this channel."""
    @property
    def maxsize(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def unfinished_tasks(self) -> int: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def put(self, item: _CT, block: bool = True, timeout: float | None = None) -> None:
        """Put at the end, waiting for space if bounded and full (``LockTimeoutError`` after
        ``timeout``); ``ChannelFull`` at once if not ``block``; ``ChannelClosed`` once closed."""
    def put_nowait(self, item: _CT) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> _CT:
        """Take the oldest item, waiting for one (``LockTimeoutError`` after ``timeout``);
        ``ChannelEmpty`` at once if not ``block``; ``ChannelClosed`` once closed and drained."""
    def get_nowait(self) -> _CT: ...
    def get_many(self, max_items: int, timeout: float | None = None) -> list[_CT]:
        """Wait for one item, then take whatever else is ready, up to ``max_items`` in all."""
    def close(self) -> None: ...
    def task_done(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def put_async(self, item: _CT, timeout: float | None = None) -> _Awaitable[None]: ...
    def get_async(self, timeout: float | None = None) -> _Awaitable[_CT]: ...
    def join_async(self, timeout: float | None = None) -> _Awaitable[None]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> _CT: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> _Awaitable[_CT]: ...
    def __reduce__(self) -> _NoReturn: ...
    def _begin(
        self,
        event_loop: Any,
        future: Any | None,
        retry: int | None,
        kind: int,
        item: Any,
    ) -> tuple[int, Any]: ...
    def _finish(self, ticket: int) -> tuple[int, Any]: ...
    def _abandon(self, ticket: int) -> None: ...
