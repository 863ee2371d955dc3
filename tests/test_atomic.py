from __future__ import annotations

import copy
import math
import pickle
import threading

import pytest
from nogilsafe import AtomicInt, ReentrancyError
from nogilsafe.testing import run_concurrently

MAX = 2**63 - 1
MIN = -(2**63)


def test_basic_operations() -> None:
    a = AtomicInt()
    assert a.get() == 0
    a.set(5)
    assert a.get() == 5
    assert a.increment() == 6
    assert a.increment(10) == 16
    assert a.decrement() == 15
    assert a.decrement(5) == 10
    assert a.fetch_add(3) == 10 and a.get() == 13
    assert a.fetch_sub(3) == 13 and a.get() == 10
    assert a.swap(42) == 10 and a.get() == 42
    assert AtomicInt(7).get() == 7
    assert AtomicInt(value=-3).get() == -3


def test_compare_and_set() -> None:
    a = AtomicInt(1)
    assert a.compare_and_set(1, 2) is True
    assert a.get() == 2
    assert a.compare_and_set(1, 3) is False
    assert a.get() == 2


def test_update_runs_function_and_returns_new_value() -> None:
    a = AtomicInt(3)
    assert a.update(lambda v: v * 7) == 21
    assert a.get() == 21


def test_update_with_raising_callable_leaves_value() -> None:
    a = AtomicInt(9)

    def boom(v: int) -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        a.update(boom)
    assert a.get() == 9


def test_update_result_must_be_int() -> None:
    a = AtomicInt(1)
    with pytest.raises(TypeError, match="must be an int"):
        a.update(lambda v: "x")
    with pytest.raises(TypeError):
        a.update(lambda v: 1.5)
    assert a.get() == 1


def test_update_reentering_the_same_int_raises() -> None:
    a = AtomicInt(0)
    with pytest.raises(ReentrancyError):
        a.update(lambda v: a.increment() + v)
    assert a.get() == 0
    # Reading inside the callback is fine, and other AtomicInts may be written.
    b = AtomicInt(0)
    assert a.update(lambda v: a.get() + b.increment()) == 1


@pytest.mark.parametrize(
    "op",
    [
        lambda a: a.increment(1),
        lambda a: a.fetch_add(1),
        lambda a: a.update(lambda v: v + 1),
    ],
)
def test_overflow_raises_and_leaves_value(op) -> None:  # type: ignore[no-untyped-def]
    a = AtomicInt(MAX)
    with pytest.raises(OverflowError):
        op(a)
    assert a.get() == MAX


def test_underflow_raises_and_leaves_value() -> None:
    a = AtomicInt(MIN)
    with pytest.raises(OverflowError):
        a.decrement()
    with pytest.raises(OverflowError):
        a.fetch_sub(1)
    assert a.get() == MIN


def test_out_of_range_input_is_overflow() -> None:
    with pytest.raises(OverflowError):
        AtomicInt(2**63)
    a = AtomicInt(1)
    with pytest.raises(OverflowError):
        a.set(2**64)
    assert a.get() == 1


@pytest.mark.parametrize("bad", ["1", 1.0, None, [1]])
def test_non_int_input_is_type_error(bad: object) -> None:
    a = AtomicInt(1)
    with pytest.raises(TypeError):
        a.set(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        a.increment(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        a.compare_and_set(1, bad)  # type: ignore[arg-type]
    assert a.get() == 1
    if bad is not None:
        with pytest.raises(TypeError):
            AtomicInt(bad)  # type: ignore[arg-type]


def test_int_protocols() -> None:
    a = AtomicInt(5)
    assert int(a) == 5
    assert float(a) == 5.0
    assert [0, 1, 2, 3, 4, 5, 6][a] == 5
    assert bool(a) and not bool(AtomicInt(0))
    assert hex(a) == "0x5"


def test_comparisons() -> None:
    a = AtomicInt(5)
    assert a == 5 and a == 5 and a != 6
    assert a == AtomicInt(5) and a != AtomicInt(4)
    assert a < 6 and a <= 5 and a > 4 and a >= 5
    assert a < AtomicInt(10)
    assert a < 2**100  # beyond 64 bits compares like Python ints
    assert (a == "5") is False
    with pytest.raises(TypeError):
        a < "x"
    with pytest.raises(TypeError):
        hash(a)


def test_compares_with_floats_and_other_numbers_as_an_int_does() -> None:
    from decimal import Decimal
    from fractions import Fraction

    a, one = AtomicInt(1), 1  # every comparison of `a` against the same one of the int `one`
    for other in (
        1.0,
        1.5,
        0.5,
        math.inf,
        math.nan,
        Fraction(1),
        Fraction(3, 2),
        Decimal(1),
        Decimal("0.5"),
        True,
        False,
        1 + 0j,
    ):
        assert (a == other) == (one == other) and (a != other) == (one != other), other
        assert (other == a) == (other == one) and (other != a) == (other != one), other
        if not isinstance(other, complex):
            assert (a < other) == (one < other) and (a <= other) == (one <= other), other
            assert (a > other) == (one > other) and (a >= other) == (one >= other), other
            assert (other < a) == (other < one) and (other >= a) == (other >= one), other
    assert AtomicInt(1) == 1.0 and AtomicInt(1) < 1.5 and AtomicInt(2) > 1.5
    assert sorted([AtomicInt(3), 2.5, AtomicInt(1), Fraction(3, 2)]) == [1, 1.5, 2.5, 3]
    with pytest.raises(TypeError):
        a < 1j  # type: ignore[operator]
    with pytest.raises(TypeError, match="AtomicInt"):
        a < None  # type: ignore[operator]
    assert (a == None) is False and (a != "1") is True  # noqa: E711
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)


def test_in_place_operators_are_atomic_updates() -> None:
    a = AtomicInt(1)
    b = a
    a += 4
    assert a is b and a.get() == 5
    a -= 2
    assert b.get() == 3


def test_repr_pickle_copy() -> None:
    a = AtomicInt(12)
    assert repr(a) == "AtomicInt(12)"
    b = pickle.loads(pickle.dumps(a))
    assert type(b) is AtomicInt and b.get() == 12
    b.increment()
    assert a.get() == 12
    c = copy.copy(a)
    d = copy.deepcopy(a)
    c.increment()
    d.increment()
    assert a.get() == 12 and c.get() == 13 and d.get() == 13


def test_local_views_share_the_value() -> None:
    a = AtomicInt(0)
    v = a.local()
    vv = v.local()
    assert v is not a
    v.increment()
    vv.increment(2)
    assert a.get() == 3 and v == a and vv == 3
    assert type(v) is AtomicInt
    p = pickle.loads(pickle.dumps(vv))
    assert type(p) is AtomicInt and p.get() == 3
    p.increment()
    assert a.get() == 3


@pytest.mark.thread_unsafe(
    reason="starts 8 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_increments_from_many_threads_are_exact() -> None:
    a = AtomicInt()
    n = 20_000

    def work(i: int) -> None:
        target = a.local() if i % 2 else a  # shared object and per-thread views together
        for _ in range(n):
            target.increment()

    run_concurrently(work, threads=8, timeout=60)
    assert a.get() == 8 * n


@pytest.mark.thread_unsafe(
    reason="starts 8 threads itself; 4 copies of it would oversubscribe 2 cores"
)
def test_mixed_cas_and_update_conserve_the_total() -> None:
    # Each thread moves units with update / CAS loops / fetch_add; every op adds exactly 1.
    a = AtomicInt()
    per_thread = 3_000
    done = [0] * 8

    def work(i: int) -> None:
        mine = a.local()
        for k in range(per_thread):
            kind = (i + k) % 3
            if kind == 0:
                mine.update(lambda v: v + 1)
            elif kind == 1:
                while True:
                    cur = mine.get()
                    if mine.compare_and_set(cur, cur + 1):
                        break
            else:
                mine.fetch_add(1)
            done[i] += 1

    run_concurrently(work, threads=8, timeout=60)
    assert sum(done) == 8 * per_thread
    assert a.get() == 8 * per_thread


@pytest.mark.thread_unsafe(
    reason="runs update() in a thread of its own and writes while its function runs"
)
def test_update_reruns_on_conflict_and_counts_retries() -> None:
    a = AtomicInt(0)
    entered = threading.Event()
    proceed = threading.Event()
    calls = []

    def slow(v: int) -> int:
        calls.append(v)
        if len(calls) == 1:
            entered.set()
            assert proceed.wait(10)
        return v + 100

    t = threading.Thread(target=lambda: a.update(slow))
    t.start()
    assert entered.wait(10)
    a.increment()  # conflicting write while `slow` runs
    proceed.set()
    t.join(10)
    assert not t.is_alive()
    assert calls == [0, 1]
    assert a.get() == 101
    assert a.update_retries == 1
