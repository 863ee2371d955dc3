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
//!
//! Python references the cell owns (its value, an attempt's outcome) are `SafeRef`s, released
//! through `pycall` by whichever thread drops them last: freeing a chain of 100,000 cells, each
//! holding the previous one, does not recurse, and a `__del__` they run is exit-safe. Critical
//! sections put what they remove into a graveyard (`sync::with_lock`).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::REENTRANCY_ERROR;
use crate::safe_ref::SafeRef;
use crate::shared::SharedCore;
use crate::sync::{Buried, Graveyard};
use crate::{pycall, sync};

/// What `OnceCell._begin` answers (first item of its tuple). `_once.py` reads these names from
/// `OnceCell`, so the two sides cannot disagree.
const BEGIN_READY: u8 = 0;
const BEGIN_OWNER: u8 = 1;
const BEGIN_WAIT: u8 = 2;
/// How an attempt ended, as `_OnceAttempt.outcome()` reports it (first item of its tuple).
const OUTCOME_READY: u8 = 0;
const OUTCOME_FAILED: u8 = 1;
const OUTCOME_ABANDONED: u8 = 2;

/// Attempt ids are unique across every cell of the process, so the async glue can recognise "the
/// attempt whose factory I am running" from an integer alone.
static NEXT_ATTEMPT: AtomicU64 = AtomicU64::new(1);

/// How an initialisation attempt ended.
enum Outcome {
    Ready(SafeRef),
    /// The exception instance the factory raised; every waiter of this attempt raises it.
    Failed(SafeRef),
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
    value: ArcSwapOption<SafeRef>,
    /// Sync waiters of the current attempt sleep here (detached).
    ready: Condvar,
}

impl Drop for OnceCore {
    /// Waiters of an attempt in progress hold loops and futures: released without recursing.
    fn drop(&mut self) {
        if let Phase::Initializing(init) = std::mem::replace(self.state.get_mut(), Phase::Empty) {
            let mut objs = Some(init.waiters.into_iter().flat_map(|(lp, fut)| [lp, fut]));
            let _ = Python::try_attach(|py| {
                if let Some(objs) = objs.take() {
                    pycall::release_all(py, objs);
                }
            });
        }
    }
}

/// What a critical section of the cell takes out and releases after its lock.
enum Removed {
    Outcome(Outcome),
    Waiter(Py<PyAny>, Py<PyAny>),
    Value(SafeRef),
}

impl Buried for Removed {
    fn release(self, py: Python<'_>) {
        match self {
            Removed::Outcome(o) => drop(o),
            Removed::Waiter(lp, fut) => pycall::release_all(py, [lp, fut]),
            Removed::Value(v) => drop(v),
        }
    }
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
        let ended = sync::with_lock(
            py,
            &self.state,
            |phase, grave: &mut Graveyard<'_, Removed>| {
                if !matches!(phase, Phase::Initializing(init) if init.attempt.id == id) {
                    grave.push(Removed::Outcome(outcome));
                    return None;
                }
                let Phase::Initializing(init) = std::mem::replace(phase, Phase::Empty) else {
                    unreachable!("checked above")
                };
                if let Outcome::Ready(v) = &outcome {
                    self.value
                        .store(Some(Arc::new(SafeRef::new(v.clone_ref(py)))));
                    *phase = Phase::Ready;
                }
                if let Err(unset) = init.attempt.outcome.set(outcome) {
                    grave.push(Removed::Outcome(unset)); // unreachable: set once, here
                }
                Some(init)
            },
        );
        let Some(ended) = ended else { return false };
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
                grave.push(Removed::Waiter(event_loop, future));
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
                        let (lp, fut) = init.waiters.swap_remove(pos);
                        grave.push(Removed::Waiter(lp, fut));
                    }
                }
            }
        })
    }

    /// Store `value` only if the cell is empty (not ready, no initialisation in progress).
    fn set(&self, py: Python<'_>, value: Py<PyAny>) -> bool {
        sync::with_lock(py, &self.state, |phase, grave| {
            if matches!(*phase, Phase::Empty) {
                self.value.store(Some(Arc::new(SafeRef::new(value))));
                *phase = Phase::Ready;
                true
            } else {
                grave.push(Removed::Value(SafeRef::new(value)));
                false
            }
        })
    }

    /// Empty a ready cell and return its value. An initialisation in progress is left alone.
    fn take(&self, py: Python<'_>) -> Option<Arc<SafeRef>> {
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
            Some((_, futs)) => {
                futs.push(fut);
                pycall::release(py, lp);
            }
            None => by_loop.push((lp, vec![fut])),
        }
    }
    let waker = waker(py);
    for (lp, futs) in by_loop {
        let result = PyList::new(py, futs).and_then(|futs| {
            let call = lp.bind(py).getattr("call_soon_threadsafe")?;
            pycall::call(&call, (waker, futs))
        });
        if let Err(e) = result {
            if !e.is_instance_of::<PyRuntimeError>(py) {
                e.write_unraisable(py, Some(lp.bind(py)));
            }
        }
        pycall::release(py, lp);
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
        let done = fut
            .getattr("done")
            .and_then(|done| pycall::call0(&done))
            .and_then(|d| pycall::truthy(&d));
        if matches!(done, Ok(false)) {
            let _ = fut
                .getattr("set_result")
                .and_then(|set| pycall::call1(&set, fut.py().None()));
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

    /// `None` while running; then `(OUTCOME_READY, value)`, `(OUTCOME_FAILED, exception)` or
    /// `(OUTCOME_ABANDONED, None)`.
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(outcome) = self.attempt.outcome.get() else {
            return Ok(None);
        };
        let t = match outcome {
            Outcome::Ready(v) => (OUTCOME_READY, v.clone_ref(py)),
            Outcome::Failed(e) => (OUTCOME_FAILED, e.clone_ref(py)),
            Outcome::Abandoned => (OUTCOME_ABANDONED, py.None()),
        };
        Ok(Some(t.into_pyobject(py)?))
    }
}

const NOT_COPYABLE: &str = "cannot pickle or copy a once-cell: it is shared by identity (the \
     value is computed once for everyone holding this cell, and waiters and an initialisation in \
     progress belong to it); share the cell itself, or make a new one";

impl OnceCell {
    /// The value, computing it with `factory()` if the cell is empty (see `get_or_init`).
    #[inline(never)]
    fn value_or_init(
        &self,
        py: Python<'_>,
        factory: &Bound<'_, PyAny>,
        deadline: Option<Instant>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let me = sync::thread_id();
        loop {
            match self.core.enter_blocking(py, me, deadline, timeout)? {
                Entered::Ready(v) => return Ok(v),
                Entered::Failed(e) => return Err(PyErr::from_value(e.into_bound(py))),
                Entered::Retry => {
                    // Attempts abandoned one after another must not keep this caller past its
                    // deadline (it only waits, and so checks, when an attempt is running).
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(sync::timeout_error(
                            "OnceCell.get_or_init: waiting for the initialiser",
                            timeout,
                        ));
                    }
                }
                Entered::Owner(attempt) => return self.run_factory(py, &attempt, factory),
            }
        }
    }

    fn run_factory(
        &self,
        py: Python<'_>,
        attempt: &Attempt,
        factory: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let guard = AbandonOnDrop {
            core: &self.core,
            id: attempt.id,
        };
        let result = pycall::call0(factory);
        std::mem::forget(guard);
        match result {
            Ok(v) => {
                let v = v.unbind();
                let stored = SafeRef::new(v.clone_ref(py));
                self.core.end(py, attempt.id, Outcome::Ready(stored));
                Ok(v)
            }
            Err(e) => {
                // KeyboardInterrupt, SystemExit and the like are not the factory's answer: the
                // next caller retries instead of inheriting them.
                let outcome = if e.is_instance_of::<PyException>(py) {
                    Outcome::Failed(SafeRef::new(e.value(py).clone().into_any().unbind()))
                } else {
                    Outcome::Abandoned
                };
                self.core.end(py, attempt.id, outcome);
                Err(e)
            }
        }
    }
}

#[pymethods]
impl OnceCell {
    #[classattr]
    const _BEGIN_READY: u8 = BEGIN_READY;
    #[classattr]
    const _BEGIN_OWNER: u8 = BEGIN_OWNER;
    #[classattr]
    const _BEGIN_WAIT: u8 = BEGIN_WAIT;
    #[classattr]
    const _OUTCOME_READY: u8 = OUTCOME_READY;
    #[classattr]
    const _OUTCOME_FAILED: u8 = OUTCOME_FAILED;
    #[classattr]
    const _OUTCOME_ABANDONED: u8 = OUTCOME_ABANDONED;

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
    #[inline]
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
        self.value_or_init(py, factory, deadline, timeout)
    }

    /// What a `@singleton` function calls: `get_or_init(factory, timeout=timeout)`, refusing
    /// positional arguments with an error about the decorated function's own signature.
    #[pyo3(signature = (factory, *args, timeout = None))]
    fn _call_singleton(
        &self,
        py: Python<'_>,
        factory: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        if !args.is_empty() {
            let name = factory
                .getattr("__qualname__")
                .and_then(|n| n.extract::<String>())
                .unwrap_or_else(|_| "singleton".to_owned());
            return Err(PyTypeError::new_err(format!(
                "{name}() takes no positional arguments but {} {} given (a @singleton function \
                 takes no arguments; its only option is the keyword timeout=)",
                args.len(),
                if args.len() == 1 { "was" } else { "were" }
            )));
        }
        self.get_or_init(py, factory, timeout)
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
        Some(match Arc::try_unwrap(old) {
            Ok(only) => only.into_inner(),
            Err(shared) => shared.clone_ref(py),
        })
    }

    /// Empty the cell, so the next `get_or_init` runs its factory again.
    fn reset(&self, py: Python<'_>) {
        drop(self.core.take(py));
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match self.core.peek(py) {
            Some(v) => {
                // The value's __repr__ is Python code: called through `pycall`.
                let repr = py.import("builtins")?.getattr("repr")?;
                format!("OnceCell({})", pycall::call1(&repr, v)?)
            }
            None => "OnceCell(<uninitialized>)".to_owned(),
        })
    }

    fn __reduce_ex__(&self, _protocol: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(NOT_COPYABLE))
    }

    fn __reduce__(&self) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(NOT_COPYABLE))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only the owner reports the value, once; a view reports its owner (see `shared`).
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        // Lock-free read: never waits, never attaches.
        if let Some(v) = self.core.value.load().as_ref() {
            let obj: &Py<PyAny> = v;
            visit.call(obj)?;
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
        // Released (through `pycall`, see `SafeRef`) after the lock.
        drop(old);
    }

    // ---- the async protocol, driven by nogilsafe._once.AsyncOnceCell ----

    /// `(BEGIN_READY, value)` if ready; `(BEGIN_OWNER, attempt id)`: the caller owns a new
    /// attempt and must end it with `_complete`, `_fail` or `_abandon`; `(BEGIN_WAIT, attempt)`:
    /// another caller's attempt is running. (The owner gets a bare id: a frame holding the
    /// attempt, which may come to hold the factory's exception, whose traceback holds that
    /// frame, would be a cycle through Rust that the collector cannot see.)
    fn _begin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, obj): (u8, Py<PyAny>) = {
            let mut g = sync::lock(py, &self.core.state);
            match &mut *g {
                Phase::Ready => (BEGIN_READY, self.core.peek(py).expect("Ready has a value")),
                Phase::Empty => {
                    let (init, attempt) = OnceCore::new_attempt(sync::thread_id());
                    *g = Phase::Initializing(init);
                    drop(g);
                    (
                        BEGIN_OWNER,
                        attempt.id.into_pyobject(py)?.into_any().unbind(),
                    )
                }
                Phase::Initializing(init) => {
                    let attempt = Arc::clone(&init.attempt);
                    drop(g);
                    (BEGIN_WAIT, Py::new(py, OnceAttempt { attempt })?.into_any())
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

    /// End attempt `id` with its value; False if it had already ended (abandoned because its
    /// event loop was closed).
    fn _complete(&self, py: Python<'_>, id: u64, value: Py<PyAny>) -> bool {
        self.core.end(py, id, Outcome::Ready(SafeRef::new(value)))
    }

    fn _fail(&self, py: Python<'_>, id: u64, exc: Py<PyAny>) -> bool {
        self.core.end(py, id, Outcome::Failed(SafeRef::new(exc)))
    }

    fn _abandon(&self, py: Python<'_>, id: u64) -> bool {
        self.core.end(py, id, Outcome::Abandoned)
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
            assert!(core.end(py, a.id, Outcome::Failed(SafeRef::new(py.None()))));
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
            assert!(core.end(py, b.id, Outcome::Ready(SafeRef::new(py.None()))));
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
