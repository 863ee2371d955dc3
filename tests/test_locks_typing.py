"""The locks' stubs type-check real usage under mypy --strict."""

from __future__ import annotations

from pathlib import Path

from conftest import MypyRun

USAGE = Path(__file__).parent / "typing" / "locks_usage.py"


def test_usage_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(USAGE)
    assert status == 0, out


def test_a_wrong_type_is_caught(mypy_check: MypyRun) -> None:
    out, status = mypy_check(
        """
        from nogilsafe import AtomicRef, Lock
        r: AtomicRef[int] = AtomicRef(1)
        s: str = r.get()
        ok: str = Lock().acquire()
        """
    )
    assert status == 1 and out.count("Incompatible types in assignment") == 2, out
