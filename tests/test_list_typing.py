"""The ThreadSafeList stubs type-check a usage example under mypy --strict (GIL venv only)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

GOOD = """
    from collections.abc import MutableSequence
    from nogilsafe import ThreadSafeList

    lst: ThreadSafeList[int] = ThreadSafeList([3, 1, 2])
    lst.append(4)
    lst.extend(range(3))
    first: int = lst[0]
    part: ThreadSafeList[int] = lst[1:3]
    lst[0:2] = [7, 8]
    del lst[::2]
    lst.sort(key=lambda v: -v, reverse=True)
    added: bool = lst.append_if_absent(5)
    n: int = lst.extend_if_absent([5, 6])
    maybe: int | None = lst.pop_or()
    dflt: int | str = lst.pop_or("empty", 0)
    new: int = lst.update_at(0, lambda v: v + 1)
    ok: bool = lst.compare_and_set(0, 1, 2)
    gone: int = lst.remove_if(lambda v: v > 100)
    items: list[int] = lst.drain() + lst.snapshot()
    both: ThreadSafeList[int] = lst + [1] + lst
    lst += [1]
    lst *= 2
    view: ThreadSafeList[int] = lst.local()
    seq: MutableSequence[int] = lst
    for x in reversed(lst):
        print(x + 1, len(lst), x in lst, lst.index(x), lst.count(x), lst == [1], lst < lst)


    class Jobs(ThreadSafeList[str]):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name


    jobs = Jobs("queue")
    jobs_view: Jobs = jobs.local()
    plain: ThreadSafeList[str] = jobs.copy()
    print(jobs_view.name, plain)
"""

BAD = """
    from nogilsafe import ThreadSafeList

    lst: ThreadSafeList[int] = ThreadSafeList()
    lst.append("x")
    s: str = lst.pop()
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
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
            os.devnull,
            str(f),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_usage_example_type_checks(tmp_path: Path) -> None:
    r = mypy(tmp_path, GOOD)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wrong_element_type_is_rejected(tmp_path: Path) -> None:
    r = mypy(tmp_path, BAD)
    assert r.returncode == 1
    assert 'Argument 1 to "append" of "ThreadSafeList" has incompatible type "str"' in r.stdout
    assert (
        'Incompatible types in assignment (expression has type "int", variable has type "str")'
        in r.stdout
    )
