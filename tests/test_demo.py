"""The league demo as a smoke test: nogilsafe's league records every update and raises nothing,
on both interpreters; --compare reports the seeds' way's figures (whatever they are: on a GIL
build the seeds' way may well get lucky, so nothing is asserted about them beyond being there).

Command-line runs go through a child process with a timeout: the seeds' asyncio.Lock singleton
can hang an event loop thread, and a hung thread cannot be cleaned out of the pytest process.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from typing import Any

import pytest
from nogilsafe.demo import main
from nogilsafe.demo._common import Config, expected_points, make_schedule, run_league
from nogilsafe.demo.league import NogilsafeLeague
from nogilsafe.demo.seeds import SeedsQueueProcessor

SMALL = [
    "--threads",
    "4",
    "--matches",
    "300",
    "--players",
    "24",
    "--referees",
    "6",
    "--tasks",
    "8",
    "--progress",
    "0",
]


def run_demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nogilsafe.demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table(stdout: str) -> dict[str, list[str]]:
    """The comparison table as {row label: [cell per implementation]}, header row under ''."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if line.startswith("  ") and "nogilsafe" in cells and not rows:
            rows[""] = cells
        elif rows and len(cells) == len(rows[""]) + 1:
            rows[cells[0]] = cells[1:]
        elif rows and not line.strip():
            break
    return rows


def number(cell: str) -> int:
    return int(cell.split()[0].replace(",", ""))


def test_nogilsafe_league_records_every_update() -> None:
    cfg = Config(threads=4, matches=400, players=20, referees=5, tasks=8, progress=0)
    schedule = make_schedule(cfg)
    out = run_league(NogilsafeLeague(cfg), cfg, schedule)

    assert out.errors == [] and out.stuck == []
    assert out.matches == 400
    assert out.singleton_errors == 0 and out.error_samples == []
    assert out.figures is not None
    assert out.figures.service_starts == 2  # the match engine and the results feed, once each
    assert out.lost_updates == 0
    assert (
        out.figures.played == 800 and out.figures.reported == 400 and out.figures.officiated == 400
    )
    assert out.figures.recorded_points == expected_points(cfg, schedule) == out.expected_points
    assert out.figures.log_entries == 400 and out.figures.counted == 400
    # Every result went through the SequentialProcessor, and stop() drained it.
    assert out.figures.results_processed == 400 and out.results_lost == 0
    assert out.figures.results_refused == out.figures.results_stranded == 0
    assert out.watcher_woke is not None and out.watcher_note == "woke on the commit"
    assert out.ok


def test_standings_snapshot_matches_the_match_log() -> None:
    cfg = Config(threads=3, matches=150, players=6, referees=2, tasks=6, progress=0)
    league = NogilsafeLeague(cfg)
    run_league(league, cfg, make_schedule(cfg))
    # Rebuild the table from the log: every logged result is in the standings, exactly once.
    feed = league.results_feed.get()
    assert feed is not None
    goals: dict[str, int] = {}
    for _, home, away, home_goals, away_goals, _ in feed.log.snapshot():
        goals[home] = goals.get(home, 0) + home_goals
        goals[away] = goals.get(away, 0) + away_goals
    snap = league.standings.snapshot()
    assert {name: snap[name]["goals_for"] for name in goals} == goals
    assert sorted(e[0] for e in feed.log.snapshot()) == list(range(150))


def test_the_results_processor_publishes_one_result_at_a_time_in_order() -> None:
    cfg = Config(threads=4, matches=200, players=12, referees=3, tasks=8, progress=0)
    in_flight, most, order = 0, 0, []

    class Watched(NogilsafeLeague):
        async def _publish(self, job: Any) -> None:  # what the processor runs
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            order.append(job[1][0])
            await super()._publish(job)
            in_flight -= 1

    league = Watched(cfg)
    out = run_league(league, cfg, make_schedule(cfg))
    assert out.ok and most == 1
    feed = league.results_feed.get()
    assert feed is not None and [e[0] for e in feed.log.snapshot()] == order
    assert sorted(order) == list(range(200))
    m = league.results.metrics()
    assert (m.submitted, m.processed, m.failed, m.queued) == (200, 200, 0, 0)


def test_the_seeds_processor_refuses_a_put_from_another_loop_into_its_full_queue() -> None:
    """The loss the demo counts as "enqueue calls raised", reproduced step by step: the worker
    runs on loop A; loop B fills the queue while the worker is busy, and its next put raises."""
    busy, release = threading.Event(), threading.Event()

    async def process(item: int) -> None:
        busy.set()
        await asyncio.to_thread(release.wait, 10)

    proc = SeedsQueueProcessor(process, maxsize=2)

    async def loop_a() -> None:
        await proc.start()
        await asyncio.sleep(0)  # the worker waits on the empty queue: it is loop A's now
        await proc.enqueue(0)  # the worker takes it and stays busy
        await asyncio.to_thread(release.wait, 10)
        await proc.stop()

    a = threading.Thread(target=asyncio.run, args=(loop_a(),))
    a.start()
    assert busy.wait(10)

    async def loop_b() -> str:
        await proc.enqueue(1)
        await proc.enqueue(2)  # full now
        try:
            await asyncio.wait_for(proc.enqueue(3), 10)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    message = asyncio.run(loop_b())
    release.set()
    a.join(10)
    assert "is bound to a different event loop" in message
    assert not a.is_alive() and proc.qsize() == 0


def test_main_exit_status_is_zero_and_names_interpreter_and_threads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*SMALL, "--no-compare", "--no-race"]) == 0
    out = capsys.readouterr().out
    assert "Python 3." in out and "4 worker threads" in out
    rows = table(out)
    assert rows[""] == ["nogilsafe"]
    assert number(rows["lost standings updates"][0]) == 0
    assert number(rows["singleton errors"][0]) == 0


def test_main_fails_when_the_league_loses_an_update(monkeypatch: pytest.MonkeyPatch) -> None:
    import nogilsafe.demo.league as league_module

    def drops_every_result(record: dict[str, int], scored: int, conceded: int) -> dict[str, int]:
        # Every result, not just the first: a standings transaction that conflicts runs its
        # function again, and a retry would record what a single dropped call lost.
        return dict(record)

    monkeypatch.setattr(league_module, "add_result", drops_every_result)
    assert main([*SMALL, "--no-compare", "--no-race"]) == 1


def test_compare_reports_the_seeds_figures() -> None:
    proc = run_demo(*SMALL, "--compare", "--no-race")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert rows[""] == ["nogilsafe", "seeds' way"]
    for label in (
        "matches/s",
        "lost standings updates",
        "singleton errors",
        "points recorded",
        "results lost by the processor",
    ):
        _, seeds_cell = rows[label]
        assert re.match(r"^[\d,]+", seeds_cell), (label, seeds_cell)
    assert number(rows["lost standings updates"][0]) == 0
    assert number(rows["singleton errors"][0]) == 0
    assert number(rows["results lost by the processor"][0]) == 0
    assert number(rows["matches/s"][1]) >= 0
    # What the seeds' processor lost is accounted for, item by item, in a line of its own.
    lost = number(rows["results lost by the processor"][1])
    logged = number(rows["match log entries"][1])
    footnote = re.search(
        r"seeds' way results processor: lost ([\d,]+) of ([\d,]+) results: (.*)", proc.stdout
    )
    assert (footnote is not None) == (lost > 0), proc.stdout
    assert "nogilsafe results processor" not in proc.stdout
    if footnote is not None:
        assert number(footnote.group(1)) == lost
        # Each processed result adds one log entry (to one feed: the seeds' may start two).
        assert logged <= number(footnote.group(2)) - lost
        counts = {
            what: number(n)
            for n, what in re.findall(
                r"([\d,]+) (enqueue calls raised|left in its queue|vanished)", footnote.group(3)
            )
        }
        assert counts, footnote.group(0)
        refused_anyway = re.search(r"([\d,]+) of those that raised got in", footnote.group(3))
        assert (
            sum(counts.values()) - (number(refused_anyway.group(1)) if refused_anyway else 0)
            == lost
        )


def test_counter_race_section() -> None:
    proc = run_demo(*SMALL, "--no-compare", "--race", "--increments", "20000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    race = re.search(r"nogilsafe\.AtomicInt\s+([\d,]+)\s+([\d,]+)", proc.stdout)
    assert race is not None, proc.stdout
    assert race.group(1) == "80,000" and race.group(2) == "0"
    assert "plain int (+= 1)" in proc.stdout


def test_bad_arguments_are_rejected() -> None:
    proc = run_demo("--threads", "0")
    assert proc.returncode == 2 and "--threads" in proc.stderr
