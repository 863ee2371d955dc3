"""What both leagues share: the schedule, the match engine, the scoring, and the driver that runs a
league on N threads with one asyncio event loop each and measures what it recorded.

The driver's own bookkeeping (errors, timings) uses plain locks: it is the measuring instrument,
not the thing measured, and must be exact for both leagues. It learns that a league has finished
from a ``CountDownLatch`` its worker threads count down, not by polling them.
"""

from __future__ import annotations

import asyncio
import random
import sys
import sysconfig
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nogilsafe import CountDownLatch

POINTS_FOR_WIN = 3
POINTS_FOR_DRAW = 1

EMPTY_RECORD: dict[str, int] = {
    "played": 0,
    "won": 0,
    "drawn": 0,
    "lost": 0,
    "goals_for": 0,
    "goals_against": 0,
    "points": 0,
}


@dataclass(frozen=True)
class Config:
    threads: int = 8
    matches: int = 4000
    players: int = 64
    referees: int = 16
    tasks: int = 16  # concurrent referee tasks on each event loop
    seed: int = 1
    progress: float = 1.0  # seconds between progress lines on stderr; 0 turns them off
    service_startup: float = 0.02  # how long the shared services take to start: callers pile up
    timeout: float = 300.0  # a league still running after this is reported stuck
    stall_timeout: float = 3.0  # no match finished for this long: an event loop is hung


@dataclass(frozen=True)
class Match:
    id: int
    home: int
    away: int
    referee: int


def make_schedule(cfg: Config) -> list[Match]:
    rng = random.Random(cfg.seed)
    schedule = []
    for i in range(cfg.matches):
        home, away = rng.sample(range(cfg.players), 2)
        schedule.append(Match(i, home, away, rng.randrange(cfg.referees)))
    return schedule


class MatchEngine:
    """The shared service a referee consults for the final score: slow to start (see Config),
    deterministic per (seed, match), so the expected standings are known before a ball is kicked."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def final_score(self, match: Match) -> tuple[int, int]:
        rng = random.Random(self.seed * 1_000_003 + match.id)
        return rng.randrange(5), rng.randrange(5)


def points(scored: int, conceded: int) -> int:
    if scored > conceded:
        return POINTS_FOR_WIN
    return POINTS_FOR_DRAW if scored == conceded else 0


def add_result(record: dict[str, int], scored: int, conceded: int) -> dict[str, int]:
    """A new standings record with one more match in it (the old one is left alone)."""
    new = dict(record)
    new["played"] += 1
    new["won" if scored > conceded else "drawn" if scored == conceded else "lost"] += 1
    new["goals_for"] += scored
    new["goals_against"] += conceded
    new["points"] += points(scored, conceded)
    return new


def expected_points(cfg: Config, schedule: list[Match]) -> int:
    engine = MatchEngine(cfg.seed)
    total = 0
    for m in schedule:
        h, a = engine.final_score(m)
        total += points(h, a) + points(a, h)
    return total


def player_name(pid: int) -> str:
    return f"player-{pid:03d}"


def referee_name(rid: int) -> str:
    return f"referee-{rid:02d}"


def interpreter() -> str:
    version = sys.version.split()[0]
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        gil_on = getattr(sys, "_is_gil_enabled", lambda: True)()
        return f"Python {version} free-threaded ({'GIL re-enabled!' if gil_on else 'GIL off'})"
    return f"Python {version} (GIL)"


class Tally:
    """The driver's exact counters and first error messages (lock-protected: instrument, not subject)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.messages: list[str] = []

    def add(self, what: str, message: str | None = None) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            if message is not None and len(self.messages) < 5 and message not in self.messages:
                self.messages.append(message)

    def __getitem__(self, what: str) -> int:
        with self._lock:
            return self.counts.get(what, 0)


SERVICE_RETRIES = 200


async def obtain_service(get: Callable[[], Awaitable[Any]], tally: Tally) -> Any:
    """Both leagues fetch their shared services through this: a failure counts as a singleton
    error and the referee retries 1 ms later, so the match is still played and the standings
    figures measure only the standings."""
    for _ in range(SERVICE_RETRIES):
        try:
            return await get()
        except Exception as exc:
            tally.add("singleton_errors", f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.001)
    tally.add("failed_matches")
    return None


@dataclass
class Figures:
    """What a league recorded, read back after the run."""

    recorded_points: int
    played: int  # sum of "played" over every standings record: 2 per match
    reported: int  # the "matches_reported" key: 1 per match
    officiated: int  # sum of the per-referee tallies: 1 per match
    log_entries: int
    counted: int  # the matches counter
    service_starts: int  # factory runs over both shared services: 2 when each started once
    # The results processor: each played match hands it one result to publish to the feed.
    results_processed: int  # process(result) ran to its end
    results_refused: int = 0  # submitting raised: the result never got in
    results_stranded: int = 0  # still in its queue after the run
    results_note: str = ""  # what else went wrong with it
    refusal_sample: str = ""  # the first refusal's error


class League(Protocol):
    name: str
    tally: Tally
    watcher_note: str

    def start(self) -> None: ...  # before the worker threads start
    def register(self, worker: int, workers: int) -> None: ...
    async def open_loop(self, worker: int) -> None: ...  # on each event loop, before play
    def thread_context(self) -> Any: ...
    def take_ticket(self, ctx: Any) -> int: ...
    async def play(self, ctx: Any, match: Match) -> None: ...
    async def close_loop(self, worker: int) -> None: ...  # on each loop, after its last match
    async def watch(self, total: int) -> float: ...
    def finish(self) -> None: ...  # after the worker threads end (or hang), before figures()
    def figures(self) -> Figures: ...


@dataclass
class Outcome:
    name: str
    scheduled: int
    matches: int  # played to the end (fewer than scheduled only if an event loop hung)
    seconds: float
    expected_points: int
    figures: Figures | None
    watcher_woke: float | None  # perf_counter when the watcher saw every match reported
    last_report: float
    watcher_note: str
    singleton_errors: int
    failed_matches: int
    errors: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)  # first distinct singleton errors

    @property
    def matches_per_s(self) -> float:
        return self.matches / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost_updates(self) -> int:
        """Standings writes that vanished: 2 player records + the reported count + 1 referee
        tally per match were written; whatever the final standings do not reflect was lost."""
        if self.figures is None:
            return 0
        f = self.figures
        return (
            (2 * self.matches - f.played)
            + (self.matches - f.reported)
            + (self.matches - f.officiated)
        )

    @property
    def results_lost(self) -> int:
        """Results handed to the results processor (one per match that reached its report)
        that it never processed."""
        if self.figures is None:
            return 0
        return self.matches - self.failed_matches - self.figures.results_processed

    @property
    def extra_instances(self) -> int:
        return max(0, self.figures.service_starts - 2) if self.figures else 0

    @property
    def ok(self) -> bool:
        f = self.figures
        return (
            f is not None
            and self.matches == self.scheduled
            and not self.errors
            and not self.stuck
            and self.failed_matches == 0
            and self.singleton_errors == 0
            and self.extra_instances == 0
            and self.lost_updates == 0
            and self.results_lost == 0
            and f.recorded_points == self.expected_points
            and f.log_entries == self.matches
            and f.counted == self.matches
            and self.watcher_woke is not None
        )


class _Watcher(threading.Thread):
    """Runs ``league.watch`` on its own event loop; the driver can cancel it from outside."""

    def __init__(self, league: League, total: int) -> None:
        super().__init__(name=f"{league.name}-watcher", daemon=True)
        self.league, self.total = league, total
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[float] | None = None
        self.woke: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        async def main() -> float:
            self.loop = asyncio.get_running_loop()
            self.task = asyncio.current_task()
            self.ready.set()
            return await self.league.watch(self.total)

        try:
            self.woke = asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    def cancel(self) -> None:
        loop, task = self.loop, self.task
        if loop is not None and task is not None and self.is_alive():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile: it finished on its own
                pass


async def _event_loop_main(
    league: League,
    worker: int,
    cfg: Config,
    schedule: list[Match],
    completed: list[int],
    stamps: list[float],
) -> None:
    """One worker thread's event loop: ``cfg.tasks`` referee tasks, each taking the next match
    from the shared ticket counter until the schedule runs out. ``completed`` and ``stamps`` belong
    to this thread alone: the ids of the matches it finished and the time of its last report."""
    await league.open_loop(worker)
    ctx = league.thread_context()

    async def referee_desk() -> None:
        while True:
            i = league.take_ticket(ctx)
            if i >= len(schedule):
                return
            await league.play(ctx, schedule[i])
            completed.append(i)
            stamps[0] = time.perf_counter()

    await asyncio.gather(*(referee_desk() for _ in range(cfg.tasks)))
    await league.close_loop(worker)


def run_league(league: League, cfg: Config, schedule: list[Match]) -> Outcome:
    n = cfg.threads
    barrier = threading.Barrier(n + 1)
    finished = CountDownLatch(n, name=f"{league.name} workers")
    completed: list[list[int]] = [[] for _ in range(n)]
    stamps = [[0.0] for _ in range(n)]
    errors: list[str] = []
    errors_lock = threading.Lock()

    def worker(w: int) -> None:
        try:
            league.register(w, n)
            barrier.wait()
            asyncio.run(_event_loop_main(league, w, cfg, schedule, completed[w], stamps[w]))
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            with errors_lock:
                errors.append(f"worker {w}: {type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            finished.count_down()

    try:
        league.start()
    except Exception as exc:
        errors.append(f"starting: {type(exc).__name__}: {exc}")
    watcher = _Watcher(league, cfg.matches)
    watcher.start()
    watcher.ready.wait(10)
    threads = [
        threading.Thread(target=worker, args=(w,), name=f"{league.name}-loop-{w}", daemon=True)
        for w in range(n)
    ]
    for t in threads:
        t.start()
    try:
        barrier.wait(cfg.timeout)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    hung = _supervise(league.name, finished, completed, cfg, t0)
    seconds = time.perf_counter() - t0
    if hung:  # the rate is over the time the league was actually playing
        seconds = max(1e-9, max(s[0] for s in stamps) - t0)
    # A worker counts down in its last `finally`, a moment before its thread ends: only a hung
    # league has stuck threads.
    stuck = [t.name for t in threads if t.is_alive()] if hung else []

    # Give the watcher a moment after the last report (the seeds' watcher polls every 0.1 s),
    # then stop it: a watcher that never saw every match reported must not hang the demo.
    watcher.join(0.5)
    watcher.cancel()
    watcher.join(5)
    if watcher.error is not None:
        errors.append(f"watcher: {type(watcher.error).__name__}: {watcher.error}")

    played_ids = [i for ids in completed for i in ids]
    figures = None
    try:
        league.finish()
    except Exception as exc:
        errors.append(f"finishing: {type(exc).__name__}: {exc}")
    try:
        figures = league.figures()
    except Exception as exc:
        errors.append(f"reading the standings: {type(exc).__name__}: {exc}")
    return Outcome(
        name=league.name,
        scheduled=cfg.matches,
        matches=len(played_ids),
        seconds=seconds,
        expected_points=expected_points(cfg, [schedule[i] for i in played_ids]),
        figures=figures,
        watcher_woke=watcher.woke,
        last_report=max(s[0] for s in stamps),
        watcher_note=league.watcher_note,
        singleton_errors=league.tally["singleton_errors"],
        failed_matches=league.tally["failed_matches"],
        errors=errors,
        stuck=stuck,
        error_samples=list(league.tally.messages),
    )


def _supervise(
    name: str, finished: CountDownLatch, completed: list[list[int]], cfg: Config, t0: float
) -> bool:
    """Wait for the worker threads (``finished`` opens when the last one ends), printing a
    progress line every ``cfg.progress`` seconds. Returns True if the league stopped making
    progress for ``cfg.stall_timeout`` seconds (a hung event loop) or outlived ``cfg.timeout``;
    its threads are daemons and are left behind. Between progress lines it sleeps until the
    moment the league would count as stalled, unless the latch opens first."""
    last_count, last_change = 0, t0
    next_line = t0 + cfg.progress if cfg.progress > 0 else float("inf")
    while True:
        wake = min(next_line, last_change + cfg.stall_timeout, t0 + cfg.timeout)
        if finished.wait(max(0.0, wake - time.perf_counter())):
            return False
        now = time.perf_counter()
        count = sum(len(ids) for ids in completed)
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change >= cfg.stall_timeout or now - t0 >= cfg.timeout:
            return True
        if now >= next_line:
            pct = 100 * count // max(1, cfg.matches)
            print(
                f"  {name}: {count:,}/{cfg.matches:,} matches ({pct}%), {now - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            next_line += cfg.progress
