"""Hypothesis stateful comparison of ThreadSafeList with builtin list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nogilsafe import ThreadSafeList


class Boxed:
    """An int compared by Python code: drives the operations' optimistic (unlocked) paths."""

    __slots__ = ("v",)

    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Boxed):
            return other.v == self.v
        if isinstance(other, int):
            return other == self.v
        return NotImplemented

    def __lt__(self, other: Any) -> bool:
        return self.v < (other.v if isinstance(other, Boxed) else other)

    def __gt__(self, other: Any) -> bool:
        return self.v > (other.v if isinstance(other, Boxed) else other)

    def __int__(self) -> int:
        return self.v

    def __hash__(self) -> int:
        return hash(self.v)

    def __repr__(self) -> str:
        return f"Boxed({self.v})"


values = st.one_of(st.integers(-4, 4), st.integers(-4, 4).map(Boxed))
indices = st.integers(-8, 8)
bounds = st.one_of(st.none(), st.integers(-9, 9))
steps = st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2]))


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        r = fn()
    except Exception as e:
        return ("raised", (type(e), str(e)))
    if isinstance(r, ThreadSafeList):
        r = r.snapshot()
    return ("returned", r)


class ListModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: list[Any] = []
        self.real = ThreadSafeList()

    def both(
        self, fn: Callable[[Any], Any], model_fn: Callable[[list[Any]], Any] | None = None
    ) -> None:
        expected = outcome(lambda: (model_fn or fn)(self.model))
        got = outcome(lambda: fn(self.real))
        assert got == expected

    @rule(x=values)
    def append(self, x: Any) -> None:
        self.both(lambda l: l.append(x))

    @rule(xs=st.lists(values, max_size=4))
    def extend(self, xs: list[Any]) -> None:
        self.both(lambda l: l.extend(xs))

    @rule(i=indices, x=values)
    def insert(self, i: int, x: Any) -> None:
        self.both(lambda l: l.insert(i, x))

    @rule(i=indices)
    def pop(self, i: int) -> None:
        self.both(lambda l: l.pop(i))

    @rule(x=values)
    def remove(self, x: Any) -> None:
        self.both(lambda l: l.remove(x))

    @rule(x=values, start=bounds, stop=bounds)
    def index(self, x: Any, start: int | None, stop: int | None) -> None:
        args = (x,) if start is None else (x, start) if stop is None else (x, start, stop)
        self.both(lambda l: l.index(*args))

    @rule(x=values)
    def count_and_contains(self, x: Any) -> None:
        self.both(lambda l: (l.count(x), x in l))

    @rule(i=indices, x=values)
    def setitem(self, i: int, x: Any) -> None:
        def op(l: Any) -> None:
            l[i] = x

        self.both(op)

    @rule(start=bounds, stop=bounds, step=steps, xs=st.lists(values, max_size=5))
    def setslice(
        self, start: int | None, stop: int | None, step: int | None, xs: list[Any]
    ) -> None:
        def op(l: Any) -> None:
            l[start:stop:step] = xs

        self.both(op)

    @rule(start=bounds, stop=bounds, step=steps)
    def slices(self, start: int | None, stop: int | None, step: int | None) -> None:
        def op(l: Any) -> None:
            del l[start:stop:step]

        self.both(lambda l: l[start:stop:step])
        self.both(op)

    @rule(i=indices)
    def delitem(self, i: int) -> None:
        def op(l: Any) -> None:
            del l[i]

        self.both(op)

    @rule(reverse=st.booleans(), keyed=st.booleans())
    def sort(self, reverse: bool, keyed: bool) -> None:
        key = (lambda v: -int(v)) if keyed else None
        self.both(lambda l: l.sort(key=key, reverse=reverse))

    @rule()
    def reverse(self) -> None:
        self.both(lambda l: l.reverse())

    @rule(n=st.integers(-1, 3))
    def repeat(self, n: int) -> None:
        def op(l: Any) -> None:
            l *= n

        self.both(lambda l: l * n)
        self.both(op)

    @rule(x=values)
    def append_if_absent(self, x: Any) -> None:
        def model(m: list[Any]) -> bool:
            if x in m:
                return False
            m.append(x)
            return True

        self.both(lambda l: l.append_if_absent(x), model)

    @rule(xs=st.lists(values, max_size=5))
    def extend_if_absent(self, xs: list[Any]) -> None:
        def model(m: list[Any]) -> int:
            n = 0
            for x in xs:
                if x not in m:
                    m.append(x)
                    n += 1
            return n

        self.both(lambda l: l.extend_if_absent(xs), model)

    @rule(k=st.integers(2, 4))
    def remove_if(self, k: int) -> None:
        def model(m: list[Any]) -> int:
            kept = [v for v in m if int(v) % k]
            n = len(m) - len(kept)
            m[:] = kept
            return n

        self.both(lambda l: l.remove_if(lambda v: int(v) % k == 0), model)

    @rule(i=indices)
    def update_at(self, i: int) -> None:
        def model(m: list[Any]) -> Any:
            m[i] = int(m[i]) + 1
            return m[i]

        self.both(lambda l: l.update_at(i, lambda v: int(v) + 1), model)

    @rule(i=indices, expected=values, new=values)
    def compare_and_set(self, i: int, expected: Any, new: Any) -> None:
        def model(m: list[Any]) -> bool:
            cur = m[i]
            if cur is expected or cur == expected:
                m[i] = new
                return True
            return False

        self.both(lambda l: l.compare_and_set(i, expected, new), model)

    @rule(i=indices)
    def pop_or(self, i: int) -> None:
        def model(m: list[Any]) -> Any:
            try:
                return m.pop(i)
            except IndexError:
                return "default"

        self.both(lambda l: l.pop_or("default", i), model)

    @rule()
    def drain(self) -> None:
        def model(m: list[Any]) -> list[Any]:
            out = m[:]
            m.clear()
            return out

        self.both(lambda l: l.drain(), model)

    @invariant()
    def same_contents(self) -> None:
        assert self.real.snapshot() == self.model
        assert len(self.real) == len(self.model)
        assert list(self.real) == self.model
        assert list(reversed(self.real)) == self.model[::-1]
        assert (self.real == self.model) and not (self.real != self.model)


ListModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestListModel = ListModel.TestCase
