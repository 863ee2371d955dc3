"""ThreadSafeDict against dict's contract where outside suites found gaps (issue 12): keys are
compared only when their hashes match, subclassing, construction in ``__init__``, ``None``
arguments. Each test states what ``dict`` does next to what we do."""

from __future__ import annotations

import copy
import pickle
import random
from typing import Any

import pytest
from nogilsafe import MISSING, ThreadSafeDict


class AlwaysEqual:
    """Distinct hashes, and an ``__eq__`` that says True to anything: a probe that compares keys
    whose hashes differ merges them."""

    calls = 0

    def __init__(self, h: int) -> None:
        self.h = h

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        type(self).calls += 1
        return True


def distinct_hashes(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    out: set[int] = set()
    while len(out) < n:
        h = rng.getrandbits(63) - 2**62
        if h != -1:
            out.add(h)
    return list(out)


def test_keys_are_compared_only_when_their_hashes_match() -> None:
    hashes = distinct_hashes(3000, seed=12)

    # Classes of this call: their counters are this call's alone.
    class DictKey(AlwaysEqual):
        calls = 0

    class OurKey(AlwaysEqual):
        calls = 0

    d: dict[Any, int] = {}
    t = ThreadSafeDict()
    for i, h in enumerate(hashes):
        d[DictKey(h)] = i
        t[OurKey(h)] = i
    assert (len(d), DictKey.calls) == (3000, 0)  # dict
    assert (len(t), OurKey.calls) == (3000, 0)  # ThreadSafeDict, the same

    # Every other operation that probes the table, with keys equal to nothing stored.
    fresh = [OurKey(h) for h in distinct_hashes(50, seed=13) if h not in set(hashes)]
    for k in fresh:
        assert k not in t and t.get(k) is None
        with pytest.raises(KeyError):
            t[k]
        assert t.pop(k, None) is None and t.pop_if(k, 0) is False
        assert t.compare_and_set(k, 0, 1) is False
    t.update({fresh[0]: 1}, **{})
    t.setdefault(fresh[1], 2)
    t.increment(fresh[2])
    t.compute(fresh[3], lambda v: 4)
    t.update_value(fresh[4], lambda v: v, 5)
    t.get_or_insert_with(fresh[5], lambda: 6)
    t.swap(fresh[6], 7)
    t |= {fresh[7]: 8}
    assert OurKey.calls == 0 and len(t) == 3008
    del t[fresh[0]]
    assert len(t) == 3007 and OurKey.calls == 0


def test_none_argument_is_a_type_error_like_dict() -> None:
    with pytest.raises(TypeError) as e_d:
        dict(None)  # type: ignore[call-overload]
    with pytest.raises(TypeError) as e_t:
        ThreadSafeDict(None)  # type: ignore[call-overload]
    assert str(e_t.value) == str(e_d.value)
    t = ThreadSafeDict(a=1)
    with pytest.raises(TypeError):
        t.update(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at most 1 argument, got 2"):
        ThreadSafeDict({}, {})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="at most 1 argument, got 2"):
        t.update({}, {})  # type: ignore[call-arg]
    assert t == {"a": 1}


def test_init_on_an_existing_dict_updates_it_like_dict() -> None:
    d: dict[str, int] = {"a": 1}
    t = ThreadSafeDict(a=1)
    d.__init__({"b": 2}, c=3)  # type: ignore[misc]
    t.__init__({"b": 2}, c=3)  # type: ignore[misc]
    assert t == d == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(TypeError):
        ThreadSafeDict.__init__(t, None)  # type: ignore[arg-type]
    assert t == d


def test_increment_with_none_delta_or_default_is_a_type_error() -> None:
    # d[k] += None and None + 1 are TypeErrors for a dict; so are these.
    t = ThreadSafeDict(k=1)
    with pytest.raises(TypeError):
        t.increment("k", None)
    with pytest.raises(TypeError):
        t.increment("absent", 1, None)
    assert t == {"k": 1}
    assert t.increment("k") == 2 and t.increment("new") == 1  # defaults: delta 1, default 0


def test_update_value_takes_none_as_a_default_value() -> None:
    t = ThreadSafeDict()
    assert t.update_value("k", lambda v: [v], None) == [None]
    with pytest.raises(KeyError):
        t.update_value("other", lambda v: v)
    with pytest.raises(KeyError):
        t.update_value("other", lambda v: v, MISSING)  # MISSING means "no default"


class Registry(ThreadSafeDict):
    """A subclass adding a method and an attribute, as users write them."""

    def register(self, name: str, obj: object) -> None:
        self[name] = obj
        self.registered = getattr(self, "registered", 0) + 1


class DictRegistry(dict):  # type: ignore[type-arg]
    def register(self, name: str, obj: object) -> None:
        self[name] = obj
        self.registered = getattr(self, "registered", 0) + 1


def test_subclass_adds_methods_and_attributes() -> None:
    for cls in (DictRegistry, Registry):
        r = cls()
        r.register("a", 1)
        r.register("b", 2)
        assert r == {"a": 1, "b": 2} and r.registered == 2
        assert isinstance(r, cls) and type(r) is cls
    assert isinstance(Registry(), ThreadSafeDict)
    assert repr(Registry(a=1)) == "Registry({'a': 1})"


class Named(ThreadSafeDict):
    def __init__(self, name: str, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.name = name


class DictNamed(dict):  # type: ignore[type-arg]
    def __init__(self, name: str, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.name = name


def test_subclass_init_with_its_own_signature() -> None:
    for cls in (DictNamed, Named):
        n = cls("reg", a=1)
        assert n.name == "reg" and n == {"a": 1}
        p = pickle.loads(pickle.dumps(n))  # rebuilt without calling __init__
        assert type(p) is cls and p.name == "reg" and p == {"a": 1}
        c = copy.copy(n)
        assert type(c) is cls and c.name == "reg" and c == {"a": 1}
        c["b"] = 2
        assert "b" not in n
        dc = copy.deepcopy(n)
        assert type(dc) is cls and dc.name == "reg" and dc == {"a": 1}

    class NoArgs(ThreadSafeDict):
        def __init__(self) -> None:
            super().__init__(x=0)

    assert NoArgs() == {"x": 0}
    with pytest.raises(TypeError):
        NoArgs(1)  # type: ignore[call-arg]


def test_subclass_missing_is_honoured_like_dict() -> None:
    class DictCounter(dict):  # type: ignore[type-arg]
        def __missing__(self, key: object) -> int:
            return 0

    class Counter(ThreadSafeDict):
        def __missing__(self, key: object) -> int:
            return 0

    for cls in (DictCounter, Counter):
        c = cls(a=1)
        assert c["a"] == 1 and c["zz"] == 0
        assert "zz" not in c  # __missing__ does not insert
        assert c.get("zz") is None  # only [] consults __missing__
        with pytest.raises(KeyError):
            c.pop("zz")
        with pytest.raises(KeyError):
            del c["zz"]

    class Raising(ThreadSafeDict):
        def __missing__(self, key: object) -> int:
            raise LookupError(f"no {key}")

    with pytest.raises(LookupError, match="no q"):
        Raising()["q"]

    class Static(ThreadSafeDict):
        @staticmethod
        def __missing__(key: object) -> object:
            return ("static", key)

    class DictStatic(dict):  # type: ignore[type-arg]
        @staticmethod
        def __missing__(key: object) -> object:
            return ("static", key)

    assert Static()["k"] == DictStatic()["k"] == ("static", "k")

    class WithDefault(Counter):  # inherited __missing__
        pass

    assert WithDefault()["x"] == 0
    assert ThreadSafeDict.__dict__.get("__missing__") is None
    with pytest.raises(KeyError):
        ThreadSafeDict()["x"]


def test_new_objects_have_the_types_dict_gives_for_a_subclass() -> None:
    class D(dict):  # type: ignore[type-arg]
        pass

    class T(ThreadSafeDict):
        pass

    # copy() and | build the base type; fromkeys builds cls (through cls()).
    assert type(D(a=1).copy()) is dict and type(T(a=1).copy()) is ThreadSafeDict
    assert type(D(a=1) | {"b": 2}) is dict and type(T(a=1) | {"b": 2}) is ThreadSafeDict
    assert type({"b": 2} | D(a=1)) is dict and type({"b": 2} | T(a=1)) is ThreadSafeDict
    assert type(D.fromkeys("ab")) is D and type(T.fromkeys("ab")) is T
    assert T.fromkeys("ab", 0) == D.fromkeys("ab", 0)
    # copy.copy keeps the class, as for dict subclasses.
    assert type(copy.copy(D())) is D and type(copy.copy(T())) is T
    t = T(a=1)
    same = t
    t |= {"b": 2}
    assert t is same and type(t) is T


def test_fromkeys_of_a_subclass_goes_through_its_setitem() -> None:
    class Upper(ThreadSafeDict):
        def __setitem__(self, key: str, value: object) -> None:
            super().__setitem__(key.upper(), value)

    class DictUpper(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: str, value: object) -> None:
            super().__setitem__(key.upper(), value)

    assert Upper.fromkeys("ab", 1) == DictUpper.fromkeys("ab", 1) == {"A": 1, "B": 1}


def test_local_view_of_a_subclass_shares_core_class_and_attributes() -> None:
    r = Registry()
    r.owner_tag = "main"
    v = r.local()
    assert type(v) is Registry and v is not r
    v.register("x", 1)  # a subclass method through the view
    assert r["x"] == 1 and r.registered == 1  # same table, same attributes
    assert v.owner_tag == "main"
    vv = v.local()
    assert type(vv) is Registry and vv.registered == 1
    vv["y"] = 2
    assert r == {"x": 1, "y": 2} == v

    class Defaulting(Registry):
        def __missing__(self, key: object) -> str:
            return "default"

    assert Defaulting().local()["nope"] == "default"

    class Slotted(ThreadSafeDict):
        __slots__ = ("tag",)

    s = Slotted(a=1)
    sv = s.local()
    assert type(sv) is Slotted and sv == {"a": 1}


def test_subclass_overriding_new_and_setattr_still_gets_views() -> None:
    class Odd(ThreadSafeDict):
        def __new__(cls, *args: object, **kwargs: object) -> Odd:
            raise AssertionError("a view must not run the subclass's __new__")

        def __setattr__(self, name: str, value: object) -> None:
            raise AssertionError("nor its __setattr__")

    o = ThreadSafeDict.__new__(Odd)
    o["k"] = 1
    assert type(o.local()) is Odd and o.local()["k"] == 1


def test_subclass_instances_are_collected_in_cycles() -> None:
    import gc
    import weakref

    class Node(ThreadSafeDict):
        pass

    class Marker:
        pass

    n = Node()
    m = Marker()
    n["self"] = n
    n["view"] = n.local()
    n["m"] = m
    n.attr = n
    ref = weakref.ref(m)
    del n, m
    gc.collect()
    assert ref() is None
