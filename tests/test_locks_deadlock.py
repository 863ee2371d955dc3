"""Deadlock diagnostics: nogilsafe.testing names the nogilsafe locks stuck threads wait for and who
holds them (a wait-for graph), and reports a cycle as a deadlock. Real deadlocks run in a child
process with a timeout: their threads can never be freed."""

from __future__ import annotations

import threading
import time

import pytest
from nogilsafe import Event, Lock
from nogilsafe.testing import find_deadlocks, lock_waits

from tests._child import run_child
from tests._threads import join_all

DEADLOCK = """
import threading
import nogilsafe as ns
from nogilsafe.testing import StuckThreadsError, run_concurrently

a, b = ns.{kind}(name="accounts"), ns.{kind}(name="ledger")
both_hold = threading.Barrier(2)

def fn(i):
    first, second = (a, b) if i == 0 else (b, a)
    with first:
        both_hold.wait(10)
        with second:  # no timeout: a real deadlock
            pass

try:
    run_concurrently(fn, threads=2, timeout=1.0, name="transfer")
except StuckThreadsError as e:
    print(str(e))
    print("CYCLES", len(e.deadlocks), sorted(len(c) for c in e.deadlocks))
"""


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_lock_order_deadlock_is_reported_as_a_cycle(kind: str) -> None:
    r = run_child(DEADLOCK.replace("{kind}", kind), timeout=60)
    assert r.returncode == 0, r.describe()
    out = r.stdout
    assert "CYCLES 1 [2]" in out, r.describe()
    assert f"{kind} 'accounts' (acquire)" in out and f"{kind} 'ledger' (acquire)" in out
    assert "thread 'transfer-0'" in out and "thread 'transfer-1'" in out
    assert "DEADLOCK: thread 'transfer-" in out, out


RW_DEADLOCK = """
import threading
import nogilsafe as ns
from nogilsafe.testing import StuckThreadsError, run_concurrently

rw, lock = ns.RWLock(name="index"), ns.Lock(name="cache")
both_hold = threading.Barrier(2)

def fn(i):
    if i == 0:
        with rw.read():
            both_hold.wait(10)
            lock.acquire()
    else:
        with lock:
            both_hold.wait(10)
            with rw.write():
                pass

try:
    run_concurrently(fn, threads=2, timeout=1.0, name="w")
except StuckThreadsError as e:
    print(str(e))
    print("CYCLES", len(e.deadlocks))
"""


def test_a_reader_writer_deadlock_is_reported() -> None:
    r = run_child(RW_DEADLOCK, timeout=60)
    assert r.returncode == 0, r.describe()
    assert "CYCLES 1" in r.stdout, r.describe()
    assert "RWLock 'index' (write)" in r.stdout and "Lock 'cache' (acquire)" in r.stdout


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_lock_waits_lists_blocked_threads_and_holders() -> None:
    lock, event = Lock(name="db"), Event(name="ready")
    lock.acquire()
    done = threading.Event()

    def on_lock() -> None:
        if lock.acquire(timeout=10):
            lock.release()

    def on_event() -> None:
        event.wait(10)
        done.set()

    threads = [
        threading.Thread(target=on_lock, name="wants-db", daemon=True),
        threading.Thread(target=on_event, name="wants-ready", daemon=True),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while (lock.waiting, event.waiting) != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        waits = {w.thread_id: w for w in lock_waits()}
        on_db = waits[threads[0].ident]  # type: ignore[index]
        assert on_db.waits_for == "Lock 'db' (acquire)"
        assert on_db.holders == ((threading.get_ident(), on_db.holders[0][1]),)
        assert "MainThread" in on_db.holders[0][1] and "'wants-db'" in on_db.thread
        on_ready = waits[threads[1].ident]  # type: ignore[index]
        assert on_ready.waits_for == "Event 'ready' (wait)" and on_ready.holders == ()
        assert find_deadlocks(list(waits.values())) == []
    finally:
        lock.release()
        event.set()
        join_all(threads, 10)
    assert done.is_set()
    assert all(w.thread_id not in {t.ident for t in threads} for w in lock_waits())
