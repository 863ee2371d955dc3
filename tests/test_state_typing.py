"""The ThreadSafeState stubs type-check real usage under mypy --strict."""

from __future__ import annotations

from conftest import MypyRun

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


def test_stubs_accept_typical_usage(mypy_check: MypyRun) -> None:
    out, status = mypy_check(USAGE)
    assert status == 0, out


def test_stubs_reject_wrong_value_type(mypy_check: MypyRun) -> None:
    out, status = mypy_check(BAD)
    assert status != 0 and "arg-type" in out, out
