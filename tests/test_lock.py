"""Lock and RLock from threads: threading's documented contract (CPython's lock_tests.py is the
model), plus timeouts that name the holder, re-entrance refused or counted, owner/waiting, FIFO.

Where we differ from threading on purpose, the test says so: a Lock is owned (releasing it from
another thread is a RuntimeError, as for RLock), re-acquiring it from its holder raises
ReentrancyError instead of deadlocking, and a negative timeout is a ValueError (threading reads -1
as "forever"; here that is timeout=None).
"""

from __future__ import annotations

import copy
import pickle
import threading
import time

import pytest
from nogilsafe import Lock, LockTimeoutError, ReentrancyError, RLock
from nogilsafe.testing import run_concurrently

from tests._threads import join_all

KINDS = [Lock, RLock]


def wait_until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def start(fn, name: str | None = None) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind", KINDS)
def test_acquire_release_and_locked(kind: type) -> None:
    lock = kind()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    lock.release()
    assert not lock.locked()


@pytest.mark.parametrize("kind", KINDS)
def test_with_statement_returns_true_and_releases_on_exception(kind: type) -> None:
    lock = kind()
    with lock as got:
        assert got is True  # threading's __enter__ returns acquire()'s result
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(ZeroDivisionError), lock:
        raise ZeroDivisionError
    assert not lock.locked()


@pytest.mark.thread_unsafe(reason="starts its own threads")
@pytest.mark.parametrize("kind", KINDS)
def test_non_blocking_and_timeouts_on_a_lock_held_elsewhere(kind: type) -> None:
    lock = kind()
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    t = start(holder)
    held.wait(10)
    assert lock.acquire(False) is False  # as threading: immediately False
    assert lock.acquire(blocking=False) is False
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.1) is False
    assert time.monotonic() - t0 >= 0.09
    assert lock.acquire(timeout=0) is False
    done.set()
    join_all([t], 10)
    assert lock.acquire(timeout=1) is True
    lock.release()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), 1e300])
def test_bad_timeouts_are_value_errors(kind: type, bad: float) -> None:
    lock = kind()
    with pytest.raises(ValueError):
        lock.acquire(timeout=bad)
    with pytest.raises(ValueError):
        lock.hold(timeout=bad)
    assert not lock.locked()


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_with_non_blocking_is_a_value_error(kind: type) -> None:
    # threading.Lock().acquire(False, 1) raises ValueError too.
    with pytest.raises(ValueError):
        threading.Lock().acquire(False, 1)
    with pytest.raises(ValueError):
        kind().acquire(False, 1)


def test_release_unlocked_is_a_runtime_error_like_threading() -> None:
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        threading.Lock().release()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        Lock().release()
    with pytest.raises(RuntimeError, match="un-acquired"):
        threading.RLock().release()
    with pytest.raises(RuntimeError, match="un-acquired"):
        RLock().release()


@pytest.mark.thread_unsafe(reason="starts its own threads")
@pytest.mark.parametrize("kind", KINDS)
def test_release_by_another_thread_is_a_runtime_error_and_changes_nothing(kind: type) -> None:
    # threading.RLock refuses this; threading.Lock allows it. Ours are owned: both refuse.
    lock = kind()
    lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as e:
            errors.append(e)

    join_all([start(other)], 10)
    assert len(errors) == 1 and "another thread" in str(errors[0])
    assert lock.locked() and lock.owner is not None
    assert lock.owner[0] == threading.get_ident()
    lock.release()


def test_lock_reacquired_by_its_holder_raises_instead_of_deadlocking() -> None:
    lock = Lock(name="db")
    with lock:
        with pytest.raises(ReentrancyError, match="already held by this thread"):
            lock.acquire()
        with pytest.raises(ReentrancyError):
            lock.acquire(timeout=5)
        with pytest.raises(ReentrancyError):
            lock.acquire(blocking=False)
        assert lock.locked()
    assert not lock.locked()


def test_rlock_counts_like_threading_rlock() -> None:
    for lock in (threading.RLock(), RLock()):
        for _ in range(3):
            assert lock.acquire()
        for _ in range(3):
            lock.release()
        with pytest.raises(RuntimeError):
            lock.release()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_rlock_held_twice_stays_held_until_released_twice() -> None:
    lock = RLock()
    lock.acquire()
    lock.acquire()
    lock.release()
    got: list[bool] = []
    join_all([start(lambda: got.append(lock.acquire(timeout=0.05)))], 10)
    assert got == [False]
    lock.release()
    join_all([start(lambda: (got.append(lock.acquire(timeout=5)), lock.release()))], 10)
    assert got == [False, True]


def test_owner_waiting_name_and_repr() -> None:
    lock = Lock(name="orders")
    assert lock.owner is None and lock.waiting == 0 and lock.name == "orders"
    assert "orders" in repr(lock) and "unlocked" in repr(lock)
    with lock:
        assert lock.owner == (threading.get_ident(), threading.current_thread().name)
        assert "MainThread" in repr(lock) or threading.current_thread().name in repr(lock)
    assert Lock().name is None


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_hold_timeout_names_the_lock_the_holder_and_how_long() -> None:
    lock = Lock(name="ledger")
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    t = start(holder, name="bookkeeper")
    held.wait(10)
    try:
        with pytest.raises(LockTimeoutError) as info, lock.hold(timeout=0.2):
            pass
        msg = str(info.value)
        assert "'ledger'" in msg and "0.2" in msg
        assert "'bookkeeper'" in msg and str(t.ident) in msg
        assert "for at least" in msg
        assert isinstance(info.value, TimeoutError)
    finally:
        done.set()
        join_all([t], 10)
    with lock.hold(timeout=1) as got:
        assert got is lock and lock.locked()
    assert not lock.locked()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_a_dead_holder_is_named_as_exited() -> None:
    lock = Lock(name="dead")

    def take_and_die() -> None:
        lock.acquire()

    t = start(take_and_die, name="doomed-worker")
    join_all([t], 10)
    assert lock.locked()
    # A new thread (that may well get the dead one's ident) is not taken for the holder.
    got: list[BaseException] = []

    def waiter() -> None:
        try:
            with lock.hold(timeout=0.05):
                pass
        except LockTimeoutError as e:
            got.append(e)

    join_all([start(waiter)], 10)
    assert len(got) == 1
    msg = str(got[0])
    assert "'doomed-worker'" in msg and "exited without releasing it" in msg


@pytest.mark.thread_unsafe(reason="starts its own threads")
@pytest.mark.parametrize("kind", KINDS)
def test_waiters_are_served_in_arrival_order(kind: type) -> None:
    lock = kind()
    order: list[int] = []
    lock.acquire()
    threads = []
    for i in range(6):

        def take(i: int = i) -> None:
            with lock:
                order.append(i)

        threads.append(start(take))
        wait_until(lambda i=i: lock.waiting == i + 1)
    lock.release()
    join_all(threads, 10)
    assert order == list(range(6))
    assert lock.waiting == 0 and not lock.locked()


@pytest.mark.thread_unsafe(reason="starts its own threads")
def test_timed_out_waiters_leave_the_queue() -> None:
    lock = Lock()
    lock.acquire()
    results: list[bool] = []
    threads = [start(lambda: results.append(lock.acquire(timeout=0.05))) for _ in range(4)]
    join_all(threads, 10)
    assert results == [False] * 4
    assert lock.waiting == 0
    lock.release()
    assert lock.acquire(blocking=False)
    lock.release()


@pytest.mark.parametrize("kind", KINDS)
def test_pickling_and_copying_are_refused_like_threading(kind: type) -> None:
    for lock in (threading.Lock(), kind(), kind().local()):
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(lock)
        with pytest.raises(TypeError):
            copy.deepcopy(lock)


@pytest.mark.thread_unsafe(reason="starts its own threads")
@pytest.mark.parametrize("kind", KINDS)
def test_local_views_share_the_lock(kind: type) -> None:
    lock = kind()
    view = lock.local()
    assert type(view) is kind
    with view:
        assert lock.locked()
        got: list[bool] = []
        join_all([start(lambda: got.append(lock.local().acquire(timeout=0.02)))], 10)
        assert got == [False]
    assert not lock.locked()


@pytest.mark.parametrize("kind", KINDS)
def test_subclassable(kind: type) -> None:
    class Named(kind):  # type: ignore[misc,valid-type]
        pass

    lock = Named(name="x")
    with lock:
        assert lock.locked()
    assert isinstance(lock, kind)


@pytest.mark.thread_unsafe(reason="starts its own threads")
@pytest.mark.parametrize("kind", KINDS)
def test_counter_under_contention_is_exact(kind: type) -> None:
    lock = kind()
    box = [0]

    def work(i: int) -> None:
        mine = lock.local() if i % 2 else lock
        for _ in range(2000):
            with mine:
                box[0] += 1
        for _ in range(500):
            if mine.acquire(timeout=5):
                box[0] += 1
                mine.release()

    run_concurrently(work, threads=8, timeout=60)
    assert box[0] == 8 * 2500
    assert not lock.locked() and lock.waiting == 0
