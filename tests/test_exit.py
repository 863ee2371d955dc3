"""Interpreter exit with daemon threads inside nogilsafe never aborts (issue 11, item 2).

Before Python 3.14 CPython ends a daemon thread that re-attaches during finalization with
``pthread_exit``, a forced unwind that aborted the process when it crossed our Rust frames
(exit status 134, "FATAL: exception not rethrown"). Each scenario keeps four daemon threads busy
inside one operation whose Python code (or whose own wait) re-attaches often, then lets the main
thread return. It runs several times in a child process: the exit status must be 0.
"""

from __future__ import annotations

import pytest

from tests._child import run_child

PRELUDE = """
import sys, threading, time
import nogilsafe as ns

def slow(*args):
    time.sleep(0.0005)
    return 1

class SlowDel:
    def __del__(self):
        time.sleep(0.0005)

class SlowEq:
    def __eq__(self, other):
        time.sleep(0.0005)
        return False
    __hash__ = object.__hash__

def start(work, n=4):
    for _ in range(n):
        threading.Thread(target=work, daemon=True).start()
    time.sleep(0.15)
"""

SCENARIOS = {
    "dict.compute callback": """
        d = ns.ThreadSafeDict()
        def work():
            while True:
                d.compute("k", slow)
        start(work)
    """,
    "dict.get_or_insert_with factory and waiters": """
        d = ns.ThreadSafeDict()
        def work():
            i = 0
            while True:
                i += 1
                d.get_or_insert_with(i // 3, slow)
        start(work)
    """,
    "dict value __del__": """
        d = ns.ThreadSafeDict()
        def work():
            while True:
                d["k"] = SlowDel()
        start(work)
    """,
    "dict.update, del, pop_if, clear: replaced and removed objects' __del__": """
        class DelKey(SlowDel):
            def __init__(self, v):
                self.v = v
            def __hash__(self):
                return self.v
            def __eq__(self, other):
                return isinstance(other, DelKey) and other.v == self.v
        d = ns.ThreadSafeDict()
        def work():
            while True:
                d.update({"k": SlowDel(), "j": SlowDel(), DelKey(1): 0})
                del d["k"]
                d.pop_if(DelKey(1), 0)  # the stored key object is the one removed
                d.clear()
        start(work)
    """,
    "dict.increment falling back to Python +": """
        class Slow(int):
            def __add__(self, other):
                time.sleep(0.0005)
                return Slow(int(self) + other)
        d = ns.ThreadSafeDict()
        d["k"] = Slow(0)
        def work():
            while True:
                d.increment("k")
        start(work)
    """,
    "dict keys with slow __eq__ and __hash__": """
        class SlowKey:
            def __init__(self, v):
                self.v = v
            def __hash__(self):
                time.sleep(0.0002)
                return 1
            def __eq__(self, other):
                time.sleep(0.0002)
                return isinstance(other, SlowKey) and other.v == self.v
        d = ns.ThreadSafeDict()
        def work():
            i = 0
            while True:
                i += 1
                d[SlowKey(i % 3)] = i
                d.get(SlowKey(i % 5))
        start(work)
    """,
    "dict subclass __missing__": """
        class Registry(ns.ThreadSafeDict):
            def __missing__(self, key):
                return slow()
        r = Registry()
        def work():
            while True:
                r["absent"]
        start(work)
    """,
    "AtomicInt compared with a Python number": """
        import numbers
        class SlowNumber:
            def __eq__(self, other):
                return slow() == 2
            __hash__ = None
        numbers.Number.register(SlowNumber)
        a = ns.AtomicInt()
        n = SlowNumber()
        def work():
            while True:
                a == n
        start(work)
    """,
    "OnceCell factory": """
        def work():
            while True:
                ns.OnceCell().get_or_init(slow)
        start(work)
    """,
    "OnceCell waiters": """
        cell = ns.OnceCell()
        def work():
            while True:
                cell.get_or_init(slow)
                cell.reset()
        start(work)
    """,
    "list.sort key": """
        def work():
            lst = ns.ThreadSafeList(range(20))
            while True:
                lst.sort(key=slow)
        start(work)
    """,
    "list item __del__": """
        lst = ns.ThreadSafeList()
        def work():
            while True:
                lst.append(SlowDel())
                lst.pop_or()
        start(work)
    """,
    "list.sort comparisons": """
        class SlowLt:
            def __init__(self, v):
                self.v = v
            def __lt__(self, other):
                time.sleep(0.0005)
                return self.v < other.v
        def work():
            lst = ns.ThreadSafeList(SlowLt(i) for i in range(20, 0, -1))
            while True:
                lst.sort()
                lst.reverse()
        start(work)
    """,
    "list.remove_if predicate": """
        lst = ns.ThreadSafeList(range(20))
        def work():
            while True:
                lst.remove_if(lambda v: slow() and False)
        start(work)
    """,
    "list.update_at function, contended": """
        lst = ns.ThreadSafeList([0])
        def work():
            while True:
                lst.update_at(0, lambda v: slow() + v)
        start(work)
    """,
    "list.remove __eq__, contended": """
        lst = ns.ThreadSafeList([SlowEq() for _ in range(10)])
        def work():
            me = threading.get_ident()
            lst.append(me)
            while True:
                lst.remove(me)
                lst.insert(0, me)
        start(work)
    """,
    "list.index/count/in __eq__": """
        lst = ns.ThreadSafeList([SlowEq() for _ in range(10)] + [1])
        def work():
            while True:
                lst.index(1)
                lst.count(1)
                1 in lst
        start(work)
    """,
    "list.append_if_absent/extend_if_absent __eq__": """
        lst = ns.ThreadSafeList([SlowEq() for _ in range(10)] + [1])
        def work():
            while True:
                lst.append_if_absent(1)
                lst.extend_if_absent([1, SlowEq()])
                lst.pop_or()
        start(work)
    """,
    "list removed items' __del__": """
        lst = ns.ThreadSafeList()
        def work():
            while True:
                lst.extend([SlowDel(), SlowDel()])
                lst.remove_if(lambda v: isinstance(v, SlowDel))
                lst.append(SlowDel())
                lst.clear()
        start(work)
    """,
    "list.extend/constructor/+= user iterables": """
        def slow_items():
            for i in range(5):
                time.sleep(0.0005)
                yield i
        def work():
            while True:
                lst = ns.ThreadSafeList(slow_items())
                lst.extend(slow_items())
                lst += slow_items()
                lst[1:2] = slow_items()
        start(work)
    """,
    "list __index__": """
        class SlowIndex:
            def __index__(self):
                time.sleep(0.0005)
                return 0
        lst = ns.ThreadSafeList([1, 2, 3])
        def work():
            while True:
                lst[SlowIndex()]
                lst.insert(SlowIndex(), 0)
                lst.pop(SlowIndex())
                lst[SlowIndex():SlowIndex()]
        start(work)
    """,
    "state.update_with": """
        s = ns.ThreadSafeState({"k": 0})
        def work():
            while True:
                s.update_with("k", slow)
        start(work)
    """,
    "state.set contended, no callback": """
        s = ns.ThreadSafeState()
        def work():
            n = 0
            while True:
                n += 1
                s.set("k", n)
        start(work)
    """,
    "state.wait_for predicate": """
        s = ns.ThreadSafeState({"k": 0})
        def work():
            while True:
                try:
                    s.wait_for(lambda snap: slow() and False, timeout=0.01)
                except TimeoutError:
                    pass
        def commit():
            n = 0
            while True:
                n += 1
                s.set("k", n)
                time.sleep(0.0002)
        threading.Thread(target=commit, daemon=True).start()
        start(work)
    """,
    "AtomicInt.update": """
        a = ns.AtomicInt()
        def work():
            while True:
                a.update(lambda v: slow() + v)
        start(work)
    """,
    "AsyncOnceCell factory on a daemon thread's loop": """
        import asyncio
        cell = ns.AsyncOnceCell()
        async def factory():
            await asyncio.sleep(0.0005)
            return slow()
        def work():
            async def loop_body():
                while True:
                    await ns.AsyncOnceCell().get_or_init(factory)
                    await cell.get_or_init(factory)  # owners and waiters across loops
                    cell.reset()
            asyncio.run(loop_body())
        start(work)
    """,
    "async_singleton and async run_once": """
        import asyncio
        @ns.async_singleton
        async def engine():
            await asyncio.sleep(0.0005)
            return slow()
        class Conn:
            @ns.run_once
            async def close(self):
                await asyncio.sleep(0.0005)
        def work():
            async def loop_body():
                while True:
                    await engine()
                    engine.reset()
                    await Conn().close()
            asyncio.run(loop_body())
        start(work)
    """,
    "state subscriber callbacks": """
        s = ns.ThreadSafeState()
        s.subscribe(lambda changes: slow())
        def work():
            n = 0
            while True:
                n += 1
                s.set("k", n)
        start(work)
    """,
    "state.wait_for_async predicate": """
        import asyncio
        s = ns.ThreadSafeState({"k": 0})
        def work():
            async def loop_body():
                while True:
                    try:
                        await s.wait_for_async(lambda snap: slow() and False, timeout=0.01)
                    except TimeoutError:
                        pass
            asyncio.run(loop_body())
        def commit():
            n = 0
            while True:
                n += 1
                s.set("k", n)
                time.sleep(0.0002)
        threading.Thread(target=commit, daemon=True).start()
        start(work)
    """,
    "state deepcopy isolation and value __del__": """
        class SlowCopy(SlowDel):
            def __deepcopy__(self, memo):
                time.sleep(0.0005)
                return SlowCopy()
        s = ns.ThreadSafeState(isolation="deepcopy", max_history=2)
        def work():
            while True:
                s.set("k", SlowCopy())
                s.get("k")
        start(work)
    """,
    "OnceCell value __del__": """
        cell = ns.OnceCell()
        def work():
            while True:
                cell.set(SlowDel())
                cell.reset()
        start(work)
    """,
    "Lock contended, slow holder": """
        lock = ns.Lock()
        def work():
            while True:
                with lock:
                    slow()
        start(work)
    """,
    "Lock waiters blocked at exit": """
        lock = ns.Lock()
        lock.acquire()
        def work():
            lock.acquire()
        start(work)
    """,
    "RLock and RWLock mixed": """
        rl, rw = ns.RLock(), ns.RWLock()
        n = [0]
        def work():
            while True:
                n[0] += 1
                with rl, rl:
                    with (rw.write() if n[0] % 3 == 0 else rw.read()):
                        slow()
        start(work)
    """,
    "Event and CountDownLatch waiters, threads and loops": """
        import asyncio
        ev, latch = ns.Event(), ns.CountDownLatch(1)
        def work():
            ev.wait()
        def loop_work():
            async def main():
                await asyncio.gather(ev.wait_async(), latch.wait_async())
            asyncio.run(main())
        start(work, 2)
        start(loop_work, 2)
    """,
    "Semaphore contended from threads and loops": """
        import asyncio
        sem = ns.Semaphore(1)
        def work():
            while True:
                with sem:
                    slow()
        def loop_work():
            async def main():
                while True:
                    async with sem:
                        slow()
            asyncio.run(main())
        start(work, 2)
        start(loop_work, 2)
    """,
    "Channel.get waiters blocked at exit": """
        ch = ns.Channel()
        def work():
            ch.get()
        start(work)
    """,
    "Channel.put and get_many waiters blocked on a full channel at exit": """
        full, empty = ns.Channel(1), ns.Channel()
        full.put(0)
        def put():
            full.put(1)
        def get_many():
            empty.local().get_many(8)
        start(put, 2)
        start(get_many, 2)
    """,
    "Channel.join waiters blocked at exit": """
        ch = ns.Channel()
        ch.put(0)
        def work():
            ch.join()
        start(work)
    """,
    "Channel async waiters on daemon threads' loops at exit": """
        import asyncio
        empty, full, unfinished = ns.Channel(), ns.Channel(1), ns.Channel()
        full.put(0)
        unfinished.put(0)
        def loop_work():
            async def main():
                await asyncio.gather(
                    empty.get_async(), full.put_async(1), unfinished.join_async(),
                    *(empty.local().get_async() for _ in range(4)),
                )
            asyncio.run(main())
        start(loop_work, 4)
    """,
    "Channel traffic with slow-__del__ items from threads and loops": """
        import asyncio
        ch = ns.Channel(4)
        def producer():
            while True:
                ch.put(SlowDel())
        def consumer():
            while True:
                ch.get_many(3)
        def loop_work():
            async def main():
                while True:
                    await ch.put_async(SlowDel())
                    await ch.get_async()
            asyncio.run(main())
        start(producer, 2)
        start(consumer, 2)
        start(loop_work, 2)
    """,
}

# Scenarios whose fix has not landed yet: each entry names what still runs Python code outside
# the exit guard. Strict: an unexpected pass fails, so the list cannot go stale.
NOT_YET: dict[str, str] = {}

RUNS = 3


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET[n], strict=True))
        if n in NOT_YET
        else n
        for n in sorted(SCENARIOS)
    ],
)
def test_daemon_threads_at_exit_do_not_abort(name: str) -> None:
    code = PRELUDE + SCENARIOS[name].replace("\n        ", "\n")
    for _ in range(RUNS):
        r = run_child(code, timeout=60)
        assert r.returncode == 0, f"{name}: {r.describe()}"
