"""nogilsafe: thread-safe primitives that stay correct and fast on free-threaded CPython.

Every type keeps its state in a Rust core shared by reference. ``obj.local()`` returns a new
handle on the same core for one thread to own: on a free-threaded build, threads that share one
Python object contend on its reference count, and threads that each hold their own view do not.
"""

from __future__ import annotations

import collections.abc as _abc

from nogilsafe import _core
from nogilsafe._core import (
    AtomicInt,
    LockTimeoutError,
    NogilsafeError,
    OnceCell,
    ReentrancyError,
    StateConflictError,
    StateKeyError,
    StateRollbackError,
    StateVersionError,
    ThreadSafeList,
    ThreadSafeStateError,
)
from nogilsafe._once import (
    AsyncOnceCell,
    AsyncSingleton,
    AsyncSingletonFunction,
    SingletonFunction,
    async_singleton,
    run_once,
    singleton,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncOnceCell",
    "AsyncSingleton",
    "AsyncSingletonFunction",
    "AtomicInt",
    "LockTimeoutError",
    "NogilsafeError",
    "OnceCell",
    "ReentrancyError",
    "SingletonFunction",
    "StateConflictError",
    "StateKeyError",
    "StateRollbackError",
    "StateVersionError",
    "ThreadSafeList",
    "ThreadSafeStateError",
    "__version__",
    "async_singleton",
    "run_once",
    "singleton",
]

# The Rust types cannot inherit from the ABCs; registering makes isinstance checks work.
_abc.MutableSequence.register(ThreadSafeList)
