"""ThreadSafeState: the seeds' test list (single-threaded behaviour)."""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import gc
import sys
import time

import pytest
from nogilsafe import (
    NogilsafeError,
    ReentrancyError,
    StateChange,
    StateConflictError,
    StateKeyError,
    StateRollbackError,
    StateSnapshot,
    StateVersionError,
    ThreadSafeState,
    ThreadSafeStateError,
)

# --- basic operations -------------------------------------------------------------------------


def test_basic_operations() -> None:
    s = ThreadSafeState()
    assert s.version == 0 and s.get_version() == 0 and len(s) == 0
    assert s.get("a") is None and s.get("a", 7) == 7
    assert s.set("a", 1) == 1
    assert s.get("a") == 1 and s["a"] == 1
    assert s.has("a") and "a" in s and "b" not in s and 3 not in s
    assert s.update({"b": 2, "c": [3]}) == 2
    assert sorted(s.keys()) == ["a", "b", "c"]
    assert sorted(s.values(), key=repr) == sorted([1, 2, [3]], key=repr)
    assert dict(s.items()) == {"a": 1, "b": 2, "c": [3]}
    assert len(s) == 3
    assert s.delete("a") is True
    assert s.delete("a") is False
    assert s.version == 3  # a delete of a missing key makes no version
    s.clear()
    assert len(s) == 0 and s.version == 4
    with pytest.raises(KeyError):
        s["missing"]


def test_values_of_every_plain_type_round_trip() -> None:
    s = ThreadSafeState()
    value = {
        "none": None,
        "bool": True,
        "int": 2**100,
        "neg": -5,
        "float": 1.5,
        "complex": 1j,
        "str": "héllo",
        "bytes": b"\x00\x01",
        "bytearray": bytearray(b"ab"),
        "list": [1, [2, [3]]],
        "tuple": (1, (2,)),
        "set": {1, 2},
        "frozenset": frozenset({3}),
        "dict": {1: "a", (1, 2): {"n": None}, frozenset({1}): 1},
    }
    s.set("v", value)
    got = s.get("v")
    assert got == value
    assert type(got["tuple"]) is tuple and type(got["set"]) is set
    assert type(got["frozenset"]) is frozenset and type(got["bytearray"]) is bytearray
    assert list(got) == list(value)  # dict order kept


def test_keys_must_be_str() -> None:
    s = ThreadSafeState()
    with pytest.raises(TypeError, match="keys must be str"):
        s.set(1, "x")
    with pytest.raises(TypeError):
        ThreadSafeState({1: 2})
    assert s.version == 0


# --- isolation --------------------------------------------------------------------------------


def test_mutating_returned_value_does_not_change_state() -> None:
    s = ThreadSafeState({"cfg": {"items": [1, 2], "meta": {"k": "v"}}})
    got = s.get("cfg")
    got["items"].append(3)
    got["meta"]["k"] = "changed"
    got["new"] = 1
    assert s.get("cfg") == {"items": [1, 2], "meta": {"k": "v"}}
    assert s.get("cfg") is not s.get("cfg")


def test_mutating_value_passed_to_set_does_not_change_state() -> None:
    s = ThreadSafeState()
    value = {"items": [1, 2]}
    s.set("cfg", value)
    value["items"].append(3)
    value["x"] = 1
    assert s.get("cfg") == {"items": [1, 2]}
    init = {"a": [1]}
    s2 = ThreadSafeState(init)
    init["a"].append(2)
    assert s2.get("a") == [1]


class Custom:
    def __init__(self, items: list[int]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.items == self.items


class MyList(list):  # type: ignore[type-arg]
    pass


def test_other_objects_are_deep_copied_on_write_and_read() -> None:
    s = ThreadSafeState()
    obj = Custom([1])
    s.set("o", {"nested": obj, "sub": MyList([1])})
    obj.items.append(2)
    got = s.get("o")
    assert got["nested"] == Custom([1]) and got["nested"] is not obj
    assert type(got["sub"]) is MyList
    got["nested"].items.append(9)
    assert s.get("o")["nested"] == Custom([1])


def test_isolation_deepcopy_and_reference() -> None:
    d = ThreadSafeState(isolation="deepcopy")
    v = [1, {"a": 2}]
    d.set("v", v)
    v[1]["a"] = 3
    assert d.get("v") == [1, {"a": 2}]
    assert d.get("v") is not d.get("v")
    r = ThreadSafeState(isolation="reference")
    t = (1, 2)
    r.set("t", t)
    assert r.get("t") is t
    assert r.metrics()["isolation"] == "reference"
    with pytest.raises(ValueError, match="isolation"):
        ThreadSafeState(isolation="nope")


def test_cyclic_value_falls_back_to_deepcopy() -> None:
    s = ThreadSafeState()
    cyc: list[object] = [1]
    cyc.append(cyc)
    s.set("c", cyc)
    got = s.get("c")
    assert got[0] == 1 and got[1] is got and got is not cyc


def test_too_deep_value_is_rejected_and_state_unchanged() -> None:
    s = ThreadSafeState({"a": 1})
    deep: list[object] = []
    cur = deep
    for _ in range(600):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(ValueError, match="nested"):
        s.set("a", deep)
    assert s.get("a") == 1 and s.version == 0


# --- versioning and rollback ------------------------------------------------------------------


def test_versions_and_rollback() -> None:
    s = ThreadSafeState({"a": 1})
    s.set("a", 2)
    s.set("b", 3)
    assert s.version == 2
    v = s.rollback(1, changed_by="admin")
    assert v == 3 and s.version == 3
    assert dict(s.items()) == {"a": 2}
    s.rollback(0)
    assert dict(s.items()) == {"a": 1}
    last = s.history()[-1]
    assert last.operation == "rollback" and last.key is None
    assert last.old_value == 3 and last.new_value == 0


def test_rollback_to_future_and_evicted_versions() -> None:
    s = ThreadSafeState(max_history=3)
    for i in range(10):
        s.set("x", i)
    with pytest.raises(StateVersionError, match="does not exist"):
        s.rollback(11)
    with pytest.raises(StateRollbackError, match="oldest retained version is 7"):
        s.rollback(2)
    assert s.version == 10 and s.get("x") == 9
    s.rollback(7)
    assert s.get("x") == 6
    assert issubclass(StateRollbackError, ThreadSafeStateError)
    assert issubclass(ThreadSafeStateError, NogilsafeError)


def test_rollback_is_undoable() -> None:
    s = ThreadSafeState({"a": 1})
    s.set("a", 2)
    s.rollback(0)
    s.rollback(1)
    assert s.get("a") == 2


# --- history ----------------------------------------------------------------------------------


def test_history_records_and_filters() -> None:
    s = ThreadSafeState()
    t0 = time.time()
    s.set("a", 1, changed_by="agent1")
    s.set("b", 2, changed_by="agent2")
    s.set("a", 3)
    s.delete("b", changed_by="agent1")
    h = s.history()
    assert [c.version for c in h] == [1, 2, 3, 4]
    assert [c.operation for c in h] == ["set", "set", "set", "delete"]
    assert h[0].old_value is None and h[0].new_value == 1 and h[0].changed_by == "agent1"
    assert h[2].old_value == 1 and h[2].new_value == 3 and h[2].changed_by is None
    assert h[3].old_value == 2 and h[3].new_value is None
    assert t0 - 1 <= h[0].timestamp <= time.time() + 1
    assert [c.version for c in s.history(key="a")] == [1, 3]
    assert [c.version for c in s.history(limit=2)] == [3, 4]
    assert [c.version for c in s.history(since_version=3)] == [3, 4]
    assert [c.version for c in s.history(key="a", since_version=2)] == [3]
    assert isinstance(h[0], StateChange)
    with pytest.raises(AttributeError):
        h[0].version = 9  # type: ignore[misc]


def test_history_values_are_isolated() -> None:
    s = ThreadSafeState()
    s.set("a", [1])
    s.history()[0].new_value.append(2)
    assert s.history()[0].new_value == [1]


def test_history_limit_and_clear_history() -> None:
    s = ThreadSafeState(max_history=5)
    for i in range(20):
        s.set("k", i)
    h = s.history()
    assert len(h) == 5 and [c.version for c in h] == list(range(16, 21))
    s.update({"x": 1, "y": 2})
    assert [c.key for c in s.history()[-2:]] == ["x", "y"]
    assert {c.version for c in s.history()[-2:]} == {21}
    s.clear_history()
    assert s.history() == [] and s.metrics()["history_size"] == 0
    with pytest.raises(StateRollbackError):
        s.rollback(20)
    assert s.get("k") == 19


def test_retention_follows_the_history_records() -> None:
    s = ThreadSafeState(max_history=10)
    for i in range(4):
        s.update({f"k{j}": i for j in range(5)})  # 5 records per version
    # The 10 records left are versions 3 and 4: version 2 is the oldest that can be restored.
    assert [c.version for c in s.history()] == [3] * 5 + [4] * 5
    m = s.metrics()
    assert m["oldest_retained_version"] == 2 and m["retained_versions"] == 3
    with pytest.raises(StateRollbackError, match="oldest retained version is 2"):
        s.rollback(1)
    s.rollback(2)
    assert s.get("k0") == 1 and s.version == 5
    assert s.diff(2, 4) == {f"k{j}": (1, 3) for j in range(5)}


def test_clear_of_more_keys_than_the_history_holds_can_be_undone() -> None:
    s = ThreadSafeState({f"k{i}": i for i in range(50)}, max_history=10)
    v = s.clear()
    assert len(s.history()) == 10 and {c.version for c in s.history()} == {v}
    s.rollback(v - 1)
    assert len(s) == 50 and s.get("k49") == 49


def test_max_history_zero() -> None:
    s = ThreadSafeState(max_history=0)
    s.set("a", 1)
    assert s.history() == []
    with pytest.raises(StateRollbackError):
        s.rollback(0)
    with pytest.raises(ValueError):
        ThreadSafeState(max_history=-1)


# --- snapshots and diff -----------------------------------------------------------------------


def test_snapshot_is_immutable_across_later_writes() -> None:
    s = ThreadSafeState({"a": [1], "b": 2})
    snap = s.snapshot()
    s.set("a", [9])
    s.delete("b")
    s.set("c", 3)
    assert snap.version == 0 and len(snap) == 2
    assert snap["a"] == [1] and snap.get("b") == 2 and "c" not in snap
    snap["a"].append(5)
    assert snap["a"] == [1]
    assert isinstance(snap, collections.abc.Mapping) and isinstance(snap, StateSnapshot)
    assert sorted(snap) == ["a", "b"] and snap.to_dict() == {"a": [1], "b": 2}
    assert snap == {"a": [1], "b": 2} and snap != s.snapshot()
    with pytest.raises(KeyError):
        snap["c"]
    with pytest.raises(TypeError):
        snap["a"] = 1  # type: ignore[index]


def test_diff_between_versions() -> None:
    s = ThreadSafeState({"a": 1, "b": 2})
    s.set("a", 10)
    s.delete("b")
    s.set("c", 3)
    assert s.diff(0, 3) == {"a": (1, 10), "b": (2, None), "c": (None, 3)}
    assert s.diff(1, 1) == {}
    with pytest.raises(StateVersionError):
        s.diff(0, 99)


# --- atomic updates ---------------------------------------------------------------------------


def test_update_with_and_default() -> None:
    s = ThreadSafeState()
    assert s.update_with("n", lambda n: n + 1, default=0) == 1
    assert s.update_with("n", lambda n: n + 1, default=0) == 2
    assert s.update_with("l", lambda v: (v or []) + [1]) == [1]
    assert s.history()[-1].operation == "update_with"


def test_failing_update_function_leaves_state() -> None:
    s = ThreadSafeState({"n": 1})

    def boom(_: int) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        s.update_with("n", boom)
    with pytest.raises(ZeroDivisionError):
        s.transaction(lambda tx: (tx.set("n", 5), 1 / 0))
    assert s.get("n") == 1 and s.version == 0


def test_update_function_mutating_same_state_raises_reentrancy() -> None:
    s = ThreadSafeState({"n": 1})
    with pytest.raises(ReentrancyError):
        s.update_with("n", lambda n: s.set("n", n + 1))
    with pytest.raises(ReentrancyError):
        s.transaction(lambda tx: s.set("x", 1))
    other = ThreadSafeState()
    s.update_with("n", lambda n: (other.set("seen", n), n + 1)[1])
    assert s.get("n") == 2 and other.get("seen") == 1


def test_transaction_view() -> None:
    s = ThreadSafeState({"a": 10, "b": 0, "gone": 1})

    def move(tx):  # type: ignore[no-untyped-def]
        assert tx.version == 0
        tx["a"] = tx["a"] - 3
        tx.set("b", tx.get("b") + 3)
        assert tx["a"] == 7 and "a" in tx
        del tx["gone"]
        assert "gone" not in tx and tx.delete("gone") is False
        with pytest.raises(KeyError):
            del tx["gone"]
        assert sorted(tx.keys()) == ["a", "b"]
        return "done"

    assert s.transaction(move, changed_by="mover") == "done"
    assert dict(s.items()) == {"a": 7, "b": 3}
    assert s.version == 1
    assert {c.changed_by for c in s.history(since_version=1)} == {"mover"}
    kept = []
    s.transaction(kept.append)
    with pytest.raises(RuntimeError, match="no longer valid"):
        kept[0].get("a")
    assert s.version == 1  # a read-only transaction commits nothing


@pytest.mark.thread_unsafe(
    reason="commits from a thread of its own between the transaction's read and commit"
)
def test_transaction_reruns_on_conflict() -> None:
    s = ThreadSafeState({"a": 0})
    runs = []
    other = s.local()

    def fn(tx):  # type: ignore[no-untyped-def]
        runs.append(1)
        v = tx["a"]
        if len(runs) == 1:
            # Simulate another thread committing between our read and our commit.
            import threading

            t = threading.Thread(target=lambda: other.set("a", 100))
            t.start()
            t.join(5)
        tx["a"] = v + 1

    s.transaction(fn)
    assert len(runs) == 2 and s.get("a") == 101
    assert s.metrics()["retries"] >= 1


def test_compare_and_set() -> None:
    s = ThreadSafeState({"a": {"x": 1}})
    assert s.compare_and_set("a", {"x": 1}, {"x": 2}) is True
    assert s.compare_and_set("a", {"x": 1}, {"x": 3}) is False
    assert s.compare_and_set("missing", None, 1) is False
    assert s.get("a") == {"x": 2} and s.version == 1


# --- errors, metrics, init, misc --------------------------------------------------------------


def test_get_required_names_available_keys() -> None:
    s = ThreadSafeState({"alpha": 1, "beta": 2})
    assert s.get_required("alpha") == 1
    with pytest.raises(StateKeyError) as e:
        s.get_required("gamma")
    assert isinstance(e.value, KeyError)
    assert "gamma" in str(e.value) and "alpha" in str(e.value) and "beta" in str(e.value)


def test_metrics() -> None:
    s = ThreadSafeState({"a": 1}, max_history=10)
    s.set("a", 2)
    s.update({"b": 1})
    s.delete("b")
    s.update_with("a", lambda v: v + 1)
    s.rollback(1)
    m = s.metrics()
    assert m["sets"] == 1 and m["updates"] == 1 and m["deletes"] == 1
    assert m["update_withs"] == 1 and m["rollbacks"] == 1 and m["commits"] == 5
    assert m["current_version"] == 5 and m["key_count"] == 1
    assert m["history_size"] == 5 and m["max_history"] == 10 and m["retries"] == 0


@dataclasses.dataclass
class Config:
    name: str
    tags: list[str]


class FakeModel:
    def model_dump(self) -> dict[str, object]:
        return {"model": True, "n": 1}


def test_initialization_from_mapping_dataclass_and_model() -> None:
    assert dict(ThreadSafeState({"a": 1}).items()) == {"a": 1}
    assert dict(ThreadSafeState(collections.OrderedDict(a=1)).items()) == {"a": 1}
    assert dict(ThreadSafeState(Config("x", ["t"])).items()) == {"name": "x", "tags": ["t"]}
    assert dict(ThreadSafeState(FakeModel()).items()) == {"model": True, "n": 1}
    with pytest.raises(TypeError, match="mapping, a dataclass"):
        ThreadSafeState(42)


def test_repr_generic_and_local() -> None:
    s = ThreadSafeState[int]({"a": 1, "b": 2})
    assert repr(s) == "ThreadSafeState(version=0, keys=2, isolation='freeze')"
    view = s.local()
    assert view is not s
    view.set("c", 3)
    assert s.get("c") == 3 and s.version == 1
    assert "version=1" in repr(s.history()[0]) and repr(s.snapshot()).startswith("StateSnapshot(")


def test_subscribe_and_close() -> None:
    s = ThreadSafeState()
    seen: list[list[tuple[str | None, str, object]]] = []
    h = s.subscribe(
        lambda changes: seen.append([(c.key, c.operation, c.new_value) for c in changes])
    )
    s.set("a", 1)
    s.update({"b": 2, "c": 3})
    assert seen[0] == [("a", "set", 1)]
    assert sorted(seen[1]) == [("b", "update", 2), ("c", "update", 3)]
    assert not h.closed
    h.close()
    assert h.closed
    s.set("a", 2)
    assert len(seen) == 2
    with pytest.raises(TypeError):
        s.subscribe(42)


def test_subscriber_cycle_through_the_state_is_collected() -> None:
    import weakref

    class Agent:
        def __init__(self) -> None:
            self.state: ThreadSafeState[int] = ThreadSafeState()
            self.seen = 0
            self.sub = self.state.subscribe(self.on_change)

        def on_change(self, changes: list[StateChange]) -> None:
            self.seen += len(changes)

    agent = Agent()
    agent.state.set("a", 1)
    assert agent.seen == 1
    sub, ref = agent.sub, weakref.ref(agent)
    del agent
    gc.collect()
    assert ref() is None
    # The handle outlives its state: closing it is a no-op.
    assert sub.closed
    sub.close()


def test_raising_subscriber_does_not_break_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ThreadSafeState()
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    calls: list[int] = []

    def bad(_changes: object) -> None:
        raise RuntimeError("subscriber failed")

    with s.subscribe(bad), s.subscribe(lambda c: calls.append(1)):
        assert s.set("a", 1) == 1
    assert s.get("a") == 1 and calls == [1]
    assert len(reported) == 1 and "subscriber failed" in str(reported[0])


@pytest.mark.thread_unsafe(
    reason="runs its scenario in its own thread to turn a deadlock into a failure"
)
def test_subscriber_may_write_to_the_state() -> None:
    s = ThreadSafeState()

    def mirror(changes):  # type: ignore[no-untyped-def]
        for c in changes:
            if c.key == "a":
                s.set("mirror", c.new_value)

    s.subscribe(mirror)
    in_thread(lambda: s.set("a", 5))
    assert s.get("mirror") == 5


def test_wait_for_returns_immediately_when_true_and_times_out() -> None:
    from nogilsafe import LockTimeoutError

    s = ThreadSafeState({"done": True})
    snap = s.wait_for(lambda st: st.get("done"))
    assert snap.version == 0
    with pytest.raises(LockTimeoutError):
        s.wait_for(lambda st: st.get("never"), timeout=0.05)
    with pytest.raises(TimeoutError):
        s.wait_for(lambda st: False, timeout=0)
    with pytest.raises(ValueError):
        s.wait_for(lambda st: True, timeout=-1)


def in_thread(fn) -> None:  # type: ignore[no-untyped-def]
    """Run ``fn`` in a thread joined with a timeout: a deadlock fails the test, never hangs it."""
    from nogilsafe.testing import run_concurrently

    run_concurrently(lambda _: fn(), threads=1, timeout=10)


@pytest.mark.thread_unsafe(
    reason="runs its scenario in its own thread to turn a deadlock into a failure"
)
def test_dropping_state_with_deep_values_runs_del_outside_locks() -> None:
    deleted: list[int] = []

    class Tracked:
        def __del__(self) -> None:
            # Re-entering states from __del__ must not deadlock.
            other.set("deleted", len(deleted))
            s.get("t")
            deleted.append(1)

    other = ThreadSafeState()
    s = ThreadSafeState(max_history=1, isolation="reference")

    def scenario() -> None:
        s.set("t", Tracked())
        s.set("t", 1)
        s.set("t", 2)  # evicts the version holding Tracked: its __del__ runs after the commit
        gc.collect()

    in_thread(scenario)
    assert deleted == [1] and other.get("deleted") == 0


def test_conflict_error_type() -> None:
    assert issubclass(StateConflictError, ThreadSafeStateError)
    assert copy.copy is not None


def test_clear_records_each_removed_key() -> None:
    s = ThreadSafeState({"a": 1, "b": [2]})
    v = s.clear(changed_by="reset")
    assert v == 1 and len(s) == 0
    h = s.history()
    assert sorted((c.key, c.operation, c.old_value, c.new_value) for c in h) == [
        ("a", "clear", 1, None),
        ("b", "clear", [2], None),
    ]
    assert {c.changed_by for c in h} == {"reset"} and s.clear() == 1
    s.rollback(0)
    assert dict(s.items()) == {"a": 1, "b": [2]}


def test_bad_input_leaves_state_unchanged() -> None:
    s = ThreadSafeState({"a": 1})

    class NoCopy:
        def __deepcopy__(self, memo: object) -> object:
            raise RuntimeError("cannot copy")

    with pytest.raises(RuntimeError, match="cannot copy"):
        s.update({"b": 2, "c": NoCopy()})
    with pytest.raises(TypeError):
        s.update({"b": 2, 3: 4})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        s.update_with(5, lambda v: v)  # type: ignore[arg-type]
    assert dict(s.items()) == {"a": 1} and s.version == 0 and s.history() == []
