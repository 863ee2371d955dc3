"""Extreme sizes and indices at every ThreadSafeList entry point: the same exception as ``list``,
never a Rust panic (issue 11, item 8).

A panic reaches Python as ``PanicException``, a ``BaseException`` that ``except Exception`` does
not catch: an iterable whose ``__length_hint__`` returned ``sys.maxsize`` made ``extend``, the
constructor, ``+=`` and ``extend_if_absent`` raise ``PanicException: capacity overflow``. Here
``list`` raises ``MemoryError`` for such a hint (it believes it and fails to allocate); so do we.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nogilsafe import ThreadSafeList

BIG = [
    sys.maxsize,
    sys.maxsize + 1,
    -sys.maxsize - 1,
    -sys.maxsize - 2,
    2**64,
    2**100,
    -(2**100),
]


class Hinted:
    """Three items, and a length hint of ``hint``."""

    def __init__(self, hint: int) -> None:
        self.hint = hint

    def __iter__(self) -> Iterator[int]:
        return iter([1, 2, 3])

    def __length_hint__(self) -> int:
        return self.hint


class HintedIterator:
    def __init__(self, hint: int) -> None:
        self.i, self.hint = 0, hint

    def __iter__(self) -> HintedIterator:
        return self

    def __next__(self) -> int:
        self.i += 1
        if self.i > 3:
            raise StopIteration
        return self.i

    def __length_hint__(self) -> int:
        return self.hint


class Index:
    """An index given through ``__index__`` (Python code)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v


def outcome(op: Callable[[Any], Any], obj: Any) -> tuple[str, Any]:
    try:
        r = op(obj)
    except Exception as e:
        return type(e).__name__, str(e)
    # Anything else (PanicException is a BaseException) fails the test here.
    if isinstance(r, ThreadSafeList):
        r = r.snapshot()
    return "ok", r


def same(op: Callable[[Any], Any], initial: list[Any] | None = None) -> None:
    """``op`` gives a list and a ThreadSafeList the same result or exception (type and
    message), and leaves them the same."""
    initial = [5, 3, 8] if initial is None else initial
    ref, tsl = list(initial), ThreadSafeList(initial)
    assert outcome(op, tsl) == outcome(op, ref)
    assert tsl.snapshot() == ref


def hinted_sources() -> list[Callable[[], Any]]:
    return [
        lambda: Hinted(sys.maxsize),
        lambda: HintedIterator(sys.maxsize),
        lambda: HintedIterator(2**62),
    ]


@pytest.mark.parametrize("source", hinted_sources())
def test_length_hints_are_not_trusted_for_an_allocation(source: Callable[[], Any]) -> None:
    # list believes the hint of an empty list's source (and fails to allocate); for a non-empty
    # list, `len + hint` overflowing makes it skip the preallocation. We compare with the empty
    # case: nogilsafe builds every list of new elements from empty.
    same(lambda x: type(x)(source()), [])
    same(lambda x: x.extend(source()), [])
    same(lambda x: x.__iadd__(source()), [])
    same(lambda x: x.__init__(source()), [])
    same(lambda x: x.__setitem__(slice(0, 0), source()), [])
    same(lambda x: x.__setitem__(slice(None, None, -1), source()), [])
    # No list counterpart: the same outcome as extend.
    lst = ThreadSafeList([1])
    assert outcome(lambda x: x.extend_if_absent(source()), lst) == outcome(
        lambda x: x.extend(source()), []
    )
    assert lst.snapshot() == [1]


@pytest.mark.parametrize("hint", [-1, 2**70, "x"])
def test_bad_length_hints(hint: Any) -> None:
    same(lambda x: type(x)(Hinted(hint)), [])
    same(lambda x: x.extend(HintedIterator(hint)), [])


@pytest.mark.parametrize("n", [*BIG, 0, -1, 1, 2])
@pytest.mark.parametrize("initial", [[], [1], [1, 2]])
def test_repetition_counts(n: int, initial: list[int]) -> None:
    same(lambda x: x * n, initial)
    same(lambda x: n * x, initial)
    same(lambda x: x * Index(n), initial)

    def imul(x: Any) -> None:
        x *= n

    same(imul, initial)


@pytest.mark.parametrize("i", [*BIG, 0, -1, 3, -4])
def test_huge_indices(i: int) -> None:
    for index in (i, Index(i)):
        same(lambda x: x[index])
        same(lambda x: x.__setitem__(index, "v"))
        same(lambda x: x.__delitem__(index))
        same(lambda x: x.pop(index))
        same(lambda x: x.insert(index, "v"))
        same(lambda x: x.index(3, index))
        same(lambda x: x.index(3, 0, index))
        same(lambda x: x.index(3, index, index))


@pytest.mark.parametrize("i", BIG)
def test_huge_indices_of_the_compound_operations(i: int) -> None:
    """No list counterpart: the errors list's own indexing gives for the same argument."""
    lst = ThreadSafeList([1, 2])
    ref = [1, 2]
    for index in (i, Index(i)):
        # An index beyond a ssize_t is an OverflowError (as for list.pop), else out of range.
        converts = outcome(lambda x: x.pop(index), ref)
        expected = (
            converts
            if converts[0] == "OverflowError"
            else ("IndexError", "list index out of range")
        )
        assert outcome(lambda x: x.update_at(index, lambda v: v), lst) == expected
        assert outcome(lambda x: x.compare_and_set(index, 1, 0), lst) == expected
        default = converts if converts[0] == "OverflowError" else ("ok", "d")
        assert outcome(lambda x: x.pop_or("d", index), lst) == default
    assert lst.snapshot() == [1, 2]


@pytest.mark.parametrize("start", [None, *BIG, 0, -1])
@pytest.mark.parametrize("stop", [None, *BIG])
@pytest.mark.parametrize("step", [None, *BIG, 1, -1, 0])
def test_extreme_slices(start: int | None, stop: int | None, step: int | None) -> None:
    s = slice(start, stop, step)
    same(lambda x: x[s], [1, 2, 3, 4])
    same(lambda x: x.__delitem__(s), [1, 2, 3, 4])
    same(lambda x: x.__setitem__(s, []), [1, 2, 3, 4])
    same(lambda x: x.__setitem__(s, ["a"]), [1, 2, 3, 4])


def test_slices_given_through_index() -> None:
    for s in [
        slice(Index(1), Index(3)),
        slice(Index(-(2**100)), Index(2**100), Index(sys.maxsize)),
        slice(None, None, Index(0)),
        slice(Index(1), "a"),
    ]:
        same(lambda x: x[s], [1, 2, 3, 4])
        same(lambda x: x.__delitem__(s), [1, 2, 3, 4])


def test_an_index_that_raises_or_returns_a_non_int() -> None:
    class Raising:
        def __index__(self) -> int:
            raise ZeroDivisionError("no index")

    class NotInt:
        def __index__(self) -> Any:
            return "x"  # noqa: PLE0305

    for bad in (Raising(), NotInt()):
        same(lambda x: x[bad])
        same(lambda x: x.pop(bad))
        same(lambda x: x.insert(bad, 1))
        same(lambda x: x * bad)
        same(lambda x: x.index(5, bad))
        same(lambda x: x[bad:])
