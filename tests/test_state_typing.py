"""The ThreadSafeState stubs type-check real usage (mypy --strict), where mypy is installed."""

from __future__ import annotations

import pathlib

import pytest

mypy_api = pytest.importorskip("mypy.api")

USAGE = """
from nogilsafe import StateChange, StateSnapshot, StateTransaction, ThreadSafeState

s: ThreadSafeState[int] = ThreadSafeState({"a": 1}, max_history=10, isolation="freeze")
maybe: int | None = s.get("a")
value: int = s.get_required("a")
version: int = s.set("a", 2, changed_by="agent")
snap: StateSnapshot[int] = s.snapshot()
item: int = snap["a"]

def move(tx: StateTransaction[int]) -> str:
    tx["a"] = tx["a"] + 1
    return "ok"

result: str = s.transaction(move)
new: int = s.update_with("a", lambda n: n + 1)
changes: list[StateChange] = s.history(key="a", limit=5)

async def waiter() -> int:
    done = await s.wait_for_async(lambda st: st.get("a") == 3, timeout=1)
    return done.version

with s.subscribe(lambda cs: None) as handle:
    handle.close()
"""

BAD = """
from nogilsafe import ThreadSafeState
s: ThreadSafeState[int] = ThreadSafeState()
s.set("a", "not an int")
"""


def run(tmp_path: pathlib.Path, code: str) -> tuple[str, int]:
    f = tmp_path / "usage.py"
    f.write_text(code)
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(f)]
    )
    return out + err, status


def test_stubs_accept_typical_usage(tmp_path: pathlib.Path) -> None:
    out, status = run(tmp_path, USAGE)
    assert status == 0, out


def test_stubs_reject_wrong_value_type(tmp_path: pathlib.Path) -> None:
    out, status = run(tmp_path, BAD)
    assert status != 0 and "arg-type" in out, out
