"""Once-cells under hostile use: deep nesting, failed async initialisations, a closed owner loop,
``__del__`` re-entering the cell (issue 11 items 1, 4-6; issue 13)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from nogilsafe import AsyncOnceCell, AsyncSingleton, run_once

from tests._child import run_child


class Boom(Exception):
    """A subclass, so its instances can be weakly referenced."""


# --- deep structures (issue 11, item 1) -------------------------------------------------------

DEEP = """
import nogilsafe as ns
x = None
for _ in range(100_000):
    c = {make}
    x = c
del x, c
print("FREED")
"""


@pytest.mark.parametrize(
    "make",
    [
        "ns.OnceCell(); c.set(x)",
        "ns.OnceCell(); c.get_or_init(lambda: x)",
        "ns.AsyncOnceCell(); c.set(x)",
        "ns.OnceCell(); c.set(x); c = c.local()",
    ],
)
def test_a_chain_of_100000_cells_frees_without_recursing(make: str) -> None:
    # A chain of 100,000 nested lists frees fine (CPython's deallocator does not recurse).
    r = run_child(DEEP.replace("{make}", make.replace("; ", "\n    ")), timeout=240)
    assert r.returncode == 0 and "FREED" in r.stdout, r.describe()


# --- a failed async initialisation leaks nothing (issue 11, item 5) ---------------------------


def failing_factory() -> Any:
    async def fac() -> Any:
        raise Boom("factory failed")

    return fac


def collected_after(run: Any) -> list[weakref.ref[Boom]]:
    """Run ``run(refs)`` (which appends weak references to the exceptions it caught), collect
    garbage, and return the references still alive."""
    refs: list[weakref.ref[Boom]] = []
    asyncio.run(run(refs))
    gc.collect()
    return [r for r in refs if r() is not None]


def test_failed_async_initialisations_are_collected() -> None:
    async def run(refs: list[weakref.ref[Boom]]) -> None:
        for _ in range(50):
            cell: AsyncOnceCell[Any] = AsyncOnceCell()
            try:
                await cell.get_or_init(failing_factory())
            except Boom as e:
                refs.append(weakref.ref(e))

    assert collected_after(run) == []


def test_the_exception_a_waiter_received_is_collected_too() -> None:
    async def run(refs: list[weakref.ref[Boom]]) -> None:
        for _ in range(20):
            cell: AsyncOnceCell[Any] = AsyncOnceCell()
            release = asyncio.Event()

            async def fac(release: asyncio.Event = release) -> Any:
                await release.wait()
                raise Boom("factory failed")

            async def call(cell: AsyncOnceCell[Any] = cell) -> None:
                try:
                    await cell.get_or_init(fac, timeout=10)
                except Boom as e:
                    refs.append(weakref.ref(e))

            tasks = [asyncio.ensure_future(call()) for _ in range(3)]
            while cell._cell._waiting() < 2:
                await asyncio.sleep(0.001)
            release.set()
            await asyncio.gather(*tasks)

    assert collected_after(run) == []


def test_failed_async_singleton_and_run_once_are_collected() -> None:
    class Flaky(AsyncSingleton):
        @classmethod
        async def create(cls) -> Flaky:
            raise Boom("no instance")

    class Conn:
        @run_once
        async def close(self) -> None:
            raise Boom("close failed")

    async def run(refs: list[weakref.ref[Boom]]) -> None:
        for _ in range(20):
            try:
                await Flaky.instance()
            except Boom as e:
                refs.append(weakref.ref(e))
            try:
                await Conn().close()
            except Boom as e:
                refs.append(weakref.ref(e))

    assert collected_after(run) == []


# --- the owner's loop closed under its factory (issue 11, item 6) -----------------------------

LOOP_CLOSED = """
import asyncio, gc, sys, threading, time
import nogilsafe as ns

gc.disable()  # the hand-over must not wait for the collector
unraisable = []
sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))

cell = ns.AsyncOnceCell()

async def stuck():
    await asyncio.Event().wait()  # pending forever

owner_loop = asyncio.new_event_loop()
orphan = owner_loop.create_task(cell.get_or_init(stuck))
owner_loop.run_until_complete(asyncio.sleep(0.05))  # the factory is now pending

result = {}
def waiter():
    async def second():
        return "second"
    async def main():
        return await cell.get_or_init(second, timeout=30)
    result["waiter"] = asyncio.run(main())

t = threading.Thread(target=waiter)
t.start()
deadline = time.monotonic() + 30
while cell._cell._waiting() < 1 and time.monotonic() < deadline:
    time.sleep(0.001)
print("WAITING", cell._cell._waiting())
owner_loop.close()
t.join(30)
print("WAITER", result.get("waiter"))

async def late():
    async def third():
        return "third"
    return await cell.get_or_init(third, timeout=5)
print("LATE", asyncio.run(late()))

del orphan
gc.enable()
gc.collect()
print("UNRAISABLE", unraisable)
"""


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_closing_the_owners_loop_hands_over_to_a_waiter(kind: str) -> None:
    code = LOOP_CLOSED
    if kind == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop has no wheel for this interpreter")
        code = code.replace(
            "owner_loop = asyncio.new_event_loop()",
            "import uvloop\nowner_loop = uvloop.new_event_loop()",
        )
    r = run_child(code, timeout=90)
    assert r.returncode == 0, r.describe()
    assert "WAITING 1" in r.stdout, r.describe()
    assert "WAITER second" in r.stdout, r.describe()
    assert "LATE second" in r.stdout, r.describe()
    assert "UNRAISABLE []" in r.stdout, r.describe()


# --- __del__ of a released value re-enters the cell (issue 13) -------------------------------

DEL_REENTERS = """
import sys, threading
import nogilsafe as ns

unraisable = []
sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
lock = threading.Lock()
cell = ns.OnceCell()
dels = 0

class Grabby:
    def __del__(self):
        global dels
        with lock:  # held by the other thread while it calls into the cell
            dels += 1
        cell.get()
        cell.set("from __del__")  # writes the same cell
        cell.is_initialized()

stop = threading.Event()
def other():
    # Holds the lock a __del__ on the main thread needs, while calling into the cell (never
    # dropping a Grabby itself: its __del__ would wait for the lock this thread holds).
    while not stop.is_set():
        with lock:
            cell.is_initialized()
            cell.set("other")
            cell._waiting()

t = threading.Thread(target=other)
t.start()
for i in range(3000):
    cell.set(Grabby())
    cell.reset()
    cell.take()
    cell.get_or_init(Grabby, timeout=10)
stop.set()
t.join(30)
cell.reset()
print("ALIVE", t.is_alive(), "DELS", dels > 1000, "UNRAISABLE", unraisable[:3])
"""


def test_a_del_that_reenters_the_cell_neither_deadlocks_nor_raises() -> None:
    r = run_child(DEL_REENTERS, timeout=120)
    assert r.returncode == 0, r.describe()
    assert "ALIVE False DELS True UNRAISABLE []" in r.stdout, r.describe()
