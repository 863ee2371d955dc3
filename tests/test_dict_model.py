"""Hypothesis stateful test: ThreadSafeDict behaves like dict under any sequence of operations."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nogilsafe import DELETE, ThreadSafeDict

keys = st.one_of(
    st.integers(-5, 5),
    st.sampled_from(["a", "b", "c"]),
    st.just(1.0),
    st.just(True),
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"])),
    st.none(),
)
values = st.integers(-3, 3)


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as e:
        return (type(e).__name__, e.args)


class DictModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: dict[Any, int] = {}
        self.real = ThreadSafeDict()

    def same(self, f: Any) -> Any:
        a, b = outcome(lambda: f(self.model)), outcome(lambda: f(self.real))
        assert a == b
        return a

    @rule(k=keys, v=values)
    def setitem(self, k: Any, v: int) -> None:
        self.model[k] = v
        self.real[k] = v

    @rule(k=keys)
    def delitem(self, k: Any) -> None:
        self.same(lambda d: d.__delitem__(k))

    @rule(k=keys)
    def getitem(self, k: Any) -> None:
        self.same(lambda d: d[k])

    @rule(k=keys, v=values)
    def get_setdefault_pop(self, k: Any, v: int) -> None:
        self.same(lambda d: d.get(k, v))
        self.same(lambda d: d.setdefault(k, v))
        self.same(lambda d: d.pop(k, None))
        self.same(lambda d: d.pop(k))

    @rule()
    def popitem(self) -> None:
        self.same(lambda d: d.popitem())

    @rule(
        pairs=st.lists(st.tuples(keys, values), max_size=5),
        kw=st.dictionaries(st.sampled_from(["a", "q"]), values),
    )
    def update(self, pairs: list[tuple[Any, int]], kw: dict[str, int]) -> None:
        self.same(lambda d: d.update(pairs, **kw))

    @rule(other=st.dictionaries(keys, values, max_size=4))
    def ior(self, other: dict[Any, int]) -> None:
        self.model |= other
        self.real |= other

    @rule(k=keys, delta=values)
    def increment(self, k: Any, delta: int) -> None:
        self.model[k] = self.model.get(k, 0) + delta
        assert self.real.increment(k, delta) == self.model[k]

    @rule(k=keys, v=values, delete=st.booleans())
    def compute(self, k: Any, v: int, delete: bool) -> None:
        r = self.real.compute(k, lambda old: DELETE if delete else v)
        if delete:
            self.model.pop(k, None)
            assert r is None
        else:
            self.model[k] = v
            assert r == v

    @rule(k=keys, expected=values, new=values)
    def compare_and_set(self, k: Any, expected: int, new: int) -> None:
        hit = k in self.model and self.model[k] == expected
        if hit:
            self.model[k] = new
        assert self.real.compare_and_set(k, expected, new) is hit

    @rule()
    def clear_sometimes(self) -> None:
        if len(self.model) > 8:
            self.model.clear()
            self.real.clear()

    @invariant()
    def agree(self) -> None:
        assert len(self.real) == len(self.model)
        assert list(self.real.items()) == list(self.model.items())
        assert self.real == self.model


TestDictModel = DictModel.TestCase
TestDictModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
