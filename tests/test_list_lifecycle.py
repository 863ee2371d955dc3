"""Freeing and removing ThreadSafeList elements: nothing crashes, hangs or raises. Each scenario
runs in a child process with a timeout, so a crash or a deadlock fails the test instead of the
suite.

- Deep structures (issue 11, item 1): ``x = ThreadSafeList([x])`` 100,000 deep, then ``del x``,
  segfaulted (already at ~30,000 levels): freeing recursed once per level on the C stack. A chain
  of plain lists frees fine (CPython's "trashcan"); ours now does too.
- ``__del__`` of removed elements (issue 13): every path that removes an element releases it
  after the list's lock, so a ``__del__`` may use the same list, or take a ``threading.Lock``
  that another thread holds while it calls into the list. Under the lock, either would deadlock.
"""

from __future__ import annotations

import pytest

from tests._child import run_child


def run_ok(code: str, timeout: float = 120) -> None:
    r = run_child(code, timeout=timeout)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.describe()


@pytest.mark.parametrize(
    "build",
    [
        "x = ThreadSafeList([x])",
        "x = ThreadSafeList([x.local()])",
        "x = Sub([x])",
        "x = ThreadSafeList([[x]])",
        "x = ThreadSafeList([x, x.local(), ThreadSafeList()])",
    ],
)
def test_deep_nesting_frees_without_recursing(build: str) -> None:
    run_ok(
        f"""
        from nogilsafe import ThreadSafeList

        class Sub(ThreadSafeList):
            pass

        # The reference: plain lists this deep free fine.
        y = []
        for _ in range(100_000):
            y = [y]
        del y

        x = ThreadSafeList()
        for _ in range(100_000):
            {build}
        del x
        print("ok")
        """
    )


def test_deep_nesting_inside_a_cycle_is_collected() -> None:
    run_ok(
        """
        import gc
        from nogilsafe import ThreadSafeList

        x = ThreadSafeList()
        head = x
        for _ in range(100_000):
            x = ThreadSafeList([x])
        head.append(x)  # the innermost list holds the outermost: one big cycle
        del x, head
        gc.collect()
        print("ok")
        """
    )


# Each removes one `Dies` element in its own way (`t` is a fresh one at the front), many times.
REMOVALS = {
    "setitem": "lst[0] = 'x'; del lst[0]",
    "delitem": "del lst[0]",
    "del slice": "del lst[0:1]",
    "slice assignment": "lst[0:1] = ['x']; del lst[0]",
    "extended slice assignment": "lst[0:1:2] = ['x']; del lst[0]",
    "remove": "lst.remove(Dies.KEY)",
    "remove_if": "lst.remove_if(lambda v: isinstance(v, Dies))",
    "clear": "lst.clear()",
    "__init__": "lst.__init__(['a'])",
    "imul": "lst *= 0",
    "update_at": "lst.update_at(0, lambda v: 'u'); del lst[0]",
    "compare_and_set": "lst.compare_and_set(0, lst[0], 'c'); del lst[0]",
    "pop": "lst.pop(0)",
    "drain": "lst.drain()",
    "collected cycle": "c = ThreadSafeList([lst.pop(0)]); c.append(c); del c; gc.collect()",
}


@pytest.mark.parametrize("how", sorted(REMOVALS))
def test_del_of_a_removed_element_may_use_the_list_and_a_lock_its_writers_hold(how: str) -> None:
    run_ok(
        f"""
        import gc, sys, threading
        from nogilsafe import ThreadSafeList

        problems = []
        sys.unraisablehook = lambda u: problems.append(repr(u.exc_value))
        lst = ThreadSafeList()
        user_lock = threading.Lock()
        stop = threading.Event()

        class Dies:
            KEY = "dies"

            def __eq__(self, other):  # Python code: the removal runs it outside the lock
                return other == Dies.KEY

            __hash__ = object.__hash__

            def __del__(self):
                with user_lock:  # held by `other` while it writes the list
                    lst.append("del")  # the same list
                    lst.pop_or()

        def other():
            while not stop.is_set():
                with user_lock:
                    lst.append("b")
                    lst.pop_or()

        t = threading.Thread(target=other)
        t.start()
        try:
            for _ in range(300):
                lst.insert(0, Dies())
                {REMOVALS[how]}
        finally:
            stop.set()
            t.join()
        gc.collect()
        assert not problems, problems
        assert not any(isinstance(v, Dies) for v in lst), lst
        print("ok")
        """,
        timeout=120,
    )
