"""AtomicRef (an atomic reference to any object: identity compare-and-set, update with retries)
and AtomicBool."""

from __future__ import annotations

import copy
import pickle

import pytest
from nogilsafe import AtomicBool, AtomicRef, ReentrancyError
from nogilsafe.testing import run_concurrently

from tests._child import run_child


def test_get_set_swap() -> None:
    r: AtomicRef[object] = AtomicRef()
    assert r.get() is None
    a, b = object(), object()
    r.set(a)
    assert r.get() is a
    assert r.swap(b) is a and r.get() is b


def test_compare_and_set_is_by_identity() -> None:
    x = [1]
    r = AtomicRef(x)
    assert r.compare_and_set([1], "no") is False  # equal but not the same object
    assert r.get() is x
    assert r.compare_and_set(x, "yes") is True
    assert r.get() == "yes"


def test_update_reruns_on_conflict_and_refuses_reentrance() -> None:
    r = AtomicRef(0)
    assert r.update(lambda v: v + 1) == 1
    with pytest.raises(ReentrancyError):
        r.update(lambda v: r.set(5))
    assert r.get() == 1
    with pytest.raises(ZeroDivisionError):
        r.update(lambda v: 1 / 0)
    assert r.get() == 1

    def work(i: int) -> None:
        view = r.local()
        for _ in range(500):
            view.update(lambda v: v + 1)

    run_concurrently(work, threads=8, timeout=60)
    assert r.get() == 1 + 8 * 500


def test_compare_and_set_race_has_one_winner_per_value() -> None:
    r = AtomicRef(0)
    wins = [0] * 8

    def work(i: int) -> None:
        for _ in range(300):
            while True:
                cur = r.get()
                if r.compare_and_set(cur, cur + 1):
                    wins[i] += 1
                    break

    run_concurrently(work, threads=8, timeout=60)
    assert r.get() == sum(wins) == 2400


def test_pickle_copy_repr_and_hash() -> None:
    r = AtomicRef({"a": [1]})
    assert repr(r) == "AtomicRef({'a': [1]})"
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.get() == {"a": [1]}
    d = copy.deepcopy(r)
    assert d.get() == {"a": [1]} and d.get() is not r.get()
    with pytest.raises(TypeError):
        hash(r)


def test_views_share_and_cycles_are_collected() -> None:
    import gc
    import weakref

    class Box:
        pass

    r = AtomicRef()
    r.local().set(5)
    assert r.get() == 5
    box = Box()
    r.set(box)
    box.ref = r  # type: ignore[attr-defined]
    alive = weakref.ref(box)
    del box, r
    gc.collect()
    assert alive() is None


def test_atomic_bool() -> None:
    b = AtomicBool()
    assert b.get() is False and not b
    b.set(1)
    assert b.get() is True and bool(b)
    assert b.swap(False) is True and b.get() is False
    assert b.compare_and_set(False, True) is True
    assert b.compare_and_set(False, True) is False
    assert b.toggle() is False and b.toggle() is True
    assert repr(b) == "AtomicBool(True)"
    assert pickle.loads(pickle.dumps(b)).get() is True
    assert AtomicBool(True).local().get() is True
    with pytest.raises(TypeError):
        hash(b)


def test_atomic_bool_toggles_are_not_lost() -> None:
    b = AtomicBool()

    def work(i: int) -> None:
        for _ in range(1000):
            b.toggle()

    run_concurrently(work, threads=8, timeout=60)
    assert b.get() is False  # 8000 toggles


@pytest.mark.thread_unsafe(reason="runs a child process")
def test_a_chain_of_100000_atomic_refs_frees_without_recursing() -> None:
    # A chain of 100,000 nested lists frees fine (CPython's deallocator does not recurse).
    code = (
        "import nogilsafe as ns\n"
        "x = None\n"
        "for _ in range(100_000):\n"
        "    x = ns.AtomicRef(ns.AtomicRef(x).local())\n"
        "del x\n"
        'print("FREED")\n'
    )
    r = run_child(code, timeout=300)
    assert r.returncode == 0 and "FREED" in r.stdout, r.describe()
