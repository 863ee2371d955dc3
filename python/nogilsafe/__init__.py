"""nogilsafe: thread-safe primitives that stay correct and fast on free-threaded CPython.

Every type keeps its state in a Rust core shared by reference. ``obj.local()`` returns a new
handle on the same core for one thread to own: on a free-threaded build, threads that share one
Python object contend on its reference count, and threads that each hold their own view do not.
"""

from __future__ import annotations

from nogilsafe import _core
from nogilsafe._core import (
    AtomicInt,
    LockTimeoutError,
    NogilsafeError,
    ReentrancyError,
    StateConflictError,
    StateKeyError,
    StateRollbackError,
    StateChange,
    StateSnapshot,
    StateSubscription,
    StateTransaction,
    StateVersionError,
    ThreadSafeState,
    ThreadSafeStateError,
)

import collections.abc as _abc  # noqa: E402

_abc.Mapping.register(StateSnapshot)

__version__ = "0.1.0"

__all__ = [
    "AtomicInt",
    "LockTimeoutError",
    "NogilsafeError",
    "ReentrancyError",
    "StateConflictError",
    "StateKeyError",
    "StateRollbackError",
    "StateChange",
    "StateSnapshot",
    "StateSubscription",
    "StateTransaction",
    "StateVersionError",
    "ThreadSafeState",
    "ThreadSafeStateError",
    "__version__",
]
