#!/usr/bin/env python3
"""Smoke check of an installed nogilsafe: what a user gets from `pip install nogilsafe-*.whl`.

Run it with the interpreter of a clean venv, from a directory outside the source tree (so the
import finds the installed package, not the checkout): scripts/wheels.sh and scripts/test.sh do.
Checks, in order, and exits 1 at the first failure:

- `import nogilsafe` (and every submodule a user imports) works, with the version of the
  installed distribution; on a free-threaded build the GIL is still off afterwards;
- one operation on every public type or function in `nogilsafe.__all__`: a name without an
  exerciser below fails the check, so a new public type cannot ship unexercised (add it to
  EXERCISERS, or to IMPORT_ONLY with the reason);
- the league demo, `python -m nogilsafe.demo --threads 4 --matches 300`, which exits non-zero if
  nogilsafe's league lost an update, raised or hung.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.metadata
import pickle
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from typing import Any

FREE_THREADED_BUILD = sysconfig.get_config_var("Py_GIL_DISABLED") == 1


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def gil_off() -> None:
    assert not gil_enabled(), "the GIL was re-enabled (a module without Py_mod_gil?)"


# --- one operation per public name ----------------------------------------------------------
# Each exerciser gets the object bound to the name and raises (AssertionError or the library's
# own exception) on failure.


def _atomic_int(cls: Any) -> None:
    a = cls(1)
    assert a.increment() == 2 and a.local().fetch_add(3) == 2 and a.get() == 5
    assert pickle.loads(pickle.dumps(a)).get() == 5


def _dict(cls: Any) -> None:
    d = cls({"a": 1})
    d.increment("a")
    assert d.get_or_insert_with("b", lambda: 7) == 7
    assert d.snapshot() == {"a": 2, "b": 7} and pickle.loads(pickle.dumps(d)) == d


def _list(cls: Any) -> None:
    lst = cls([3, 1])
    assert lst.append_if_absent(2) and not lst.append_if_absent(1)
    lst.sort()
    assert lst.snapshot() == [1, 2, 3] and copy.deepcopy(lst) == [1, 2, 3]


def _state(cls: Any) -> None:
    s = cls({"n": 0}, max_history=10)
    s.update_with("n", lambda n: n + 1)
    s.transaction(lambda tx: tx.set("m", tx["n"] + 1))
    assert s.snapshot().to_dict() == {"n": 1, "m": 2}
    assert s.rollback(0) == 3 and s.get("n") == 0


def _once_cell(cls: Any) -> None:
    c = cls()
    assert c.get_or_init(lambda: 1) == 1 and c.get_or_init(lambda: 2) == 1


def _async_once_cell(cls: Any) -> None:
    c = cls()

    async def make() -> int:
        return 42

    async def main() -> tuple[int, int]:
        return await c.get_or_init(make), await c.get_or_init(make)

    assert asyncio.run(main()) == (42, 42)


def _async_singleton(cls: Any) -> None:
    class Service(cls):  # type: ignore[misc, valid-type]
        pass

    async def main() -> bool:
        return await Service.instance() is await Service.instance()

    assert asyncio.run(main())


def _singleton(deco: Any) -> None:
    @deco
    def make() -> object:
        return object()

    assert make() is make()


def _async_singleton_deco(deco: Any) -> None:
    @deco
    async def make() -> object:
        return object()

    async def main() -> bool:
        return await make() is await make()

    assert asyncio.run(main())


def _run_once(deco: Any) -> None:
    calls: list[int] = []

    class Client:
        @deco
        def close(self) -> None:
            calls.append(1)

    c = Client()
    c.close()
    c.close()
    assert calls == [1]


def _sentinel(value: Any) -> None:
    assert not value and repr(value)


def _error(cls: Any) -> None:
    nogilsafe = importlib.import_module("nogilsafe")
    assert issubclass(cls, nogilsafe.NogilsafeError) or cls is nogilsafe.NogilsafeError
    try:
        raise cls("smoke")
    except nogilsafe.NogilsafeError:
        pass


def _lock_like(cls: Any) -> None:
    # threading.Lock / RLock / Semaphore / BoundedSemaphore semantics.
    lk = cls()
    assert lk.acquire()
    lk.release()
    with lk:
        pass


def _event(cls: Any) -> None:
    e = cls()
    assert not e.is_set()
    threading.Thread(target=e.set).start()
    assert e.wait(10) and e.is_set()


def _atomic_bool(cls: Any) -> None:
    b = cls(False)
    assert b.compare_and_set(False, True) and b.get() is True


def _atomic_ref(cls: Any) -> None:
    first, second = object(), object()
    r = cls(first)
    assert r.get() is first and r.swap(second) is first and r.get() is second


def _count_down_latch(cls: Any) -> None:
    latch = cls(2)
    latch.count_down()
    threading.Thread(target=latch.count_down).start()
    assert latch.wait(10) is not False


def _channel(cls: Any) -> None:
    ch = cls(2)

    def produce() -> None:
        for i in range(5):
            ch.put(i, timeout=10)
        ch.close()

    threading.Thread(target=produce).start()
    assert list(ch) == [0, 1, 2, 3, 4] and ch.closed

    async def roundtrip() -> Any:
        other = cls()
        await other.put_async("x")
        return await other.get_async(timeout=10)

    assert asyncio.run(roundtrip()) == "x"


def _rwlock(cls: Any) -> None:
    rw = cls()
    with rw.read(), rw.read():
        pass
    with rw.write(timeout=10):
        pass


def _sequential_processor(cls: Any) -> None:
    seen: list[int] = []
    with cls(seen.append, maxsize=2) as p:
        futures = [p.submit(i) for i in range(5)]
    assert seen == [0, 1, 2, 3, 4] and all(f.done() for f in futures)
    assert p.metrics().processed == 5


EXERCISERS: dict[str, Callable[[Any], None]] = {
    "AtomicInt": _atomic_int,
    "ThreadSafeDict": _dict,
    "ThreadSafeList": _list,
    "ThreadSafeState": _state,
    "OnceCell": _once_cell,
    "AsyncOnceCell": _async_once_cell,
    "AsyncSingleton": _async_singleton,
    "singleton": _singleton,
    "async_singleton": _async_singleton_deco,
    "run_once": _run_once,
    "DELETE": _sentinel,
    "MISSING": _sentinel,
    "NogilsafeError": _error,
    "LockTimeoutError": _error,
    "ReentrancyError": _error,
    "ThreadSafeStateError": _error,
    "StateKeyError": _error,
    "StateVersionError": _error,
    "StateRollbackError": _error,
    "StateConflictError": _error,
    "Lock": _lock_like,
    "RLock": _lock_like,
    "Semaphore": _lock_like,
    "BoundedSemaphore": _lock_like,
    "Event": _event,
    "AtomicBool": _atomic_bool,
    "AtomicRef": _atomic_ref,
    "CountDownLatch": _count_down_latch,
    "SequentialProcessor": _sequential_processor,
    "Channel": _channel,
    "ChannelClosed": _error,
    "ChannelEmpty": _error,
    "ChannelFull": _error,
    "RWLock": _rwlock,
    "ProcessorStopped": _error,
}

# Names that only name a type produced by another exerciser, or are not a type at all.
IMPORT_ONLY: dict[str, str] = {
    "__version__": "checked against the installed distribution's metadata",
    "SingletonFunction": "what @singleton returns",
    "AsyncSingletonFunction": "what @async_singleton returns",
    "StateChange": "ThreadSafeState.history() records",
    "StateSnapshot": "ThreadSafeState.snapshot()",
    "StateSubscription": "ThreadSafeState.subscribe()",
    "StateTransaction": "the argument of ThreadSafeState.transaction's function",
    "ProcessorMetrics": "SequentialProcessor.metrics()",
}


def main() -> int:
    failures: list[str] = []

    def check(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # report every failure, then exit 1
            failures.append(f"{what}: {type(e).__name__}: {e}")
            print(f"  FAIL {what}: {type(e).__name__}: {e}")
        else:
            print(f"  ok   {what}")

    print(f"smoke: Python {sys.version.split()[0]} at {sys.executable}")
    import nogilsafe  # after the banner, so a failing import names the interpreter

    print(f"  nogilsafe {nogilsafe.__version__} from {nogilsafe.__file__}")
    for sub in ("nogilsafe._core", "nogilsafe.testing", "nogilsafe.demo"):
        check(f"import {sub}", lambda sub=sub: importlib.import_module(sub))

    def version() -> None:
        dist = importlib.metadata.version("nogilsafe")
        assert nogilsafe.__version__ == dist, (nogilsafe.__version__, dist)

    check("__version__ is the distribution's version", version)

    if FREE_THREADED_BUILD:
        check("GIL still off after import (free-threaded build)", gil_off)

    for name in nogilsafe.__all__:
        obj = getattr(nogilsafe, name)
        if name in EXERCISERS:
            check(name, lambda obj=obj, name=name: EXERCISERS[name](obj))
        elif name in IMPORT_ONLY:
            print(f"  ok   {name} (imported: {IMPORT_ONLY[name]})")
        else:
            msg = "public name with no smoke exerciser: add one to scripts/smoke.py"
            failures.append(f"{name}: {msg}")
            print(f"  FAIL {name}: {msg}")

    def demo() -> None:
        cmd = [sys.executable, "-m", "nogilsafe.demo", "--threads", "4", "--matches", "300"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")

    check("league demo --threads 4 --matches 300", demo)

    if FREE_THREADED_BUILD:
        check("GIL still off after every operation", gil_off)

    if failures:
        print(f"smoke: {len(failures)} failure(s)")
        return 1
    print("smoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
