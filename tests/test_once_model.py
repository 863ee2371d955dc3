"""OnceCell against a plain-Python model, single-threaded, under random operation sequences."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nogilsafe import OnceCell

_MISSING = object()


class Boom(Exception):
    pass


class OnceCellModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cell: OnceCell[int] = OnceCell()
        self.model: object = _MISSING
        self.factory_calls = 0

    @rule(v=st.integers())
    def get_or_init(self, v: int) -> None:
        calls: list[int] = []

        def factory() -> int:
            calls.append(v)
            return v

        got = self.cell.get_or_init(factory)
        if self.model is _MISSING:
            self.model = v
            assert calls == [v]
        else:
            assert calls == []
        assert got == self.model

    @rule()
    def failing_factory(self) -> None:
        def factory() -> int:
            raise Boom

        if self.model is _MISSING:
            with pytest.raises(Boom):
                self.cell.get_or_init(factory)
        else:
            assert self.cell.get_or_init(factory) == self.model

    @rule(v=st.integers())
    def set(self, v: int) -> None:
        stored = self.cell.set(v)
        assert stored == (self.model is _MISSING)
        if stored:
            self.model = v

    @rule()
    def take(self) -> None:
        got = self.cell.take()
        assert got == (None if self.model is _MISSING else self.model)
        self.model = _MISSING

    @rule()
    def reset(self) -> None:
        self.cell.reset()
        self.model = _MISSING

    @invariant()
    def observers_agree(self) -> None:
        assert self.cell.is_initialized() == (self.model is not _MISSING)
        assert self.cell.get() == (None if self.model is _MISSING else self.model)
        assert self.cell._waiting() == 0


TestOnceCellModel = OnceCellModel.TestCase
TestOnceCellModel.settings = hypothesis.settings(max_examples=60, deadline=None)
