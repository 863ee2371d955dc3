"""Garbage collection through `.local()` views, for every type that holds Python objects.

The owner (the object a constructor returns) reports the core's references to the collector;
a view reports only its owner. These tests pin the three consequences: cycles through views are
collected, a live view keeps the contents it can reach, and a reference is never counted twice
(which would let the collector clear an object still in use).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from nogilsafe import OnceCell, ThreadSafeDict, ThreadSafeList, ThreadSafeState


class Holder:
    """An object the container holds and that holds the container (or a view of it)."""

    def on_change(self, changes: object) -> None:
        pass


def store_in_dict(c: Any, obj: object) -> None:
    c["obj"] = obj


def store_in_list(c: Any, obj: object) -> None:
    c.append(obj)


def store_in_cell(c: Any, obj: object) -> None:
    c.set(obj)


def store_in_state(c: Any, obj: Holder) -> None:
    # A state holds Python objects it calls back: its subscribers.
    c.subscribe(obj.on_change)


def stored_in_dict(c: Any) -> object:
    return c["obj"]


def stored_in_list(c: Any) -> object:
    return c[0]


def stored_in_cell(c: Any) -> object:
    return c.get()


KINDS: dict[
    str, tuple[Callable[[], Any], Callable[[Any, Any], None], Callable[[Any], object] | None]
] = {
    "dict": (ThreadSafeDict, store_in_dict, stored_in_dict),
    "list": (ThreadSafeList, store_in_list, stored_in_list),
    "once": (OnceCell, store_in_cell, stored_in_cell),
    "state": (ThreadSafeState, store_in_state, None),
}


@pytest.fixture(params=sorted(KINDS))
def kind(
    request: pytest.FixtureRequest,
) -> tuple[Callable[[], Any], Callable[[Any, Any], None], Callable[[Any], object] | None]:
    return KINDS[request.param]


@pytest.mark.parametrize(
    "make_views",
    [lambda owner: [owner.local()], lambda owner: [owner.local().local(), owner.local()]],
    ids=["one view", "views of views"],
)
def test_cycle_through_views_is_collected(
    kind: Any, make_views: Callable[[Any], list[Any]]
) -> None:
    make, store, _ = kind
    owner = make()
    h = Holder()
    h.views = make_views(owner)  # type: ignore[attr-defined]
    store(h.views[0], h)  # type: ignore[attr-defined]
    ref = weakref.ref(h)
    del owner, h
    gc.collect()
    assert ref() is None


def cycle(kind: Any) -> tuple[Any, Holder]:
    """A new container holding a Holder that holds the container."""
    make, store, _ = kind
    owner = make()
    h = Holder()
    h.owner = owner  # type: ignore[attr-defined]
    store(owner, h)
    return owner, h


def test_a_live_view_keeps_what_its_owner_holds(kind: Any) -> None:
    stored = kind[2]
    owner, h = cycle(kind)
    view = owner.local()
    ref = weakref.ref(h)
    del owner, h
    gc.collect()
    # Only the view is left outside the cycle, and it must still reach everything.
    assert ref() is not None
    assert ref().owner.local() is not None  # type: ignore[union-attr]
    if stored is not None:
        assert stored(view) is ref()
    del view
    gc.collect()
    assert ref() is None


def test_a_reference_is_never_counted_twice(kind: Any) -> None:
    # `h` is held by a local variable (invisible to the collector) and by the core, and the
    # container and its view are reachable only through `h`. Were each view to report the core's
    # reference to `h`, the collector would count two internal references against its two real
    # ones, conclude the group unreachable, and clear `h` while this test still holds it.
    stored = kind[2]
    owner, h = cycle(kind)
    h.view = owner.local()  # type: ignore[attr-defined]
    del owner
    gc.collect()
    assert h.view is not None and h.owner is not None  # type: ignore[attr-defined]
    if stored is not None:
        assert stored(h.view) is h  # type: ignore[attr-defined]
