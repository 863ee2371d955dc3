"""The league written with nogilsafe: read this one as the example.

- players and referees register in a ``ThreadSafeDict`` (``get_or_insert_with``: check-then-insert
  as one atomic call);
- a referee reports a result with one ``ThreadSafeState.transaction``: both players' records and
  the "matches_reported" count commit together or the function reruns, so no update is lost and
  no reader sees half a match; the referee's own tally uses ``update_with``; every change carries
  ``changed_by`` for the audit history;
- the match engine (``@async_singleton``) and the results feed (``AsyncOnceCell``) start once for
  the whole process, whichever thread's event loop asks first; the others await without blocking
  their loop;
- referees hand each result to a ``SequentialProcessor`` (``await submit_async``, from every
  event loop), whose own event loop publishes the results to the feed one at a time, in order;
  the feed keeps the match log in a ``ThreadSafeList``. At the end ``stop()`` drains it;
- match tickets and the matches counter are ``AtomicInt``;
- the watcher awaits ``wait_for_async``: it wakes on the commit that makes its predicate true,
  without polling;
- each thread works through ``.local()`` views so threads do not contend on shared Python objects.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from nogilsafe import (
    AsyncOnceCell,
    AtomicInt,
    SequentialProcessor,
    ThreadSafeDict,
    ThreadSafeList,
    ThreadSafeState,
    async_singleton,
)
from nogilsafe.demo._common import (
    EMPTY_RECORD,
    Config,
    Figures,
    Match,
    MatchEngine,
    Tally,
    add_result,
    obtain_service,
    player_name,
    referee_name,
)


class ResultsFeed:
    """The second shared service: publishes every result and keeps the match log."""

    def __init__(self) -> None:
        self.log: ThreadSafeList[tuple[Any, ...]] = ThreadSafeList()

    def publish(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)


def _plus_one(n: int) -> int:
    return n + 1


@dataclass
class _ThreadViews:
    registry: Any
    standings: Any
    tickets: Any
    counted: Any


class NogilsafeLeague:
    name = "nogilsafe"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tally = Tally()
        self.watcher_note = ""
        self.registry: ThreadSafeDict[str, dict[str, Any]] = ThreadSafeDict()
        self.standings: ThreadSafeState[Any] = ThreadSafeState(
            {"matches_reported": 0}, max_history=1000
        )
        self.tickets = AtomicInt(0)
        self.counted = AtomicInt(0)
        self.service_starts = AtomicInt(0)
        self.results_feed: AsyncOnceCell[ResultsFeed] = AsyncOnceCell()
        self.results_published = AtomicInt(0)
        # One worker, on an event loop of its own, publishes every result in turn.
        self.results: SequentialProcessor[tuple[ResultsFeed, tuple[Any, ...]], None] = (
            SequentialProcessor(self._publish, name="nogilsafe-results")
        )

        # A fresh singleton per league, so running the demo twice in one process starts it again.
        @async_singleton
        async def match_engine() -> MatchEngine:
            self.service_starts.increment()
            await asyncio.sleep(cfg.service_startup)  # connecting, loading ratings...
            return MatchEngine(cfg.seed)

        self.match_engine = match_engine

    async def _open_feed(self) -> ResultsFeed:
        self.service_starts.increment()
        await asyncio.sleep(self.cfg.service_startup)
        return ResultsFeed()

    async def _publish(self, job: tuple[ResultsFeed, tuple[Any, ...]]) -> None:
        feed, entry = job
        await asyncio.sleep(0)  # the feed's client sends it (simulated I/O)
        feed.publish(entry)
        self.results_published.increment()

    def start(self) -> None:
        self.results.start()

    def finish(self) -> None:
        if not self.results.stop(timeout=self.cfg.timeout):
            raise RuntimeError(f"{self.results!r} did not finish; see the log")

    async def open_loop(self, worker: int) -> None:
        pass  # nothing per loop: the results processor has a loop of its own

    async def close_loop(self, worker: int) -> None:
        pass

    def register(self, worker: int, workers: int) -> None:
        """Each worker thread registers its share of players and referees, all at once."""
        registry = self.registry.local()
        for pid in range(worker, self.cfg.players, workers):
            registry.get_or_insert_with(f"player:{pid}", partial(dict, name=player_name(pid)))
        for rid in range(worker, self.cfg.referees, workers):
            registry.get_or_insert_with(f"referee:{rid}", partial(dict, name=referee_name(rid)))

    def thread_context(self) -> _ThreadViews:
        return _ThreadViews(
            self.registry.local(),
            self.standings.local(),
            self.tickets.local(),
            self.counted.local(),
        )

    def take_ticket(self, ctx: _ThreadViews) -> int:
        return int(ctx.tickets.fetch_add(1))

    async def play(self, ctx: _ThreadViews, match: Match) -> None:
        engine = await obtain_service(self.match_engine, self.tally)
        feed = await obtain_service(
            lambda: self.results_feed.get_or_init(self._open_feed), self.tally
        )
        if engine is None or feed is None:
            return
        home = ctx.registry[f"player:{match.home}"]["name"]
        away = ctx.registry[f"player:{match.away}"]["name"]
        referee = ctx.registry[f"referee:{match.referee}"]["name"]
        await asyncio.sleep(0)  # kick-off: the players' clients answer (simulated I/O)
        home_goals, away_goals = engine.final_score(match)
        await asyncio.sleep(0)  # the referee files the report

        def report(view: Any) -> None:
            view[home] = add_result(view.get(home, EMPTY_RECORD), home_goals, away_goals)
            view[away] = add_result(view.get(away, EMPTY_RECORD), away_goals, home_goals)
            view["matches_reported"] = view.get("matches_reported", 0) + 1

        ctx.standings.transaction(report, changed_by=referee)
        ctx.standings.update_with(f"officiated:{referee}", _plus_one, default=0, changed_by=referee)
        # Fire and forget, as the seeds' enqueue: the returned future is not needed here.
        await self.results.submit_async(
            (feed, (match.id, home, away, home_goals, away_goals, referee))
        )
        ctx.counted.increment()

    async def watch(self, total: int) -> float:
        await self.standings.wait_for_async(
            lambda snap: snap.get("matches_reported", 0) >= total, timeout=self.cfg.timeout
        )
        self.watcher_note = "woke on the commit"
        return time.perf_counter()

    def figures(self) -> Figures:
        snap = self.standings.snapshot()
        records = [v for k, v in snap.items() if k.startswith("player-")]
        feed = self.results_feed.get()
        return Figures(
            recorded_points=sum(r["points"] for r in records),
            played=sum(r["played"] for r in records),
            reported=snap.get("matches_reported", 0),
            officiated=sum(v for k, v in snap.items() if k.startswith("officiated:")),
            log_entries=len(feed.log) if feed is not None else 0,
            counted=int(self.counted.get()),
            service_starts=int(self.service_starts.get()),
            results_processed=int(self.results_published.get()),
            results_stranded=self.results.metrics().queued,
        )
