//! The locking rules of nogilsafe, in code. Every primitive takes its locks and runs Python code
//! through these helpers; none re-implements them.
//!
//! Rule 1 — never block while attached. A thread attached to the interpreter that blocks on a
//! Rust lock can deadlock a GIL build (the holder may be waiting for the GIL) and stalls the
//! free-threaded stop-the-world collector (it waits for every attached thread). So every lock is
//! first tried without blocking, and only a thread that detached waits. That is what PyO3's
//! `lock_py_attached` / `read_py_attached` / `write_py_attached` do; ours do the same through
//! `detach`, which also refuses to re-attach a thread that interpreter exit would end (see
//! `exit`). Long waits (`wait_for`) wake the main thread every `SIGNAL_CHECK_INTERVAL` to run
//! signal handlers with no lock held, so Ctrl-C interrupts them, and check their deadline on
//! every path.
//!
//! Rule 2 — never run Python code while holding a Rust lock. `__eq__`, `__hash__`, callbacks and
//! `__del__` (dropping the last reference) may re-enter the same object and would deadlock.
//! Critical sections only do Rust work and C-level operations that cannot call back into Python
//! (reference count increments, exact-type comparisons). Objects removed under a lock go into a
//! `Graveyard` that `with_lock` / `with_write` drop after the guard, by construction.
//!
//! Rule 3 — a callback that mutates the object it was called for (a `compute` function writing
//! the same dict, an `update` function incrementing the same counter) would make the optimistic
//! retry loop around it run forever. Callbacks run inside a `CallbackScope` naming the core, and
//! mutations call `check_reentry` first: such a mutation raises `ReentrancyError` instead.
use std::cell::{Cell, RefCell};
use std::os::raw::c_ulong;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use pyo3::prelude::*;

use crate::errors::{LOCK_TIMEOUT_ERROR, REENTRANCY_ERROR};
use crate::{exit, pycall};

/// Detach from the interpreter while `f` runs (it must not touch Python objects), then
/// re-attach — unless the interpreter is exiting and re-attaching would end this thread, in which
/// case the thread parks for good, as Python 3.14 does (see `exit`).
#[inline]
pub fn detach<T: Send, F: Send + FnOnce() -> T>(py: Python<'_>, f: F) -> T {
    let out = py.detach(|| {
        let r = f();
        if !exit::before_reattach() {
            // Whatever `f` acquired (a lock guard) is released first, so the threads that go on
            // finalizing the interpreter are not blocked by this one.
            drop(r);
            exit::hang_forever();
        }
        r
    });
    exit::after_reattach();
    out
}

/// Lock `m`: without blocking if it is free, otherwise detached while waiting.
#[inline]
pub fn lock<'a, T: Send>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    match m.try_lock() {
        Some(g) => g,
        None => detach(py, || m.lock()),
    }
}

/// Read-lock `l`: without blocking if possible, otherwise detached while waiting.
#[inline]
pub fn read<'a, T: Send + Sync>(py: Python<'_>, l: &'a RwLock<T>) -> RwLockReadGuard<'a, T> {
    match l.try_read() {
        Some(g) => g,
        None => detach(py, || l.read()),
    }
}

/// Write-lock `l`: without blocking if possible, otherwise detached while waiting.
#[inline]
pub fn write<'a, T: Send + Sync>(py: Python<'_>, l: &'a RwLock<T>) -> RwLockWriteGuard<'a, T> {
    match l.try_write() {
        Some(g) => g,
        None => detach(py, || l.write()),
    }
}

/// What a critical section removed and must not drop under its lock: dropping the last reference
/// to a Python object runs `__del__` and weakref callbacks (Python code). Each kind of removed
/// value says how it is released once the lock is gone: Python references through
/// `pycall::release`, so interpreter exit cannot abort the process inside a `__del__`.
pub trait Buried {
    fn release(self, py: Python<'_>);
}

impl Buried for Py<PyAny> {
    #[inline]
    fn release(self, py: Python<'_>) {
        pycall::release(py, self);
    }
}

impl<A: Buried, B: Buried> Buried for (A, B) {
    fn release(self, py: Python<'_>) {
        self.0.release(py);
        self.1.release(py);
    }
}

impl<T: Buried> Buried for Option<T> {
    fn release(self, py: Python<'_>) {
        if let Some(v) = self {
            v.release(py);
        }
    }
}

impl<T: Buried> Buried for Vec<T> {
    fn release(self, py: Python<'_>) {
        self.into_iter().for_each(|v| v.release(py));
    }
}

impl<T: Buried> Buried for std::collections::VecDeque<T> {
    fn release(self, py: Python<'_>) {
        self.into_iter().for_each(|v| v.release(py));
    }
}

/// Values a critical section removed, released after its guard: `with_lock` / `with_write` own
/// the graveyard and drop it after the guard, so no call site can get the order wrong.
pub struct Graveyard<'py, G: Buried> {
    py: Python<'py>,
    /// Most critical sections remove one value (an overwrite): it is kept here, so that they
    /// allocate nothing (an allocation was most of the graveyard's cost on a dict write).
    first: Option<G>,
    rest: Vec<G>,
}

impl<'py, G: Buried> Graveyard<'py, G> {
    fn new(py: Python<'py>) -> Self {
        Graveyard {
            py,
            first: None,
            rest: Vec::new(),
        }
    }

    /// Keep `value` until the lock is released.
    #[inline]
    pub fn push(&mut self, value: G) {
        if self.first.is_none() {
            self.first = Some(value);
        } else {
            self.rest.push(value);
        }
    }
}

impl<G: Buried> Drop for Graveyard<'_, G> {
    #[inline]
    fn drop(&mut self) {
        if let Some(v) = self.first.take() {
            v.release(self.py);
        }
        if !self.rest.is_empty() {
            for v in std::mem::take(&mut self.rest) {
                v.release(self.py);
            }
        }
    }
}

/// Run `f` on `m`'s contents with the lock held; what `f` puts in the graveyard is released
/// after the lock is (and before `with_lock` returns).
#[inline]
pub fn with_lock<'py, T: Send, G: Buried, R>(
    py: Python<'py>,
    m: &Mutex<T>,
    f: impl FnOnce(&mut T, &mut Graveyard<'py, G>) -> R,
) -> R {
    let mut grave = Graveyard::new(py);
    let r = f(&mut lock(py, m), &mut grave);
    drop(grave);
    r
}

/// `with_lock` for the write side of an `RwLock`.
#[inline]
pub fn with_write<'py, T: Send + Sync, G: Buried, R>(
    py: Python<'py>,
    l: &RwLock<T>,
    f: impl FnOnce(&mut T, &mut Graveyard<'py, G>) -> R,
) -> R {
    let mut grave = Graveyard::new(py);
    let r = f(&mut write(py, l), &mut grave);
    drop(grave);
    r
}

/// The longest timeout accepted, as `threading.TIMEOUT_MAX` on 64-bit Linux (about 292 years).
pub const TIMEOUT_MAX: f64 = 9_223_372_036.0;

/// Convert a Python `timeout=` (seconds, `None` = wait forever) into a deadline. NaN, negative,
/// infinite or larger than `TIMEOUT_MAX`: `ValueError`, before anything else happens.
pub fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else { return Ok(None) };
    if t.is_nan() || t < 0.0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number or None, not {t}"
        )));
    }
    if t > TIMEOUT_MAX {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout {t} is too large (the limit is threading.TIMEOUT_MAX, {TIMEOUT_MAX}); pass \
             None to wait without a limit"
        )));
    }
    // Cannot fail below TIMEOUT_MAX on any platform Rust supports; None would mean "no limit".
    Ok(Instant::now().checked_add(Duration::from_secs_f64(t)))
}

pub fn timeout_error(what: &str, timeout: Option<f64>) -> PyErr {
    LOCK_TIMEOUT_ERROR.err(match timeout {
        Some(t) => format!("{what}: timed out after {t}s"),
        None => format!("{what}: timed out"),
    })
}

/// How often a waiting main thread wakes to run signal handlers (Ctrl-C). Other threads never
/// receive Python signals and sleep until notified or their deadline.
pub const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Wait until `ready` (run with `m` locked, detached: Rust state only) returns `Some`.
///
/// `Ok(None)` once `deadline` has passed; `Err` if a signal handler raised (`KeyboardInterrupt`).
/// Signal handlers run attached with no lock held. Wakeups of `cv` must follow a change under
/// `m` that `ready` can see.
pub fn wait_for<T: Send, R: Send>(
    py: Python<'_>,
    m: &Mutex<T>,
    cv: &Condvar,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut T) -> Option<R> + Send,
) -> PyResult<Option<R>> {
    if let Some(mut g) = m.try_lock() {
        if let Some(r) = ready(&mut g) {
            return Ok(Some(r));
        }
    }
    let main = is_main_thread();
    loop {
        let slice_end = if main {
            let tick = Instant::now() + SIGNAL_CHECK_INTERVAL;
            Some(deadline.map_or(tick, |d| d.min(tick)))
        } else {
            deadline
        };
        let got = detach(py, || {
            let mut g = m.lock();
            loop {
                if let Some(r) = ready(&mut g) {
                    return Some(r);
                }
                match slice_end {
                    None => cv.wait(&mut g),
                    Some(t) => {
                        if cv.wait_until(&mut g, t).timed_out() {
                            return ready(&mut g);
                        }
                    }
                }
            }
        });
        if got.is_some() {
            return Ok(got);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

thread_local! {
    /// Cores (by address) whose callbacks are running on this thread, innermost last.
    static ACTIVE_CALLBACKS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// How many callback scopes are open on this thread: the hot-path check reads only this.
    static CALLBACK_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as running Python code on behalf of an operation on `core` until dropped.
#[must_use]
pub struct CallbackScope {
    core: usize,
}

impl CallbackScope {
    pub fn enter<C>(core: *const C) -> Self {
        let core = core as usize;
        ACTIVE_CALLBACKS.with(|a| a.borrow_mut().push(core));
        CALLBACK_DEPTH.with(|d| d.set(d.get() + 1));
        CallbackScope { core }
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CALLBACK_DEPTH.with(|d| d.set(d.get() - 1));
        ACTIVE_CALLBACKS.with(|a| {
            let mut a = a.borrow_mut();
            if let Some(pos) = a.iter().rposition(|&c| c == self.core) {
                a.remove(pos);
            }
        });
    }
}

/// Raise `ReentrancyError` if this thread is inside a callback that an operation on `core` runs.
#[inline]
pub fn check_reentry<C>(core: *const C, type_name: &str) -> PyResult<()> {
    if CALLBACK_DEPTH.with(Cell::get) == 0 {
        return Ok(());
    }
    let core = core as usize;
    let inside = ACTIVE_CALLBACKS.with(|a| a.borrow().contains(&core));
    if inside {
        Err(REENTRANCY_ERROR.err(format!(
            "a callback running for this {type_name} (a compute/update function, __eq__, a \
             predicate or a sort key) tried to modify the same {type_name}; this would make the \
             operation retry forever or deadlock"
        )))
    } else {
        Ok(())
    }
}

/// Run `f` (Python code: call it through `pycall`) on behalf of an operation on `core`, marked
/// as such.
#[inline]
pub fn in_callback<C, R>(core: *const C, f: impl FnOnce() -> R) -> R {
    let _scope = CallbackScope::enter(core);
    f()
}

extern "C" {
    fn PyThread_get_thread_ident() -> c_ulong;
}

static MAIN_THREAD_IDENT: OnceLock<c_ulong> = OnceLock::new();

/// Record the interpreter's main thread (the only one that runs Python signal handlers).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let ident: c_ulong = m
        .py()
        .import("threading")?
        .call_method0("main_thread")?
        .getattr("ident")?
        .extract()?;
    let _ = MAIN_THREAD_IDENT.set(ident);
    Ok(())
}

/// Whether this is the interpreter's main thread (false before `register`).
pub fn is_main_thread() -> bool {
    thread_local! { static IS_MAIN: Cell<Option<bool>> = const { Cell::new(None) }; }
    IS_MAIN.with(|c| match c.get() {
        Some(b) => b,
        None => match MAIN_THREAD_IDENT.get() {
            Some(&main) => {
                // SAFETY: returns this thread's pthread id; no interpreter state is touched.
                let b = unsafe { PyThread_get_thread_ident() } == main;
                c.set(Some(b));
                b
            }
            None => false,
        },
    })
}

/// A stable id for the current thread, for owner markers (`0` is never an id).
pub fn thread_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! { static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed); }
    ID.with(|id| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_scopes_nest_and_unwind() {
        let a = 1u8;
        let b = 2u8;
        let (pa, pb) = (&a as *const u8 as usize, &b as *const u8 as usize);
        let active = |c: usize| ACTIVE_CALLBACKS.with(|v| v.borrow().contains(&c));
        {
            let _sa = CallbackScope::enter(&a as *const u8);
            assert!(active(pa) && !active(pb));
            {
                let _sb = CallbackScope::enter(&b as *const u8);
                assert!(active(pa) && active(pb));
            }
            assert!(active(pa) && !active(pb));
        }
        assert!(!active(pa));
    }

    #[test]
    fn thread_ids_are_distinct_and_stable() {
        let here = thread_id();
        assert_eq!(here, thread_id());
        let there = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, there);
        assert_ne!(here, 0);
    }

    #[test]
    fn negative_or_nan_timeout_is_rejected_and_none_waits_forever() {
        assert!(deadline(None).unwrap().is_none());
        assert!(deadline(Some(0.5)).unwrap().is_some());
        assert!(deadline(Some(TIMEOUT_MAX)).unwrap().is_some());
        Python::initialize();
        assert!(deadline(Some(-1.0)).is_err());
        assert!(deadline(Some(f64::NAN)).is_err());
        assert!(deadline(Some(f64::INFINITY)).is_err());
        assert!(deadline(Some(1e300)).is_err());
    }
}
