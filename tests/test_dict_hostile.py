"""ThreadSafeDict and AtomicInt used as a hostile user would (issue 11): deep nesting, interpreter
flags that turn comparisons into Python code, extreme sizes, and ``__del__`` that re-enters.
Crash and hang scenarios run in a child process with a timeout."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from nogilsafe import AtomicInt, ThreadSafeDict

from tests._child import run_child

# --- 1. deep structures free without crashing ---------------------------------------------------

DEEP = {
    "nested dicts": "x = ns.ThreadSafeDict({0: x})",
    # Views (a view holds its owner), subclass instances (with a __dict__), keys and values.
    "nested views, subclasses, keys": "x = Sub({Box(x): x}).local() if i % 2 else Sub(k=[x])",
}


@pytest.mark.thread_unsafe(reason="runs a child interpreter; copies at once only add load")
@pytest.mark.parametrize("shape", sorted(DEEP))
def test_deep_nesting_frees_without_crashing(shape: str) -> None:
    code = f"""
        import gc
        import nogilsafe as ns
        class Sub(ns.ThreadSafeDict):
            pass
        class Box:  # a hashable key holding the previous level
            def __init__(self, x):
                self.x = x
        x = None
        for i in range(100_000):
            {DEEP[shape]}
        del x
        gc.collect()
        # A plain list of the same depth frees too (CPython's own trashcan): the reference point.
        y = None
        for i in range(100_000):
            y = [y]
        del y
        print("freed")
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0 and "freed" in r.stdout, r.describe()


# --- 9. comparisons that warn under `python -b` never run under a lock --------------------------

BYTES_WARNING = """
import sys, threading, warnings
import nogilsafe as ns
assert sys.flags.bytes_warning, "the child must run with -b"

shown = []
target = {}

def showwarning(message, category, filename, lineno, file=None, line=None):
    shown.append(category.__name__)
    # Writes the very object whose comparison warned: under a lock, this deadlocked.
    obj = target["obj"]
    if isinstance(obj, (dict, ns.ThreadSafeDict)):
        obj["warned"] = len(shown)
    else:
        obj.append("warned")

warnings.showwarning = showwarning
warnings.simplefilter("always")  # not once per location: every comparison shows its warning

def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:
        return (type(e).__name__,)

def check(builtin, ours, ops):
    for name, op in ops:
        target["obj"] = builtin
        shown.clear()
        expected = outcome(lambda: op(builtin))
        builtin_warned = bool(shown)
        target["obj"] = ours
        shown.clear()
        got = [None]
        t = threading.Thread(target=lambda: got.__setitem__(0, outcome(lambda: op(ours))))
        t.daemon = True
        t.start()
        t.join(20)
        assert not t.is_alive(), f"{name}: deadlocked"
        allowed = [expected]
        if name == "list.remove":
            # The list's documented rule: Python code that modifies the list while a *mutating*
            # operation compares (here showwarning) raises ReentrancyError (see README).
            allowed.append(("ReentrancyError",))
        assert got[0] in allowed, f"{name}: {got[0]} != {expected} (the builtin)"
        if sys.flags.bytes_warning == 1:
            # Never a warning the builtin does not give (we may compare fewer keys than it).
            assert builtin_warned or not shown, f"{name}: warnings {shown}"
            assert set(shown) <= {"BytesWarning"}, f"{name}: warnings {shown}"
        print("ok", name)

check({b"a": 1}, ns.ThreadSafeDict({b"a": 1}), [
    ("dict.get", lambda d: d.get("a")),  # the issue's reproduction
    ("dict[]", lambda d: d["a"]),
    ("dict in", lambda d: "a" in d),
    ("dict int key", lambda d: d.get(97)),
    ("dict setdefault", lambda d: d.setdefault("a", 2)),
    ("dict pop", lambda d: d.pop("a", None)),
])
check([b"a"], ns.ThreadSafeList([b"a"]), [
    ("list.count", lambda l: l.count("a")),
    ("list in", lambda l: "a" in l),
    ("list.index", lambda l: l.index("a")),
    ("list.remove", lambda l: l.remove("a")),
])
print("done")
"""


@pytest.mark.thread_unsafe(reason="runs a child interpreter; copies at once only add load")
@pytest.mark.parametrize("flag", ["-b", "-bb"])
def test_bytes_warning_comparisons_run_unlocked(flag: str) -> None:
    # -b: a BytesWarning goes through warnings.showwarning, which writes the same container;
    # -bb: the comparison raises BytesWarning, exactly where the builtin raises it.
    r = run_child(BYTES_WARNING, timeout=120, flags=[flag])
    assert r.returncode == 0 and "done" in r.stdout, r.describe()


# --- 8. no Rust panic reaches Python: extreme sizes at every entry point ------------------------


class HugeHint:
    """An iterable of pairs that claims ``sys.maxsize`` items."""

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self.pairs = pairs

    def __iter__(self) -> Any:
        return iter(self.pairs)

    def __length_hint__(self) -> int:
        return sys.maxsize


class HugeLen(HugeHint):
    def __len__(self) -> int:
        return sys.maxsize


BIG_INTS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**100, -(10**100), sys.maxsize]


def outcome(fn: Any) -> tuple[str, Any]:
    """What a call did: its result, or the type of the `Exception` it raised. A `BaseException`
    that is not an `Exception` (`PanicException`) propagates and fails the test."""
    try:
        return ("ok", fn())
    except Exception as e:
        return ("raised", type(e).__name__)


def test_dict_entry_points_take_extreme_sizes() -> None:
    for it in (HugeHint([("a", 1)]), HugeLen([("a", 1)])):
        assert ThreadSafeDict(it) == dict(it) == {"a": 1}
        t = ThreadSafeDict()
        t.update(it)
        t.update_many(it)
        t |= it
        assert t == {"a": 1}
        assert outcome(lambda: t | it) == outcome(lambda: {} | it)  # type: ignore[operator]
        assert ThreadSafeDict.fromkeys(HugeHint(["k"])) == dict.fromkeys(HugeHint(["k"]))

        class Sub(ThreadSafeDict):
            pass

        assert Sub.fromkeys(HugeHint(["k"]), 0) == {"k": 0}

    t = ThreadSafeDict()
    for big in BIG_INTS:
        for start in (0, 2**63 - 1, -(2**63), 1.5):
            t["k"] = start
            assert outcome(lambda: t.increment("k", big)) == ("ok", start + big)
            assert t["k"] == start + big
        t.pop("k")
        assert t.increment("k", big, big) == 2 * big
        t.pop("k")
        t[big] = big  # big ints as keys
        assert t[big] == big and t.pop(big) == big
        assert t.compare_and_set("absent", big, 1) is False
        t.swap("s", big)
        assert t["s"] == big
    for bad in (math.inf, 1e300, -1, -math.inf, math.nan, sys.float_info.max):
        assert outcome(lambda: t.get_or_insert_with("g", int, timeout=bad)) == (
            "raised",
            "ValueError",
        )
    assert outcome(lambda: t.get_or_insert_with("g", int, timeout=10**400)) == (
        "raised",
        "OverflowError",
    )
    assert "g" not in t
    assert t.get_or_insert_with("g", int, timeout=0) == 0
    assert outcome(lambda: t.pop("x", *range(1000))) == ("raised", "TypeError")
    assert outcome(ThreadSafeDict().popitem) == ("raised", "KeyError")
    assert outcome(lambda: ThreadSafeDict(*range(1000))) == ("raised", "TypeError")
    assert outcome(lambda: t.update(*range(1000))) == ("raised", "TypeError")


def test_atomic_int_entry_points_take_extreme_sizes() -> None:
    lo, hi = -(2**63), 2**63 - 1
    for big in BIG_INTS:
        fits = lo <= big <= hi
        want = ("ok", None) if fits else ("raised", "OverflowError")
        assert outcome(lambda: AtomicInt(big).get() and None) == want
        a = AtomicInt(0)
        assert outcome(lambda: a.set(big)) == want
        for start in (0, hi, lo, 1, -1):
            for op, py in (
                ("increment", lambda s, d: s + d),
                ("decrement", lambda s, d: s - d),
                ("fetch_add", lambda s, d: s + d),
                ("fetch_sub", lambda s, d: s - d),
            ):
                a.set(start)
                r = outcome(lambda: getattr(a, op)(big))
                if fits and lo <= py(start, big) <= hi:
                    assert r[0] == "ok", (op, start, big, r)
                    assert a.get() == py(start, big)
                else:
                    assert r == ("raised", "OverflowError"), (op, start, big, r)
                    assert a.get() == start  # unchanged
            for op in ("__iadd__", "__isub__"):
                a.set(start)
                r = outcome(lambda: getattr(a, op)(big))
                assert r[0] == "ok" or r == ("raised", "OverflowError"), (op, r)
            a.set(start)
            assert outcome(lambda: a.swap(big)) == (("ok", start) if fits else want)
            a.set(start)
            assert outcome(lambda: a.compare_and_set(start, big))[0] == want[0]
            a.set(start)
            assert outcome(lambda: a.update(lambda v: big)) == (
                ("ok", big) if fits else ("raised", "OverflowError")
            )
            # Comparisons with any int, and with floats as int does.
            a.set(start)
            assert (a < big) == (start < big) and (a == big) == (start == big)
    b, one = AtomicInt(1), 1
    for x in (math.inf, -math.inf, math.nan, 1e300, 2**1000):
        assert (b < x) == (one < x) and (b == x) == (one == x) and (b >= x) == (one >= x)
    for delta in (2**64, -(2**64)):
        with pytest.raises(OverflowError):
            b += delta
        with pytest.raises(OverflowError):
            b -= delta
    with pytest.raises(TypeError):
        b += 1.5  # type: ignore[arg-type]
    assert b == 1


# --- 13. __del__ of a removed value that touches the dict, or waits for a lock -----------------

# Every operation that removes a value it does not hand back (`pop`, `popitem` and `swap` return
# theirs; `pop_if`/`compare_and_set` take the value itself as `expected`, so the caller holds it).
REMOVALS = {
    "overwrite": "d['k'] = 0",
    "del": "del d['k']",
    "update": "d.update({'k': 0, 'other': 1})",
    "clear": "d.clear()",
    "compute": "d.compute('k', lambda old: 0)",
    "compute DELETE": "d.compute('k', lambda old: ns.DELETE)",
    "update_value": "d.update_value('k', lambda old: 0)",
    "increment over a non-int": "d.increment('k')",
}

DEL_LOCK = """
import threading
import nogilsafe as ns

d = ns.ThreadSafeDict()
lock = threading.Lock()
in_del = threading.Event()

class Touchy:
    def __del__(self):
        in_del.set()
        with lock:  # held by the main thread, which meanwhile calls into the same dict
            d["from_del"] = len(d)

    def __add__(self, other):  # for increment: the Python `+` fallback
        return 1

def remove():
    d["k"] = Touchy()  # the dict holds the only reference
    REMOVAL

lock.acquire()
worker = threading.Thread(target=remove, daemon=True)
worker.start()
assert in_del.wait(20), "the removed value's __del__ never ran"
# The worker is inside __del__, waiting for `lock`. Had it kept a shard locked (one, or all of
# them for update/clear), these would hang.
d["k"] = 1
d.get("k2")
d.setdefault("k3", 3)
len(d)
lock.release()
worker.join(20)
assert not worker.is_alive(), "worker stuck"
assert "from_del" in d
print("ok")
"""


@pytest.mark.thread_unsafe(reason="runs a child interpreter; copies at once only add load")
@pytest.mark.parametrize("removal", sorted(REMOVALS))
def test_del_of_removed_value_waits_for_a_lock_held_by_a_dict_caller(removal: str) -> None:
    code = DEL_LOCK.replace("REMOVAL", REMOVALS[removal])
    r = run_child(code, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.describe()


ATOMIC_LOCK = """
import threading
import nogilsafe as ns

a = ns.AtomicInt()
lock = threading.Lock()
in_fn = threading.Event()

def fn(v):
    in_fn.set()
    with lock:  # held by the main thread, which meanwhile calls into the same AtomicInt
        return v + 100

lock.acquire()
worker = threading.Thread(target=lambda: a.update(fn), daemon=True)
worker.start()
assert in_fn.wait(20)
a.increment()
a.compare_and_set(1, 2)
lock.release()
worker.join(20)
assert not worker.is_alive(), "worker stuck"
assert a.get() == 102, a.get()
print("ok")
"""


@pytest.mark.thread_unsafe(reason="runs a child interpreter; copies at once only add load")
def test_atomic_update_function_waits_for_a_lock_held_by_a_caller() -> None:
    # AtomicInt holds no Python objects (nothing to bury); its one Python callback, update's
    # function, runs with nothing held: the same scenario cannot deadlock.
    r = run_child(ATOMIC_LOCK, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.describe()
