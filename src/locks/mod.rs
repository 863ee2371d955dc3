//! Locks, events, latches and semaphores that work from threads and from any event loop.
//!
//! Every primitive here parks its waiters in a `waiters::WaitList` (FIFO; a grant to a waiter that
//! left meanwhile is handed on) and drives its async side through `python/nogilsafe/_locks.py`,
//! thin glue over `_waiting.wait`. This module holds what they share:
//! - who holds a lock (`Holder`): a thread, or a task on some event loop's thread;
//! - the names of threads, and which of them exited while holding a lock (`Me`, `THREADS`);
//! - the wait-for registry behind `nogilsafe.testing`'s deadlock report (`register_wait`);
//! - lookup of the glue coroutines, and pickling refusal.
use std::cell::Cell;
use std::os::raw::c_ulong;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::pycall;
use crate::sync::{self, Buried};
use crate::waiters::{
    self, with_waiters, Outcome, Reclaim, Ticket, WaitList, Waiter, Wakeups, Withdrawn,
};

pub mod event;
pub mod latch;
pub mod lock;
pub mod rwlock;
pub mod semaphore;

extern "C" {
    fn PyThread_get_thread_ident() -> c_ulong;
}

thread_local! {
    /// This thread's `(uid, ident)`, `(0, 0)` until its first use of a lock. The uid is
    /// `sync::thread_id()`: never reused, so a lock held by a thread that exited is not taken for
    /// one held by a new thread that got the same `threading.get_ident()`. A `const` cell with no
    /// destructor: reading it is one thread-local load.
    static ME: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// Its destructor tells the registry that this thread exited.
    static EXIT_MARK: ExitMark = const { ExitMark };
}

struct ExitMark;

impl Drop for ExitMark {
    fn drop(&mut self) {
        // Runs at thread exit, with no Python left: only Rust bookkeeping.
        let (uid, _) = ME.with(Cell::get);
        let mut reg = THREADS.lock();
        if let Some(t) = reg.live.remove(&uid) {
            if reg.exited.len() >= EXITED_KEPT {
                reg.exited.pop_front();
            }
            reg.exited.push_back((uid, t));
        }
    }
}

struct ThreadRecord {
    ident: u64,
    /// Its name when it first used a lock (`None` if that happened where no Python could run).
    name: Option<String>,
}

/// How many exited threads' names are kept, for messages about locks they still hold.
const EXITED_KEPT: usize = 1024;

#[derive(Default)]
struct Registry {
    /// Threads that used a lock and are still running.
    live: HashMap<u64, ThreadRecord>,
    /// The most recent exits, oldest first.
    exited: std::collections::VecDeque<(u64, ThreadRecord)>,
}

static THREADS: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

/// This thread's `(uid, ident)`.
#[inline]
pub fn me() -> (u64, u64) {
    let v = ME.with(Cell::get);
    if v.0 != 0 {
        v
    } else {
        first_use(None)
    }
}

/// `me()`, recording the thread's name on its first use of a lock (Python code: call it before
/// taking any lock; every public entry point that records a holder does).
#[inline]
pub fn me_named(py: Python<'_>) -> (u64, u64) {
    let v = ME.with(Cell::get);
    if v.0 != 0 {
        v
    } else {
        first_use(Some(py))
    }
}

#[cold]
fn first_use(py: Option<Python<'_>>) -> (u64, u64) {
    let uid = sync::thread_id();
    // SAFETY: returns this thread's pthread id; no interpreter state is touched.
    let ident = unsafe { PyThread_get_thread_ident() } as u64;
    let name = py.and_then(current_thread_name);
    ME.with(|c| c.set((uid, ident)));
    // Registers the exit hook (a thread already tearing down its thread-locals just has none).
    let _ = EXIT_MARK.try_with(|_| ());
    THREADS
        .lock()
        .live
        .insert(uid, ThreadRecord { ident, name });
    (uid, ident)
}

fn current_thread_name(py: Python<'_>) -> Option<String> {
    let t = py
        .import("threading")
        .ok()?
        .call_method0("current_thread")
        .ok()?;
    t.getattr("name").ok()?.extract().ok()
}

/// A running thread's current name, from `threading` (None if it is not a Python thread).
fn live_thread_name(py: Python<'_>, ident: u64) -> Option<String> {
    let active = py.import("threading").ok()?.getattr("_active").ok()?;
    let active = active.cast::<PyDict>().ok()?;
    let t = active.get_item(ident).ok()??;
    t.getattr("name").ok()?.extract().ok()
}

/// `threading.get_ident()` of the thread with this uid, if known.
pub fn ident_of(uid: u64) -> u64 {
    let reg = THREADS.lock();
    match reg.live.get(&uid) {
        Some(t) => t.ident,
        None => reg
            .exited
            .iter()
            .rev()
            .find(|(u, _)| *u == uid)
            .map_or(0, |(_, t)| t.ident),
    }
}

/// Who holds a lock or waits for one: a thread, or a task running on a thread's event loop.
pub struct Holder {
    pub uid: u64,
    pub ident: u64,
    /// The task, for an async holder (a strong reference: its identity must not be reused
    /// while it holds the lock).
    pub task: Option<Py<PyAny>>,
}

impl Holder {
    /// The calling thread (a sync holder).
    pub fn thread() -> Self {
        let (uid, ident) = me();
        Holder {
            uid,
            ident,
            task: None,
        }
    }

    /// `task` on the calling thread's loop (`None` outside a task: the loop itself).
    pub fn task(task: Option<Py<PyAny>>) -> Self {
        let (uid, ident) = me();
        Holder { uid, ident, task }
    }

    pub fn is_task(&self) -> bool {
        self.task.is_some()
    }

    /// Same thread and same task (or both sync).
    pub fn same(&self, other: &Holder) -> bool {
        self.uid == other.uid
            && match (&self.task, &other.task) {
                (None, None) => true,
                (Some(a), Some(b)) => a.as_ptr() == b.as_ptr(),
                _ => false,
            }
    }

    pub fn clone_ref(&self, py: Python<'_>) -> Holder {
        Holder {
            uid: self.uid,
            ident: self.ident,
            task: self.task.as_ref().map(|t| t.clone_ref(py)),
        }
    }

    /// "thread 'worker-1' (id 1403...)", "task 'Task-3' on thread 'loop-0' (id ...)", with
    /// ", which has exited without releasing it" for a thread that is gone. Runs Python code:
    /// call with no lock held.
    pub fn describe(&self, py: Python<'_>) -> String {
        let thread = describe_thread(py, self.uid, self.ident);
        match &self.task {
            None => thread,
            Some(t) => {
                let name = t
                    .bind(py)
                    .call_method0("get_name")
                    .and_then(|n| n.extract::<String>())
                    .unwrap_or_else(|_| "?".to_owned());
                format!("task '{name}' on {thread}")
            }
        }
    }

    /// `(thread id, thread name)` for `owner` properties.
    pub fn owner_tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (name, _) = thread_name(py, self.uid, self.ident);
        (self.ident, name).into_pyobject(py)
    }
}

impl Buried for Holder {
    fn release(self, py: Python<'_>) {
        if let Some(t) = self.task {
            pycall::release(py, t);
        }
    }
}

/// A thread's name and whether it is still running.
pub fn thread_name(py: Python<'_>, uid: u64, ident: u64) -> (String, bool) {
    let recorded = {
        let reg = THREADS.lock();
        match reg.live.get(&uid) {
            Some(t) => Some((t.name.clone(), true)),
            None => reg
                .exited
                .iter()
                .rev()
                .find(|(u, _)| *u == uid)
                .map(|(_, t)| (t.name.clone(), false)),
        }
    };
    let fallback = || format!("<thread {ident}>");
    match recorded {
        Some((name, true)) => (
            live_thread_name(py, ident)
                .or(name)
                .unwrap_or_else(fallback),
            true,
        ),
        Some((name, false)) => (name.unwrap_or_else(fallback), false),
        // Gone from the registry: it exited long ago.
        None => (fallback(), false),
    }
}

pub fn describe_thread(py: Python<'_>, uid: u64, ident: u64) -> String {
    match thread_name(py, uid, ident) {
        (name, true) => format!("thread '{name}' (id {ident})"),
        (name, false) => {
            format!("thread '{name}' (id {ident}), which has exited without releasing it")
        }
    }
}

/// "for at least 1.25 s" from when the hold was first known to have started.
pub fn held_for(since: Option<Instant>) -> String {
    match since {
        Some(t) => format!(" for at least {:.3} s", t.elapsed().as_secs_f64()),
        None => String::new(),
    }
}

// ---- time tokens: a waiter's original `since`, round-tripped through the async glue ----

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

pub fn since_token(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

pub fn token_since(token: u64) -> Instant {
    EPOCH
        .checked_add(Duration::from_nanos(token))
        .unwrap_or_else(Instant::now)
}

// ---- the wait-for registry (nogilsafe.testing's deadlock report) ----

/// A primitive a thread can block on, as the deadlock report describes it.
pub trait WaitTarget: Send + Sync {
    /// "Lock 'db'", "RWLock (write)", ...
    fn label(&self) -> String;
    /// Who holds it now (locks with owners); empty for events, latches, semaphores.
    fn holders(&self, py: Python<'_>) -> Vec<Holder>;
}

struct WaitRecord {
    ident: u64,
    what: String,
    target: Arc<dyn WaitTarget>,
}

static WAITS: LazyLock<Mutex<HashMap<u64, WaitRecord>>> = LazyLock::new(Default::default);

/// Registers the calling thread as blocked on `target` until dropped.
#[must_use]
pub struct WaitRegistration {
    uid: u64,
}

pub fn register_wait(target: Arc<dyn WaitTarget>, what: &str) -> WaitRegistration {
    let (uid, ident) = me();
    let old = WAITS.lock().insert(
        uid,
        WaitRecord {
            ident,
            what: what.to_owned(),
            target,
        },
    );
    // A nested wait (a signal handler waiting while the outer wait is interrupted) replaced it;
    // the outer one re-registers nothing, which only makes the report less complete.
    drop(old);
    WaitRegistration { uid }
}

impl Drop for WaitRegistration {
    fn drop(&mut self) {
        // Taken out under the registry lock, dropped after it: the last reference to a core
        // releases Python objects.
        let old = WAITS.lock().remove(&self.uid);
        drop(old);
    }
}

/// `[(waiter uid, waiter id, waiter description, what it waits for,
///    [(holder uid, holder id, holder description), ...]), ...]` for every thread blocked on a
/// nogilsafe primitive right now.
#[pyfunction]
fn _lock_waits(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let snapshot: Vec<(u64, u64, String, Arc<dyn WaitTarget>)> = WAITS
        .lock()
        .iter()
        .map(|(&uid, r)| (uid, r.ident, r.what.clone(), Arc::clone(&r.target)))
        .collect();
    let out = PyList::empty(py);
    for (uid, ident, what, target) in snapshot {
        let holders = PyList::empty(py);
        for h in target.holders(py) {
            holders.append((h.uid, h.ident, h.describe(py)))?;
            h.release(py);
        }
        out.append((
            uid,
            ident,
            describe_thread(py, uid, ident),
            format!("{} ({what})", target.label()),
            holders,
        ))?;
    }
    Ok(out)
}

// ---- shared helpers ----

static GLUE: pycall::Glue = pycall::Glue::new("nogilsafe._locks");

/// `nogilsafe._locks.<name>(*args)`: the coroutine an async method returns.
pub fn glue<'py>(
    py: Python<'py>,
    name: &str,
    args: impl IntoPyObject<'py, Target = PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    GLUE.call(py, name, args)
}

/// The already-complete awaitable `__aexit__` returns.
pub fn done(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static DONE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let d = DONE.get_or_try_init(py, || {
        py.import("nogilsafe._waiting")?
            .getattr("DONE")
            .map(Bound::unbind)
    })?;
    Ok(d.bind(py).clone())
}

/// What `__reduce__` of a live synchronisation object raises, as `threading.Lock` does.
pub fn refuse_pickle(type_name: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "cannot pickle '{type_name}' object: it synchronises live threads and tasks of this \
         process; create a new one on the other side instead"
    ))
}

/// The `(status, value)` pair of the async protocol (see `waiters`).
pub fn status<'py>(
    py: Python<'py>,
    status: u8,
    value: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    (status, value).into_pyobject(py)
}

pub fn status_none(py: Python<'_>, s: u8) -> PyResult<Bound<'_, PyTuple>> {
    status(py, s, py.None())
}

/// The name part of a repr or message: ` 'db'` or empty.
pub fn quoted(name: &Option<String>) -> String {
    match name {
        Some(n) => format!(" '{n}'"),
        None => String::new(),
    }
}

/// `None` task objects from the glue (outside a task) become `None`.
pub fn task_ref(task: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    (!task.is_none()).then(|| task.clone().unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_lock_waits, m)?)?;
    lock::register(m)?;
    rwlock::register(m)?;
    event::register(m)?;
    latch::register(m)?;
    semaphore::register(m)?;
    Ok(())
}

/// Release a holder record's task reference after the lock.
pub fn bury_holder(wakes: &mut Wakeups, h: Holder) {
    if let Some(t) = h.task {
        wakes.bury(t);
    }
}

// ---- waits whose grant carries nothing (events, latches, semaphore permits) ----

/// A thread waits in `m`'s `list` until granted. `ready` runs under the lock first: true means
/// proceed at once (nothing queued). `hand_on` runs under the lock for a grant that arrived as
/// the wait was interrupted (a permit goes back; an event's wakeup needs nothing).
/// `Ok(false)`: the deadline passed (or the list was closed).
#[allow(clippy::too_many_arguments)]
pub fn wait_unit<S: Send>(
    py: Python<'_>,
    target: Arc<dyn WaitTarget>,
    what: &str,
    m: &Mutex<S>,
    deadline: Option<Instant>,
    list: fn(&mut S) -> &mut WaitList<(), ()>,
    ready: impl FnOnce(&mut S) -> bool,
    hand_on: impl FnOnce(&mut S, &mut Wakeups),
) -> PyResult<bool> {
    let queued = with_waiters(py, m, |s, _| {
        if ready(s) {
            return None;
        }
        let (waiter, cv) = Waiter::thread();
        Some((list(s).push_back((), waiter), cv))
    });
    let Some((ticket, cv)) = queued else {
        return Ok(true);
    };
    if deadline.is_some_and(|d| d <= Instant::now()) {
        // A zero timeout: no need to sleep (and no registration) to find out.
        return Ok(with_waiters(py, m, |s, wakes| {
            matches!(list(s).withdraw(ticket, wakes), Withdrawn::Granted(()))
        }));
    }
    let registration = register_wait(target, what);
    let waited = waiters::wait_thread(py, m, ticket, &cv, deadline, list);
    drop(registration);
    match waited {
        Ok(Some(Outcome::Granted(()))) => Ok(true),
        Ok(Some(Outcome::Closed)) => Ok(false),
        Ok(None) => Ok(with_waiters(py, m, |s, wakes| {
            matches!(list(s).withdraw(ticket, wakes), Withdrawn::Granted(()))
        })),
        Err(e) => {
            with_waiters(py, m, |s, wakes| {
                if let Withdrawn::Granted(()) = list(s).withdraw(ticket, wakes) {
                    hand_on(s, wakes);
                }
            });
            Err(e)
        }
    }
}

/// The async protocol's `begin` for a unit wait (see `wait_unit` for `ready`).
pub fn begin_unit<'py, S: Send>(
    py: Python<'py>,
    reclaim: Arc<dyn Reclaim>,
    m: &Mutex<S>,
    list: fn(&mut S) -> &mut WaitList<(), ()>,
    ready: impl FnOnce(&mut S) -> bool,
    event_loop: &Bound<'py, PyAny>,
    future: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let ticket = with_waiters(py, m, |s, _| {
        if ready(s) {
            return Ok(None);
        }
        let Some(future) = future else {
            return Err(());
        };
        let waiter = Waiter::future(
            event_loop.clone().unbind(),
            future.clone().unbind(),
            reclaim,
        );
        Ok(Some(list(s).push_back((), waiter)))
    });
    match ticket {
        Ok(None) => status(py, waiters::GRANTED, true),
        Err(()) => status_none(py, waiters::BUSY),
        Ok(Some(t)) => status(py, waiters::WAITING, t),
    }
}

/// The async protocol's `finish` for a unit wait.
pub fn finish_unit<'py, S: Send>(
    py: Python<'py>,
    m: &Mutex<S>,
    list: fn(&mut S) -> &mut WaitList<(), ()>,
    ticket: Ticket,
) -> PyResult<Bound<'py, PyTuple>> {
    let got = with_waiters(py, m, |s, wakes| list(s).withdraw(ticket, wakes));
    match got {
        Withdrawn::Granted(()) => status(py, waiters::GRANTED, true),
        Withdrawn::Closed => status(py, waiters::CLOSED, false),
        Withdrawn::Removed | Withdrawn::Unknown => status(py, waiters::TIMED_OUT, false),
    }
}

/// The async protocol's `abandon` (and `Reclaim`) for a unit wait.
pub fn abandon_unit<S: Send>(
    py: Python<'_>,
    m: &Mutex<S>,
    list: fn(&mut S) -> &mut WaitList<(), ()>,
    ticket: Ticket,
    hand_on: impl FnOnce(&mut S, &mut Wakeups),
) {
    with_waiters(py, m, |s, wakes| {
        if let Withdrawn::Granted(()) = list(s).withdraw(ticket, wakes) {
            hand_on(s, wakes);
        }
    });
}
