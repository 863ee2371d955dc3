"""The once-cell stubs type-check real usage under mypy --strict."""

from __future__ import annotations

from pathlib import Path

from conftest import MypyRun

USAGE = Path(__file__).parent / "typing" / "once_usage.py"


def test_usage_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(USAGE, "--python-version", "3.11")
    assert status == 0, out


def test_a_wrong_type_is_caught(mypy_check: MypyRun) -> None:
    code = (
        "from nogilsafe import OnceCell\n"
        "c: OnceCell[int] = OnceCell()\n"
        "s: str = c.get_or_init(lambda: 1)\n"
    )
    out, status = mypy_check(code)
    assert status == 1 and "Incompatible types in assignment" in out, out
