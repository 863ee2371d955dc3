"""Type stubs for nogilsafe's native core."""

from collections.abc import Callable
from typing import Any, SupportsIndex, final

from typing_extensions import Self

class NogilsafeError(Exception): ...
class LockTimeoutError(NogilsafeError, TimeoutError): ...
class ReentrancyError(NogilsafeError, RuntimeError): ...
class ThreadSafeStateError(NogilsafeError): ...
class StateKeyError(ThreadSafeStateError, KeyError): ...
class StateVersionError(ThreadSafeStateError, ValueError): ...
class StateRollbackError(ThreadSafeStateError): ...
class StateConflictError(ThreadSafeStateError): ...

@final
class AtomicInt:
    """A 64-bit signed integer updated atomically, without locks."""

    def __init__(self, value: SupportsIndex = 0) -> None: ...
    def local(self) -> AtomicInt:
        """A per-thread view sharing this integer."""
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
    def update(self, fn: Callable[[int], int], /) -> int:
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
    def __lt__(self, other: int | AtomicInt) -> bool: ...
    def __le__(self, other: int | AtomicInt) -> bool: ...
    def __gt__(self, other: int | AtomicInt) -> bool: ...
    def __ge__(self, other: int | AtomicInt) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __copy__(self) -> AtomicInt: ...
    def __deepcopy__(self, memo: Any) -> AtomicInt: ...

# --- ThreadSafeState ------------------------------------------------------------------------------
from collections.abc import Awaitable as _Awaitable
from collections.abc import Iterator as _Iterator
from collections.abc import Mapping as _Mapping
from typing import Generic as _Generic
from typing import Literal as _Literal
from typing import TypeVar as _TypeVar
from typing import overload as _overload

_T = _TypeVar("_T")
_D = _TypeVar("_D")
_R = _TypeVar("_R")

@final
class StateSnapshot(_Mapping[str, _T]):
    """An immutable view of one version of a ThreadSafeState (a ``collections.abc.Mapping``).

    Taking one is O(1) whatever the size; each access returns a fresh copy of the value."""

    @property
    def version(self) -> int:
        """The version this snapshot shows."""
    def __getitem__(self, key: str) -> _T: ...
    def __iter__(self) -> _Iterator[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    @_overload
    def get(self, key: str) -> _T | None: ...
    @_overload
    def get(self, key: str, default: _D) -> _T | _D: ...
    def keys(self) -> list[str]: ...  # type: ignore[override]
    def values(self) -> list[_T]: ...  # type: ignore[override]
    def items(self) -> list[tuple[str, _T]]: ...  # type: ignore[override]
    def to_dict(self) -> dict[str, _T]:
        """A new dict of this version's keys and (fresh) values."""

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
    def __getitem__(self, key: str) -> _T: ...
    def __contains__(self, key: str) -> bool: ...
    def set(self, key: str, value: _T) -> None: ...
    def __setitem__(self, key: str, value: _T) -> None: ...
    def delete(self, key: str) -> bool: ...
    def __delitem__(self, key: str) -> None: ...
    def keys(self) -> list[str]: ...

@final
class StateSubscription:
    """Returned by ``ThreadSafeState.subscribe``; ``close()`` (or leaving ``with``) unsubscribes."""

    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

@final
class ThreadSafeState(_Generic[_T]):
    """Versioned shared state: a persistent map of ``str`` keys to isolated values.

    Readers never lock; writers commit new immutable versions. ``snapshot()`` and ``rollback()``
    are O(1); history keeps the last ``max_history`` versions and change records, sharing all
    unchanged structure. ``isolation``: ``"freeze"`` (plain data is stored immutably and rebuilt
    on read; other objects are deep-copied on write and read), ``"deepcopy"`` (every value
    deep-copied on write and read) or ``"reference"`` (values stored as given: they must not be
    mutated)."""

    def __init__(
        self,
        initial_state: _Mapping[str, _T] | Any | None = None,
        *,
        max_history: int = 1000,
        isolation: _Literal["freeze", "deepcopy", "reference"] = "freeze",
    ) -> None: ...
    def local(self) -> ThreadSafeState[_T]:
        """A per-thread view sharing this state."""
    @_overload
    def get(self, key: str) -> _T | None: ...
    @_overload
    def get(self, key: str, default: _D) -> _T | _D: ...
    def get_required(self, key: str) -> _T:
        """The value of ``key``; ``StateKeyError`` naming the available keys if absent."""
    def __getitem__(self, key: str) -> _T: ...
    def set(self, key: str, value: _T, changed_by: str | None = None) -> int:
        """Store ``value``; return the new version."""
    def update(self, mapping: _Mapping[str, _T], changed_by: str | None = None) -> int:
        """Store every item as one new version (one history record per key); return it."""
    def delete(self, key: str, changed_by: str | None = None) -> bool:
        """Remove ``key``; return whether it was present (no new version if not)."""
    def clear(self, changed_by: str | None = None) -> int:
        """Remove every key; return the (new) version."""
    def has(self, key: str) -> bool: ...
    def __contains__(self, key: object) -> bool: ...
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
        self, key: str, fn: Callable[[_T], _T], default: _T | None = None, changed_by: str | None = None
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
    def subscribe(self, callback: Callable[[list[StateChange]], object]) -> StateSubscription:
        """Call ``callback(changes)`` after each commit, outside any lock, in the committing
        thread; an exception goes to ``sys.unraisablehook``."""
    def diff(self, from_version: int, to_version: int) -> dict[str, tuple[Any, Any]]:
        """``{key: (old, new)}`` for each key that differs (a missing side is None)."""
    def __class_getitem__(cls, item: Any) -> Any: ...
