"""ThreadSafeList is subclassable like list, initialises like list, and keeps its views views
through pickling and copying (issue 12, items 2, 3 and 10). Each test states what ``list`` (or a
``list`` subclass) does next to what ThreadSafeList does."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from typing import Any

import pytest
from nogilsafe import ThreadSafeList


class Jobs(ThreadSafeList[Any]):
    """A subclass with its own __init__ signature, an attribute and a method."""

    def __init__(self, name: str, items: Any = ()) -> None:
        super().__init__(items)
        self.name = name

    def describe(self) -> str:
        return f"{self.name}: {len(self)}"


class ListJobs(list[Any]):
    def __init__(self, name: str, items: Any = ()) -> None:
        super().__init__(items)
        self.name = name


def test_subclass_with_its_own_init_attributes_and_methods() -> None:
    ref = ListJobs("q", [1, 2])
    jobs = Jobs("q", [1, 2])
    assert ref == [1, 2] and ref.name == "q"
    assert jobs == [1, 2] and jobs.name == "q" and jobs.describe() == "q: 2"
    assert isinstance(jobs, ThreadSafeList) and type(jobs) is Jobs
    jobs.append(3)
    jobs.extra = "x"
    assert jobs.describe() == "q: 3" and jobs.extra == "x"
    assert repr(jobs) == "Jobs([1, 2, 3])"


def test_operations_that_build_a_new_object_return_the_base_class() -> None:
    ref = ListJobs("q", [1, 2])
    jobs = Jobs("q", [1, 2])
    for build in (
        lambda x: x.copy(),
        lambda x: x[:],
        lambda x: x[::-1],
        lambda x: x + [3],
        lambda x: x * 2,
        lambda x: 2 * x,
    ):
        assert type(build(ref)) is list
        built = build(jobs)
        assert type(built) is ThreadSafeList and built == build(ref)
    assert type([0] + ref) is list
    assert type([0] + jobs) is ThreadSafeList


def test_in_place_operators_keep_the_subclass_instance() -> None:
    jobs = Jobs("q", [1])
    same = jobs
    jobs += [2]
    jobs *= 2
    assert jobs is same and type(jobs) is Jobs and jobs == [1, 2, 1, 2]


def test_local_of_a_subclass_instance_is_a_view_of_the_same_core() -> None:
    jobs = Jobs("q", [1])
    view = jobs.local()
    assert type(view) is Jobs and view is not jobs
    view.append(2)
    assert jobs == [1, 2]
    # Instance attributes are shared with the owner (one __dict__), so methods work through it.
    assert view.name == "q" and view.describe() == "q: 2"
    view.name = "renamed"
    assert jobs.name == "renamed"
    assert type(view.local()) is Jobs and view.local().describe() == "renamed: 2"


def test_subclass_with_slots_and_overridden_new() -> None:
    class Slotted(ThreadSafeList[Any]):
        __slots__ = ("tag",)

    s = Slotted([1])
    s.tag = "t"
    assert s == [1] and s.local() == [1] and type(s.local()) is Slotted

    class WithNew(ThreadSafeList[Any]):
        def __new__(cls, *args: Any) -> WithNew:
            self = super().__new__(cls)
            self.made_by_new = True
            return self

    w = WithNew([1, 2])
    assert w == [1, 2] and w.made_by_new
    assert copy.copy(w).made_by_new  # copy.copy rebuilds through cls.__new__, as for list


def test_subclass_instances_copy_and_pickle_like_list_subclasses() -> None:
    ref = ListJobs("q", [1, [2]])
    jobs = Jobs("q", [1, [2]])
    for dup in (copy.copy, copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))):
        r, j = dup(ref), dup(jobs)
        assert type(r) is ListJobs and r.name == "q" and r == [1, [2]]
        assert type(j) is Jobs and j.name == "q" and j == [1, [2]]
        assert j is not jobs
        j.append(3)
        assert jobs == [1, [2]]
    assert copy.copy(jobs)[1] is jobs[1]
    assert copy.deepcopy(jobs)[1] is not jobs[1]
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(jobs, protocol=proto)).describe() == "q: 2"


def test_subclass_that_contains_itself_pickles() -> None:
    jobs = Jobs("q")
    jobs.append(jobs)
    jobs.me = jobs
    p = pickle.loads(pickle.dumps(jobs))
    assert p[0] is p and p.me is p
    d = copy.deepcopy(jobs)
    assert d[0] is d and d.me is d


def test_init_on_an_existing_list_replaces_its_contents() -> None:
    ref = [1, 2, 3]
    ref.__init__([4])  # type: ignore[misc]
    lst = ThreadSafeList([1, 2, 3])
    lst.__init__([4])  # type: ignore[misc]
    assert ref == [4] and lst == [4]
    ref.__init__()  # type: ignore[misc]
    lst.__init__()  # type: ignore[misc]
    assert ref == [] and lst == []
    # list empties itself before reading the iterable: initialised from itself, it is empty.
    ref, lst = [1, 2], ThreadSafeList([1, 2])
    ref.__init__(ref)  # type: ignore[misc]
    lst.__init__(lst)  # type: ignore[misc]
    assert ref == [] and lst == []
    # A view is the same list.
    lst = ThreadSafeList([1])
    lst.local().__init__("ab")  # type: ignore[misc]
    assert lst == ["a", "b"]


def test_construction_arguments_like_list() -> None:
    for args, kwargs in (((None,), {}), (([1], [2]), {}), ((), {"iterable": [1]}), ((5,), {})):
        with pytest.raises(TypeError) as ref:
            list(*args, **kwargs)
        with pytest.raises(TypeError) as ours:
            ThreadSafeList(*args, **kwargs)
        assert str(ours.value) == str(ref.value).replace("list", "ThreadSafeList", 1)
    # __new__ ignores its arguments, as list.__new__ does, so a subclass may take its own.
    assert ThreadSafeList.__new__(ThreadSafeList, 1, 2, x=3) == []
    assert list.__new__(list, 1, 2, x=3) == []


def test_init_of_a_failing_iterable_leaves_the_list_unchanged() -> None:
    def failing() -> Any:
        yield 1
        raise KeyError("mid")

    lst = ThreadSafeList([1, 2])
    with pytest.raises(KeyError):
        lst.__init__(failing())  # type: ignore[misc]
    assert lst == [1, 2]


def test_view_and_owner_stay_one_list_through_deepcopy() -> None:
    lst = ThreadSafeList([1])
    view = lst.local()
    c = copy.deepcopy({"owner": lst, "view": view})
    c["owner"].append(2)
    assert c["view"] == [1, 2] and lst == [1]
    assert c["view"] is not view and c["owner"] is not lst
    # A view copied alone is a view of a copy of its owner.
    v2 = copy.deepcopy(view)
    v2.append(3)
    assert v2 == [1, 3] and lst == [1]


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_view_and_owner_stay_one_list_through_pickle(proto: int) -> None:
    lst = ThreadSafeList([1])
    p = pickle.loads(pickle.dumps({"view": lst.local(), "owner": lst}, protocol=proto))
    p["view"].append(2)
    assert p["owner"] == [1, 2]
    jobs = Jobs("q", [1])
    p = pickle.loads(pickle.dumps([jobs.local(), jobs], protocol=proto))
    assert type(p[0]) is Jobs and p[0].describe() == "q: 1"
    p[1].append(5)
    assert p[0] == [1, 5]


def test_view_reduces_to_its_owner() -> None:
    lst = ThreadSafeList([1])
    func, args = lst.local().__reduce__()
    assert len(args) == 1 and args[0] is lst
    assert func(lst) == lst and type(func(lst)) is ThreadSafeList


def test_subclass_instances_in_cycles_are_collected() -> None:
    class Marker:
        pass

    jobs = Jobs("q")
    view = jobs.local()
    m = Marker()
    jobs.append(view)
    jobs.append(m)
    jobs.self_ref = jobs
    ref = weakref.ref(m)
    wref = weakref.ref(jobs)
    del jobs, view, m
    gc.collect()
    assert ref() is None and wref() is None
