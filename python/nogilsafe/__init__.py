"""nogilsafe: thread-safe primitives that stay correct and fast on free-threaded CPython.

Every type keeps its state in a Rust core shared by reference. ``obj.local()`` returns a new
handle on the same core for one thread to own: on a free-threaded build, threads that share one
Python object contend on its reference count, and threads that each hold their own view do not.
"""

from __future__ import annotations

import collections.abc as _abc
import importlib.metadata as _metadata

from nogilsafe import _core as _core  # the native module, for tests and introspection
from nogilsafe._core import (
    DELETE,
    MISSING,
    AtomicBool,
    AtomicInt,
    AtomicRef,
    BoundedSemaphore,
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    CountDownLatch,
    Event,
    Lock,
    LockTimeoutError,
    NogilsafeError,
    OnceCell,
    ReentrancyError,
    RLock,
    RWLock,
    Semaphore,
    StateChange,
    StateConflictError,
    StateKeyError,
    StateRollbackError,
    StateSnapshot,
    StateSubscription,
    StateTransaction,
    StateVersionError,
    ThreadSafeDict,
    ThreadSafeList,
    ThreadSafeState,
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
from nogilsafe._processor import ProcessorMetrics, ProcessorStopped, SequentialProcessor

# Cargo.toml holds the version; maturin writes it into the installed distribution's metadata.
__version__: str = _metadata.version("nogilsafe")

__all__ = [
    "DELETE",
    "MISSING",
    "AsyncOnceCell",
    "AsyncSingleton",
    "AsyncSingletonFunction",
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
    "LockTimeoutError",
    "NogilsafeError",
    "OnceCell",
    "ProcessorMetrics",
    "ProcessorStopped",
    "RLock",
    "RWLock",
    "ReentrancyError",
    "Semaphore",
    "SequentialProcessor",
    "SingletonFunction",
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
    "__version__",
    "async_singleton",
    "run_once",
    "singleton",
]

# The Rust types cannot inherit from the ABCs; registering makes isinstance checks work.
_abc.MutableMapping.register(ThreadSafeDict)
_abc.MutableSequence.register(ThreadSafeList)
_abc.Mapping.register(StateSnapshot)
