//! The locking rules of nogilsafe, in code. Every primitive takes its locks and runs Python code
//! through these helpers; none re-implements them.
//!
//! Rule 1 — never block while attached. A thread attached to the interpreter that blocks on a
//! Rust lock can deadlock a GIL build (the holder may be waiting for the GIL) and stalls the
//! free-threaded stop-the-world collector (it waits for every attached thread). So every lock is
//! first tried without blocking, and only a thread that detached (`py.detach`) waits. PyO3's
//! `lock_py_attached` / `read_py_attached` / `write_py_attached` do exactly that.
//!
//! Rule 2 — never run Python code while holding a Rust lock. `__eq__`, `__hash__`, callbacks and
//! `__del__` (dropping the last reference) may re-enter the same object and would deadlock.
//! Critical sections only do Rust work and C-level operations that cannot call back into Python
//! (reference count increments, exact-type comparisons). Objects removed under a lock are moved
//! into a local that is declared *before* the guard, so Rust drops them after the guard.
//!
//! Rule 3 — a callback that mutates the object it was called for (a `compute` function writing
//! the same dict, an `update` function incrementing the same counter) would make the optimistic
//! retry loop around it run forever. Callbacks run inside a `CallbackScope` naming the core, and
//! mutations call `check_reentry` first: such a mutation raises `ReentrancyError` instead.
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, RwLockExt};

use crate::errors::{LOCK_TIMEOUT_ERROR, REENTRANCY_ERROR};

/// Lock `m`: without blocking if it is free, otherwise detached while waiting.
#[inline]
pub fn lock<'a, T>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    m.lock_py_attached(py)
}

/// Read-lock `l`: without blocking if possible, otherwise detached while waiting.
#[inline]
pub fn read<'a, T>(py: Python<'_>, l: &'a RwLock<T>) -> RwLockReadGuard<'a, T> {
    l.read_py_attached(py)
}

/// Write-lock `l`: without blocking if possible, otherwise detached while waiting.
#[inline]
pub fn write<'a, T>(py: Python<'_>, l: &'a RwLock<T>) -> RwLockWriteGuard<'a, T> {
    l.write_py_attached(py)
}

/// Convert a Python `timeout=` (seconds, `None` = wait forever) into a deadline.
pub fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(pyo3::exceptions::PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) => Ok(Some(
            Instant::now()
                .checked_add(Duration::from_secs_f64(t.min(1e9)))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1_000_000_000)),
        )),
    }
}

pub fn timeout_error(what: &str, timeout: Option<f64>) -> PyErr {
    LOCK_TIMEOUT_ERROR.err(match timeout {
        Some(t) => format!("{what}: timed out after {t}s"),
        None => format!("{what}: timed out"),
    })
}

/// Lock `m`, giving up at `deadline` with `LockTimeoutError`.
pub fn lock_until<'a, T: Send>(
    py: Python<'_>,
    m: &'a Mutex<T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    if let Some(g) = m.try_lock() {
        return Some(g);
    }
    match deadline {
        None => Some(lock(py, m)),
        Some(d) => py.detach(|| m.try_lock_until(d)),
    }
}

/// Wait on `cv` (detached) until notified or `deadline`. Returns false on timeout.
/// Callers loop on their own predicate: wakeups may be spurious.
pub fn wait_until<T: Send>(
    py: Python<'_>,
    cv: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<Instant>,
) -> bool {
    py.detach(|| match deadline {
        None => {
            cv.wait(guard);
            true
        }
        Some(d) => !cv.wait_until(guard, d).timed_out(),
    })
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

/// Run `f` (Python code) on behalf of an operation on `core`, marked as such.
#[inline]
pub fn in_callback<C, R>(core: *const C, f: impl FnOnce() -> R) -> R {
    let _scope = CallbackScope::enter(core);
    f()
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
        assert!(deadline(Some(1e300)).unwrap().is_some());
        Python::initialize();
        assert!(deadline(Some(-1.0)).is_err());
        assert!(deadline(Some(f64::NAN)).is_err());
    }
}
