"""Pickling and deep-copying an object together with its `.local()` views (issue 12, item 10):
the copy is a copied owner plus views of *that* copy, sharing one core as the originals do."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from nogilsafe import AtomicInt, ThreadSafeDict


class Registry(ThreadSafeDict):
    pass


def dict_write(obj: Any, n: int) -> None:
    obj["n"] = n


def dict_read(obj: Any) -> Any:
    return obj.get("n")


def int_write(obj: Any, n: int) -> None:
    obj.set(n)


def int_read(obj: Any) -> Any:
    return obj.get()


KINDS: dict[str, tuple[Callable[[], Any], Callable[[Any, int], None], Callable[[Any], Any]]] = {
    "ThreadSafeDict": (lambda: ThreadSafeDict(n=1), dict_write, dict_read),
    "ThreadSafeDict subclass": (lambda: Registry(n=1), dict_write, dict_read),
    "AtomicInt": (lambda: AtomicInt(1), int_write, int_read),
}

COPIES: dict[str, Callable[[Any], Any]] = {
    "deepcopy": copy.deepcopy,
    **{
        f"pickle protocol {p}": (lambda x, p=p: pickle.loads(pickle.dumps(x, p))) for p in (0, 2, 5)
    },
}


@pytest.mark.parametrize("copier", sorted(COPIES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_copied_owner_and_view_share_one_core(kind: str, copier: str) -> None:
    make, write, read = KINDS[kind]
    owner = make()
    view = owner.local()
    vv = view.local()
    clone = COPIES[copier]({"owner": owner, "view": view, "vv": vv})
    c_owner, c_view, c_vv = clone["owner"], clone["view"], clone["vv"]
    assert type(c_owner) is type(owner) and type(c_view) is type(view)
    assert c_owner is not owner and c_view is not view
    write(c_owner, 7)  # through the copied owner: seen by the copied views, not the originals
    assert read(c_view) == read(c_vv) == 7 and read(owner) == read(view) == 1
    write(c_vv, 8)
    assert read(c_owner) == 8 and read(owner) == 1
    # A view copied alone brings a copy of its owner along.
    alone = COPIES[copier](view)
    write(alone, 9)
    assert read(alone.local()) == 9 and read(owner) == 1


@pytest.mark.parametrize("copier", sorted(COPIES))
def test_dict_holding_its_own_view_copies_into_one_core(copier: str) -> None:
    d = ThreadSafeDict()
    d["me"] = d.local()
    d["x"] = 1
    c = COPIES[copier](d)
    c["x"] = 2
    assert c["me"]["x"] == 2 and d["x"] == 1 and d["me"]["x"] == 1


def test_shallow_copy_of_a_view_is_independent() -> None:
    d = ThreadSafeDict(a=1)
    a = AtomicInt(1)
    for view, write, read in ((d.local(), dict_write, dict_read), (a.local(), int_write, int_read)):
        c = copy.copy(view)
        write(c, 5)
        assert read(c) == 5 and read(view) != 5
    assert copy.copy(d.local()) == {"a": 1}
