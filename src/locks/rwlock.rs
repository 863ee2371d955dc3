//! `RWLock`: many readers or one writer, from threads and from any event loop.
//!
//! Writer-preferring: once a writer waits, new readers queue behind it, so a stream of readers
//! cannot starve a writer. When a writer releases, the readers that queued meanwhile go first, as
//! one batch, then the next writer: neither side can starve the other. Re-entrance: a reader may
//! read again (even with writers waiting: queueing would deadlock it); upgrading a read to a
//! write, writing twice or reading while writing raises `ReentrancyError` instead of hanging.
//! Holders are tracked per thread (sync) or per task (async).
//!
//! Writers follow `Lock`'s fairness (see `lock.rs`): a release wakes the oldest writer to *retry*,
//! and a writer arriving meanwhile may take the free lock first, which keeps a thread that
//! writes in a loop from paying a sleep and a wakeup per write; a writer that has waited
//! `FAIR_AFTER` at the head of the queue gets the lock handed over instead. Readers waiting
//! behind a writer are let in as one batch, handed over as before.
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::{bury_holder, me_named, quoted, status, status_none, Holder, WaitTarget};
use crate::errors::{LOCK_TIMEOUT_ERROR, REENTRANCY_ERROR};
use crate::shared::SharedCore;
use crate::sync::{self, Buried};
use crate::waiters::{
    self, with_waiters, Outcome, Reclaim, Ticket, WaitList, Waiter, Wakeups, Withdrawn, BUSY,
    CLOSED, GRANTED, RETRY, TIMED_OUT, WAITING,
};

/// A writer at the head of the queue for this long gets the lock handed over on release.
const FAIR_AFTER: Duration = Duration::from_millis(1);

/// What a grant gives a waiter.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    /// The lock (read or write), handed over: the waiter holds it now.
    Owned,
    /// A wakeup for a writer to try again, with the time it first started waiting (its place
    /// in line if it must queue again).
    Retry(Instant),
}

struct RwState {
    /// Read holders, how many times each holds it, and the ticket of the wait that granted it
    /// (0 if taken at once). Invariant: non-empty only while `writer` is `None`.
    readers: Vec<(Holder, u32, Ticket)>,
    writer: Option<Holder>,
    /// When the current write hold, or the current stretch of reading, began.
    since: Option<Instant>,
    /// Invariant: non-empty only while a writer holds the lock or waits for it.
    read_waiters: WaitList<Grant, Holder>,
    write_waiters: WaitList<Grant, Holder>,
}

fn reads(s: &mut RwState) -> &mut WaitList<Grant, Holder> {
    &mut s.read_waiters
}

fn writes(s: &mut RwState) -> &mut WaitList<Grant, Holder> {
    &mut s.write_waiters
}

pub struct RwCore {
    state: Mutex<RwState>,
    name: Option<String>,
}

/// What an acquisition decided under the lock.
enum Try {
    Acquired,
    /// Must wait: the caller's holder record comes back to be queued.
    Wait(Holder),
    Refused(PyErr),
}

impl RwCore {
    fn label(&self, write: bool) -> String {
        format!(
            "RWLock{} ({})",
            quoted(&self.name),
            if write { "write" } else { "read" }
        )
    }

    fn refuse(&self, what: &str) -> PyErr {
        REENTRANCY_ERROR.err(format!(
            "RWLock{}: {what}; waiting would deadlock",
            quoted(&self.name)
        ))
    }

    fn try_read(&self, s: &mut RwState, me: Holder, wakes: &mut Wakeups) -> Try {
        if s.writer.as_ref().is_some_and(|w| w.same(&me)) {
            bury_holder(wakes, me);
            return Try::Refused(self.refuse("read requested by the holder of the write lock"));
        }
        if let Some((_, depth, _)) = s.readers.iter_mut().find(|(h, _, _)| h.same(&me)) {
            *depth = depth.saturating_add(1);
            bury_holder(wakes, me);
            return Try::Acquired;
        }
        if s.writer.is_none() && s.write_waiters.is_empty() {
            if s.readers.is_empty() {
                s.since = Some(Instant::now());
            }
            s.readers.push((me, 1, 0));
            return Try::Acquired;
        }
        Try::Wait(me)
    }

    fn try_write(&self, s: &mut RwState, me: Holder, wakes: &mut Wakeups) -> Try {
        let refusal = if s.writer.as_ref().is_some_and(|w| w.same(&me)) {
            Some("write requested again by the holder of the write lock")
        } else if s.readers.iter().any(|(h, _, _)| h.same(&me)) {
            Some("write requested by a holder of a read lock (upgrading is not supported)")
        } else {
            None
        };
        if let Some(what) = refusal {
            bury_holder(wakes, me);
            return Try::Refused(self.refuse(what));
        }
        // A free lock may be taken even with writers queued: they were woken to retry, or will
        // be handed it once they have waited `FAIR_AFTER` (module doc).
        if s.writer.is_none() && s.readers.is_empty() {
            s.writer = Some(me);
            s.since = Some(Instant::now());
            return Try::Acquired;
        }
        Try::Wait(me)
    }

    /// After a release or a withdrawal: let in whoever may hold the lock now.
    fn hand_on(s: &mut RwState, wakes: &mut Wakeups, prefer_readers: bool) {
        if s.writer.is_some() {
            return;
        }
        if s.readers.is_empty() && (!prefer_readers || s.read_waiters.is_empty()) {
            if let Some(since) = s.write_waiters.front().map(|f| f.since) {
                if since.elapsed() < FAIR_AFTER {
                    // Woken to retry: the lock stays free meanwhile, for whoever comes first.
                    let _woken = s.write_waiters.grant_front(Grant::Retry(since), wakes);
                    return;
                }
                if let Ok((_, w)) = s.write_waiters.grant_front(Grant::Owned, wakes) {
                    s.writer = Some(w);
                    s.since = Some(Instant::now());
                    return;
                }
            }
        }
        if s.write_waiters.is_empty() || (prefer_readers && s.readers.is_empty()) {
            if s.readers.is_empty() && !s.read_waiters.is_empty() {
                s.since = Some(Instant::now());
            }
            while let Ok((ticket, r)) = s.read_waiters.grant_front(Grant::Owned, wakes) {
                s.readers.push((r, 1, ticket));
            }
        }
    }

    /// Release one read hold of `who` (found by `same`); false if it holds none.
    fn release_read_locked(s: &mut RwState, who: &Holder, wakes: &mut Wakeups) -> bool {
        match s.readers.iter().position(|(h, _, _)| h.same(who)) {
            Some(pos) => {
                Self::release_reader_at(s, pos, wakes);
                true
            }
            None => false,
        }
    }

    fn release_reader_at(s: &mut RwState, pos: usize, wakes: &mut Wakeups) {
        let depth = &mut s.readers[pos].1;
        *depth -= 1;
        if *depth == 0 {
            let (h, _, _) = s.readers.swap_remove(pos);
            bury_holder(wakes, h);
            if s.readers.is_empty() {
                s.since = None;
                Self::hand_on(s, wakes, false);
            }
        }
    }

    fn release_write_locked(s: &mut RwState, wakes: &mut Wakeups) {
        if let Some(h) = s.writer.take() {
            bury_holder(wakes, h);
        }
        s.since = None;
        Self::hand_on(s, wakes, true);
    }

    /// A waiter left: hand on whatever was granted to it, or let others in that it held back.
    /// A `Retry` grant comes back to the caller, who retries or passes it on (`hand_on`).
    fn leave(s: &mut RwState, ticket: Ticket, wakes: &mut Wakeups) -> Withdrawn<Grant> {
        match s.read_waiters.withdraw(ticket, wakes) {
            Withdrawn::Unknown => {}
            other => return other,
        }
        let left = s.write_waiters.withdraw(ticket, wakes);
        if let Withdrawn::Removed = left {
            Self::hand_on(s, wakes, false);
        }
        left
    }

    /// Waiter `ticket` left: whatever was granted to it (recorded by `hand_on`: the writer, or
    /// the reader entry with its ticket) is released on its behalf.
    fn abandon_locked(s: &mut RwState, ticket: Ticket, wakes: &mut Wakeups) {
        if let Withdrawn::Granted(_) = s.read_waiters.withdraw(ticket, wakes) {
            if let Some(pos) = s.readers.iter().position(|(_, _, t)| *t == ticket) {
                Self::release_reader_at(s, pos, wakes);
            }
            return;
        }
        match s.write_waiters.withdraw(ticket, wakes) {
            Withdrawn::Granted(Grant::Owned) => Self::release_write_locked(s, wakes),
            // A wakeup it will not use goes to the next waiter.
            Withdrawn::Granted(Grant::Retry(_)) | Withdrawn::Removed => {
                Self::hand_on(s, wakes, false)
            }
            _ => {}
        }
    }

    fn abandon(&self, py: Python<'_>, ticket: Ticket) {
        with_waiters(py, &self.state, |s, wakes| {
            Self::abandon_locked(s, ticket, wakes)
        });
    }

    /// Blocking acquisition by the calling thread.
    fn acquire(
        self: &Arc<Self>,
        py: Python<'_>,
        write: bool,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> PyResult<bool> {
        me_named(py);
        let list = if write { writes } else { reads };
        // Once woken to retry: when it first queued, to queue again in the same place.
        let mut since: Option<Instant> = None;
        loop {
            let queued = with_waiters(py, &self.state, |s, wakes| {
                let me = Holder::thread();
                let tried = if write {
                    self.try_write(s, me, wakes)
                } else {
                    self.try_read(s, me, wakes)
                };
                match tried {
                    Try::Acquired => Ok(None),
                    Try::Refused(e) => Err(e),
                    Try::Wait(me) if !blocking => {
                        bury_holder(wakes, me);
                        Ok(Some(None))
                    }
                    Try::Wait(me) => {
                        let (waiter, cv) = Waiter::thread();
                        let ticket = match since {
                            None => list(s).push_back(me, waiter),
                            Some(t) => list(s).push_front(me, waiter, t),
                        };
                        Ok(Some(Some((ticket, cv))))
                    }
                }
            })?;
            let (ticket, cv) = match queued {
                None => return Ok(true),
                Some(None) => return Ok(false),
                Some(Some(q)) => q,
            };
            let registration =
                super::register_wait(Arc::clone(self) as _, if write { "write" } else { "read" });
            let waited = waiters::wait_thread(py, &self.state, ticket, &cv, deadline, list);
            drop(registration);
            match waited {
                Ok(Some(Outcome::Granted(Grant::Owned))) => return Ok(true),
                Ok(Some(Outcome::Granted(Grant::Retry(first)))) => since = Some(first),
                Ok(Some(Outcome::Closed)) => return Ok(false),
                Ok(None) => {
                    return Ok(with_waiters(py, &self.state, |s, wakes| match Self::leave(
                        s, ticket, wakes,
                    ) {
                        Withdrawn::Granted(Grant::Owned) => true,
                        Withdrawn::Granted(Grant::Retry(_)) => {
                            Self::hand_on(s, wakes, false);
                            false
                        }
                        _ => false,
                    }))
                }
                Err(e) => {
                    self.abandon(py, ticket);
                    return Err(e);
                }
            }
        }
    }

    /// Release by the calling thread, or by the current task of the loop it runs.
    fn release(&self, py: Python<'_>, write: bool) -> PyResult<()> {
        let me = Holder::thread();
        let released = with_waiters(py, &self.state, |s, wakes| {
            if write {
                let mine = s.writer.as_ref().is_some_and(|w| w.uid == me.uid);
                if mine {
                    Self::release_write_locked(s, wakes);
                }
                mine
            } else {
                Self::release_read_locked(s, &me, wakes)
            }
        });
        match released {
            true => {}
            false if !write => {
                // Not a thread's read: a task's, on this thread's loop.
                let task = current_task(py);
                let who = Holder::task(task);
                let ok = with_waiters(py, &self.state, |s, wakes| {
                    let ok = who.is_task() && Self::release_read_locked(s, &who, wakes);
                    bury_holder(wakes, who);
                    ok
                });
                if !ok {
                    return Err(PyRuntimeError::new_err(format!(
                        "cannot release un-acquired read lock of RWLock{}",
                        quoted(&self.name)
                    )));
                }
            }
            false => {
                return Err(PyRuntimeError::new_err(format!(
                    "cannot release un-acquired write lock of RWLock{}",
                    quoted(&self.name)
                )))
            }
        }
        Ok(())
    }

    /// The holders now (writer, or readers), and since when.
    fn holders_now(&self, py: Python<'_>) -> (Vec<Holder>, bool, Option<Instant>) {
        let s = sync::lock(py, &self.state);
        let since = s.since;
        match &s.writer {
            Some(w) => (vec![w.clone_ref(py)], true, since),
            None => (
                s.readers.iter().map(|(h, _, _)| h.clone_ref(py)).collect(),
                false,
                since,
            ),
        }
    }

    fn timeout_error(&self, py: Python<'_>, write: bool, timeout: Option<f64>) -> PyErr {
        let waited = match timeout {
            Some(t) => format!("timed out after {t} s"),
            None => "timed out".to_owned(),
        };
        let (holders, writer, since) = self.holders_now(py);
        let held = if holders.is_empty() {
            "; it was free again when the wait ended".to_owned()
        } else {
            let names: Vec<String> = holders.iter().map(|h| h.describe(py)).collect();
            let role = if writer {
                "the writer".to_owned()
            } else {
                format!("{} reader(s)", names.len())
            };
            format!(
                "; held by {role}: {}{}",
                names.join(", "),
                super::held_for(since)
            )
        };
        holders.release(py);
        LOCK_TIMEOUT_ERROR.err(format!("{}: {waited}{held}", self.label(write)))
    }
}

fn current_task(py: Python<'_>) -> Option<Py<PyAny>> {
    let asyncio = py.import("asyncio").ok()?;
    let running = asyncio.call_method0("_get_running_loop").ok()?;
    if running.is_none() {
        return None;
    }
    let task = asyncio.call_method0("current_task").ok()?;
    super::task_ref(&task)
}

impl Reclaim for RwCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        self.abandon(py, ticket);
    }
}

impl WaitTarget for RwCore {
    fn label(&self) -> String {
        format!("RWLock{}", quoted(&self.name))
    }

    fn holders(&self, py: Python<'_>) -> Vec<Holder> {
        self.holders_now(py).0
    }
}

impl Drop for RwCore {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        let mut wakes = Wakeups::new();
        drop(s.read_waiters.clear_into(&mut wakes));
        drop(s.write_waiters.clear_into(&mut wakes));
        for (h, _, _) in s.readers.drain(..) {
            bury_holder(&mut wakes, h);
        }
        if let Some(h) = s.writer.take() {
            bury_holder(&mut wakes, h);
        }
        if !wakes.is_empty() {
            Python::attach(|py| wakes.perform(py));
        }
    }
}

/// `with rw.read(timeout=...)` / `rw.write(...)`, also `async with`: acquire or raise
/// `LockTimeoutError` naming the holders.
#[pyclass(frozen, module = "nogilsafe", name = "RWLockGuard")]
pub struct RWLockGuard {
    rw: Py<PyAny>,
    core: Arc<RwCore>,
    write: bool,
    timeout: Option<f64>,
}

#[pymethods]
impl RWLockGuard {
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let deadline = sync::deadline(self.timeout)?;
        if self.core.acquire(py, self.write, true, deadline)? {
            Ok(self.rw.clone_ref(py))
        } else {
            Err(self.core.timeout_error(py, self.write, self.timeout))
        }
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.core.release(py, self.write)?;
        Ok(false)
    }

    fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        super::glue(py, "rw_hold", (self.rw.bind(py), self.write, self.timeout))
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.core.release(py, self.write)?;
        super::done(py)
    }
}

/// Many readers or one writer, for threads and for any event loop, writer-preferring.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "RWLock")]
pub struct RWLock {
    core: Arc<RwCore>,
    /// `None` for the owner, else the owner this view shares its core with.
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(RWLock, RwCore);

impl RWLock {
    fn guard(slf: &Bound<'_, Self>, write: bool, timeout: Option<f64>) -> PyResult<RWLockGuard> {
        sync::deadline(timeout)?;
        Ok(RWLockGuard {
            rw: slf.clone().into_any().unbind(),
            core: Arc::clone(&slf.get().core),
            write,
            timeout,
        })
    }

    fn acquire_checked(
        &self,
        py: Python<'_>,
        write: bool,
        blocking: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        if !blocking && timeout.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        let deadline = sync::deadline(timeout)?;
        self.core.acquire(py, write, blocking, deadline)
    }
}

#[pymethods]
impl RWLock {
    #[new]
    #[pyo3(signature = (*, name = None))]
    fn new(name: Option<String>) -> Self {
        Self::from_core(Arc::new(RwCore {
            state: Mutex::new(RwState {
                readers: Vec::new(),
                writer: None,
                since: None,
                read_waiters: WaitList::new(),
                write_waiters: WaitList::new(),
            }),
            name,
        }))
    }

    /// A per-thread view sharing this lock.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    /// `with rw.read(timeout=None):` shared access; `LockTimeoutError` when `timeout` expires.
    #[pyo3(signature = (timeout = None))]
    fn read(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<RWLockGuard> {
        Self::guard(slf, false, timeout)
    }

    /// `with rw.write(timeout=None):` exclusive access; `LockTimeoutError` when `timeout`
    /// expires.
    #[pyo3(signature = (timeout = None))]
    fn write(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<RWLockGuard> {
        Self::guard(slf, true, timeout)
    }

    #[pyo3(signature = (blocking = true, timeout = None))]
    fn acquire_read(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.acquire_checked(py, false, blocking, timeout)
    }

    #[pyo3(signature = (blocking = true, timeout = None))]
    fn acquire_write(
        &self,
        py: Python<'_>,
        blocking: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        self.acquire_checked(py, true, blocking, timeout)
    }

    fn release_read(&self, py: Python<'_>) -> PyResult<()> {
        self.core.release(py, false)
    }

    fn release_write(&self, py: Python<'_>) -> PyResult<()> {
        self.core.release(py, true)
    }

    /// `await rw.acquire_read_async(timeout=None)`: True once reading, False on timeout.
    #[pyo3(signature = (timeout = None))]
    fn acquire_read_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        super::glue(slf.py(), "rw_acquire", (slf, false, timeout))
    }

    /// `await rw.acquire_write_async(timeout=None)`: True once writing, False on timeout.
    #[pyo3(signature = (timeout = None))]
    fn acquire_write_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        super::glue(slf.py(), "rw_acquire", (slf, true, timeout))
    }

    /// How many read holds are taken now (counting re-entrant ones).
    #[getter]
    fn readers(&self, py: Python<'_>) -> u64 {
        sync::lock(py, &self.core.state)
            .readers
            .iter()
            .map(|(_, d, _)| u64::from(*d))
            .sum()
    }

    /// `(thread id, thread name)` of the writer (for a task: its loop's thread), or None.
    #[getter]
    fn writer<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let w = sync::lock(py, &self.core.state)
            .writer
            .as_ref()
            .map(|w| w.clone_ref(py));
        match w {
            Some(w) => {
                let t = w.owner_tuple(py);
                w.release(py);
                t.map(Some)
            }
            None => Ok(None),
        }
    }

    /// How many threads and tasks wait (to read or to write).
    #[getter]
    fn waiting(&self, py: Python<'_>) -> usize {
        let s = sync::lock(py, &self.core.state);
        s.read_waiters.len() + s.write_waiters.len()
    }

    #[getter]
    fn name(&self) -> Option<&str> {
        self.core.name.as_deref()
    }

    fn _begin<'py>(
        &self,
        py: Python<'py>,
        event_loop: &Bound<'py, PyAny>,
        future: Option<&Bound<'py, PyAny>>,
        retry: Option<u64>,
        task: &Bound<'py, PyAny>,
        write: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        // A writer woken to retry that lost the race queues again in its old place.
        let since = retry.map(super::token_since);
        let core = &self.core;
        me_named(py);
        let got = with_waiters(py, &core.state, |s, wakes| {
            let me = Holder::task(super::task_ref(task));
            let tried = if write {
                core.try_write(s, me, wakes)
            } else {
                core.try_read(s, me, wakes)
            };
            match tried {
                Try::Acquired => Ok(None),
                Try::Refused(e) => Err(e),
                Try::Wait(me) => match future {
                    None => {
                        bury_holder(wakes, me);
                        Ok(Some(None))
                    }
                    Some(f) => {
                        let waiter = Waiter::future(
                            event_loop.clone().unbind(),
                            f.clone().unbind(),
                            Arc::clone(core) as Arc<dyn Reclaim>,
                        );
                        let list = if write { writes(s) } else { reads(s) };
                        Ok(Some(Some(match since {
                            None => list.push_back(me, waiter),
                            Some(t) => list.push_front(me, waiter, t),
                        })))
                    }
                },
            }
        })?;
        match got {
            None => status(py, GRANTED, true),
            Some(None) => status_none(py, BUSY),
            Some(Some(t)) => status(py, WAITING, t),
        }
    }

    fn _finish<'py>(&self, py: Python<'py>, ticket: Ticket) -> PyResult<Bound<'py, PyTuple>> {
        let left = with_waiters(py, &self.core.state, |s, wakes| {
            RwCore::leave(s, ticket, wakes)
        });
        match left {
            Withdrawn::Granted(Grant::Owned) => status(py, GRANTED, true),
            Withdrawn::Granted(Grant::Retry(first)) => status(py, RETRY, super::since_token(first)),
            Withdrawn::Closed => status(py, CLOSED, false),
            _ => status(py, TIMED_OUT, false),
        }
    }

    fn _abandon(&self, py: Python<'_>, ticket: Ticket) {
        self.core.abandon(py, ticket);
    }

    #[pyo3(signature = (write, timeout = None))]
    fn _timeout_error(&self, py: Python<'_>, write: bool, timeout: Option<f64>) -> PyErr {
        self.core.timeout_error(py, write, timeout)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (holders, writer, _) = self.core.holders_now(py);
        let state = if holders.is_empty() {
            "unlocked".to_owned()
        } else if writer {
            format!("write-locked by {}", holders[0].describe(py))
        } else {
            format!("read-locked by {} reader(s)", holders.len())
        };
        holders.release(py);
        format!(
            "<nogilsafe.RWLock{} {state}, {} waiting>",
            quoted(&self.core.name),
            self.waiting(py)
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(super::refuse_pickle("nogilsafe.RWLock"))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        if let Some(s) = self.core.state.try_lock() {
            s.read_waiters.traverse(&visit)?;
            s.write_waiters.traverse(&visit)?;
            for (h, _, _) in &s.readers {
                if let Some(t) = &h.task {
                    visit.call(t)?;
                }
            }
            if let Some(t) = s.writer.as_ref().and_then(|w| w.task.as_ref()) {
                visit.call(t)?;
            }
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RWLock>()?;
    m.add_class::<RWLockGuard>()?;
    Ok(())
}
