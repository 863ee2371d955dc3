"""The stubs type-check a small ThreadSafeDict usage example (skipped where mypy is missing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

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


def run_mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "example.py"
    f.write_text(textwrap.dedent(source))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "c"),
            str(f),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_usage_example_type_checks(tmp_path: Path) -> None:
    r = run_mypy(tmp_path, EXAMPLE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wrong_value_type_is_rejected(tmp_path: Path) -> None:
    r = run_mypy(tmp_path, BAD)
    assert r.returncode == 1 and "incompatible type" in r.stdout.lower(), r.stdout + r.stderr
