//! `OnceCell`: a value computed once, from any thread and (through the `AsyncOnceCell` glue in
//! `python/nogilsafe/_once.py`) from any event loop.
//!
//! The state machine: `Empty -> Initializing(attempt) -> Ready`, or back to `Empty` when the
//! attempt fails (its exception goes to everyone who waited on it) or is abandoned (the owner was
//! cancelled or interrupted: everyone who waited on it retries, and one of them becomes the next
//! owner). The factory, waking futures, and dropping values all run with no lock held.
//!
//! Readers of a ready value never lock: the value is published through an `ArcSwapOption`, so
//! the fast path is one atomic load and one reference-count increment.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::REENTRANCY_ERROR;
use crate::shared::SharedCore;
use crate::{pycall, sync};

/// Attempt ids are unique across every cell of the process, so the async glue can recognise "the
/// attempt whose factory I am running" from an integer alone.
static NEXT_ATTEMPT: AtomicU64 = AtomicU64::new(1);

/// How an initialisation attempt ended.
enum Outcome {
    Ready(Py<PyAny>),
    /// The exception instance the factory raised; every waiter of this attempt raises it.
    Failed(Py<PyAny>),
    /// The owner was cancelled or interrupted: waiters retry, one becomes the next owner.
    Abandoned,
}

/// One run of the factory. Waiters keep an `Arc` to it, so they learn its outcome even after the
/// cell has moved on (been reset, or started another attempt).
struct Attempt {
    id: u64,
    /// Set exactly once, under `OnceCore::state`, at the moment the attempt leaves the state.
    outcome: OnceLock<Outcome>,
}

struct Initializing {
    attempt: Arc<Attempt>,
    /// The thread running the factory (a sync owner, or the loop thread of an async owner): a
    /// blocking `get_or_init` from that thread would wait for itself, so it is refused.
    owner_thread: u64,
    /// Async waiters: (event loop, future created on that loop). Woken after the lock is released.
    waiters: Vec<(Py<PyAny>, Py<PyAny>)>,
    /// Threads blocked in `get_or_init` on this attempt (for `_waiting`, used by tests).
    sync_waiters: usize,
}

enum Phase {
    Empty,
    Initializing(Initializing),
    Ready,
}

pub struct OnceCore {
    /// Invariants (all under `state`):
    /// - `value` is `Some` exactly when the phase is `Ready`; it is only stored or cleared while
    ///   `state` is held, so readers may load it without the lock.
    /// - an attempt's `outcome` is set in the same critical section that takes it out of the
    ///   state, and `ready` is notified after every such section.
    state: Mutex<Phase>,
    value: ArcSwapOption<Py<PyAny>>,
    /// Sync waiters of the current attempt sleep here (detached).
    ready: Condvar,
}

/// What `enter` decided.
enum Entered {
    Ready(Py<PyAny>),
    /// This caller owns attempt `id` and must run the factory.
    Owner(Arc<Attempt>),
    /// A sync waiter saw its attempt fail.
    Failed(Py<PyAny>),
    /// The attempt waited on was abandoned: go round again.
    Retry,
}

impl OnceCore {
    fn new() -> Self {
        OnceCore {
            state: Mutex::new(Phase::Empty),
            value: ArcSwapOption::empty(),
            ready: Condvar::new(),
        }
    }

    #[inline]
    fn peek(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.value.load().as_ref().map(|v| v.clone_ref(py))
    }

    fn new_attempt(owner_thread: u64) -> (Initializing, Arc<Attempt>) {
        let attempt = Arc::new(Attempt {
            id: NEXT_ATTEMPT.fetch_add(1, Ordering::Relaxed),
            outcome: OnceLock::new(),
        });
        (
            Initializing {
                attempt: Arc::clone(&attempt),
                owner_thread,
                waiters: Vec::new(),
                sync_waiters: 0,
            },
            attempt,
        )
    }

    /// The blocking entry: ready value, ownership of a new attempt, or the end of the attempt in
    /// progress (waited for detached, until `deadline`).
    fn enter_blocking(
        &self,
        py: Python<'_>,
        me: u64,
        deadline: Option<Instant>,
        timeout: Option<f64>,
    ) -> PyResult<Entered> {
        // Declared before the guard: if ours is the last reference, its outcome (Python objects)
        // is dropped after the lock is released.
        let waited_on: Arc<Attempt>;
        let mut g = sync::lock(py, &self.state);
        match &mut *g {
            Phase::Ready => return Ok(Entered::Ready(self.peek(py).expect("Ready has a value"))),
            Phase::Empty => {
                let (init, attempt) = Self::new_attempt(me);
                *g = Phase::Initializing(init);
                return Ok(Entered::Owner(attempt));
            }
            Phase::Initializing(init) => {
                if init.owner_thread == me {
                    return Err(REENTRANCY_ERROR.err(
                        "OnceCell.get_or_init was called again by the thread that is running its \
                         factory (from inside the factory, or from a task on the same event loop \
                         as an async initialisation); waiting would deadlock",
                    ));
                }
                waited_on = Arc::clone(&init.attempt);
                init.sync_waiters += 1;
            }
        }
        drop(g);
        let waited = sync::wait_for(py, &self.state, &self.ready, deadline, |_| {
            waited_on.outcome.get().map(|_| ())
        });
        {
            let mut g = sync::lock(py, &self.state);
            if let Phase::Initializing(init) = &mut *g {
                if init.attempt.id == waited_on.id {
                    init.sync_waiters -= 1;
                }
            }
        }
        // A signal handler's exception (Ctrl-C) leaves the attempt to its owner and the others.
        if waited?.is_none() {
            return Err(sync::timeout_error(
                "OnceCell.get_or_init: waiting for the initialiser",
                timeout,
            ));
        }
        Ok(match waited_on.outcome.get().expect("checked above") {
            Outcome::Ready(v) => Entered::Ready(v.clone_ref(py)),
            Outcome::Failed(e) => Entered::Failed(e.clone_ref(py)),
            Outcome::Abandoned => Entered::Retry,
        })
    }

    /// End attempt `id` with `outcome` and wake everyone waiting on it. False if `id` is not the
    /// attempt in progress (already ended).
    fn end(&self, py: Python<'_>, id: u64, outcome: Outcome) -> bool {
        // Everything taken out of the state is dropped after the guard (declared first).
        let ended: Initializing;
        let rejected: Outcome;
        {
            let mut g = sync::lock(py, &self.state);
            match &*g {
                Phase::Initializing(init) if init.attempt.id == id => {}
                _ => {
                    rejected = outcome;
                    drop(g);
                    drop(rejected);
                    return false;
                }
            }
            let Phase::Initializing(init) = std::mem::replace(&mut *g, Phase::Empty) else {
                unreachable!("checked above")
            };
            ended = init;
            if let Outcome::Ready(v) = &outcome {
                self.value.store(Some(Arc::new(v.clone_ref(py))));
                *g = Phase::Ready;
            }
            let _ = ended.attempt.outcome.set(outcome);
        }
        self.ready.notify_all();
        wake_async_waiters(py, ended.waiters);
        true
    }

    /// Register an async waiter on attempt `id`; false if that attempt has already ended.
    fn add_waiter(
        &self,
        py: Python<'_>,
        id: u64,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
    ) -> bool {
        sync::with_lock(py, &self.state, |phase, grave| match phase {
            Phase::Initializing(init) if init.attempt.id == id => {
                init.waiters.push((event_loop, future));
                true
            }
            _ => {
                grave.push((event_loop, future));
                false
            }
        })
    }

    fn remove_waiter(&self, py: Python<'_>, id: u64, future: &Bound<'_, PyAny>) {
        sync::with_lock(py, &self.state, |phase, grave| {
            if let Phase::Initializing(init) = phase {
                if init.attempt.id == id {
                    if let Some(pos) = init
                        .waiters
                        .iter()
                        .position(|(_, f)| f.as_ptr() == future.as_ptr())
                    {
                        grave.push(init.waiters.swap_remove(pos));
                    }
                }
            }
        })
    }

    /// Store `value` only if the cell is empty (not ready, no initialisation in progress).
    fn set(&self, py: Python<'_>, value: Py<PyAny>) -> bool {
        sync::with_lock(py, &self.state, |phase, grave| {
            if matches!(*phase, Phase::Empty) {
                self.value.store(Some(Arc::new(value)));
                *phase = Phase::Ready;
                true
            } else {
                grave.push(value);
                false
            }
        })
    }

    /// Empty a ready cell and return its value. An initialisation in progress is left alone.
    fn take(&self, py: Python<'_>) -> Option<Arc<Py<PyAny>>> {
        let mut g = sync::lock(py, &self.state);
        if matches!(*g, Phase::Ready) {
            *g = Phase::Empty;
            self.value.swap(None)
        } else {
            None
        }
    }
}

/// Wake each async waiter on its own loop: one `call_soon_threadsafe` per loop, carrying that
/// loop's futures. Futures already done (cancelled, timed out) are skipped by `_wake_futures`;
/// a closed loop refuses with `RuntimeError`, which is ignored: nobody is left to wake there.
fn wake_async_waiters(py: Python<'_>, waiters: Vec<(Py<PyAny>, Py<PyAny>)>) {
    if waiters.is_empty() {
        return;
    }
    let mut by_loop: Vec<(Py<PyAny>, Vec<Py<PyAny>>)> = Vec::new();
    for (lp, fut) in waiters {
        match by_loop.iter_mut().find(|(l, _)| l.as_ptr() == lp.as_ptr()) {
            Some((_, futs)) => futs.push(fut),
            None => by_loop.push((lp, vec![fut])),
        }
    }
    let waker = waker(py);
    for (lp, futs) in by_loop {
        let result = PyList::new(py, futs).and_then(|futs| {
            lp.bind(py)
                .call_method1("call_soon_threadsafe", (waker, futs))
        });
        if let Err(e) = result {
            if !e.is_instance_of::<PyRuntimeError>(py) {
                e.write_unraisable(py, Some(lp.bind(py)));
            }
        }
    }
}

static WAKER: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();

fn waker(py: Python<'_>) -> &Bound<'_, PyCFunction> {
    WAKER
        .get_or_init(py, || {
            wrap_pyfunction!(wake_futures, py)
                .expect("waker function")
                .unbind()
        })
        .bind(py)
}

/// Runs on a waiter's own loop: complete each of its futures that is still pending.
#[pyfunction]
fn wake_futures(futures: &Bound<'_, PyList>) {
    for fut in futures.iter() {
        if matches!(
            fut.call_method0("done").and_then(|d| d.is_truthy()),
            Ok(false)
        ) {
            let _ = fut.call_method1("set_result", (fut.py().None(),));
        }
    }
}

/// Ends the attempt as abandoned if the owner leaves without ending it (a Rust panic unwinding).
struct AbandonOnDrop<'a> {
    core: &'a OnceCore,
    id: u64,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        Python::attach(|py| self.core.end(py, self.id, Outcome::Abandoned));
    }
}

/// A value computed at most once; thread-safe, and the core of `AsyncOnceCell`.
#[pyclass(frozen, module = "nogilsafe", name = "OnceCell")]
pub struct OnceCell {
    core: Arc<OnceCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(OnceCell, OnceCore);

/// A handle on one attempt, for the async glue: its id and, once ended, its outcome.
#[pyclass(frozen, module = "nogilsafe._core", name = "_OnceAttempt")]
pub struct OnceAttempt {
    attempt: Arc<Attempt>,
}

#[pymethods]
impl OnceAttempt {
    #[getter]
    fn id(&self) -> u64 {
        self.attempt.id
    }

    /// `None` while running; then `(0, value)`, `(1, exception)` or `(2, None)` (abandoned).
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(outcome) = self.attempt.outcome.get() else {
            return Ok(None);
        };
        let t = match outcome {
            Outcome::Ready(v) => (0, v.clone_ref(py)),
            Outcome::Failed(e) => (1, e.clone_ref(py)),
            Outcome::Abandoned => (2, py.None()),
        };
        Ok(Some(t.into_pyobject(py)?))
    }
}

#[pymethods]
impl OnceCell {
    #[new]
    fn new() -> Self {
        Self::from_core(Arc::new(OnceCore::new()))
    }

    /// A per-thread view sharing this cell.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    /// The value, computing it with `factory()` if the cell is empty.
    ///
    /// Exactly one caller runs `factory` at a time; the others wait with the GIL released until
    /// it ends (`timeout` seconds at most, then `LockTimeoutError`). If `factory` raises, that
    /// caller and every caller that waited for it get its exception, and the cell stays empty.
    #[pyo3(signature = (factory, timeout = None))]
    fn get_or_init(
        &self,
        py: Python<'_>,
        factory: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        // Validated before the fast path, so a bad timeout is an error whatever the state.
        let deadline = sync::deadline(timeout)?;
        if let Some(v) = self.core.peek(py) {
            return Ok(v);
        }
        let me = sync::thread_id();
        loop {
            match self.core.enter_blocking(py, me, deadline, timeout)? {
                Entered::Ready(v) => return Ok(v),
                Entered::Failed(e) => return Err(PyErr::from_value(e.into_bound(py))),
                Entered::Retry => continue,
                Entered::Owner(attempt) => {
                    let guard = AbandonOnDrop {
                        core: &self.core,
                        id: attempt.id,
                    };
                    let result = pycall::call0(factory);
                    std::mem::forget(guard);
                    return match result {
                        Ok(v) => {
                            let v = v.unbind();
                            self.core
                                .end(py, attempt.id, Outcome::Ready(v.clone_ref(py)));
                            Ok(v)
                        }
                        Err(e) => {
                            // KeyboardInterrupt, SystemExit and the like are not the factory's
                            // answer: the next caller retries instead of inheriting them.
                            let outcome = if e.is_instance_of::<PyException>(py) {
                                Outcome::Failed(e.value(py).clone().into_any().unbind())
                            } else {
                                Outcome::Abandoned
                            };
                            self.core.end(py, attempt.id, outcome);
                            Err(e)
                        }
                    };
                }
            }
        }
    }

    /// The value, or `None` if the cell is not initialised. Never blocks.
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core.peek(py)
    }

    fn is_initialized(&self) -> bool {
        self.core.value.load().is_some()
    }

    /// Store `value` if the cell is empty and no initialisation is in progress; True if stored.
    fn set(&self, py: Python<'_>, value: Py<PyAny>) -> bool {
        self.core.set(py, value)
    }

    /// Empty the cell and return its value (`None` if it was not initialised). An
    /// initialisation in progress is not interrupted.
    fn take(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let old = self.core.take(py)?;
        Some(Arc::try_unwrap(old).unwrap_or_else(|shared| shared.clone_ref(py)))
    }

    /// Empty the cell, so the next `get_or_init` runs its factory again.
    fn reset(&self, py: Python<'_>) {
        drop(self.core.take(py));
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match self.core.peek(py) {
            Some(v) => format!("OnceCell({})", v.bind(py).repr()?),
            None => "OnceCell(<uninitialized>)".to_owned(),
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only the owner reports the value, once; a view reports its owner (see `shared`).
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        // Lock-free read: never waits, never attaches.
        if let Some(v) = self.core.value.load().as_ref() {
            visit.call(&**v)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        if self.owner.is_some() {
            return;
        }
        // Only when nobody holds the state lock: a GC pass must not wait for it.
        let old = match self.core.state.try_lock() {
            Some(mut g) if matches!(*g, Phase::Ready) => {
                *g = Phase::Empty;
                self.core.value.swap(None)
            }
            _ => None,
        };
        drop(old);
    }

    // ---- the async protocol, driven by nogilsafe._once.AsyncOnceCell ----

    /// `(0, value)` if ready; `(1, attempt)`: the caller owns a new attempt and must end it with
    /// `_complete`, `_fail` or `_abandon`; `(2, attempt)`: another caller's attempt is running.
    fn _begin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, obj): (u8, Py<PyAny>) = {
            let mut g = sync::lock(py, &self.core.state);
            match &mut *g {
                Phase::Ready => (0, self.core.peek(py).expect("Ready has a value")),
                Phase::Empty => {
                    let (init, attempt) = OnceCore::new_attempt(sync::thread_id());
                    *g = Phase::Initializing(init);
                    drop(g);
                    (1, Py::new(py, OnceAttempt { attempt })?.into_any())
                }
                Phase::Initializing(init) => {
                    let attempt = Arc::clone(&init.attempt);
                    drop(g);
                    (2, Py::new(py, OnceAttempt { attempt })?.into_any())
                }
            }
        };
        (kind, obj).into_pyobject(py)
    }

    /// Wake `future` (on `loop`) when attempt `id` ends; False if it already has.
    fn _add_waiter(&self, py: Python<'_>, id: u64, r#loop: Py<PyAny>, future: Py<PyAny>) -> bool {
        self.core.add_waiter(py, id, r#loop, future)
    }

    /// How many callers (threads and futures) wait for the attempt in progress.
    fn _waiting(&self, py: Python<'_>) -> usize {
        match &*sync::lock(py, &self.core.state) {
            Phase::Initializing(init) => init.sync_waiters + init.waiters.len(),
            _ => 0,
        }
    }

    fn _remove_waiter(&self, py: Python<'_>, id: u64, future: &Bound<'_, PyAny>) {
        self.core.remove_waiter(py, id, future)
    }

    fn _complete(&self, py: Python<'_>, id: u64, value: Py<PyAny>) -> PyResult<()> {
        self.end_checked(py, id, Outcome::Ready(value))
    }

    fn _fail(&self, py: Python<'_>, id: u64, exc: Py<PyAny>) -> PyResult<()> {
        self.end_checked(py, id, Outcome::Failed(exc))
    }

    fn _abandon(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        self.end_checked(py, id, Outcome::Abandoned)
    }
}

impl OnceCell {
    fn end_checked(&self, py: Python<'_>, id: u64, outcome: Outcome) -> PyResult<()> {
        if self.core.end(py, id, outcome) {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!(
                "OnceCell attempt {id} is not in progress"
            )))
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OnceCell>()?;
    m.add_class::<OnceAttempt>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempt_leaves_cell_empty_and_next_attempt_is_new() {
        Python::initialize();
        Python::attach(|py| {
            let core = OnceCore::new();
            let Entered::Owner(a) = core.enter_blocking(py, 1, None, None).unwrap() else {
                panic!()
            };
            // Another thread's view: re-entry from the owner thread is refused.
            assert!(core.enter_blocking(py, 1, None, None).is_err());
            assert!(core.end(py, a.id, Outcome::Failed(py.None())));
            assert!(
                !core.end(py, a.id, Outcome::Abandoned),
                "an attempt ends once"
            );
            assert!(matches!(a.outcome.get(), Some(Outcome::Failed(_))));
            assert!(core.peek(py).is_none());
            let Entered::Owner(b) = core.enter_blocking(py, 1, None, None).unwrap() else {
                panic!()
            };
            assert_ne!(a.id, b.id);
            assert!(core.end(py, b.id, Outcome::Ready(py.None())));
            assert!(matches!(
                core.enter_blocking(py, 2, None, None).unwrap(),
                Entered::Ready(_)
            ));
            assert!(!core.set(py, py.None()));
            assert!(core.take(py).is_some());
            assert!(core.set(py, py.None()));
        });
    }
}
