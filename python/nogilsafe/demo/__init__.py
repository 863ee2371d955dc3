"""nogilsafe demo: ``python -m nogilsafe.demo``.

An in-process league service: worker threads, each running its own asyncio event loop, play
matches concurrently and report results into shared standings. The league written with nogilsafe
(``league.py``) runs first; the same league written the seeds' way (``seeds.py``: dict + Lock,
get-then-set standings, an ``asyncio.Lock`` singleton, an ``asyncio.Queue`` results processor)
runs beside it, and a table compares matches/s, lost standings updates, singleton errors and
results lost by the processor. Then the ``global_counter += 1`` race
against ``AtomicInt``. Exits non-zero if the nogilsafe league or counter lost anything or raised.
"""

from __future__ import annotations

import argparse
import os
import sys

from nogilsafe.demo._common import Config, Outcome, interpreter, make_schedule, run_league

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nogilsafe.demo", description=__doc__.split("\n\n")[1].replace("\n", " ")
    )
    d = Config()
    p.add_argument(
        "--threads",
        type=_positive,
        default=d.threads,
        help=f"worker threads, one event loop each (default {d.threads})",
    )
    p.add_argument("--matches", type=_positive, default=d.matches, help=f"default {d.matches}")
    p.add_argument("--seed", type=int, default=d.seed, help="fixtures and scores (default 1)")
    p.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the seeds' way and compare (default on)",
    )
    p.add_argument(
        "--race",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the plain int vs AtomicInt counter race (default on)",
    )
    p.add_argument("--players", type=int, default=d.players, help=f"default {d.players}")
    p.add_argument("--referees", type=_positive, default=d.referees, help=f"default {d.referees}")
    p.add_argument(
        "--tasks",
        type=_positive,
        default=d.tasks,
        help=f"concurrent referee tasks per event loop (default {d.tasks})",
    )
    p.add_argument(
        "--increments",
        type=_positive,
        default=100_000,
        help="counter race: increments per thread (default 100000)",
    )
    p.add_argument(
        "--progress",
        type=float,
        default=d.progress,
        help="seconds between progress lines on stderr, 0 for none (default 1)",
    )
    return p


def _cell_points(o: Outcome) -> str:
    got = o.figures.recorded_points if o.figures else 0
    return f"{got:,} of {o.expected_points:,}"


def _cell_errors(o: Outcome) -> str:
    cell = f"{o.singleton_errors:,}"
    if o.extra_instances:
        cell += f" + {o.extra_instances} started twice"
    return cell


def _cell_of(got: int, want: int) -> str:
    return f"{got:,} of {want:,}"


def _cell_watcher(o: Outcome) -> str:
    if o.watcher_woke is None:
        return (
            f"{o.watcher_note or 'never woke'}, never saw all"
            if o.watcher_note
            else "never saw all"
        )
    lag_ms = max(0.0, (o.watcher_woke - o.last_report) * 1000)
    return f"{o.watcher_note}, +{lag_ms:.1f} ms"


def _results_footnote(o: Outcome) -> str | None:
    """Where the results the processor lost went, as measured; None if it lost none."""
    f = o.figures
    if f is None or (o.results_lost == 0 and not f.results_note):
        return None
    handed = o.matches - o.failed_matches
    parts = []
    if f.results_refused:
        sample = f" ({f.refusal_sample[:110]})" if f.refusal_sample else ""
        parts.append(f"{f.results_refused:,} enqueue calls raised{sample}")
    if f.results_stranded:
        parts.append(f"{f.results_stranded:,} left in its queue, never processed")
    other = o.results_lost - f.results_refused - f.results_stranded
    if other > 0:
        parts.append(f"{other:,} vanished")
    elif other < 0:
        parts.append(f"{-other:,} of those that raised got in all the same")
    if f.results_note:
        parts.append(f.results_note)
    return (
        f"  {o.name} results processor: lost {o.results_lost:,} of {handed:,} results: "
        + "; ".join(parts)
    )


def render(outcomes: list[Outcome]) -> list[str]:
    rows: list[tuple[str, list[str]]] = [
        ("matches/s", [f"{o.matches_per_s:,.0f}" for o in outcomes]),
        ("matches played", [_cell_of(o.matches, o.scheduled) for o in outcomes]),
        (
            "lost standings updates",
            [f"{o.lost_updates:,}" if o.figures else "n/a" for o in outcomes],
        ),
        ("points recorded", [_cell_points(o) for o in outcomes]),
        ("singleton errors", [_cell_errors(o) for o in outcomes]),
        (
            "match log entries",
            [_cell_of(o.figures.log_entries if o.figures else 0, o.matches) for o in outcomes],
        ),
        (
            "results lost by the processor",
            [f"{o.results_lost:,}" if o.figures else "n/a" for o in outcomes],
        ),
        (
            "matches counter",
            [_cell_of(o.figures.counted if o.figures else 0, o.matches) for o in outcomes],
        ),
        ("watcher (after last report)", [_cell_watcher(o) for o in outcomes]),
    ]
    label_w = max(len(r[0]) for r in rows) + 2
    widths = [max(len(o.name), *(len(r[1][i]) for r in rows)) + 3 for i, o in enumerate(outcomes)]
    lines = ["  " + " " * label_w + "".join(f"{o.name:>{w}}" for o, w in zip(outcomes, widths))]
    for label, cells in rows:
        lines.append(f"  {label:<{label_w}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    for o in outcomes:
        footnote = _results_footnote(o)
        if footnote:
            lines.append(footnote)
        for msg in o.error_samples[:2]:
            lines.append(f"  {o.name} singleton error, e.g.: {msg[:150]}")
        if o.failed_matches:
            lines.append(
                f"  {o.name}: {o.failed_matches} matches abandoned after repeated service errors"
            )
        for msg in o.errors[:5]:
            lines.append(f"  {o.name} error: {msg[:200]}")
        if o.stuck:
            lines.append(
                f"  {o.name}: {len(o.stuck)} event loop thread(s) hung, no match finished for "
                f"{Config.stall_timeout:.0f} s; the figures cover the matches played"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.players < 2:
        _parser().error("--players must be at least 2")
    cfg = Config(
        threads=args.threads,
        matches=args.matches,
        players=args.players,
        referees=args.referees,
        tasks=args.tasks,
        seed=args.seed,
        progress=args.progress,
    )
    # Imported here so `--help` works even where a primitive is missing.
    from nogilsafe.demo.league import NogilsafeLeague

    print(f"nogilsafe league demo: {interpreter()}, {os.cpu_count()} CPUs")
    print(
        f"{cfg.threads} worker threads, each with its own asyncio event loop running {cfg.tasks} "
        f"referee tasks; {cfg.players} players, {cfg.referees} referees, {cfg.matches:,} matches, "
        f"seed {cfg.seed}",
        flush=True,
    )
    schedule = make_schedule(cfg)
    outcomes = [run_league(NogilsafeLeague(cfg), cfg, schedule)]
    if args.compare:
        from nogilsafe.demo.seeds import SeedsLeague

        outcomes.append(run_league(SeedsLeague(cfg), cfg, schedule))
    print()
    print("\n".join(render(outcomes)), flush=True)

    failures = []
    league = outcomes[0]
    if not league.ok:
        failures.append("the nogilsafe league lost updates, raised or hung (see the table)")
    if args.race:
        from nogilsafe.demo.race import run_race

        print()
        lines, lost = run_race(cfg.threads, args.increments)
        print("\n".join(lines))
        if lost:
            failures.append(f"AtomicInt lost {lost:,} increments")
    print()
    if failures:
        for f in failures:
            print(f"ERROR: {f}", file=sys.stderr)
        return 1
    print("nogilsafe: every update recorded, no errors.")
    return 0
