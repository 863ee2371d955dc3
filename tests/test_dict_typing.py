"""The stubs type-check a small ThreadSafeDict usage example under mypy --strict."""

from __future__ import annotations

from conftest import MypyRun

EXAMPLE = """
from nogilsafe import DELETE, ThreadSafeDict

counts: ThreadSafeDict[str, int] = ThreadSafeDict()
counts["a"] = 1
n: int = counts["a"]
m: int | None = counts.get("b")
counts.increment("a")
counts.update_value("a", lambda v: v + 1, 0)
counts.compute("a", lambda v: DELETE)
cache: ThreadSafeDict[str, list[int]] = ThreadSafeDict()
xs: list[int] = cache.get_or_insert_with("k", list, timeout=1.0)
plain: dict[str, int] = counts.snapshot()
for key, value in counts.items():
    print(key.upper(), value + 1)
merged = counts | {"z": 2}
merged |= {"y": 3}
ok: bool = counts.compare_and_set("a", 1, 2)


class Registry(ThreadSafeDict[str, int]):
    def register(self, name: str) -> None:
        self[name] = len(self)


reg = Registry()
reg.register("x")
view: Registry = reg.local()
view.register("y")
"""

BAD = """
from nogilsafe import ThreadSafeDict

d: ThreadSafeDict[str, int] = ThreadSafeDict()
d["a"] = "not an int"
"""


def test_usage_example_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(EXAMPLE)
    assert status == 0, out


def test_wrong_value_type_is_rejected(mypy_check: MypyRun) -> None:
    out, status = mypy_check(BAD)
    assert status == 1 and "incompatible type" in out.lower(), out
