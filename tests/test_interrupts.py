"""Ctrl-C interrupts every blocking wait (issue 11, item 3), as it does ``threading.Event.wait``.

Each scenario runs in a child process whose main thread blocks in one nogilsafe wait that would
otherwise never end (another thread's factory waits on an event nobody sets; a predicate that is
never true). A helper thread sends the process a real SIGINT once the wait has begun. The main
thread must get ``KeyboardInterrupt`` raised from that very call (not a timeout, not a hang), and
afterwards the object must still work: the factory's value reaches a later caller.
"""

from __future__ import annotations

import pytest

from tests._child import run_child

PRELUDE = """
import os, signal, threading, time, traceback
import nogilsafe as ns

release = threading.Event()

def interrupt_main_once_waiting():
    # SIGINT the process once the main thread is inside wait_for_it (in the native wait).
    import sys
    main = threading.main_thread().ident
    def inside():
        frame = sys._current_frames().get(main)
        return frame is not None and frame.f_code.co_name == "wait_for_it"
    def run():
        while not inside():
            time.sleep(0.005)
        time.sleep(0.05)  # let the wait settle into its detached sleep
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=run, daemon=True).start()

def blocked_factory():
    release.wait(60)
    return "made"

def expect_interrupt(call):
    try:
        call()
    except KeyboardInterrupt as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        print("INTERRUPTED", frame.name)
    else:
        print("NOT INTERRUPTED")
"""

SCENARIOS = {
    "OnceCell.get_or_init waiting for another thread's factory": """
        cell = ns.OnceCell()
        started = threading.Event()
        def owner():
            cell.get_or_init(lambda: (started.set(), blocked_factory())[1])
        threading.Thread(target=owner).start()
        started.wait(10)
        interrupt_main_once_waiting()
        def wait_for_it():
            cell.get_or_init(lambda: "mine")
        expect_interrupt(wait_for_it)
        release.set()
        print("VALUE", cell.get_or_init(lambda: "mine", timeout=10))
    """,
    "ThreadSafeDict.get_or_insert_with waiting for another thread's factory": """
        d = ns.ThreadSafeDict()
        started = threading.Event()
        def owner():
            d.get_or_insert_with("k", lambda: (started.set(), blocked_factory())[1])
        threading.Thread(target=owner).start()
        started.wait(10)
        interrupt_main_once_waiting()
        def wait_for_it():
            d.get_or_insert_with("k", lambda: "mine")
        expect_interrupt(wait_for_it)
        release.set()
        print("VALUE", d.get_or_insert_with("k", lambda: "mine", timeout=10))
    """,
    "ThreadSafeState.wait_for without a timeout": """
        s = ns.ThreadSafeState({"n": 0})
        interrupt_main_once_waiting()
        def wait_for_it():
            s.wait_for(lambda snap: snap["n"] == 1)
        expect_interrupt(wait_for_it)
        s.set("n", 1)
        print("VALUE", s.wait_for(lambda snap: snap["n"] == 1, timeout=10)["n"])
    """,
    "ThreadSafeState.wait_for with a long timeout": """
        s = ns.ThreadSafeState({"n": 0})
        interrupt_main_once_waiting()
        def wait_for_it():
            s.wait_for(lambda snap: snap["n"] == 1, timeout=30)
        expect_interrupt(wait_for_it)
        s.set("n", 1)
        print("VALUE", s.wait_for(lambda snap: snap["n"] == 1, timeout=10)["n"])
    """,
    "Lock.acquire held by another thread": """
        lock = ns.Lock()
        held = threading.Event()
        def owner():
            with lock:
                held.set()
                release.wait(60)
        threading.Thread(target=owner).start()
        held.wait(10)
        interrupt_main_once_waiting()
        def wait_for_it():
            lock.acquire()
        expect_interrupt(wait_for_it)
        release.set()
        print("VALUE", lock.acquire(timeout=10) and lock.waiting == 0)
    """,
    "RWLock.write waiting for a reader": """
        rw = ns.RWLock()
        held = threading.Event()
        def owner():
            with rw.read():
                held.set()
                release.wait(60)
        threading.Thread(target=owner).start()
        held.wait(10)
        interrupt_main_once_waiting()
        def wait_for_it():
            with rw.write(timeout=30):
                pass
        expect_interrupt(wait_for_it)
        release.set()
        print("VALUE", rw.acquire_write(timeout=10) and rw.waiting == 0)
    """,
    "Event.wait without a timeout": """
        ev = ns.Event()
        interrupt_main_once_waiting()
        def wait_for_it():
            ev.wait()
        expect_interrupt(wait_for_it)
        threading.Timer(0.05, ev.set).start()
        print("VALUE", ev.wait(10))
    """,
    "Semaphore.acquire with a long timeout": """
        sem = ns.Semaphore(0)
        interrupt_main_once_waiting()
        def wait_for_it():
            sem.acquire(timeout=30)
        expect_interrupt(wait_for_it)
        sem.release()
        print("VALUE", sem.acquire(timeout=10) and sem.value == 0 and sem.waiting == 0)
    """,
    "CountDownLatch.wait without a timeout": """
        latch = ns.CountDownLatch(1)
        interrupt_main_once_waiting()
        def wait_for_it():
            latch.wait()
        expect_interrupt(wait_for_it)
        latch.count_down()
        print("VALUE", latch.wait(10))
    """,
}

EXPECTED_VALUE = {
    "OnceCell.get_or_init waiting for another thread's factory": "made",
    "ThreadSafeDict.get_or_insert_with waiting for another thread's factory": "made",
    "ThreadSafeState.wait_for without a timeout": "1",
    "ThreadSafeState.wait_for with a long timeout": "1",
    "Lock.acquire held by another thread": "True",
    "RWLock.write waiting for a reader": "True",
    "Event.wait without a timeout": "True",
    "Semaphore.acquire with a long timeout": "True",
    "CountDownLatch.wait without a timeout": "True",
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sigint_interrupts_a_blocking_wait(name: str) -> None:
    r = run_child(PRELUDE + SCENARIOS[name].replace("\n        ", "\n"), timeout=25)
    assert r.returncode == 0, r.describe()
    lines = r.stdout.splitlines()
    # Raised inside the blocking call (or the predicate it was running), not before or after.
    assert "INTERRUPTED wait_for_it" in lines or "INTERRUPTED <lambda>" in lines, r.describe()
    assert f"VALUE {EXPECTED_VALUE[name]}" in lines, r.describe()
