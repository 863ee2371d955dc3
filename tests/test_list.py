"""ThreadSafeList against builtin list: every method, slices, negative indices, error messages."""

from __future__ import annotations

import collections.abc
import copy
import gc
import pickle
import types
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from nogilsafe import ReentrancyError, ThreadSafeList


def same(op: Callable[[Any], Any], initial: list[Any]) -> None:
    """Run ``op`` on a list and on a ThreadSafeList: same result or same exception, same state."""
    ref = list(initial)
    tsl = ThreadSafeList(initial)
    try:
        expected: Any = op(ref)
        exp_exc = None
    except Exception as e:
        exp_exc = e
    try:
        got: Any = op(tsl)
        got_exc = None
    except Exception as e:
        got_exc = e
    if exp_exc is not None:
        assert got_exc is not None, f"expected {exp_exc!r}, got {got!r}"
        assert type(got_exc) is type(exp_exc)
        assert str(got_exc) == str(exp_exc)
    else:
        assert got_exc is None, f"unexpected {got_exc!r}"
        if isinstance(got, ThreadSafeList):
            got = got.snapshot()
        assert got == expected
    assert tsl.snapshot() == ref


BASE = [5, 3, 8, 1, 9, 2, 7]
SLICE_BOUNDS = [None, -100, -8, -3, -1, 0, 1, 2, 5, 7, 100]
STEPS = [None, 1, 2, 3, -1, -2, -3]


def test_construction_and_basics() -> None:
    assert ThreadSafeList().snapshot() == []
    assert ThreadSafeList(range(4)).snapshot() == [0, 1, 2, 3]
    assert ThreadSafeList(x for x in "ab").snapshot() == ["a", "b"]
    assert ThreadSafeList(ThreadSafeList([1, 2])).snapshot() == [1, 2]
    with pytest.raises(TypeError, match="'int' object is not iterable"):
        ThreadSafeList(5)  # type: ignore[arg-type]
    lst = ThreadSafeList([1, 2])
    assert len(lst) == 2 and bool(lst) and not ThreadSafeList()
    assert isinstance(lst, collections.abc.MutableSequence)
    assert type(lst.snapshot()) is list


@pytest.mark.parametrize("start", SLICE_BOUNDS)
@pytest.mark.parametrize("stop", SLICE_BOUNDS)
@pytest.mark.parametrize("step", STEPS)
def test_get_slice(start: int | None, stop: int | None, step: int | None) -> None:
    same(lambda x: x[start:stop:step], BASE)


@pytest.mark.parametrize("start", SLICE_BOUNDS)
@pytest.mark.parametrize("stop", SLICE_BOUNDS)
@pytest.mark.parametrize("step", STEPS)
def test_del_slice(start: int | None, stop: int | None, step: int | None) -> None:
    def op(x: Any) -> None:
        del x[start:stop:step]

    same(op, BASE)


@pytest.mark.parametrize("start", SLICE_BOUNDS)
@pytest.mark.parametrize("stop", SLICE_BOUNDS)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4])
def test_set_slice(start: int | None, stop: int | None, step: int | None, size: int) -> None:
    def op(x: Any) -> None:
        x[start:stop:step] = [f"v{i}" for i in range(size)]

    same(op, BASE)


def test_slice_errors_and_sources() -> None:
    same(lambda x: x.__setitem__(slice(None, None, 2), [1, 2]), BASE)  # size mismatch message
    same(lambda x: x.__setitem__(slice(0, 1), 5), BASE)  # message differs by Python version
    same(lambda x: x.__setitem__(slice(None, None, 2), 5), BASE)
    same(lambda x: x.__setitem__(slice(1, 3), iter("abc")), BASE)
    same(lambda x: x.__setitem__(slice(1, 3), (i for i in range(5))), BASE)
    same(lambda x: x.__setitem__(slice(None, None, -1), "abcdefg"), BASE)
    same(lambda x: x["a"], BASE)
    same(lambda x: x[1.0], BASE)
    same(lambda x: x.__setitem__("a", 1), BASE)
    same(lambda x: x.__delitem__("a"), BASE)
    same(lambda x: x[2**70], BASE)
    same(lambda x: x[True], BASE)
    same(lambda x: x[slice("a", None)], BASE)
    # A ThreadSafeList, including the list itself, as the source of a slice assignment.
    lst = ThreadSafeList([1, 2, 3])
    lst[::-1] = lst
    assert lst.snapshot() == [3, 2, 1]
    lst[1:1] = lst
    assert lst.snapshot() == [3, 3, 2, 1, 2, 1]


@pytest.mark.parametrize("i", [-9, -8, -7, -1, 0, 3, 6, 7, 8])
def test_indexing(i: int) -> None:
    same(lambda x: x[i], BASE)
    same(lambda x: x.__setitem__(i, "new"), BASE)
    same(lambda x: x.__delitem__(i), BASE)
    same(lambda x: x.pop(i), BASE)
    same(lambda x: x.insert(i, "new"), BASE)


def test_pop_and_errors() -> None:
    same(lambda x: x.pop(), BASE)
    same(lambda x: x.pop(), [])
    same(lambda x: x.pop(0), [])
    same(lambda x: x.pop(0), BASE)
    same(lambda x: x.pop("a"), BASE)
    same(lambda x: x.pop(2**70), BASE)
    same(lambda x: x.insert("a", 1), BASE)


def test_pop_or() -> None:
    lst = ThreadSafeList([1, 2, 3])
    assert lst.pop_or() == 3
    assert lst.pop_or(index=0) == 1
    assert lst.pop_or("d", 5) == "d"
    assert lst.pop_or() == 2
    assert lst.pop_or() is None
    assert lst.pop_or("empty") == "empty"
    assert lst.snapshot() == []


@pytest.mark.parametrize("value", [1, 3, 9, 10, "3", 3.0, None])
def test_search(value: Any) -> None:
    data = [1, 3, 5, 3, 3.0, None, "x"]
    same(lambda x: value in x, data)
    same(lambda x: x.count(value), data)
    same(lambda x: x.index(value), data)
    same(lambda x: x.remove(value), data)
    for start in [-100, -3, 0, 2, 4, 100]:
        same(lambda x: x.index(value, start), data)
        for stop in [-100, -2, 0, 3, 6, 100]:
            same(lambda x: x.index(value, start, stop), data)


def test_index_argument_errors() -> None:
    same(lambda x: x.index(1, "a"), BASE)
    same(lambda x: x.index(1, 0, "a"), BASE)
    same(lambda x: x.index(1, 2**70), BASE)
    same(lambda x: x.index(5, -(2**70)), BASE)
    missing = object()
    same(lambda x: x.index(missing), BASE)
    same(lambda x: x.remove(missing), BASE)


class Weird:
    """Equal to everything, and counts how often it was asked."""

    calls = 0

    def __eq__(self, other: object) -> bool:
        Weird.calls += 1
        return True

    __hash__ = object.__hash__


def test_identity_before_eq_and_python_eq() -> None:
    nan = float("nan")
    same(lambda x: nan in x, [1, nan])
    same(lambda x: x.index(nan), [1, nan])
    same(lambda x: x.count(nan), [nan, nan, 1])
    same(lambda x: x.remove(nan), [1, nan])
    w = Weird()
    same(lambda x: 5 in x, [1, w, 5])
    same(lambda x: x.index(5), [1, w, 5])
    same(lambda x: x.count(5), [1, w, 5])
    same(lambda x: x.remove(5), [1, w, 5])

    class NeverEqual:
        def __eq__(self, other: object) -> bool:
            return False

        __hash__ = object.__hash__

    n = NeverEqual()
    same(lambda x: n in x, [1, n])  # identity wins over __eq__, like list
    same(lambda x: x.count(n), [n, n])

    class Boom:
        def __eq__(self, other: object) -> bool:
            raise ValueError("boom")

        __hash__ = object.__hash__

    b = Boom()
    same(lambda x: 1 in x, [b])
    same(lambda x: x.remove(1), [b, 1])
    same(lambda x: x.count(1), [1, b])


def test_bytes_and_subclass_comparisons() -> None:
    class MyInt(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    data = [b"a", "a", 97, MyInt(3), True, 1.0, None]
    for v in [b"a", "a", 97, 1, 3, 0, None, False, MyInt(5)]:
        same(lambda x: x.count(v), data)
        same(lambda x: v in x, data)
        same(lambda x: x.index(v) if v in data else None, data)


def test_append_extend_insert_clear_reverse() -> None:
    same(lambda x: x.append(4), BASE)
    same(lambda x: x.extend(range(3)), BASE)
    same(lambda x: x.extend(5), BASE)
    same(lambda x: x.extend(x), BASE)
    same(lambda x: x.extend(iter("ab")), BASE)
    same(lambda x: x.insert(100, "e"), BASE)
    same(lambda x: x.insert(-100, "s"), BASE)
    same(lambda x: x.clear(), BASE)
    same(lambda x: x.reverse(), BASE)
    same(lambda x: x.reverse(), [])


@pytest.mark.parametrize(
    "data",
    [
        BASE,
        [],
        [3, 1, 2**80, -(2**70), 0],
        ["b", "a", "ä", "A", ""],
        [1.5, 2, True, -1],
        [(2, "a"), (1, "b"), (2, "0")],
        [float("nan"), 1.0, 0.5],
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_sort(data: list[Any], reverse: bool) -> None:
    same(lambda x: x.sort(reverse=reverse), data)
    same(lambda x: x.sort(key=lambda v: str(v), reverse=reverse), data)
    same(lambda x: x.sort(key=None, reverse=reverse), data)


def test_sort_is_stable_and_keeps_identity() -> None:
    big = [10**30 + i // 3 for i in range(30)]
    items = [int(str(v)) for v in reversed(big)]  # equal values, distinct objects
    ref = list(items)
    lst = ThreadSafeList(items)
    ref.sort()
    lst.sort()
    assert all(a is b for a, b in zip(ref, lst.snapshot()))
    pairs = [(i % 3, i) for i in range(20)]
    lst = ThreadSafeList(pairs)
    lst.sort(key=lambda p: p[0], reverse=True)
    assert lst.snapshot() == sorted(pairs, key=lambda p: p[0], reverse=True)
    ints = [5, 3, 5, 1]
    lst = ThreadSafeList(ints)
    lst.sort(reverse=True)
    assert lst.snapshot() == [5, 5, 3, 1]


def test_sort_failure_leaves_list_unchanged() -> None:
    lst = ThreadSafeList([3, "a", 1])
    with pytest.raises(TypeError, match="not supported"):
        lst.sort()
    assert lst.snapshot() == [3, "a", 1]

    def key(v: int) -> int:
        if v == 1:
            raise ValueError("bad key")
        return v

    lst = ThreadSafeList([3, 2, 1])
    with pytest.raises(ValueError, match="bad key"):
        lst.sort(key=key)
    assert lst.snapshot() == [3, 2, 1]
    with pytest.raises(TypeError):
        lst.sort(lambda v: v)  # type: ignore[misc]


def test_operators() -> None:
    same(lambda x: x + [1, 2], BASE)
    same(lambda x: (x + ThreadSafeList([1])) if isinstance(x, ThreadSafeList) else x + [1], BASE)
    same(lambda x: x * 2, BASE)
    same(lambda x: 3 * x, [1, 2])
    same(lambda x: x * -1, BASE)
    same(lambda x: x * 0, BASE)

    def iadd(x: Any) -> Any:
        x += range(2)
        return None

    def imul(n: Any) -> Callable[[Any], Any]:
        def op(x: Any) -> Any:
            x *= n
            return None

        return op

    same(iadd, BASE)
    same(imul(3), [1, 2])
    same(imul(0), [1, 2])
    same(imul(-2), [1, 2])
    same(imul(1), [1, 2])
    same(imul("a"), [1, 2])

    def iadd_bad(x: Any) -> Any:
        x += 5
        return None

    same(iadd_bad, [1])
    lst = ThreadSafeList([1])
    same_obj = lst
    lst += [2]
    lst *= 2
    assert lst is same_obj and lst.snapshot() == [1, 2, 1, 2]
    r = [0] + ThreadSafeList([1])
    assert isinstance(r, ThreadSafeList) and r.snapshot() == [0, 1]
    with pytest.raises(TypeError):
        ThreadSafeList([1]) + 5  # type: ignore[operator]
    with pytest.raises(TypeError):
        ThreadSafeList([1]) + (1,)  # type: ignore[operator]
    with pytest.raises(TypeError):
        ThreadSafeList([1]) * "a"  # type: ignore[operator]
    with pytest.raises((MemoryError, OverflowError)):
        ThreadSafeList([1, 2]) * (2**62)
    with pytest.raises(OverflowError):
        ThreadSafeList([1, 2]) * (2**70)
    big = ThreadSafeList([1, 2])
    with pytest.raises((MemoryError, OverflowError)):
        big *= 2**62
    assert big.snapshot() == [1, 2]


@pytest.mark.parametrize("a", [[], [1], [1, 2], [1, 3], [2], [1, 2, 0]])
@pytest.mark.parametrize("b", [[], [1], [1, 2], [1, 3], [2]])
def test_comparisons(a: list[int], b: list[int]) -> None:
    ta, tb = ThreadSafeList(a), ThreadSafeList(b)
    for left, right in [(ta, tb), (ta, b), (a, tb)]:
        assert (left == right) == (a == b)
        assert (left != right) == (a != b)
        assert (left < right) == (a < b)
        assert (left <= right) == (a <= b)
        assert (left > right) == (a > b)
        assert (left >= right) == (a >= b)


def test_comparison_edge_cases() -> None:
    assert ThreadSafeList([1]) != (1,)
    assert not (ThreadSafeList([1]) == (1,))
    with pytest.raises(TypeError):
        ThreadSafeList([1]) < 5  # type: ignore[operator]
    nan = float("nan")
    lst = ThreadSafeList([nan])
    assert lst == lst and lst == [nan]
    with pytest.raises(TypeError, match="unhashable"):
        hash(ThreadSafeList())


def test_repr() -> None:
    assert repr(ThreadSafeList()) == "ThreadSafeList([])"
    assert repr(ThreadSafeList([1, "a"])) == "ThreadSafeList([1, 'a'])"
    lst = ThreadSafeList([1])
    lst.append(lst)
    assert repr(lst) == "ThreadSafeList([1, [...]])"
    inner = ThreadSafeList([2])
    assert (
        repr(ThreadSafeList([inner, inner]))
        == "ThreadSafeList([ThreadSafeList([2]), ThreadSafeList([2])])"
    )


def test_iteration_is_a_snapshot() -> None:
    lst = ThreadSafeList([1, 2, 3])
    seen = []
    for x in lst:
        seen.append(x)
        lst.append(x * 10)  # would never end on a live iterator
    assert seen == [1, 2, 3]
    assert lst.snapshot() == [1, 2, 3, 10, 20, 30]
    it = reversed(lst)
    lst.clear()
    assert list(it) == [30, 20, 10, 3, 2, 1]
    assert list(reversed(ThreadSafeList())) == []


def test_copy_pickle_deepcopy() -> None:
    inner = [1, 2]
    lst = ThreadSafeList([inner, "x"])
    c = lst.copy()
    assert c == lst and c is not lst and c[0] is inner
    c2 = copy.copy(lst)
    assert type(c2) is ThreadSafeList and c2[0] is inner
    c2.append(3)
    assert len(lst) == 2
    d = copy.deepcopy(lst)
    assert d == lst and d[0] is not inner
    p = pickle.loads(pickle.dumps(lst))
    assert type(p) is ThreadSafeList and p == lst
    lst.append(lst)
    d = copy.deepcopy(lst)
    assert d[2] is d
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        p = pickle.loads(pickle.dumps(lst, protocol=proto))
        assert p[2] is p and p[0] == [1, 2]


def test_class_getitem_and_local() -> None:
    alias = ThreadSafeList[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is ThreadSafeList and alias.__args__ == (int,)
    lst = ThreadSafeList([1])
    view = lst.local()
    assert view is not lst
    view.append(2)
    assert lst.snapshot() == [1, 2]
    assert view == lst


def test_snapshot_and_drain() -> None:
    lst = ThreadSafeList([1, 2, 3])
    snap = lst.snapshot()
    snap.append(4)
    assert lst.snapshot() == [1, 2, 3]
    assert lst.drain() == [1, 2, 3]
    assert lst.snapshot() == [] and lst.drain() == []


def test_append_if_absent_and_extend_if_absent() -> None:
    lst = ThreadSafeList([1, "a", None])
    assert lst.append_if_absent(1) is False
    assert lst.append_if_absent(1.0) is False  # equal, like `in`
    assert lst.append_if_absent(2) is True
    assert lst.append_if_absent(None) is False
    assert lst.extend_if_absent([2, 3, 3, "a", "b", 3.0]) == 2
    assert lst.snapshot() == [1, "a", None, 2, 3, "b"]
    assert lst.extend_if_absent(iter([])) == 0
    with pytest.raises(TypeError):
        lst.extend_if_absent(5)  # type: ignore[arg-type]
    w = Weird()
    assert lst.append_if_absent(w) is False  # w == 1
    empty = ThreadSafeList()
    assert empty.append_if_absent(w) is True
    assert empty.extend_if_absent([w, 1, 2]) == 0  # everything == w
    assert empty.snapshot() == [w]

    class Boom:
        def __eq__(self, other: object) -> bool:
            raise ValueError("boom")

        __hash__ = object.__hash__

    bl = ThreadSafeList([Boom()])
    with pytest.raises(ValueError, match="boom"):
        bl.append_if_absent(1)
    assert len(bl) == 1


def test_remove_if() -> None:
    lst = ThreadSafeList(range(10))
    assert lst.remove_if(lambda v: v % 3 == 0) == 4
    assert lst.snapshot() == [1, 2, 4, 5, 7, 8]
    assert lst.remove_if(lambda v: False) == 0

    def pred(v: int) -> bool:
        if v == 5:
            raise KeyError("pred")
        return True

    with pytest.raises(KeyError):
        lst.remove_if(pred)
    assert lst.snapshot() == [1, 2, 4, 5, 7, 8]
    assert ThreadSafeList().remove_if(lambda v: True) == 0


def test_update_at() -> None:
    lst = ThreadSafeList([1, 2, 3])
    assert lst.update_at(0, lambda v: v + 10) == 11
    assert lst.update_at(-1, lambda v: v * 2) == 6
    assert lst.snapshot() == [11, 2, 6]
    with pytest.raises(IndexError, match="list index out of range"):
        lst.update_at(3, lambda v: v)
    with pytest.raises(ZeroDivisionError):
        lst.update_at(1, lambda v: v / 0)
    assert lst.snapshot() == [11, 2, 6]


def test_compare_and_set_uses_equality() -> None:
    lst = ThreadSafeList([1000, "s", 2.5])
    big = int("1000")  # equal, not identical
    assert lst.compare_and_set(0, big, "new") is True
    assert lst.compare_and_set(0, 1000, "x") is False
    assert lst.compare_and_set(-1, 2.5, 3.5) is True
    assert lst.snapshot() == ["new", "s", 3.5]
    with pytest.raises(IndexError):
        lst.compare_and_set(5, 1, 2)
    w = Weird()
    lst2 = ThreadSafeList([w])
    assert lst2.compare_and_set(0, 42, "y") is True  # w == 42 by its __eq__
    assert lst2.snapshot() == ["y"]


def test_replaced_and_removed_items_are_released_after_the_lock() -> None:
    lst = ThreadSafeList()
    log: list[str] = []

    class AppendsOnDel:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def __del__(self) -> None:
            lst.append(f"del-{self.tag}")
            log.append(self.tag)

    lst.append(AppendsOnDel("set"))
    lst[0] = "replaced"
    lst.append(AppendsOnDel("pop"))
    lst.pop()
    lst.append(AppendsOnDel("del"))
    del lst[-1]
    lst.append(AppendsOnDel("clear"))
    lst.remove_if(lambda v: isinstance(v, AppendsOnDel))
    lst.append(AppendsOnDel("slice"))
    lst[-1:] = []
    gc.collect()
    assert log == ["set", "pop", "del", "clear", "slice"]
    assert lst.snapshot() == ["replaced", "del-set", "del-pop", "del-del", "del-clear", "del-slice"]


def test_cycles_are_collected() -> None:
    class Marker:
        pass

    lst = ThreadSafeList()
    m = Marker()
    lst.append(lst)
    lst.append(m)
    ref = weakref.ref(m)
    del lst, m
    gc.collect()
    assert ref() is None


def test_reentrant_mutation_from_callbacks_raises() -> None:
    lst = ThreadSafeList([3, 1, 2])
    with pytest.raises(ReentrancyError):
        lst.update_at(0, lambda v: lst.append(v))
    with pytest.raises(ReentrancyError):
        lst.remove_if(lambda v: lst.pop())
    assert lst.snapshot() == [3, 1, 2]


def test_conflict_retries_counter_starts_at_zero() -> None:
    lst = ThreadSafeList([1])
    assert lst.conflict_retries == 0
    lst.update_at(0, lambda v: v + 1)
    assert lst.conflict_retries == 0


def test_positional_only_arguments_like_list() -> None:
    lst = ThreadSafeList([1])
    for call in (
        lambda x: x.append(object=2),
        lambda x: x.insert(index=0, object=2),
        lambda x: x.remove(value=1),
        lambda x: x.count(value=1),
        lambda x: x.index(value=1),
        lambda x: x.extend(iterable=[2]),
    ):
        with pytest.raises(TypeError):
            call([1])
        with pytest.raises(TypeError):
            call(lst)
    assert lst.snapshot() == [1]


def test_sort_reverse_accepts_ints() -> None:
    same(lambda x: x.sort(reverse=1), [1, 3, 2])
    same(lambda x: x.sort(reverse=0), [1, 3, 2])


@pytest.mark.parametrize("proto", [0, 1])
def test_old_pickle_protocols(proto: int) -> None:
    lst = ThreadSafeList([1, "a", (2,)])
    assert pickle.loads(pickle.dumps(lst, protocol=proto)) == lst
