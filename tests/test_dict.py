"""ThreadSafeDict against the builtin dict: every method, including error cases."""

from __future__ import annotations

import collections.abc
import copy
import gc
import pickle
import types
import weakref
from typing import Any

import pytest
from nogilsafe import DELETE, MISSING, ReentrancyError, ThreadSafeDict


def both(*args, **kwargs):  # type: ignore[no-untyped-def]
    return dict(*args, **kwargs), ThreadSafeDict(*args, **kwargs)


def test_construction_like_dict() -> None:
    for args, kwargs in [
        ((), {}),
        (({"a": 1, "b": 2},), {}),
        (([("a", 1), ("b", 2), ("a", 3)],), {}),
        ((), {"x": 1}),
        (({"a": 1},), {"a": 2, "z": 0}),
    ]:
        d, t = both(*args, **kwargs)
        assert t == d and list(t.items()) == list(d.items())
    assert ThreadSafeDict(ThreadSafeDict(a=1)) == {"a": 1}


def test_construction_errors_like_dict() -> None:
    for bad in (5, [1], [(1, 2, 3)], [([], 1)]):
        with pytest.raises(TypeError if bad != [(1, 2, 3)] else ValueError) as e_t:
            ThreadSafeDict(bad)
        with pytest.raises(type(e_t.value)) as e_d:
            dict(bad)
        assert str(e_t.value) == str(e_d.value)


def test_item_access_and_errors() -> None:
    d, t = both(a=1)
    t["b"] = d["b"] = 2
    assert t["a"] == 1 and t["b"] == 2
    with pytest.raises(KeyError) as e:
        t["missing"]
    assert e.value.args == ("missing",)
    with pytest.raises(KeyError) as e:
        del t["missing"]
    assert e.value.args == ("missing",)
    with pytest.raises(KeyError) as e:
        t[(1, 2)]
    assert e.value.args == ((1, 2),)
    with pytest.raises(TypeError, match="unhashable"):
        t[[1]] = 1
    with pytest.raises(TypeError, match="unhashable"):
        t[[1]]
    with pytest.raises(TypeError, match="unhashable"):
        [1] in t
    del t["a"]
    del d["a"]
    assert t == d and len(t) == 1 and bool(t) and not ThreadSafeDict()


def test_numeric_keys_equal_across_types_like_dict() -> None:
    d, t = both()
    for k in (1, 1.0, True, 2, 2.5, -1, 2**70, "s", b"s", None, (1, "a"), (1.0, "a"), 0j):
        d[k] = k
        t[k] = k
    assert t == d and list(t) == list(d) and len(t) == len(d)
    assert list(t.items()) == list(d.items())
    nan = float("nan")
    t[nan] = 1
    assert nan in t and float("nan") not in t


def test_get_setdefault_pop_popitem() -> None:
    d, t = both(a=1, b=2, c=3)
    assert t.get("a") == 1 and t.get("z") is None and t.get("z", 5) == 5
    assert t.setdefault("a", 9) == 1 and t.setdefault("n") is None and d.setdefault("n") is None
    assert t.setdefault("m", []) == [] and d.setdefault("m", []) == []
    assert t.pop("a") == d.pop("a")
    assert t.pop("zz", "dflt") == "dflt"
    with pytest.raises(KeyError) as e:
        t.pop("zz")
    assert e.value.args == ("zz",)
    with pytest.raises(TypeError):
        t.pop("a", 1, 2)
    assert t == d
    while d:
        assert t.popitem() == d.popitem()
    with pytest.raises(KeyError, match="popitem"):
        t.popitem()


def test_order_is_dicts_order() -> None:
    d, t = both()
    for i in range(100):
        d[i % 37] = i
        t[i % 37] = i
        if i % 5 == 0:
            del d[i % 37]
            del t[i % 37]
    assert list(t) == list(d) and list(t.values()) == list(d.values())
    assert list(reversed(t)) == list(reversed(d))


def test_update_forms_and_atomic_failure() -> None:
    d, t = both(a=1)
    for arg, kw in (
        [({"b": 2},), {}],
        [([("c", 3)],), {"d": 4}],
        [(ThreadSafeDict(e=5),), {}],
        [(), {"f": 6}],
    ):
        d.update(*arg, **kw)
        t.update(*arg, **kw)
    assert t == d and list(t.items()) == list(d.items())
    before = t.snapshot()
    with pytest.raises(TypeError):
        t.update([("ok", 1), ([], 2)])
    with pytest.raises(TypeError):
        t.update(5)
    assert t.snapshot() == before  # all or nothing
    t.update_many({"x": 1, "y": 2})
    assert t["x"] == 1 and t["y"] == 2


def test_clear_copy_fromkeys_snapshot() -> None:
    t = ThreadSafeDict(a=[1])
    c = t.copy()
    assert type(c) is ThreadSafeDict and c == t and c["a"] is t["a"]
    c["b"] = 2
    assert "b" not in t
    s = t.snapshot()
    assert type(s) is dict and s == {"a": [1]}
    t.clear()
    assert len(t) == 0 and t == {}
    assert ThreadSafeDict.fromkeys("abc") == dict.fromkeys("abc")
    assert ThreadSafeDict.fromkeys([1, 2], 0) == {1: 0, 2: 0}
    assert type(ThreadSafeDict.fromkeys([])) is ThreadSafeDict


def test_views_are_snapshots_with_set_ops() -> None:
    t = ThreadSafeDict(a=1, b=2)
    k, v, i = t.keys(), t.values(), t.items()
    t["c"] = 3
    assert set(k) == {"a", "b"} and len(k) == 2 and "a" in k and "c" not in k
    assert sorted(v) == [1, 2] and ("a", 1) in i
    assert t.keys() & {"a", "z"} == {"a"} and t.keys() | {"z"} == {"a", "b", "c", "z"}
    assert t.keys() == {"a", "b", "c"}
    it = iter(t)
    t.clear()
    assert list(it) == ["a", "b", "c"]  # never "changed size during iteration"


def test_equality_with_dicts_mappings_and_others() -> None:
    t = ThreadSafeDict(a=1)
    assert t == {"a": 1} and t == {"a": 1} and t != {"a": 2} and t != {}
    assert t == ThreadSafeDict(a=1) and t != ThreadSafeDict(a=1, b=2)
    assert t == types.MappingProxyType({"a": 1})
    assert t != [("a", 1)] and (t == 1) is False
    with pytest.raises(TypeError):
        t < t  # type: ignore[operator]


def test_or_and_ior() -> None:
    t = ThreadSafeDict(a=1, b=2)
    r = t | {"b": 3, "c": 4}
    assert type(r) is ThreadSafeDict and r == {"a": 1, "b": 3, "c": 4} and t == {"a": 1, "b": 2}
    r2 = {"z": 0, "a": 9} | t
    assert r2 == {"z": 0, "a": 1, "b": 2} and list(r2) == ["z", "a", "b"]
    with pytest.raises(TypeError):
        t | [("x", 1)]  # type: ignore[operator]
    same = t
    t |= [("x", 1)]
    assert t is same and t["x"] == 1
    with pytest.raises(TypeError):
        t |= 5  # type: ignore[arg-type]


def test_repr_bool_and_class_getitem() -> None:
    assert repr(ThreadSafeDict()) == "ThreadSafeDict({})"
    assert repr(ThreadSafeDict(a=1)) == "ThreadSafeDict({'a': 1})"
    t = ThreadSafeDict()
    t["self"] = t
    assert repr(t) == "ThreadSafeDict({'self': ThreadSafeDict({...})})"
    alias = ThreadSafeDict[str, int]
    assert isinstance(alias, types.GenericAlias) and alias.__origin__ is ThreadSafeDict
    with pytest.raises(TypeError, match="unhashable"):
        hash(ThreadSafeDict())


def test_is_a_mutable_mapping() -> None:
    t = ThreadSafeDict()
    assert isinstance(t, collections.abc.MutableMapping)
    assert isinstance(t, collections.abc.Mapping)


def test_pickle_copy_deepcopy_with_cycles() -> None:
    t = ThreadSafeDict(a=[1, 2], b="x")
    for clone in (pickle.loads(pickle.dumps(t)), copy.copy(t), copy.deepcopy(t)):
        assert type(clone) is ThreadSafeDict and clone == t and clone is not t
    assert copy.copy(t)["a"] is t["a"] and copy.deepcopy(t)["a"] is not t["a"]
    t["me"] = t
    c = pickle.loads(pickle.dumps(t))
    assert c["me"] is c
    d = copy.deepcopy(t)
    assert d["me"] is d


def test_local_view_shares_the_table() -> None:
    t = ThreadSafeDict()
    v = t.local()
    assert v is not t and type(v) is ThreadSafeDict
    v["k"] = 1
    assert t["k"] == 1 and v == t


def test_self_cycle_is_collected() -> None:
    class Probe:
        pass

    t = ThreadSafeDict()
    p = Probe()
    t["self"] = t
    t["p"] = p
    ref = weakref.ref(p)
    del t, p
    gc.collect()
    assert ref() is None


def test_compare_and_set_pop_if_swap() -> None:
    t = ThreadSafeDict()
    obj, other = object(), object()
    t["k"] = obj
    assert t.compare_and_set("k", other, 1) is False and t["k"] is obj
    assert t.compare_and_set("k", obj, 1) is True and t["k"] == 1
    assert t.compare_and_set("k", 1.0, "x") is True  # plain values: C-level equality
    assert t.compare_and_set("missing", None, 1) is False and "missing" not in t
    big = [1]
    t["l"] = big
    assert t.compare_and_set("l", [1], 2) is False  # lists: identity only, no __eq__
    assert t.pop_if("l", [1]) is False and t.pop_if("l", big) is True and "l" not in t
    assert t.pop_if("nope", None) is False
    assert t.swap("s", 1) is None and t.swap("s", 2) == 1 and t["s"] == 2
    assert t.swap("s2", 1, default=MISSING) is MISSING


def test_increment() -> None:
    t = ThreadSafeDict()
    assert t.increment("a") == 1 and t.increment("a", 10) == 11 and t.increment("a", -20) == -9
    assert t.increment("b", default=100) == 101
    t["big"] = 2**63 - 1
    assert t.increment("big") == 2**63  # overflow falls back to Python ints
    t["f"] = 1.5
    assert t.increment("f", 1) == 2.5
    assert t.increment("x", 2**70) == 2**70
    t["s"] = "a"
    with pytest.raises(TypeError):
        t.increment("s")
    assert t["s"] == "a"


def test_get_or_insert_with() -> None:
    t = ThreadSafeDict()
    calls = []

    def factory() -> list[int]:
        calls.append(1)
        return [len(calls)]

    v = t.get_or_insert_with("k", factory)
    assert v == [1] and t.get_or_insert_with("k", factory) is v and len(calls) == 1

    def boom() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError):
        t.get_or_insert_with("z", boom)
    assert "z" not in t
    assert t.get_or_insert_with("z", lambda: 3) == 3
    with pytest.raises(ReentrancyError):
        t.get_or_insert_with("r", lambda: t.__setitem__("other", 1))
    assert "r" not in t and "other" not in t
    with pytest.raises(ValueError):
        t.get_or_insert_with("q", factory, timeout=-1)


def test_compute_and_update_value() -> None:
    t = ThreadSafeDict()
    seen = []
    assert t.compute("a", lambda v: seen.append(v) or 1) == 1 and seen == [MISSING]
    assert t.compute("a", lambda v: v + 1) == 2
    assert t.compute("a", lambda v: DELETE) is None and "a" not in t
    assert t.compute("a", lambda v: DELETE) is None and "a" not in t
    with pytest.raises(KeyError):
        t.update_value("u", lambda v: v + 1)
    assert t.update_value("u", lambda v: v + 1, 0) == 1
    assert t.update_value("u", lambda v: v * 10) == 10
    assert t.update_value("u", lambda v: DELETE) is None and "u" not in t

    def boom(v: object) -> object:
        raise ValueError("bad")

    t["k"] = 5
    with pytest.raises(ValueError):
        t.compute("k", boom)
    assert t["k"] == 5
    with pytest.raises(ReentrancyError):
        t.compute("k", lambda v: t.__setitem__("k", 0))
    assert t["k"] == 5
    assert t.compute("k", lambda v: t["k"] + v) == 10  # reads inside fn are fine
    assert repr(DELETE) == "nogilsafe.DELETE" and not MISSING
    assert pickle.loads(pickle.dumps(DELETE)) is DELETE


@pytest.mark.thread_unsafe(
    reason="runs its scenario in its own thread to turn a deadlock into a failure"
)
def test_operations_with_itself_do_not_deadlock() -> None:
    from nogilsafe.testing import run_concurrently

    def body(_i: int) -> None:
        t = ThreadSafeDict(a=1)
        t.update(t)
        t |= t
        t.update_many(t)
        assert t == t and not (t != t)
        assert t | t == {"a": 1}
        assert ThreadSafeDict(t) == t

    run_concurrently(body, threads=1, timeout=10)


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.get(key="a"),
        lambda d: d.get("a", default=1),
        lambda d: d.setdefault(key="a"),
        lambda d: d.pop(key="a"),
        lambda d: type(d).fromkeys(iterable=["a"]),
    ],
)
def test_dict_methods_take_positional_arguments_only_as_dict_does(call: Any) -> None:
    with pytest.raises(TypeError):
        call({"a": 1})
    d = ThreadSafeDict({"a": 1})
    with pytest.raises(TypeError):
        call(d)
    assert d == {"a": 1}
