"""The locks' stubs type-check real usage (mypy, where installed: the GIL venv of scripts/test.sh)."""

from __future__ import annotations

import os

import pytest

api = pytest.importorskip("mypy.api")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_usage_type_checks() -> None:
    out, err, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--python-version",
            "3.11",
            os.path.join(HERE, "typing", "locks_usage.py"),
        ]
    )
    assert status == 0, out + err


def test_a_wrong_type_is_caught() -> None:
    code = (
        "from nogilsafe import AtomicRef, Lock\n"
        "r: AtomicRef[int] = AtomicRef(1)\n"
        "s: str = r.get()\n"
        "ok: str = Lock().acquire()\n"
    )
    out, err, status = api.run(["--strict", "--no-incremental", "-c", code])
    assert status == 1 and out.count("Incompatible types in assignment") == 2, out + err
