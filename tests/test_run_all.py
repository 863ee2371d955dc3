"""benches/run_all.py on a scratch benches directory: the report holds every table with the
machine and interpreter, scaling tables become PNGs (or a note where matplotlib is missing),
and a failing bench is marked and turns the exit status non-zero."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys
import textwrap
from types import ModuleType

import pytest

BENCHES = pathlib.Path(__file__).resolve().parent.parent / "benches"
TAG = "gil" if getattr(sys, "_is_gil_enabled", lambda: True)() else "ft"


@pytest.fixture
def run_all(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHES))
    spec = importlib.util.spec_from_file_location("run_all_under_test", BENCHES / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", str(tmp_path))
    monkeypatch.setattr(module, "RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(module, "PLOTS_DIR", str(tmp_path / "plots"))
    monkeypatch.setattr(module, "REPORT", str(tmp_path / "README.md"))
    monkeypatch.setattr(module, "NOTES_DIR", str(tmp_path / "notes"))
    (tmp_path / "results").mkdir()
    return module


def table(title: str, columns: list[str]) -> dict[str, object]:
    return {
        "title": title,
        "unit": "Mops/s",
        "columns": columns,
        "reference": "Lock + int",
        "rows": {
            "Lock + int": [1.0] * len(columns),
            "nogilsafe.Thing": [2.0, None][: len(columns)],
        },
        "notes": ["a note"],
        "interpreter": "CPython 9.9 (test)",
        "machine": "test machine",
    }


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def test_report_from_existing_results(run_all: ModuleType, tmp_path: pathlib.Path) -> None:
    (tmp_path / "bench_thing.py").write_text('"""Thing against the anchors."""\n')
    results = [
        table("Thing: ops/s by threads", ["1 thr", "2 thr"]),
        table("Thing: per call", ["get"]),
    ]
    (tmp_path / "results" / f"bench_thing-{TAG}.json").write_text(json.dumps(results))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "bench_thing.md").write_text("Hand-written: why Thing scales.\n")

    assert run_all.main(["--report-only"]) == 0
    report = (tmp_path / "README.md").read_text()
    assert "## bench_thing" in report and "Thing against the anchors." in report
    assert "Hand-written: why Thing scales." in report
    assert "### Thing: ops/s by threads" in report and "### Thing: per call" in report
    assert "CPython 9.9 (test); test machine; Mops/s" in report  # who measured, not who reported
    assert "| nogilsafe.Thing | 2 (2x) | n/a |" in report
    assert (
        f"- Machine: {run_all.machine()}" in report
        and f"- Interpreter: {run_all.interpreter()}" in report
    )
    assert "From an earlier run" in report
    pngs = sorted(os.listdir(tmp_path / "plots"))
    if has_matplotlib():
        assert len(pngs) == 1 and pngs[0].startswith(
            f"bench_thing-{TAG}-1-"
        )  # the scaling table only
        assert f"(plots/{pngs[0]})" in report
        assert (tmp_path / "plots" / pngs[0]).read_bytes()[:4] == b"\x89PNG"
    else:
        assert pngs == [] and "Plots skipped: matplotlib does not import" in report


def test_runs_each_bench_and_marks_failures(run_all: ModuleType, tmp_path: pathlib.Path) -> None:
    (tmp_path / "bench_good.py").write_text(
        textwrap.dedent(f'''
        """Good bench."""
        import json, os
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "results", "bench_good-{TAG}.json"), "w") as f:
            json.dump([{table("Good: ops/s by threads", ["1 thr", "2 thr"])!r}], f)
        print("good table printed")
    ''')
    )
    (tmp_path / "bench_bad.py").write_text('"""Bad bench."""\nraise SystemExit(3)\n')

    assert run_all.main([]) == 1
    report = (tmp_path / "README.md").read_text()
    assert "### Good: ops/s by threads" in report and "Measured in this run" in report
    assert "This run of bench_bad failed (exit status 3); no results." in report

    assert run_all.main(["--only", "good"]) == 0  # the failed bench is not rerun...
    report = (tmp_path / "README.md").read_text()
    assert "## bench_bad" in report  # ...but stays listed
