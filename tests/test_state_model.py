"""ThreadSafeState against a model (a list of dict versions), driven by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nogilsafe import StateRollbackError, StateVersionError, ThreadSafeState

MAX_HISTORY = 5
keys = st.sampled_from(["a", "b", "c", "d"])
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.binary(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=8,
)


class StateModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ThreadSafeState(max_history=MAX_HISTORY)
        self.versions: list[dict[str, object]] = [{}]
        self.snaps = [self.state.snapshot()]
        # The version of each retained change record, oldest first.
        self.records: list[int] = []

    def commit(self, new: dict[str, object], records: int = 1) -> None:
        self.versions.append(new)
        self.records = (self.records + [len(self.versions) - 1] * records)[-MAX_HISTORY:]

    def oldest_retained(self) -> int:
        # A version is kept while the history holds a change made after it.
        return self.records[0] - 1 if self.records else len(self.versions) - 1

    @rule(k=keys, v=plain)
    def set(self, k: str, v: object) -> None:
        assert self.state.set(k, v) == len(self.versions)
        self.commit({**self.versions[-1], k: v})

    @rule(items=st.dictionaries(keys, plain, min_size=1, max_size=3))
    def update(self, items: dict[str, object]) -> None:
        self.state.update(items)
        self.commit({**self.versions[-1], **items}, records=len(items))

    @rule(k=keys)
    def delete(self, k: str) -> None:
        present = k in self.versions[-1]
        assert self.state.delete(k) is present
        if present:
            new = dict(self.versions[-1])
            del new[k]
            self.commit(new)

    @rule(k=keys)
    def increment(self, k: str) -> None:
        self.state.update_with(
            k, lambda v: (v if isinstance(v, int) and not isinstance(v, bool) else 0) + 1
        )
        old = self.versions[-1].get(k)
        base = old if isinstance(old, int) and not isinstance(old, bool) else 0
        self.commit({**self.versions[-1], k: base + 1})

    @rule(back=st.integers(0, MAX_HISTORY + 2))
    def rollback(self, back: int) -> None:
        current = len(self.versions) - 1
        target = current - back
        if target < 0:
            return
        if target < self.oldest_retained():
            with pytest.raises(
                StateRollbackError, match=f"oldest retained version is {self.oldest_retained()}"
            ):
                self.state.rollback(target)
            return
        self.state.rollback(target)
        self.commit(dict(self.versions[target]))

    @rule()
    def future_rollback(self) -> None:
        with pytest.raises(StateVersionError):
            self.state.rollback(len(self.versions))

    @rule()
    def snapshot(self) -> None:
        self.snaps.append(self.state.snapshot())

    @invariant()
    def matches_model(self) -> None:
        assert self.state.version == len(self.versions) - 1
        assert dict(self.state.items()) == self.versions[-1]
        for snap in self.snaps[-3:]:
            assert snap.to_dict() == self.versions[snap.version]
        h = self.state.history()
        assert [c.version for c in h] == self.records
        assert self.state.metrics()["oldest_retained_version"] == self.oldest_retained()


TestStateModel = StateModel.TestCase
TestStateModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
