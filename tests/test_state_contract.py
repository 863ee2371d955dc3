"""ThreadSafeState against the builtins' and ``copy``'s contracts (issue 12, items 2, 6-8, 10).

Each test states what the builtin (``dict``, ``copy.deepcopy``, ``pickle``) does next to what
the state does.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from nogilsafe import StateChange, StateSnapshot, ThreadSafeState

SURROGATES = ["\ud800", "a\udfffb", "\ud83d\ude00", "\U0001f600", "plain", ""]

# --- keys are any str (item 6) ---------------------------------------------------------------


def test_keys_with_lone_surrogates_work_like_dict_keys() -> None:
    d: dict[str, int] = {}
    s: ThreadSafeState[int] = ThreadSafeState()
    for i, k in enumerate(SURROGATES):
        d[k] = i
        s.set(k, i)
    # A surrogate pair written as two code points is not the character it would encode.
    assert len(d) == len(s) == len(SURROGATES)
    for i, k in enumerate(SURROGATES):
        assert (k in d) and (k in s) and s.has(k)
        assert d.get(k) == s.get(k) == s[k] == i
        assert k in s.snapshot() and s.snapshot()[k] == i
    assert sorted(d) == sorted(s.keys()) == sorted(s.snapshot())
    assert s.snapshot().to_dict() == d
    assert dict(s.items()) == d
    assert s.history(key="\ud800")[0].key == "\ud800"
    assert [c.key for c in s.history()] == SURROGATES
    assert "key='\\ud800'" in repr(s.history(key="\ud800")[0])
    assert s.delete("\ud800") and "\ud800" not in s
    assert s.diff(len(SURROGATES), len(SURROGATES) + 1) == {"\ud800": (0, None)}
    assert s.update({"\udc80": 1}) and s.get("\udc80") == 1
    assert s.update_with("\udc80", lambda v: v + 1) == 2
    assert s.compare_and_set("\udc80", 2, 3) and s["\udc80"] == 3

    def tx(view: Any) -> list[str]:
        view["\udcff"] = 9
        return sorted(view.keys())

    assert "\udcff" in s.transaction(tx) and s.get("\udcff") == 9
    with pytest.raises(KeyError, match="udbff"):
        s.get_required("\udbff")


def test_non_str_keys_are_still_refused_with_a_type_error() -> None:
    s: ThreadSafeState[int] = ThreadSafeState()
    for bad in (1, b"k", None, ("k",)):
        with pytest.raises(TypeError, match="keys must be str"):
            s.set(bad, 1)  # type: ignore[arg-type]
        assert bad not in s  # `in` answers False, as for a dict missing the key
    with pytest.raises(TypeError):
        s.history(key=1)  # type: ignore[arg-type]
    assert len(s) == 0


# --- values keep the aliasing copy.deepcopy gives them (item 7) ------------------------------


class Node:
    def __init__(self) -> None:
        self.ref: Any = None


def shapes() -> dict[str, Any]:
    x = [1, 2]
    d = {"a": 1}
    t = ([3],)
    cyc: list[Any] = [1]
    cyc.append(cyc)
    node = Node()
    via_object: list[Any] = [node]
    node.ref = via_object
    return {
        "shared list": [x, x],
        "shared dict in dict": {"p": d, "q": d, "r": [d]},
        "shared tuple holding a list": [t, t],
        "shared bytearray": [bytearray(b"ab")] * 2,
        "list containing itself": cyc,
        "cycle list -> object -> list": via_object,
        "shared object": [node, node],
    }


@pytest.mark.parametrize("name", sorted(shapes()))
def test_values_come_back_with_deepcopys_aliasing(name: str) -> None:
    value = shapes()[name]
    expected = copy.deepcopy(value)
    s = ThreadSafeState()
    s.set("k", value)
    for got in (s.get("k"), s.snapshot()["k"], s.history()[-1].new_value):
        assert aliasing(got) == aliasing(expected), name
        assert got is not value


def aliasing(v: Any) -> list[tuple[int, int]]:
    """The identity structure of a value: for each container reached (depth first), the index
    of the first container it is identical to."""
    seen: list[Any] = []
    out: list[tuple[int, int]] = []

    def walk(o: Any) -> None:
        for i, s in enumerate(seen):
            if s is o:
                out.append((len(out), i))
                return
        if isinstance(o, (list, tuple, dict, set, bytearray, Node)):
            seen.append(o)
            out.append((len(out), -1))
            items = (
                o.values()
                if isinstance(o, dict)
                else (o.ref,)
                if isinstance(o, Node)
                else o
                if not isinstance(o, bytearray)
                else ()
            )
            for item in items:
                walk(item)

    walk(v)
    return out


def test_the_cycle_through_an_object_survives() -> None:
    node = Node()
    outer: list[Any] = [node]
    node.ref = outer
    s = ThreadSafeState()
    s.set("k", outer)
    got = s.get("k")
    assert got[0].ref is got  # copy.deepcopy(outer) gives the same


def test_plain_data_is_still_isolated_and_immutable_parts_shared() -> None:
    s = ThreadSafeState()
    value = {"tags": ["a"], "point": (1, 2.5, "x"), "fs": frozenset({1, (2, 3)})}
    s.set("k", value)
    got = s.get("k")
    assert got == value and got is not value and got["tags"] is not value["tags"]
    got["tags"].append("b")
    assert s.get("k")["tags"] == ["a"]
    # Deeply immutable parts are returned as they are, as copy.deepcopy returns them.
    assert copy.deepcopy(value)["point"] is value["point"]
    assert got["point"] is value["point"]


# --- copying and pickling (items 8, 10) -------------------------------------------------------


def test_snapshot_is_copyable_and_picklable() -> None:
    s = ThreadSafeState({"a": [1, {"b": 2}], "\ud800": "surrogate"})
    s.set("n", 1)
    snap = s.snapshot()
    # Immutable, like a tuple: copy.copy(t) is t and copy.deepcopy(t) is t.
    t = (1, 2)
    assert copy.copy(t) is t and copy.deepcopy(t) is t
    assert copy.copy(snap) is snap and copy.deepcopy(snap) is snap
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(snap, protocol))
        assert isinstance(back, StateSnapshot)
        assert back == snap and back.version == snap.version == 1
        assert back.to_dict() == {"a": [1, {"b": 2}], "\ud800": "surrogate", "n": 1}
    s.set("n", 2)
    assert pickle.loads(pickle.dumps(snap))["n"] == 1  # a version, not the live state


def test_snapshot_can_be_stored_as_a_state_value() -> None:
    snap = ThreadSafeState({"x": 1}).snapshot()
    s = ThreadSafeState()
    s.set("snap", snap)
    assert s.get("snap") is snap  # deepcopy of an immutable object is the object
    assert s.snapshot()["snap"]["x"] == 1


def test_snapshot_of_a_reference_state_unpickles_as_references() -> None:
    s = ThreadSafeState({"a": [1]}, isolation="reference")
    back = pickle.loads(pickle.dumps(s.snapshot()))
    assert back["a"] is back["a"]  # stored as given, like the state it came from


@pytest.mark.parametrize("kind", ["owner", "view"])
def test_state_refuses_pickling_and_copying_with_the_reason(kind: str) -> None:
    s = ThreadSafeState({"a": 1})
    obj = s if kind == "owner" else s.local()
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match=r"ThreadSafeState.*live shared state.*snapshot"):
            attempt(obj)
    # Also inside a container: the whole copy fails rather than aliasing or half-copying.
    with pytest.raises(TypeError, match="ThreadSafeState"):
        copy.deepcopy({"state": s, "view": s.local()})


def test_state_change_refuses_pickling_but_copies_as_itself() -> None:
    s = ThreadSafeState()
    s.set("k", 1)
    change = s.history()[0]
    assert isinstance(change, StateChange)
    with pytest.raises(TypeError, match=r"StateChange.*history"):
        pickle.dumps(change)
    assert copy.copy(change) is change and copy.deepcopy(change) is change


# --- subclassing (item 2) ---------------------------------------------------------------------


class AppState(ThreadSafeState[Any]):
    """A dict subclass would add methods and attributes and override __init__ like this."""

    def __init__(self, name: str, *, history: int = 5) -> None:
        super().__init__({"name": name, "hits": 0}, max_history=history)
        self.label = name.upper()

    def hit(self) -> int:
        return int(self.update_with("hits", lambda n: n + 1))


class Bare(ThreadSafeState[Any]):
    pass


def test_subclass_adds_methods_attributes_and_its_own_init() -> None:
    class D(dict):  # type: ignore[type-arg]
        def __init__(self, name: str) -> None:
            super().__init__(name=name)
            self.label = name.upper()

    d = D("svc")
    a = AppState("svc")
    assert d.label == a.label == "SVC"
    assert d["name"] == a["name"] == "svc"
    assert a.hit() == 1 and a.hit() == 2
    assert isinstance(a, ThreadSafeState) and type(a) is AppState
    assert a.metrics()["max_history"] == 5
    assert repr(a).startswith("ThreadSafeState(")
    b = Bare({"x": 1}, isolation="reference", max_history=0)
    assert b["x"] == 1 and b.metrics()["isolation"] == "reference"


def test_local_of_a_subclass_instance_views_the_same_core() -> None:
    a = AppState("svc")
    view = a.local()
    view.set("name", "other")
    assert a["name"] == "other"
    assert a.hit() == 1 and view["hits"] == 1
    assert isinstance(view, ThreadSafeState)


def test_init_runs_once_and_bad_arguments_leave_the_state_usable() -> None:
    s = ThreadSafeState({"a": 1})
    with pytest.raises(RuntimeError, match="runs once"):
        s.__init__({"b": 2})  # type: ignore[misc]
    assert s.snapshot().to_dict() == {"a": 1}
    with pytest.raises(TypeError):
        ThreadSafeState(1, 2)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ThreadSafeState(max_history=-1)
    with pytest.raises(RuntimeError, match="view"):
        s.local().__init__()  # type: ignore[misc]

    class Late(ThreadSafeState[Any]):
        def __init__(self) -> None:
            self.set("early", 1)
            super().__init__({"a": 1})

    with pytest.raises(RuntimeError, match="before the state is first written"):
        Late()


def test_subclass_instance_refuses_pickling_too() -> None:
    with pytest.raises(TypeError, match="ThreadSafeState"):
        pickle.dumps(AppState("svc"))
