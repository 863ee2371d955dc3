"""Run every benches/bench_*.py with this interpreter, then write benches/README.md and the plots.

    bash scripts/bench.sh                      # the usual way: free-threaded, anchors installed
    python benches/run_all.py [--only atomic] [--report-only]

Each bench prints its tables and saves them as JSON in benches/results/ (through _harness.emit).
The report holds, per bench, its docstring's first line, the hand-written commentary in
benches/notes/<bench>.md if there is one, and every table this interpreter's JSON contains, with
the machine, interpreter and date; each thread-scaling table (columns "1 thr", "2 thr", ...) is also drawn as
a PNG in benches/plots/ (ops/s against threads, one line per implementation) when matplotlib
imports. A bench that fails keeps its previous results in the report, marked as such. Exits
non-zero if any bench failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _harness import RESULTS_DIR, Table, interpreter, machine  # noqa: E402

PLOTS_DIR = os.path.join(HERE, "plots")
NOTES_DIR = os.path.join(HERE, "notes")  # hand-written commentary: notes/<bench>.md, kept as is
REPORT = os.path.join(HERE, "README.md")
THREAD_COLUMN = re.compile(r"^(\d+) thr$")
ENV_KNOBS = ("BENCH_OPS", "BENCH_MAX_THREADS")


def tag() -> str:
    return "gil" if getattr(sys, "_is_gil_enabled", lambda: True)() else "ft"


def find_benches(only: list[str]) -> list[str]:
    paths = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if only:
        wanted = {o.removeprefix("bench_").removesuffix(".py") for o in only}
        paths = [p for p in paths if bench_name(p).removeprefix("bench_") in wanted]
    return paths


def bench_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def results_path(name: str) -> str:
    return os.path.join(RESULTS_DIR, f"{name}-{tag()}.json")


def run_bench(path: str, timeout: float) -> tuple[int, float]:
    """Run one bench in its own process (a crash or hang stays there); its output goes straight
    to ours so the tables show as they are measured."""
    print(f"\n## {bench_name(path)}", flush=True)
    t0 = time.monotonic()
    try:
        rc = subprocess.run([sys.executable, path], cwd=ROOT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"{bench_name(path)} did not finish in {timeout:.0f} s", file=sys.stderr)
        rc = 124
    return rc, time.monotonic() - t0


def load_tables(name: str) -> list[dict[str, Any]] | None:
    try:
        with open(results_path(name)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) else None


def summary_line(path: str) -> str:
    """The first line of the bench's docstring: what it measures."""
    with open(path) as f:
        text = f.read()
    m = re.match(r'\s*(?:#[^\n]*\n\s*)*[rRuU]?("""|\'\'\')(.*?)(\1|\n\s*\n)', text, re.S)
    return " ".join(m.group(2).split()) if m else ""


def thread_counts(table: dict[str, Any]) -> list[int] | None:
    counts = []
    for col in table.get("columns", []):
        m = THREAD_COLUMN.match(col)
        if not m:
            return None
        counts.append(int(m.group(1)))
    return counts if len(counts) >= 2 else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def plot(table: dict[str, Any], counts: list[int], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8), dpi=80)
    for name, values in table["rows"].items():
        points = [(n, v) for n, v in zip(counts, values) if v is not None]
        if points:
            ours = name.startswith("nogilsafe")  # ours solid, the anchors dashed
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                markersize=4,
                linewidth=2 if ours else 1.2,
                linestyle="-" if ours else "--",
                label=name,
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.set_xlabel("threads")
    ax.set_ylabel(table.get("unit", "Mops/s"))
    ax.set_ylim(bottom=0)
    ax.set_title(table["title"], fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.text(
        0.99,
        0.01,
        f"{table.get('interpreter', interpreter())}; {table.get('machine', machine())}",
        fontsize=6,
        ha="right",
        va="bottom",
        color="0.4",
    )
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    try:  # a 256-colour palette: a third of the size, and these plots use a dozen colours
        from PIL import Image

        with Image.open(out) as img:
            small = img.convert("RGB").quantize(colors=256)
        small.save(out, optimize=True)
    except Exception:
        pass


def render(table: dict[str, Any]) -> str:
    t = Table(
        table["title"],
        unit=table.get("unit", "Mops/s"),
        columns=list(table.get("columns", [])),
        rows=dict(table.get("rows", {})),
        reference=table.get("reference"),
        notes=list(table.get("notes", [])),
    )
    text = t.render()
    # Table.render names the interpreter running this script; the JSON names the one that measured.
    here = f"{interpreter()}; {machine()}"
    there = f"{table.get('interpreter', interpreter())}; {table.get('machine', machine())}"
    return text.replace(here, there, 1)


def write_report(benches: list[str], runs: dict[str, tuple[int, float]]) -> list[str]:
    """Write benches/README.md and the plots; return the problems worth an exit status."""
    problems = []
    try:
        import matplotlib  # noqa: F401

        plots_ok, plot_note = True, ""
    except Exception as exc:
        plots_ok, plot_note = False, f"Plots skipped: matplotlib does not import here ({exc})."
    os.makedirs(PLOTS_DIR, exist_ok=True)
    for old in glob.glob(os.path.join(PLOTS_DIR, f"*-{tag()}-*.png")):
        os.remove(old)

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    knobs = (
        ", ".join(f"{k}={os.environ[k]}" for k in ENV_KNOBS if k in os.environ)
        or "each bench's defaults"
    )
    out = [
        "# Benchmark report",
        "",
        "Generated by `benches/run_all.py` (run it with `bash scripts/bench.sh`, which installs the anchors",
        "ft_utils and cereggii and matplotlib into `.venvs/ft-bench`). Regenerate rather than edit.",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}",
        f"- Interpreter: {interpreter()} ({sys.executable.replace(ROOT + os.sep, '')})",
        f"- Sizes: {knobs}",
        "",
        "Every figure is the best of 3 runs of a fixed number of operations per thread, timed from a",
        "barrier release to the last join. With fewer cores than threads, the higher thread counts",
        "measure contention and time-slicing, not parallel scaling.",
    ]
    if plot_note:
        out += ["", plot_note]
    for path in benches:
        name = bench_name(path)
        out += ["", f"## {name}", ""]
        if summary_line(path):
            out += [summary_line(path), ""]
        notes = os.path.join(NOTES_DIR, f"{name}.md")
        if os.path.exists(notes):
            with open(notes) as f:
                out += [f.read().strip(), ""]
        tables = load_tables(name)
        rc, secs = runs.get(name, (None, 0.0))
        if rc not in (None, 0):
            problems.append(f"{name} exited with status {rc}")
            out.append(
                f"**This run of {name} failed (exit status {rc}); "
                + ("the tables below are from an earlier run.**" if tables else "no results.**")
            )
            out.append("")
        if tables is None:
            out.append(
                f"No results for this interpreter yet (`benches/results/{name}-{tag()}.json`)."
            )
            continue
        if rc == 0:
            out.append(f"Measured in this run ({secs:.0f} s).")
        elif rc is None:
            out.append(
                f"From an earlier run (`benches/results/{name}-{tag()}.json`); not rerun this time."
            )
        for i, table in enumerate(tables, 1):
            out += ["", render(table).rstrip()]
            counts = thread_counts(table)
            if counts and plots_ok:
                png = f"{name}-{tag()}-{i}-{slug(table['title'])}.png"
                try:
                    plot(table, counts, os.path.join(PLOTS_DIR, png))
                    out += ["", f"![{table['title']}](plots/{png})"]
                except Exception as exc:
                    out += ["", f"(plot failed: {exc!r})"]
    tmp = REPORT + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, REPORT)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        nargs="*",
        default=[],
        metavar="NAME",
        help="run only these benches (atomic, bench_dict, ...); the report keeps the others",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite README.md and the plots from benches/results/",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("BENCH_TIMEOUT", 1800)),
        help="seconds per bench (default 1800, or BENCH_TIMEOUT)",
    )
    args = p.parse_args(argv)

    print(f"{interpreter()}; {machine()}", flush=True)
    runs: dict[str, tuple[int, float]] = {}
    if not args.report_only:
        selected = find_benches(args.only)
        if not selected:
            print("no benches match", args.only, file=sys.stderr)
            return 2
        for path in selected:
            runs[bench_name(path)] = run_bench(path, args.timeout)
    problems = write_report(find_benches([]), runs)
    print(f"\nwrote {os.path.relpath(REPORT, ROOT)}", flush=True)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
