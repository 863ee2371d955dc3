"""The locks against threading's own, single-threaded, under random operation sequences: the same
results and the same exceptions (except where ours differ on purpose: a Lock re-acquired by its
holder raises ReentrancyError where threading.Lock would return False or deadlock)."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nogilsafe import (
    BoundedSemaphore,
    CountDownLatch,
    Event,
    Lock,
    ReentrancyError,
    RLock,
    Semaphore,
)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as e:
        return "raise", type(e)


class LockModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ours = Lock()
        self.theirs = threading.Lock()

    @rule(timeout=st.sampled_from([None, 0, 0.0]))
    def acquire(self, timeout: float | None) -> None:
        held = self.theirs.locked()
        if timeout is None:
            mine = outcome(lambda: self.ours.acquire(False))
            theirs = outcome(lambda: self.theirs.acquire(False))
        else:
            mine = outcome(lambda: self.ours.acquire(timeout=timeout))
            theirs = outcome(lambda: self.theirs.acquire(timeout=timeout))
        if held:
            # threading.Lock: False (its holder is this very thread); ours refuses instead.
            assert theirs == ("ok", False) and mine == ("raise", ReentrancyError)
        else:
            assert mine == theirs == ("ok", True)

    @rule()
    def release(self) -> None:
        assert outcome(self.ours.release) == outcome(self.theirs.release)

    @invariant()
    def same_state(self) -> None:
        assert self.ours.locked() == self.theirs.locked()


class RLockModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ours = RLock()
        self.theirs = threading.RLock()
        self.depth = 0

    @rule(blocking=st.booleans())
    def acquire(self, blocking: bool) -> None:
        assert outcome(lambda: self.ours.acquire(blocking)) == outcome(
            lambda: self.theirs.acquire(blocking)
        )
        self.depth += 1

    @rule()
    def release(self) -> None:
        assert outcome(self.ours.release) == outcome(self.theirs.release)
        self.depth = max(0, self.depth - 1)

    @invariant()
    def same_state(self) -> None:
        assert self.ours.locked() == (self.depth > 0)


class SemaphoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ours: Any = None
        self.theirs: Any = None

    @rule(bounded=st.booleans(), value=st.integers(-2, 4))
    def create(self, bounded: bool, value: int) -> None:
        ours_cls, theirs_cls = (
            (BoundedSemaphore, threading.BoundedSemaphore)
            if bounded
            else (Semaphore, threading.Semaphore)
        )
        mine = outcome(lambda: ours_cls(value))
        theirs = outcome(lambda: theirs_cls(value))
        assert mine[0] == theirs[0]
        if mine[0] == "ok":
            self.ours, self.theirs = mine[1], theirs[1]
        else:
            assert mine == theirs

    @rule(timeout=st.sampled_from([None, 0]))
    def acquire(self, timeout: float | None) -> None:
        if self.ours is None:
            return
        if timeout is None:
            assert outcome(lambda: self.ours.acquire(False)) == outcome(
                lambda: self.theirs.acquire(False)
            )
        else:
            assert outcome(lambda: self.ours.acquire(timeout=timeout)) == outcome(
                lambda: self.theirs.acquire(timeout=timeout)
            )

    @rule(n=st.integers(-1, 3))
    def release(self, n: int) -> None:
        if self.ours is None:
            return
        assert outcome(lambda: self.ours.release(n)) == outcome(lambda: self.theirs.release(n))

    @invariant()
    def same_value(self) -> None:
        if self.ours is not None:
            assert self.ours.value == self.theirs._value


class EventModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ours = Event()
        self.theirs = threading.Event()
        self.latch = CountDownLatch(3)
        self.count = 3

    @rule()
    def set(self) -> None:
        self.ours.set()
        self.theirs.set()

    @rule()
    def clear(self) -> None:
        self.ours.clear()
        self.theirs.clear()

    @rule(timeout=st.sampled_from([0, 0.0, 0.001]))
    def wait(self, timeout: float) -> None:
        assert self.ours.wait(timeout) == self.theirs.wait(timeout)

    @rule(n=st.integers(0, 2))
    def count_down(self, n: int) -> None:
        self.count = max(0, self.count - n)
        assert self.latch.count_down(n) == self.count
        assert self.latch.wait(0) == (self.count == 0)

    @invariant()
    def same_flag(self) -> None:
        assert self.ours.is_set() == self.theirs.is_set()
        assert self.latch.count == self.count


TestLock = LockModel.TestCase
TestRLock = RLockModel.TestCase
TestSemaphore = SemaphoreModel.TestCase
TestEvent = EventModel.TestCase
