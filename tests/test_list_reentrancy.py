"""Python code run by ThreadSafeList operations (__eq__, sort keys, predicates, update functions,
__del__) re-entering the same list: a correct result or ReentrancyError, never a hang.

Every scenario runs in a daemon thread joined with a timeout, so a deadlock fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest
from nogilsafe import ReentrancyError, ThreadSafeList

TIMEOUT = 10.0


def bounded(fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Run ``fn`` in a daemon thread; its result, its exception, or a failure if it hangs."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout}s: deadlock or livelock"
    if "error" in out:
        raise out["error"]
    return out.get("result")


class EqCalls:
    """Equal to nothing; runs ``action`` from its __eq__."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def __eq__(self, other: object) -> bool:
        self.action()
        return False

    __hash__ = object.__hash__


def test_eq_that_mutates_during_remove_raises() -> None:
    lst = ThreadSafeList()
    lst.extend([EqCalls(lambda: lst.append("x")), 1])
    with pytest.raises(ReentrancyError):
        bounded(lambda: lst.remove(1))
    assert len(lst) == 2


@pytest.mark.parametrize(
    "op",
    [
        lambda lst: lst.append_if_absent(5),
        lambda lst: lst.extend_if_absent([5, 6]),
        lambda lst: lst.compare_and_set(0, 5, "new"),
        lambda lst: lst.remove(5),
    ],
    ids=["append_if_absent", "extend_if_absent", "compare_and_set", "remove"],
)
def test_eq_that_mutates_during_a_mutating_op_raises(op: Callable[[ThreadSafeList], Any]) -> None:
    lst = ThreadSafeList()
    lst.append(EqCalls(lambda: lst.pop_or()))
    with pytest.raises(ReentrancyError):
        bounded(lambda: op(lst))
    assert len(lst) == 1


def test_mutation_through_a_view_is_the_same_list() -> None:
    lst = ThreadSafeList()
    view = lst.local()
    lst.extend([EqCalls(lambda: view.append("x")), 1])
    with pytest.raises(ReentrancyError):
        bounded(lambda: lst.remove(1))


def test_eq_that_mutates_during_read_only_ops_works_on_a_snapshot() -> None:
    lst = ThreadSafeList()
    lst.extend([EqCalls(lambda: lst.append("x")), 1, 2])
    assert bounded(lambda: 2 in lst) is True
    assert bounded(lambda: lst.count(2)) == 1
    assert bounded(lambda: lst.index(2)) == 2
    assert bounded(lambda: lst == [None, 1, 2]) is False
    # Each __eq__ call above appended once; none of them broke the scan.
    assert lst.count("x") >= 3


def test_eq_that_reads_the_list_during_remove_works() -> None:
    lst = ThreadSafeList()
    seen: list[int] = []
    lst.extend([EqCalls(lambda: seen.append(len(lst) + lst[1])), 1, 2])
    bounded(lambda: lst.remove(2))
    assert lst[1:] == [1] and seen


def test_eq_in_another_list_may_mutate_that_list() -> None:
    other = ThreadSafeList()
    lst = ThreadSafeList([EqCalls(lambda: other.append(1)), 3])
    bounded(lambda: lst.remove(3))
    assert len(lst) == 1 and other.snapshot() == [1]


def test_sort_key_that_mutates_raises_value_error_like_list_and_leaves_list() -> None:
    """list.sort raises ValueError("list modified during sort") when its key modifies the list.
    Here the modification itself is refused (ReentrancyError, kept as the cause) and the list is
    left as it was."""
    ref = [3, 1, 2]

    def ref_key(v: int) -> int:
        ref.append(v)
        return v

    with pytest.raises(ValueError, match="list modified during sort"):
        ref.sort(key=ref_key)

    lst = ThreadSafeList([3, 1, 2])

    def key(v: int) -> int:
        lst.append(v)
        return v

    with pytest.raises(ValueError, match="list modified during sort") as info:
        bounded(lambda: lst.sort(key=key))
    assert isinstance(info.value.__cause__, ReentrancyError)
    assert lst.snapshot() == [3, 1, 2]


def test_sort_key_that_swallows_the_refusal_still_raises() -> None:
    """The key caught the ReentrancyError and went on: list.sort would still raise."""
    lst = ThreadSafeList([3, 1, 2])

    def key(v: int) -> int:
        try:
            lst.local().clear()
        except ReentrancyError:
            pass
        return v

    with pytest.raises(ValueError, match="list modified during sort"):
        bounded(lambda: lst.sort(key=key))
    assert lst.snapshot() == [3, 1, 2]


def test_sort_key_error_of_its_own_propagates() -> None:
    lst = ThreadSafeList([3, 1, 2])
    other = ThreadSafeList()

    def key(v: int) -> int:
        other.append(v)  # another list: allowed
        if v == 2:
            raise KeyError("own")
        return v

    with pytest.raises(KeyError, match="own"):
        bounded(lambda: lst.sort(key=key))
    assert lst.snapshot() == [3, 1, 2] and len(other) >= 1


def test_sort_key_that_reads_works() -> None:
    lst = ThreadSafeList([3, 1, 2])
    bounded(lambda: lst.sort(key=lambda v: (lst.index(v) * 0) + v))
    assert lst.snapshot() == [1, 2, 3]


def test_comparison_in_sort_that_mutates_raises_value_error() -> None:
    lst = ThreadSafeList()

    class Cmp:
        def __init__(self, v: int) -> None:
            self.v = v

        def __lt__(self, other: Cmp) -> bool:
            lst.clear()
            return self.v < other.v

    lst.extend([Cmp(2), Cmp(1)])
    with pytest.raises(ValueError, match="list modified during sort"):
        bounded(lambda: lst.sort())
    assert [c.v for c in lst] == [2, 1]


def test_update_at_and_remove_if_callbacks() -> None:
    lst = ThreadSafeList([1, 2, 3])
    with pytest.raises(ReentrancyError):
        bounded(lambda: lst.update_at(0, lambda v: lst.insert(0, v)))
    with pytest.raises(ReentrancyError):
        bounded(lambda: lst.remove_if(lambda v: lst.extend([v])))
    assert lst.snapshot() == [1, 2, 3]
    # Reading from the callbacks is fine.
    assert bounded(lambda: lst.update_at(0, lambda v: v + len(lst))) == 4
    assert bounded(lambda: lst.remove_if(lambda v: v == lst[-1])) == 1
    assert lst.snapshot() == [4, 2]


def test_dels_that_append_never_deadlock() -> None:
    lst = ThreadSafeList()
    fired: list[str] = []

    class Appender:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def __del__(self) -> None:
            fired.append(self.tag)
            lst.append(self.tag)

    def scenario() -> None:
        lst.append(Appender("setitem"))
        lst[0] = 0
        lst.append(Appender("pop"))
        lst.pop()
        lst.extend([Appender("clear")])
        lst.clear()
        lst.extend([Appender("drain")])
        lst.drain()
        lst.extend([Appender("remove"), 1])
        lst.remove_if(lambda v: isinstance(v, Appender))
        lst.extend([Appender("slice")])
        lst[-1:] = [9]
        lst.extend([Appender("delslice")])
        del lst[-1:]
        lst.extend([Appender("imul")])
        lst.__imul__(0)
        lst.append(Appender("cas"))
        lst.compare_and_set(-1, lst[-1], "c")
        lst.append(Appender("update"))
        lst.update_at(-1, lambda v: "u")
        gc.collect()

    bounded(scenario)
    assert fired == [
        "setitem",
        "pop",
        "clear",
        "drain",
        "remove",
        "slice",
        "delslice",
        "imul",
        "cas",
        "update",
    ]
    assert lst.snapshot()[-2:] == ["u", "update"]


def test_dels_that_mutate_during_gc_of_a_cycle() -> None:
    keep = ThreadSafeList()

    class Appender:
        def __del__(self) -> None:
            keep.append("collected")

    def scenario() -> None:
        cyc = ThreadSafeList([Appender()])
        cyc.append(cyc)
        del cyc
        gc.collect()

    bounded(scenario)
    assert keep.snapshot() == ["collected"]


def test_eq_that_waits_for_another_thread_appending() -> None:
    """No lock is held while __eq__ runs, so another thread can write meanwhile."""
    lst = ThreadSafeList()

    def helper_appends() -> None:
        t = threading.Thread(target=lambda: lst.append("from-helper"))
        t.start()
        t.join(TIMEOUT)
        assert not t.is_alive()

    lst.extend([EqCalls(helper_appends), "target"])
    bounded(lambda: lst.remove("target"))
    assert len(lst) == 2 and lst[-1] == "from-helper"


def test_eq_that_waits_for_another_thread_popping_the_front_restarts() -> None:
    lst = ThreadSafeList()
    done = threading.Event()

    def helper_pops_front() -> None:
        if done.is_set():
            return
        done.set()
        t = threading.Thread(target=lambda: lst.pop(0))
        t.start()
        t.join(TIMEOUT)

    first = EqCalls(helper_pops_front)
    lst.extend(["a", first, "target", "b"])
    bounded(lambda: lst.remove("target"))
    assert lst.snapshot()[-1] == "b" and "target" not in lst
    assert lst.conflict_retries >= 1


def test_sort_key_racing_a_writer_retries() -> None:
    lst = ThreadSafeList([3, 1, 2])
    once = threading.Event()

    def key(v: int) -> int:
        if not once.is_set():
            once.set()
            t = threading.Thread(target=lambda: lst.append(0))
            t.start()
            t.join(TIMEOUT)
        return v

    bounded(lambda: lst.sort(key=key))
    assert lst.snapshot() == [0, 1, 2, 3]
    assert lst.conflict_retries >= 1


def test_sort_that_never_wins_gives_up_with_a_clear_error() -> None:
    lst = ThreadSafeList([3, 1, 2])

    def key(v: int) -> int:
        if v == 3:  # once per attempt: another thread writes while the sort runs
            t = threading.Thread(target=lambda: lst.__setitem__(slice(0, 0), []) or lst.append(-1))
            t.start()
            t.join(TIMEOUT)
        return v

    with pytest.raises(RuntimeError, match="kept changing"):
        bounded(lambda: lst.sort(key=key), timeout=60)
    assert lst.snapshot()[:3] == [3, 1, 2]


def test_update_at_racing_writers_reruns_fn() -> None:
    lst = ThreadSafeList([0])
    calls: list[int] = []

    def fn(v: int) -> int:
        calls.append(v)
        if len(calls) == 1:
            t = threading.Thread(target=lambda: lst.__setitem__(0, 100))
            t.start()
            t.join(TIMEOUT)
        return v + 1

    assert bounded(lambda: lst.update_at(0, fn)) == 101
    assert calls == [0, 100] and lst.snapshot() == [101]
