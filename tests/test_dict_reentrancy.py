"""Keys with Python __eq__/__hash__, re-entrant callbacks and __del__: a result or a clear error,
never a hang (every scenario runs under run_concurrently's join timeout)."""

from __future__ import annotations

from typing import Any

import pytest
from nogilsafe import ReentrancyError, ThreadSafeDict
from nogilsafe.testing import run_concurrently


def in_thread(fn: Any) -> Any:
    """Run fn in a worker thread with a join timeout: a deadlock fails instead of hanging."""
    return run_concurrently(lambda _i: fn(), threads=1, timeout=10)[0][0]


class Key:
    """Equal by `.v`, with every hash colliding: forces the __eq__ path."""

    eq_calls = 0

    def __init__(self, v: int) -> None:
        self.v = v

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        Key.eq_calls += 1
        return isinstance(other, Key) and other.v == self.v


def test_custom_eq_keys_behave_like_dict() -> None:
    def body() -> None:
        d: dict[Any, int] = {}
        t = ThreadSafeDict()
        for i in range(20):
            d[Key(i)] = i
            t[Key(i)] = i
        for i in range(0, 20, 3):
            del d[Key(i)]
            del t[Key(i)]
        t[Key(1)] = 100
        d[Key(1)] = 100
        assert len(t) == len(d)
        assert [k.v for k in t] == [k.v for k in d]
        assert all(t[Key(k.v)] == d[k] for k in d)
        assert Key(0) not in t and t.get(Key(3)) is None
        assert t.increment(Key(1)) == 101
        assert t.setdefault(Key(50), 5) == 5 and t.pop(Key(50)) == 5
        t.update({Key(2): -2, Key(99): 99})
        assert t[Key(2)] == -2 and t[Key(99)] == 99 and len(t) == len(d) + 1

    in_thread(body)


def test_raising_hash_propagates_and_changes_nothing() -> None:
    class BadHash:
        def __hash__(self) -> int:
            raise ZeroDivisionError("hash")

    t = ThreadSafeDict(a=1)
    for op in (
        lambda: t.__setitem__(BadHash(), 1),
        lambda: t[BadHash()],
        lambda: BadHash() in t,
        lambda: t.update({"x": 1}, y=2) or t.update([(BadHash(), 1)]),
        lambda: t.pop(BadHash()),
        lambda: t.increment(BadHash()),
        lambda: t.get_or_insert_with(BadHash(), int),
    ):
        with pytest.raises(ZeroDivisionError):
            op()
    assert t == {"a": 1, "x": 1, "y": 2}


def test_raising_eq_propagates_and_changes_nothing() -> None:
    class BadEq(Key):
        __hash__ = Key.__hash__

        def __eq__(self, other: object) -> bool:
            raise ArithmeticError("eq")

    def body() -> None:
        t = ThreadSafeDict()
        t[BadEq(1)] = 1
        with pytest.raises(ArithmeticError):
            t[BadEq(2)] = 2
        with pytest.raises(ArithmeticError):
            t.update({BadEq(3): 3, "ok": 1})
        assert len(t) == 1

    in_thread(body)


def test_eq_that_mutates_the_dict_works_like_dict() -> None:
    # dict runs a key's __eq__ during lookups and lets it write the dict (the lookup restarts);
    # so do we: no lock is held while it runs, and each stored key's answer is kept.
    def scenario(t: Any) -> tuple[Any, ...]:
        class Evil(Key):
            __hash__ = Key.__hash__

            def __eq__(self, other: object) -> bool:
                t["side"] = t.get("side", 0) + 1
                return super().__eq__(other)

        t[Evil(1)] = 1
        t[Evil(2)] = 2
        t.setdefault(Evil(3), 3)
        got = (t.get(Evil(4)), Evil(5) in t, t[Evil(1)], t.pop(Evil(2)))
        return (*got, len(t), "side" in t)

    def body() -> None:
        assert scenario(ThreadSafeDict()) == scenario({})

    in_thread(body)


def test_eq_that_reads_the_dict_works() -> None:
    t = ThreadSafeDict()

    class Reader(Key):
        __hash__ = Key.__hash__

        def __eq__(self, other: object) -> bool:
            _ = len(t), t.get("x"), list(t)
            return super().__eq__(other)

    def body() -> None:
        t[Reader(1)] = 1
        t[Reader(2)] = 2
        t[Reader(1)] = 10
        assert t[Reader(1)] == 10 and len(t) == 2

    in_thread(body)


def test_hash_that_mutates_the_dict_works() -> None:
    t = ThreadSafeDict()

    class Sneaky:
        def __hash__(self) -> int:
            t["from_hash"] = 1
            return 1

    def body() -> None:
        s = Sneaky()
        t[s] = 2
        assert t[s] == 2 and t["from_hash"] == 1

    in_thread(body)


def test_del_of_removed_value_may_touch_the_dict() -> None:
    t = ThreadSafeDict()
    log: list[int] = []

    class Touchy:
        def __del__(self) -> None:
            t["deleted"] = len(t)
            log.append(1)

    def body() -> None:
        t["a"] = Touchy()
        t["a"] = 1  # overwrite drops the old value
        t["b"] = Touchy()
        del t["b"]
        t["c"] = Touchy()
        t.pop("c")
        t["d"] = Touchy()
        t.clear()
        t["e"] = Touchy()
        t.compute("e", lambda v: 0)
        t["f"] = Touchy()
        t.swap("f", 0)
        assert len(log) == 6 and "deleted" in t

    in_thread(body)


def test_callbacks_mutating_same_dict_raise_never_hang() -> None:
    t = ThreadSafeDict(k=1)

    def body() -> None:
        for op in (
            lambda: t.compute("k", lambda v: t.increment("k")),
            lambda: t.update_value("k", lambda v: t.pop("k")),
            lambda: t.get_or_insert_with("n", lambda: t.get_or_insert_with("n", int)),
            lambda: t.compute("k", lambda v: t.clear()),
        ):
            with pytest.raises(ReentrancyError):
                op()
        assert t == {"k": 1}

    in_thread(body)
