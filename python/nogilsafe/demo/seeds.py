"""The same league written the seeds' way, bugs included, for ``--compare``.

- registry: a dict behind a ``threading.Lock`` (correct, and the lock serialises every lookup);
- standings: the seeds' ThreadSafeState (an RLock, ``copy.deepcopy`` in and out, versions and a
  bounded history). Every call is safe on its own; the referee's ``get`` then ``set`` is not, and
  on a free-threaded interpreter two referees reporting for the same player lose one update;
- shared services: the seeds' async singleton, a class-level ``asyncio.Lock`` created lazily
  (``_ensure_lock_initialized``) and a double-checked ``_instance is None``. An ``asyncio.Lock``
  belongs to one event loop and is not thread-safe: callers from other loops get
  ``RuntimeError: ... is bound to a different event loop``, and two loops can each create a lock
  and start a service twice. Worse, a release from one thread wakes a waiter of another thread's
  loop with a call that is not thread-safe: nothing wakes that loop's ``select()``, and if it has
  nothing else to do it sleeps for good (the driver reports such loops as hung);
- results: the seeds' ``SequentialQueueProcessor``, an ``asyncio.Queue`` drained by a worker task
  that the league manager starts on its event loop (here worker loop 0's) and stops there with
  ``await queue.join()`` once its own referees are done; every loop's referees ``enqueue`` into
  it. An ``asyncio.Queue`` belongs to the loop that first waits on it and is not thread-safe: a
  put from another loop's thread into a full queue raises ``RuntimeError: ... is bound to a
  different event loop`` (that result is lost), and a put into an empty one wakes the worker with
  a call that does not wake its loop, so once that loop has nothing else to do the result sits in
  the queue for good and ``join()`` never returns. The figures count what it processed, what was
  refused and what was left in the queue;
- match log: a list behind a lock (the seeds' ThreadSafeList);
- matches counter: ``self.matches_counted += 1`` (the seeds' ``global_counter``);
- watcher: polls the state every 0.1 s, as the seeds' agents did.

Tickets (which match to play next) sit behind a lock so both leagues play the same matches: the
comparison measures the standings, not the schedule.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

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


class SeedsState:
    """The seeds' ThreadSafeState, as they described it."""

    def __init__(
        self, initial_state: dict[str, Any] | None = None, max_history: int = 1000
    ) -> None:
        self._lock = threading.RLock()
        self._state: dict[str, Any] = copy.deepcopy(dict(initial_state or {}))
        self._version = 0
        self._history: deque[dict[str, Any]] = deque(maxlen=max_history)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return copy.deepcopy(self._state.get(key, default))

    def set(self, key: str, value: Any, changed_by: str | None = None) -> int:
        with self._lock:
            old = self._state.get(key)
            self._state[key] = copy.deepcopy(value)
            self._version += 1
            self._history.append(
                {
                    "timestamp": time.time(),
                    "version": self._version,
                    "key": key,
                    "old_value": old,
                    "new_value": self._state[key],
                    "changed_by": changed_by,
                }
            )
            return self._version

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state)


class SeedsAsyncSingleton:
    """The seeds' async singleton: ``await Cls.get_instance()``."""

    _instance: Any = None
    _lock: asyncio.Lock | None = None

    @classmethod
    def _ensure_lock_initialized(cls) -> None:
        if cls._lock is None:
            cls._lock = asyncio.Lock()

    @classmethod
    async def get_instance(cls) -> Any:
        if cls._instance is None:
            cls._ensure_lock_initialized()
            assert cls._lock is not None
            async with cls._lock:
                if cls._instance is None:
                    cls._instance = await cls._create()
        return cls._instance

    @classmethod
    async def _create(cls) -> Any:
        raise NotImplementedError


class SeedsResultsFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[Any, ...]] = []

    def publish(self, entry: tuple[Any, ...]) -> None:
        with self._lock:
            self.log.append(entry)


class SeedsQueueProcessor:
    """The seeds' SequentialQueueProcessor: ``await start()`` on the loop that is to run the
    worker, ``await enqueue(item)`` from anywhere, ``await stop()`` drains and cancels."""

    def __init__(self, process: Callable[[Any], Awaitable[None]], maxsize: int = 100) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self._process = process
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def enqueue(self, item: Any) -> None:
        await self._queue.put(item)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._process(item)
            except Exception:
                logging.getLogger(__name__).exception("processing %r failed", item)
            finally:
                self._queue.task_done()

    async def stop(self) -> None:
        await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()

    def qsize(self) -> int:
        return self._queue.qsize()


class SeedsLeague:
    name = "seeds' way"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tally = Tally()
        self.watcher_note = ""
        self.registry: dict[str, dict[str, Any]] = {}
        self.registry_lock = threading.Lock()
        self.standings = SeedsState({"matches_reported": 0})
        self._tickets = 0
        self._tickets_lock = threading.Lock()
        self.matches_counted = 0
        self.results = SeedsQueueProcessor(self._publish)
        self.results_published = 0  # only the worker task, on one loop, adds to it
        self.results_refused = Tally()  # the driver's instrument: enqueue calls that raised
        self.results_stop = "not reached"
        league = self

        # Fresh classes per league, so a second run in the same process starts from scratch.
        class MatchEngineService(SeedsAsyncSingleton):
            @classmethod
            async def _create(cls) -> MatchEngine:
                league.tally.add("service_starts")
                await asyncio.sleep(cfg.service_startup)
                return MatchEngine(cfg.seed)

        class ResultsFeedService(SeedsAsyncSingleton):
            @classmethod
            async def _create(cls) -> SeedsResultsFeed:
                league.tally.add("service_starts")
                await asyncio.sleep(cfg.service_startup)
                return SeedsResultsFeed()

        self.engine_service = MatchEngineService
        self.feed_service = ResultsFeedService

    async def _publish(self, job: tuple[SeedsResultsFeed, tuple[Any, ...]]) -> None:
        feed, entry = job
        await asyncio.sleep(0)
        feed.publish(entry)
        self.results_published += 1

    def start(self) -> None:
        pass  # the league manager starts its processor on its own loop: open_loop(0)

    async def open_loop(self, worker: int) -> None:
        if worker == 0:
            await self.results.start()

    async def close_loop(self, worker: int) -> None:
        if worker == 0:
            self.results_stop = "waiting"
            await self.results.stop()
            self.results_stop = "returned"

    def finish(self) -> None:
        pass  # the processor's loop has ended (or hangs in stop()): nothing left to ask of it

    def register(self, worker: int, workers: int) -> None:
        for pid in range(worker, self.cfg.players, workers):
            with self.registry_lock:
                if f"player:{pid}" not in self.registry:
                    self.registry[f"player:{pid}"] = {"name": player_name(pid)}
        for rid in range(worker, self.cfg.referees, workers):
            with self.registry_lock:
                if f"referee:{rid}" not in self.registry:
                    self.registry[f"referee:{rid}"] = {"name": referee_name(rid)}

    def thread_context(self) -> None:
        return None

    def take_ticket(self, ctx: None) -> int:
        with self._tickets_lock:
            ticket = self._tickets
            self._tickets += 1
            return ticket

    def _lookup(self, key: str) -> dict[str, Any]:
        with self.registry_lock:
            return self.registry[key]

    async def play(self, ctx: None, match: Match) -> None:
        engine = await obtain_service(self.engine_service.get_instance, self.tally)
        feed = await obtain_service(self.feed_service.get_instance, self.tally)
        if engine is None or feed is None:
            return
        home = self._lookup(f"player:{match.home}")["name"]
        away = self._lookup(f"player:{match.away}")["name"]
        referee = self._lookup(f"referee:{match.referee}")["name"]
        await asyncio.sleep(0)
        home_goals, away_goals = engine.final_score(match)
        await asyncio.sleep(0)

        state = self.standings
        record = state.get(home) or dict(EMPTY_RECORD)
        state.set(home, add_result(record, home_goals, away_goals), changed_by=referee)
        record = state.get(away) or dict(EMPTY_RECORD)
        state.set(away, add_result(record, away_goals, home_goals), changed_by=referee)
        state.set("matches_reported", state.get("matches_reported", 0) + 1, changed_by=referee)
        key = f"officiated:{referee}"
        state.set(key, state.get(key, 0) + 1, changed_by=referee)
        try:
            await self.results.enqueue(
                (feed, (match.id, home, away, home_goals, away_goals, referee))
            )
        except Exception as exc:  # counted, and the referee goes on: the result is lost
            # The queue's repr lists its items: "<Queue at 0x.. maxsize=100 _queue=[...]>".
            message = re.sub(r"<Queue at .*> is bound", "<Queue ...> is bound", str(exc))
            self.results_refused.add("refused", f"{type(exc).__name__}: {message}")
        self.matches_counted += 1

    async def watch(self, total: int) -> float:
        polls = 0
        try:
            while True:
                polls += 1
                if self.standings.get("matches_reported", 0) >= total:
                    return time.perf_counter()
                await asyncio.sleep(0.1)
        finally:
            self.watcher_note = f"polled {polls}x"

    def figures(self) -> Figures:
        snap = self.standings.snapshot()
        records = [v for k, v in snap.items() if k.startswith("player-")]
        feed = self.feed_service._instance
        return Figures(
            recorded_points=sum(r["points"] for r in records),
            played=sum(r["played"] for r in records),
            reported=snap.get("matches_reported", 0),
            officiated=sum(v for k, v in snap.items() if k.startswith("officiated:")),
            log_entries=len(feed.log) if feed is not None else 0,
            counted=self.matches_counted,
            service_starts=self.tally["service_starts"],
            results_processed=self.results_published,
            results_refused=self.results_refused["refused"],
            results_stranded=self.results.qsize(),
            results_note=""
            if self.results_stop != "waiting"
            else "its stop() (await queue.join()) never returned",
            refusal_sample=next(iter(self.results_refused.messages), ""),
        )
