from __future__ import annotations

import importlib.metadata
import os
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import nogilsafe
import pytest
from packaging.requirements import Requirement

FREE_THREADED_BUILD = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
# The extras whose packages the suite needs: `test` everywhere, `test-uvloop` wherever uvloop has a
# wheel, which is every GIL build and no free-threaded one yet.
REQUIRED_EXTRAS = ("test",) if FREE_THREADED_BUILD else ("test", "test-uvloop")


def pytest_report_header(config: pytest.Config) -> str:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"nogilsafe {nogilsafe.__version__} from {os.path.dirname(nogilsafe.__file__)}; GIL {'on' if gil else 'off'}"


def missing_test_dependencies() -> list[str]:
    """The pins of nogilsafe's test extras (pyproject.toml) that this environment does not meet."""
    problems = []
    for spec in importlib.metadata.requires("nogilsafe") or []:
        req = Requirement(spec)
        if req.marker is None or not any(
            req.marker.evaluate({"extra": extra}) for extra in REQUIRED_EXTRAS
        ):
            continue
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req.name}{req.specifier} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name}{req.specifier} (found {have})")
    return problems


def pytest_configure(config: pytest.Config) -> None:
    # A missing test dependency fails the run instead of turning tests into skips.
    missing = missing_test_dependencies()
    if missing:
        raise pytest.UsageError(
            "test dependencies missing (pip install 'nogilsafe[" + ",".join(REQUIRED_EXTRAS) + "]'"
            " with --only-binary=:all:, as scripts/test.sh does): " + "; ".join(missing)
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("NOGILSAFE_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: set NOGILSAFE_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


MypyRun = Callable[..., tuple[str, int]]


@pytest.fixture(scope="session")
def _mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One incremental cache for the session: the standard library and nogilsafe's stubs are
    # analysed once, not once per check (pure-Python mypy on 3.13t takes seconds for each).
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture
def mypy_check(tmp_path: Path, _mypy_cache: Path) -> MypyRun:
    """``mypy_check(source_or_path, *flags) -> (output, exit status)`` under ``mypy --strict``.

    ``source`` is code (dedented and written to a file) or the Path of a file. Every typing test
    checks its examples through this one helper, in this process, against the installed stubs.
    """
    from mypy import api

    def run(source: str | Path, *flags: str) -> tuple[str, int]:
        if isinstance(source, Path):
            path = source
        else:
            path = tmp_path / "usage.py"
            path.write_text(textwrap.dedent(source))
        out, err, status = api.run(["--strict", "--cache-dir", str(_mypy_cache), *flags, str(path)])
        return out + err, status

    return run


STATM = "/proc/self/statm"


@pytest.fixture
def rss_bytes() -> Callable[[], int]:
    """``rss_bytes()`` is this process's resident memory now, Rust allocations included (which
    tracemalloc cannot see). Skips the test, with the reason, where ``/proc`` is absent."""
    if not os.path.exists(STATM):
        pytest.skip(f"no {STATM} on this platform: resident memory cannot be measured")
    page = os.sysconf("SC_PAGE_SIZE")

    def read() -> int:
        with open(STATM) as f:
            return int(f.read().split()[1]) * page

    return read
