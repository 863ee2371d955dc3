"""ThreadSafeState under hostile use: deep nesting, deadlines under constant commits, subscribers
seeing commits in order, ``__del__`` re-entering the state (issue 11 items 1, 4, 10; issue 13)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nogilsafe import LockTimeoutError, ThreadSafeState
from nogilsafe.testing import run_concurrently

from tests._child import run_child

# --- deep structures (issue 11, item 1) -------------------------------------------------------

DEEP = """
import nogilsafe as ns
x = None
for _ in range(100_000):
    {make}
del x
print("FREED")
"""


@pytest.mark.parametrize(
    "make",
    [
        # A state whose value is the previous state.
        'x = ns.ThreadSafeState({"prev": x}, isolation="reference")',
        's = ns.ThreadSafeState(isolation="reference"); s.set("prev", x); x = s; del s',
        # ... held only by its history (the current value is something else).
        's = ns.ThreadSafeState(isolation="reference"); s.set("p", x); s.set("p", 0); x = s',
        # ... by a snapshot of it.
        's = ns.ThreadSafeState(isolation="reference"); s.set("p", x); x = s.snapshot(); del s',
        # ... by a subscriber's closure.
        "s = ns.ThreadSafeState(); s.subscribe(lambda c, x=x: None); x = s; del s",
    ],
)
def test_a_chain_of_100000_states_frees_without_recursing(make: str) -> None:
    # A chain of 100,000 nested lists frees fine (CPython's deallocator does not recurse).
    code = DEEP.replace("{make}", make.replace("; ", "\n    "))
    r = run_child(code, timeout=300)
    assert r.returncode == 0 and "FREED" in r.stdout, r.describe()


# --- deadlines are deadlines (issue 11, item 4) -----------------------------------------------

DEADLINE = """
import asyncio, threading, time
import nogilsafe as ns

s = ns.ThreadSafeState({"n": 0})
stop = threading.Event()

def committer():
    n = 0
    while not stop.is_set():
        n += 1
        s.set("n", n)
        time.sleep(0.0002)

def slow_predicate(snap):
    time.sleep(0.002)  # a commit lands while it runs, every time
    return False

threads = [threading.Thread(target=committer, daemon=True) for _ in range(2)]
for t in threads:
    t.start()
try:
    {wait}
    print("RETURNED")
except ns.LockTimeoutError:
    print("TIMED OUT")
stop.set()
for t in threads:
    t.join(10)
"""


@pytest.mark.parametrize(
    "wait",
    [
        "s.wait_for(slow_predicate, timeout=0.5)",
        "asyncio.run(s.wait_for_async(slow_predicate, timeout=0.5))",
    ],
)
def test_wait_for_gives_up_at_its_deadline_while_commits_keep_coming(wait: str) -> None:
    # A wait that never checked its deadline would run until the child is killed; no timing is
    # asserted beyond that.
    r = run_child(DEADLINE.replace("{wait}", wait), timeout=60)
    assert r.returncode == 0 and "TIMED OUT" in r.stdout, r.describe()


# --- subscribers see commits in order (issue 11, item 10) -------------------------------------

THREADS = 4
COMMITS = 600


def versions_of(changes: list[Any]) -> int:
    """The version of one commit's changes (an update of n keys is n changes)."""
    assert len({c.version for c in changes}) == 1
    return int(changes[0].version)


def apply(replica: dict[str, Any], changes: list[Any]) -> None:
    for c in changes:
        if c.operation in ("delete", "clear"):
            replica.pop(c.key, None)
        else:
            replica[c.key] = c.new_value


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_every_subscriber_sees_every_commit_once_in_version_order() -> None:
    s: ThreadSafeState[int] = ThreadSafeState(max_history=10)
    versions: list[int] = []
    replica: dict[str, Any] = {}
    second: list[int] = []
    s.subscribe(lambda changes: versions.append(versions_of(changes)))
    s.subscribe(lambda changes: apply(replica, changes))

    def writer(i: int) -> None:
        view = s.local()
        for n in range(COMMITS):
            match n % 4:
                case 0:
                    view.set(f"k{i}", n)
                case 1:
                    view.update({f"k{i}": n, "shared": n})
                case 2:
                    view.update_with("shared", lambda v, n=n: n, 0)
                case _:
                    view.delete(f"k{i}")
            if i == 0 and n == COMMITS // 2:
                s.subscribe(lambda changes: second.append(versions_of(changes)))

    run_concurrently(writer, threads=THREADS, timeout=120)
    assert s.version == s.metrics()["commits"] > THREADS * COMMITS // 2
    # Every commit, once, in order: a replica built from the changes equals the state.
    assert versions == list(range(1, s.version + 1))
    assert replica == s.snapshot().to_dict()
    # A late subscriber gets the commits after it subscribed, in order, with no gap.
    assert second == list(range(second[0], s.version + 1))


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_subscriber_writing_to_the_state_sees_its_own_commit_next() -> None:
    s: ThreadSafeState[int] = ThreadSafeState()
    versions: list[int] = []

    def mirror(changes: list[Any]) -> None:
        versions.append(versions_of(changes))
        for c in changes:
            if c.key == "a":
                s.set("mirror", c.new_value)  # queued; delivered after this call returns

    s.subscribe(mirror)

    def writer(i: int) -> None:
        for n in range(200):
            s.set("a", n)

    run_concurrently(writer, threads=THREADS, timeout=120)
    assert versions == list(range(1, s.version + 1))
    assert s.version == 2 * THREADS * 200


# --- __del__ of a released value re-enters the state (issue 13) -------------------------------

DEL_REENTERS = """
import sys, threading
import nogilsafe as ns

unraisable = []
sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
lock = threading.Lock()
s = ns.ThreadSafeState(max_history={history}, isolation="{isolation}")
TX = []
dels = 0

class Grabby:
    def __del__(self):
        global dels
        with lock:  # held by the other thread while it writes to the state
            dels += 1
        # (Reading "k" would build another Grabby, whose __del__ would read "k" again...)
        "k" in s, s.get("j"), len(s), s.version
        for tx in TX:
            # Dropped by the transaction function's own second write: reads the view whose
            # write it was, while still open. (Writing the state from inside its transaction
            # function is a ReentrancyError, from a __del__ or not.)
            tx.get("j")
            return
        s.set("from_del", dels)  # writes the same state

stop = threading.Event()
def noop(changes):
    pass
def other():
    # Holds the lock a __del__ on the main thread needs, while taking the state's own locks
    # (writer, subscribers, async waiters). It touches no stored value: dropping one here could
    # run a Grabby's __del__ on this thread, which would wait for the lock this thread holds,
    # as it would with a plain dict.
    while not stop.is_set():
        with lock:
            s.subscribe(noop).close()
            s._discard_async_waiter(None)

def replace_in_transaction(tx):
    TX[:] = [tx]
    tx["k"] = Grabby()
    tx["k"] = 1  # the first write is dropped here
    TX.clear()

t = threading.Thread(target=other)
t.start()
sub = s.subscribe(lambda changes: None)
for i in range(1500):
    s.set("k", Grabby())
    s.update({"k": Grabby(), "j": i})
    s.transaction(replace_in_transaction)
    if i % 100 == 0:
        s.clear_history()
        sub.close()
        sub = s.subscribe(lambda changes, g=Grabby(): None)
stop.set()
t.join(30)
s.clear()
s.clear_history()
sub.close()
print("ALIVE", t.is_alive(), "DELS", dels > 1000, "UNRAISABLE", unraisable[:3])
"""


@pytest.mark.parametrize(
    ("isolation", "history"),
    [("freeze", 0), ("freeze", 3), ("reference", 0), ("deepcopy", 5)],
)
def test_a_del_that_reenters_the_state_neither_deadlocks_nor_raises(
    isolation: str, history: int
) -> None:
    code = DEL_REENTERS.replace("{isolation}", isolation).replace("{history}", str(history))
    r = run_child(code, timeout=180)
    assert r.returncode == 0, r.describe()
    assert "ALIVE False DELS True UNRAISABLE []" in r.stdout, r.describe()


def test_wait_for_async_deadline_is_a_lock_timeout() -> None:
    s = ThreadSafeState()

    async def main() -> None:
        await s.wait_for_async(lambda snap: False, timeout=0.01)

    with pytest.raises(LockTimeoutError):
        asyncio.run(main())
