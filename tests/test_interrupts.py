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
    "Channel.get on an empty channel": """
        ch = ns.Channel()
        interrupt_main_once_waiting()
        def wait_for_it():
            ch.get()
        expect_interrupt(wait_for_it)
        ch.put("x")  # the interrupted getter is gone: it must not swallow this
        print("VALUE", ch.qsize(), ch.get(timeout=10), ch.qsize())
    """,
    "Channel.put on a full channel with a long timeout": """
        ch = ns.Channel(1)
        ch.put("a")
        interrupt_main_once_waiting()
        def wait_for_it():
            ch.put("b", timeout=30)
        expect_interrupt(wait_for_it)
        first = ch.get(timeout=10)
        ch.put("c", timeout=10)  # the interrupted "b" must not have taken the freed slot
        print("VALUE", first, ch.get_many(5, timeout=10), ch.qsize(), ch.unfinished_tasks)
    """,
    "Channel.join with an unfinished task": """
        ch = ns.Channel()
        ch.put("a")
        interrupt_main_once_waiting()
        def wait_for_it():
            ch.join()
        expect_interrupt(wait_for_it)
        item = ch.get(timeout=10)
        ch.task_done()
        ch.join(timeout=10)
        print("VALUE", item, ch.qsize(), ch.unfinished_tasks)
    """,
    "Channel.get_many on an empty channel": """
        ch = ns.Channel(4)
        interrupt_main_once_waiting()
        def wait_for_it():
            ch.get_many(10)
        expect_interrupt(wait_for_it)
        ch.put(1)
        ch.put(2)
        print("VALUE", ch.get_many(10, timeout=10), ch.qsize())
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
    "Channel.get on an empty channel": "1 x 0",
    "Channel.put on a full channel with a long timeout": "a ['c'] 0 2",
    "Channel.join with an unfinished task": "a 0 0",
    "Channel.get_many on an empty channel": "[1, 2] 0",
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sigint_interrupts_a_blocking_wait(name: str) -> None:
    r = run_child(PRELUDE + SCENARIOS[name].replace("\n        ", "\n"), timeout=25)
    assert r.returncode == 0, r.describe()
    lines = r.stdout.splitlines()
    # Raised inside the blocking call (or the predicate it was running), not before or after.
    assert "INTERRUPTED wait_for_it" in lines or "INTERRUPTED <lambda>" in lines, r.describe()
    assert f"VALUE {EXPECTED_VALUE[name]}" in lines, r.describe()


# A channel's waits interrupted again and again while items flow: nothing lost, nothing twice.
# The main thread moves items with C-level loops only (list.extend over map/iter), with the garbage
# collector off, so Python code runs, and a signal handler with it, inside the channel's own
# calls and nowhere else while items are in flight: an item is in `got`/`done` exactly when the
# channel's call returned it or accepted it. The handler raises KeyboardInterrupt only while armed
# (inside the try), so the counting around the loop is never itself interrupted.
RACE_PRELUDE = """
import functools, gc, os, random, signal, sys, threading, time
from itertools import islice
import nogilsafe as ns

gc.disable()
armed = False

def handler(signum, frame):
    global armed
    if armed:
        armed = False
        raise KeyboardInterrupt

signal.signal(signal.SIGINT, handler)
stop = threading.Event()

def pester():
    while not stop.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.002)

def pause_now_and_then(i, rng):
    # Long enough, now and then, for a waiting main thread to run its signal handler.
    if i % 100 == 99:
        time.sleep(rng.uniform(0.03, 0.12))
    elif i % 7 == 0:
        time.sleep(0.0002)

N = 2000
"""

RACES = {
    "get": """
        ch = ns.Channel(16)
        NEVER = object()

        def producer():
            rng = random.Random(1)
            for i in range(N):
                ch.put(i, timeout=60)
                pause_now_and_then(i, rng)

        threading.Thread(target=producer, daemon=True).start()
        threading.Thread(target=pester, daemon=True).start()
        got, interrupted = [], 0
        while len(got) < N:
            try:
                armed = True
                got.extend(islice(iter(ch.get, NEVER), N - len(got)))
                armed = False
            except KeyboardInterrupt:
                interrupted += 1
        stop.set()
        ok = got == list(range(N)) and ch.empty() and ch.unfinished_tasks == N
        print("RESULT", ok, interrupted, len(got), len(set(got)), ch.qsize())
    """,
    "get_many": """
        ch = ns.Channel(16)

        def producer():
            rng = random.Random(2)
            for i in range(N):
                ch.put(i, timeout=60)
                pause_now_and_then(i, rng)

        threading.Thread(target=producer, daemon=True).start()
        threading.Thread(target=pester, daemon=True).start()
        take = functools.partial(ch.get_many, 5)
        NEVER = object()
        batches, interrupted = [], 0
        while sum(map(len, batches)) < N:
            try:
                armed = True
                batches.extend(islice(iter(take, NEVER), 1))
                armed = False
            except KeyboardInterrupt:
                interrupted += 1
        stop.set()
        got = [x for b in batches for x in b]
        ok = got == list(range(N)) and ch.empty()
        print("RESULT", ok, interrupted, len(got), len(set(got)), ch.qsize())
    """,
    "put": """
        ch = ns.Channel(4)
        STOP = object()
        got = []

        def consumer():
            rng = random.Random(3)
            for i, x in enumerate(iter(ch.get, STOP)):
                got.append(x)
                pause_now_and_then(i, rng)

        c = threading.Thread(target=consumer, daemon=True)
        c.start()
        threading.Thread(target=pester, daemon=True).start()
        done, interrupted = [], 0
        while len(done) < N:
            try:
                armed = True
                done.extend(map(ch.put, range(len(done), N)))
                armed = False
            except KeyboardInterrupt:
                interrupted += 1
        stop.set()
        ch.put(STOP, timeout=60)
        c.join(60)
        ok = got == list(range(N)) and ch.empty() and ch.unfinished_tasks == N + 1
        print("RESULT", ok, interrupted, len(got), len(set(got)), ch.qsize())
    """,
}


@pytest.mark.parametrize("name", sorted(RACES))
def test_sigint_racing_items_loses_and_duplicates_nothing(name: str) -> None:
    r = run_child(RACE_PRELUDE + RACES[name].replace("\n        ", "\n"), timeout=120)
    assert r.returncode == 0, r.describe()
    result = [line.split() for line in r.stdout.splitlines() if line.startswith("RESULT")]
    assert result and result[0][1] == "True", r.describe()
    assert int(result[0][2]) > 0, f"never interrupted: {r.describe()}"


def test_sigint_while_a_put_wakes_a_waiter_on_another_loop() -> None:
    # Each put wakes a get_async waiting on a loop in another thread, which runs Python code
    # (loop.call_soon_threadsafe) inside the put: a KeyboardInterrupt raised there must neither
    # vanish nor cost the waiter its wakeup.
    code = (
        RACE_PRELUDE
        + """
import asyncio
N = 6000
unraisable = []
sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
ch = ns.Channel()
got, errors = [], []
ready = threading.Event()

def consumer():
    async def main():
        ready.set()
        while len(got) < N:
            try:
                got.append(await ch.get_async(timeout=10))
            except Exception as e:  # a waiter whose wakeup was lost times out
                errors.append(repr(e))
                return
    asyncio.run(main())

c = threading.Thread(target=consumer, daemon=True)
c.start()
ready.wait(10)

def fast_pester():
    while not stop.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.0003)

threading.Thread(target=fast_pester, daemon=True).start()
done = []
while len(done) < N:
    try:
        armed = True
        done.extend(map(ch.put, range(len(done), len(done) + 1)))
        armed = False
    except KeyboardInterrupt:
        pass
    time.sleep(0.0002)  # the consumer is waiting again by the next put
stop.set()
c.join(60)
print("GOT", len(got), "IN CHANNEL", ch.qsize(), "ERRORS", errors, "UNRAISABLE", unraisable[:3])
print("RESULT", got == list(range(N)) and not errors and not unraisable)
"""
    )
    r = run_child(code, timeout=120)
    assert r.returncode == 0 and "RESULT True" in r.stdout.splitlines(), r.describe()
