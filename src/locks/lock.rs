//! `Lock` and `RLock`: `threading`'s locks, also awaitable from any event loop, with timeouts,
//! an owner, and re-entrance refused (`Lock`) or counted (`RLock`) instead of deadlocking.
//!
//! The fast path is one compare-exchange on `word`, as `threading.Lock`'s; only contention takes
//! the `slow` mutex. Fairness follows CPython's own `PyMutex` and parking_lot: waiters queue FIFO;
//! a release wakes the oldest waiter to *retry* (a thread arriving meanwhile may take the lock
//! first, which keeps throughput up), unless that waiter has already waited `FAIR_AFTER`, in
//! which case the lock is handed to it directly. So nobody waits more than about
//! `FAIR_AFTER` once at the head of the queue, and the queue is served in order.
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::{bury_holder, ident_of, me, me_named, quoted, status, status_none, Holder, WaitTarget};
use crate::errors::{LOCK_TIMEOUT_ERROR, REENTRANCY_ERROR};
use crate::shared::SharedCore;
use crate::sync::{self, Buried};
use crate::waiters::{
    self, with_waiters, Outcome, Reclaim, Ticket, WaitList, Waiter, Wakeups, Withdrawn, BUSY,
    GRANTED, RETRY, TIMED_OUT, WAITING,
};

/// Set while waiters are queued: a release must go through `slow`.
const QUEUED: u64 = 1;
/// The holder is a task (its reference is in `Slow::task`): a release must go through `slow`.
const TASK: u64 = 2;
/// The holder's `sync::thread_id()` sits above the flag bits; 0 means free.
const SHIFT: u32 = 2;
/// A waiter at the head of the queue for this long gets the lock handed over on release.
const FAIR_AFTER: Duration = Duration::from_millis(1);

#[inline]
fn holder_uid(word: u64) -> u64 {
    word >> SHIFT
}

/// What a release grants the oldest waiter.
enum Grant {
    /// The lock, handed over: the waiter holds it now.
    Owned,
    /// A wakeup to try again; keeps when the waiter first started waiting (its place in line).
    Retry(Instant),
}

struct Slow {
    waiters: WaitList<Grant, Holder>,
    /// The holding task while `TASK` is set.
    task: Option<Py<PyAny>>,
    /// When the current hold is known to have started: exact after a handoff, otherwise when a
    /// waiter first found the lock held (a lower bound: the fast path records no time). Set only
    /// while `QUEUED` is, and cleared by the release that ends the hold.
    since: Option<Instant>,
}

pub struct LockCore {
    /// Invariants: bits `SHIFT..` are the holder's thread uid (0: free). `TASK` is set exactly
    /// when `slow.task` holds the holding task, and changes only under `slow`. `QUEUED` changes
    /// only under `slow`, and is set whenever `slow.waiters` is non-empty (and, while the lock is
    /// held, whenever `slow.since` is recorded). So a release that finds neither flag may free
    /// the lock with one compare-exchange; every other release takes `slow`, where no acquirer
    /// can queue meanwhile.
    word: AtomicU64,
    /// `RLock`: acquisitions by the holder beyond the first. Only the holder touches it.
    depth: AtomicU64,
    reentrant: bool,
    name: Option<String>,
    slow: Mutex<Slow>,
}

/// What an acquisition attempt under `slow` decided.
enum Entered {
    Acquired,
    Queued(Ticket, Arc<parking_lot::Condvar>),
}

enum AsyncEntered {
    Acquired,
    Busy,
    Queued(Ticket),
    Refused(PyErr),
}

impl LockCore {
    fn new(reentrant: bool, name: Option<String>) -> Self {
        LockCore {
            word: AtomicU64::new(0),
            depth: AtomicU64::new(0),
            reentrant,
            name,
            slow: Mutex::new(Slow {
                waiters: WaitList::new(),
                task: None,
                since: None,
            }),
        }
    }

    fn kind(&self) -> &'static str {
        if self.reentrant {
            "RLock"
        } else {
            "Lock"
        }
    }

    /// Take a free lock for `uid` with one compare-exchange (keeping `QUEUED`).
    #[inline]
    fn try_take(&self, uid: u64, task_bit: u64) -> bool {
        let w = self.word.load(Relaxed);
        holder_uid(w) == 0
            && self
                .word
                .compare_exchange(
                    w,
                    (uid << SHIFT) | task_bit | (w & QUEUED),
                    Acquire,
                    Relaxed,
                )
                .is_ok()
    }

    /// A brief, bounded spin before queueing, as `PyMutex` and parking_lot do: a holder on another
    /// core usually releases within a few hundred nanoseconds, far sooner than a sleep and wakeup.
    fn spin_take(&self, uid: u64) -> bool {
        for round in 0..6 {
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
            if self.try_take(uid, 0) {
                return true;
            }
        }
        false
    }

    /// Blocking acquisition by the calling thread. `Ok(false)`: not acquired (non-blocking, or
    /// the deadline passed).
    fn acquire(
        self: &Arc<Self>,
        py: Python<'_>,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> PyResult<bool> {
        let (uid, _) = me_named(py);
        if self.try_take(uid, 0) {
            return Ok(true);
        }
        let w = self.word.load(Relaxed);
        if holder_uid(w) == uid {
            if self.reentrant && w & TASK == 0 {
                self.depth.fetch_add(1, Relaxed);
                return Ok(true);
            }
            return Err(self.reentrancy_error(w & TASK != 0));
        }
        if !blocking {
            return Ok(false);
        }
        if self.spin_take(uid) {
            return Ok(true);
        }
        self.acquire_slow(py, uid, deadline)
    }

    fn acquire_slow(
        self: &Arc<Self>,
        py: Python<'_>,
        uid: u64,
        deadline: Option<Instant>,
    ) -> PyResult<bool> {
        // When this thread first queued: kept across retries, so it keeps its place in line.
        let mut first_queued: Option<Instant> = None;
        loop {
            let entered = with_waiters(py, &self.slow, |s, _| loop {
                let w = self.word.load(Relaxed);
                if holder_uid(w) == 0 {
                    if self.try_take(uid, 0) {
                        return Entered::Acquired;
                    }
                } else if self
                    .word
                    .compare_exchange(w, w | QUEUED, Relaxed, Relaxed)
                    .is_ok()
                {
                    let (waiter, cv) = Waiter::thread();
                    let ticket = match first_queued {
                        Some(t) => s.waiters.push_front(Holder::thread(), waiter, t),
                        None => s.waiters.push_back(Holder::thread(), waiter),
                    };
                    s.since.get_or_insert_with(Instant::now);
                    return Entered::Queued(ticket, cv);
                }
            });
            let (ticket, cv) = match entered {
                Entered::Acquired => return Ok(true),
                Entered::Queued(t, cv) => (t, cv),
            };
            let registration = super::register_wait(Arc::clone(self) as _, "acquire");
            let waited =
                waiters::wait_thread(py, &self.slow, ticket, &cv, deadline, |s| &mut s.waiters);
            drop(registration);
            match waited {
                Ok(Some(Outcome::Granted(Grant::Owned))) => return Ok(true),
                Ok(Some(Outcome::Granted(Grant::Retry(since)))) => {
                    first_queued = Some(since);
                    if self.try_take(uid, 0) {
                        return Ok(true);
                    }
                }
                // Locks are never closed.
                Ok(Some(Outcome::Closed)) => return Ok(false),
                Ok(None) => {
                    // The deadline passed: leave, unless the lock arrived just now.
                    return Ok(with_waiters(py, &self.slow, |s, wakes| {
                        match s.waiters.withdraw(ticket, wakes) {
                            Withdrawn::Granted(Grant::Owned) => true,
                            Withdrawn::Granted(Grant::Retry(_)) => {
                                self.try_take(uid, 0) || {
                                    self.pass_retry(s, wakes);
                                    false
                                }
                            }
                            _ => {
                                self.after_withdraw(s);
                                false
                            }
                        }
                    }));
                }
                Err(e) => {
                    // Interrupted (Ctrl-C): whatever was granted meanwhile goes on.
                    self.abandon(py, ticket);
                    return Err(e);
                }
            }
        }
    }

    /// Release by the holder (checked by the caller). Under `slow`: hand the lock to the oldest
    /// waiter if it has waited long enough, else free it and wake that waiter to retry.
    fn release_locked(&self, s: &mut Slow, wakes: &mut Wakeups) {
        if let Some(t) = s.task.take() {
            wakes.bury(t);
        }
        s.since = None;
        self.depth.store(0, Relaxed);
        let Some(front) = s.waiters.front() else {
            self.word.store(0, Release);
            return;
        };
        let first_queued = front.since;
        if first_queued.elapsed() >= FAIR_AFTER {
            let Ok((_, holder)) = s.waiters.grant_front(Grant::Owned, wakes) else {
                unreachable!("the front exists")
            };
            let task = if holder.is_task() { TASK } else { 0 };
            // `QUEUED` even if nobody else waits: the hold's start is known exactly, and its
            // release will clear it.
            self.word
                .store((holder.uid << SHIFT) | task | QUEUED, Release);
            s.task = holder.task;
            s.since = Some(Instant::now());
        } else {
            if let Ok((_, holder)) = s.waiters.grant_front(Grant::Retry(first_queued), wakes) {
                if let Some(t) = holder.task {
                    wakes.bury(t);
                }
            }
            let queued = if s.waiters.is_empty() { 0 } else { QUEUED };
            self.word.store(queued, Release);
        }
    }

    /// A retry wakeup came back unused (its waiter left): if the lock is free, the next waiter
    /// gets it, so a free lock never has waiters that nobody will wake.
    fn pass_retry(&self, s: &mut Slow, wakes: &mut Wakeups) {
        if holder_uid(self.word.load(Relaxed)) != 0 {
            self.after_withdraw(s);
            return;
        }
        if let Some(first_queued) = s.waiters.front().map(|f| f.since) {
            if let Ok((_, holder)) = s.waiters.grant_front(Grant::Retry(first_queued), wakes) {
                if let Some(t) = holder.task {
                    wakes.bury(t);
                }
            }
        }
        self.after_withdraw(s);
    }

    /// After a waiter left: with nobody queued and the lock free, clear `QUEUED`. While the lock
    /// is held, `QUEUED` stays set even with nobody queued, so that the holder's release takes
    /// `slow` and clears `since`, which the next timeout message may still need.
    fn after_withdraw(&self, s: &mut Slow) {
        if s.waiters.is_empty() && holder_uid(self.word.load(Relaxed)) == 0 {
            self.word.fetch_and(!QUEUED, Relaxed);
            s.since = None;
        }
    }

    /// Waiter `ticket` stops waiting (cancelled, interrupted, its loop closed): whatever was
    /// granted to it goes on.
    fn abandon(&self, py: Python<'_>, ticket: Ticket) {
        with_waiters(py, &self.slow, |s, wakes| {
            match s.waiters.withdraw(ticket, wakes) {
                Withdrawn::Granted(Grant::Owned) => self.release_locked(s, wakes),
                Withdrawn::Granted(Grant::Retry(_)) => self.pass_retry(s, wakes),
                _ => self.after_withdraw(s),
            }
        });
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let (uid, _) = me();
        let w = self.word.load(Relaxed);
        if holder_uid(w) != uid {
            return Err(self.not_held_error(w));
        }
        if self.reentrant && self.depth.load(Relaxed) > 0 {
            self.depth.fetch_sub(1, Relaxed);
            return Ok(());
        }
        if w & (QUEUED | TASK) == 0 && self.word.compare_exchange(w, 0, Release, Relaxed).is_ok() {
            return Ok(());
        }
        with_waiters(py, &self.slow, |s, wakes| self.release_locked(s, wakes));
        Ok(())
    }

    fn not_held_error(&self, w: u64) -> PyErr {
        PyRuntimeError::new_err(if holder_uid(w) == 0 {
            if self.reentrant {
                "cannot release un-acquired lock".to_owned()
            } else {
                "release unlocked lock".to_owned()
            }
        } else {
            format!(
                "cannot release un-acquired lock: this {}{} is held by another thread",
                self.kind(),
                quoted(&self.name)
            )
        })
    }

    fn reentrancy_error(&self, by_task: bool) -> PyErr {
        let name = quoted(&self.name);
        REENTRANCY_ERROR.err(if by_task {
            format!(
                "{}{name} is held by a task on this thread's event loop; a blocking acquire here \
                 would stop that loop, so the task could never release it",
                self.kind()
            )
        } else {
            format!(
                "Lock{name} is already held by this thread; acquiring it again would deadlock \
                 (use RLock for re-entrant locking)"
            )
        })
    }

    /// The holder now, for messages and the wait-for graph.
    fn holder(&self, py: Python<'_>) -> Option<(Holder, Option<Instant>)> {
        let s = sync::lock(py, &self.slow);
        let w = self.word.load(Acquire);
        let uid = holder_uid(w);
        if uid == 0 {
            return None;
        }
        let task = if w & TASK != 0 {
            s.task.as_ref().map(|t| t.clone_ref(py))
        } else {
            None
        };
        let since = s.since;
        drop(s);
        Some((
            Holder {
                uid,
                ident: ident_of(uid),
                task,
            },
            since,
        ))
    }

    /// `LockTimeoutError` naming the lock, the holder and how long it has held it.
    fn timeout_error(&self, py: Python<'_>, timeout: Option<f64>) -> PyErr {
        let waited = match timeout {
            Some(t) => format!("timed out after {t} s"),
            None => "timed out".to_owned(),
        };
        let held = match self.holder(py) {
            Some((h, since)) => {
                let text = format!("; held by {}{}", h.describe(py), super::held_for(since));
                h.release(py);
                text
            }
            None => "; it was free again when the wait ended".to_owned(),
        };
        LOCK_TIMEOUT_ERROR.err(format!(
            "{}{}: {waited}{held}",
            self.kind(),
            quoted(&self.name)
        ))
    }

    // ---- the async protocol (see `waiters` and `_waiting.py`) ----

    fn begin_async(
        self: &Arc<Self>,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        future: Option<&Bound<'_, PyAny>>,
        retry: Option<u64>,
        task: &Bound<'_, PyAny>,
    ) -> AsyncEntered {
        let (uid, _) = me_named(py);
        with_waiters(py, &self.slow, |s, wakes| {
            let me = Holder::task(super::task_ref(task));
            loop {
                let w = self.word.load(Relaxed);
                let holder = holder_uid(w);
                if holder == uid {
                    if w & TASK == 0 {
                        bury_holder(wakes, me);
                        return AsyncEntered::Refused(REENTRANCY_ERROR.err(format!(
                            "{}{} is held by this thread outside the event loop; awaiting it from \
                             a task on this thread would deadlock",
                            self.kind(),
                            quoted(&self.name)
                        )));
                    }
                    let same_task = matches!((&s.task, &me.task),
                        (Some(a), Some(b)) if a.as_ptr() == b.as_ptr());
                    if same_task {
                        bury_holder(wakes, me);
                        if self.reentrant {
                            self.depth.fetch_add(1, Relaxed);
                            return AsyncEntered::Acquired;
                        }
                        return AsyncEntered::Refused(REENTRANCY_ERROR.err(format!(
                            "Lock{} is already held by this task; acquiring it again would \
                             deadlock (use RLock for re-entrant locking)",
                            quoted(&self.name)
                        )));
                    }
                }
                if holder == 0 {
                    if self.try_take(uid, TASK) {
                        s.task = me.task;
                        return AsyncEntered::Acquired;
                    }
                    continue;
                }
                let Some(future) = future else {
                    bury_holder(wakes, me);
                    return AsyncEntered::Busy;
                };
                if self
                    .word
                    .compare_exchange(w, w | QUEUED, Relaxed, Relaxed)
                    .is_err()
                {
                    continue;
                }
                let waiter = Waiter::future(
                    event_loop.clone().unbind(),
                    future.clone().unbind(),
                    Arc::clone(self) as Arc<dyn Reclaim>,
                );
                let ticket = match retry {
                    Some(token) => s.waiters.push_front(me, waiter, super::token_since(token)),
                    None => s.waiters.push_back(me, waiter),
                };
                s.since.get_or_insert_with(Instant::now);
                return AsyncEntered::Queued(ticket);
            }
        })
    }

    fn finish_async(&self, py: Python<'_>, ticket: Ticket) -> (u8, Option<u64>) {
        with_waiters(py, &self.slow, |s, wakes| {
            match s.waiters.withdraw(ticket, wakes) {
                Withdrawn::Granted(Grant::Owned) => (GRANTED, None),
                Withdrawn::Granted(Grant::Retry(since)) => (RETRY, Some(super::since_token(since))),
                _ => {
                    self.after_withdraw(s);
                    (TIMED_OUT, None)
                }
            }
        })
    }

    fn waiting(&self, py: Python<'_>) -> usize {
        sync::lock(py, &self.slow).waiters.len()
    }
}

impl Reclaim for LockCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        self.abandon(py, ticket);
    }
}

impl WaitTarget for LockCore {
    fn label(&self) -> String {
        format!("{}{}", self.kind(), quoted(&self.name))
    }

    fn holders(&self, py: Python<'_>) -> Vec<Holder> {
        self.holder(py).map(|(h, _)| h).into_iter().collect()
    }
}

impl Drop for LockCore {
    fn drop(&mut self) {
        let s = self.slow.get_mut();
        let mut wakes = Wakeups::new();
        drop(s.waiters.clear_into(&mut wakes));
        if let Some(t) = s.task.take() {
            wakes.bury(t);
        }
        if !wakes.is_empty() {
            Python::attach(|py| wakes.perform(py));
        }
    }
}

/// `with lock.hold(timeout=5):` / `async with lock.hold(timeout=5):` — acquire or raise
/// `LockTimeoutError` naming the holder.
#[pyclass(frozen, module = "nogilsafe", name = "LockHold")]
pub struct LockHold {
    lock: Py<PyAny>,
    core: Arc<LockCore>,
    timeout: Option<f64>,
}

#[pymethods]
impl LockHold {
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        let py = slf.py();
        let deadline = sync::deadline(this.timeout)?;
        if this.core.acquire(py, true, deadline)? {
            Ok(this.lock.clone_ref(py))
        } else {
            Err(this.core.timeout_error(py, this.timeout))
        }
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.core.release(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        super::glue(
            slf.py(),
            "lock_hold",
            (this.lock.bind(slf.py()), this.timeout),
        )
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.core.release(py)?;
        super::done(py)
    }
}

macro_rules! lock_class {
    ($ty:ident, $name:literal, $reentrant:expr, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, module = "nogilsafe", name = $name)]
        pub struct $ty {
            core: Arc<LockCore>,
            /// `None` for the owner, else the owner this view shares its core with.
            owner: Option<Py<Self>>,
        }

        crate::shared::shared_core!($ty, LockCore);

        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (name = None))]
            fn new(name: Option<String>) -> Self {
                Self::from_core(Arc::new(LockCore::new($reentrant, name)))
            }

            /// A per-thread view sharing this lock.
            fn local(slf: &Bound<'_, Self>) -> Self {
                Self::view(slf)
            }

            /// Acquire, waiting (detached) at most `timeout` seconds; True if acquired.
            #[pyo3(signature = (blocking = true, timeout = None))]
            fn acquire(
                &self,
                py: Python<'_>,
                blocking: bool,
                timeout: Option<f64>,
            ) -> PyResult<bool> {
                if !blocking && timeout.is_some() {
                    return Err(pyo3::exceptions::PyValueError::new_err(
                        "can't specify a timeout for a non-blocking call",
                    ));
                }
                let deadline = sync::deadline(timeout)?;
                self.core.acquire(py, blocking, deadline)
            }

            fn release(&self, py: Python<'_>) -> PyResult<()> {
                self.core.release(py)
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.core.acquire(py, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
                self.core.release(py)?;
                Ok(false)
            }

            fn locked(&self) -> bool {
                holder_uid(self.core.word.load(Relaxed)) != 0
            }

            /// `(thread id, thread name)` of the holder (for a task: its loop's thread), or None.
            #[getter]
            fn owner<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
                match self.core.holder(py) {
                    Some((h, _)) => {
                        let t = h.owner_tuple(py);
                        h.release(py);
                        t.map(Some)
                    }
                    None => Ok(None),
                }
            }

            /// How many threads and tasks are waiting to acquire it.
            #[getter]
            fn waiting(&self, py: Python<'_>) -> usize {
                self.core.waiting(py)
            }

            #[getter]
            fn name(&self) -> Option<&str> {
                self.core.name.as_deref()
            }

            /// A context manager acquiring with `timeout`, raising `LockTimeoutError` (naming the
            /// holder and how long it has held the lock) when it expires. Also `async with`.
            #[pyo3(signature = (timeout = None))]
            fn hold(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<LockHold> {
                sync::deadline(timeout)?;
                Ok(LockHold {
                    lock: slf.clone().into_any().unbind(),
                    core: Arc::clone(&slf.get().core),
                    timeout,
                })
            }

            /// Acquire from a coroutine without blocking its loop; True if acquired, False when
            /// `timeout` expires.
            #[pyo3(signature = (timeout = None))]
            fn acquire_async<'py>(
                slf: &Bound<'py, Self>,
                timeout: Option<f64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                sync::deadline(timeout)?;
                super::glue(slf.py(), "lock_acquire", (slf, timeout))
            }

            fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                super::glue(slf.py(), "lock_enter", (slf,))
            }

            #[pyo3(signature = (*_args))]
            fn __aexit__<'py>(
                &self,
                py: Python<'py>,
                _args: &Bound<'py, PyTuple>,
            ) -> PyResult<Bound<'py, PyAny>> {
                self.core.release(py)?;
                super::done(py)
            }

            fn _begin<'py>(
                &self,
                py: Python<'py>,
                event_loop: &Bound<'py, PyAny>,
                future: Option<&Bound<'py, PyAny>>,
                retry: Option<u64>,
                task: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyTuple>> {
                match self.core.begin_async(py, event_loop, future, retry, task) {
                    AsyncEntered::Acquired => status(py, GRANTED, true),
                    AsyncEntered::Busy => status_none(py, BUSY),
                    AsyncEntered::Queued(t) => status(py, WAITING, t),
                    AsyncEntered::Refused(e) => Err(e),
                }
            }

            fn _finish<'py>(
                &self,
                py: Python<'py>,
                ticket: Ticket,
            ) -> PyResult<Bound<'py, PyTuple>> {
                let (s, retry) = self.core.finish_async(py, ticket);
                match retry {
                    Some(token) => status(py, s, token),
                    None => status(py, s, s == GRANTED),
                }
            }

            fn _abandon(&self, py: Python<'_>, ticket: Ticket) {
                self.core.abandon(py, ticket)
            }

            #[pyo3(signature = (timeout = None))]
            fn _timeout_error(&self, py: Python<'_>, timeout: Option<f64>) -> PyErr {
                self.core.timeout_error(py, timeout)
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                let name = quoted(&self.core.name);
                let state = match self.core.holder(py) {
                    Some((h, _)) => {
                        let d = format!("locked by {}", h.describe(py));
                        h.release(py);
                        d
                    }
                    None => "unlocked".to_owned(),
                };
                let waiting = self.core.waiting(py);
                let waiting = if waiting > 0 {
                    format!(", {waiting} waiting")
                } else {
                    String::new()
                };
                format!("<nogilsafe.{}{name} {state}{waiting}>", $name)
            }

            fn __reduce__(&self) -> PyResult<()> {
                Err(super::refuse_pickle(concat!("nogilsafe.", $name)))
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                if self.visit_owner(&visit)? {
                    return Ok(());
                }
                if let Some(s) = self.core.slow.try_lock() {
                    s.waiters.traverse(&visit)?;
                    if let Some(t) = &s.task {
                        visit.call(t)?;
                    }
                }
                Ok(())
            }
        }
    };
}

lock_class!(
    Lock,
    "Lock",
    false,
    "A lock usable from threads and from any event loop; re-acquiring it from its holder raises \
     `ReentrancyError`."
);
lock_class!(
    RLock,
    "RLock",
    true,
    "A re-entrant lock usable from threads and from any event loop: its holder (a thread, or a \
     task) may acquire it again, and must release it as many times."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lock>()?;
    m.add_class::<RLock>()?;
    m.add_class::<LockHold>()?;
    Ok(())
}
