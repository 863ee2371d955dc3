//! Interpreter exit: a thread inside nogilsafe must never be *ended* by finalization.
//!
//! Before Python 3.14, a daemon thread that re-attaches to the interpreter after finalization
//! began is ended with `pthread_exit`, which on glibc is a forced unwind through every frame on
//! its stack. When those frames include Rust's (PyO3 wraps every method in `catch_unwind`), the
//! unwind is caught as a foreign exception and the process aborts ("FATAL: exception not
//! rethrown", exit status 134). Python 3.14 hangs such threads instead; we do the same on every
//! version, in two places:
//!
//! 1. Our own detached waits (`sync::detach`) never re-attach once the interpreter is exiting:
//!    the thread parks for good instead. The check cannot race with finalization: our `atexit`
//!    hook (which runs before finalization starts) raises `EXITING` and then waits until no
//!    thread is between "checked, not exiting" and "re-attached" (`REATTACHING`, a Dekker-style
//!    pair of SeqCst flags). The thread running the hook (the one that finalizes) is exempt, so
//!    waits in later `atexit` handlers still work.
//! 2. Python code we call (callbacks, `__eq__`, `__del__` of released objects) may itself
//!    re-attach — `time.sleep`, I/O, or on a GIL build any thread switch. Such calls run inside
//!    `guard`, whose frame holds a value that parks the thread if a non-Rust unwind passes
//!    through it. Running a destructor during a forced unwind is what rustc does today (PyO3's
//!    own `PyGILState_Ensure` wrapper relies on it for the same purpose); the alternative is a
//!    certain abort.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

use crate::sync::{is_main_thread, thread_id};

/// Raised by the `atexit` hook; never lowered (an interpreter exits once).
static EXITING: AtomicBool = AtomicBool::new(false);
/// `sync::thread_id` of the thread that ran the hook: it finalizes, and may keep waiting.
static EXIT_THREAD: AtomicU64 = AtomicU64::new(0);
/// Threads that passed the check in `before_reattach` and have not re-attached yet.
static REATTACHING: AtomicUsize = AtomicUsize::new(0);
static QUIET: Mutex<()> = Mutex::new(());
static QUIET_CV: Condvar = Condvar::new();

#[cfg(Py_3_13)]
fn interpreter_finalizing() -> bool {
    // SAFETY: reads one atomic of the runtime; callable detached (it is how 3.14 decides).
    unsafe { pyo3::ffi::Py_IsFinalizing() != 0 }
}

#[cfg(not(Py_3_13))]
fn interpreter_finalizing() -> bool {
    extern "C" {
        fn _Py_IsFinalizing() -> std::os::raw::c_int;
    }
    // SAFETY: as above; the private name is the one these versions export.
    unsafe { _Py_IsFinalizing() != 0 }
}

/// Park this thread for good: what Python 3.14 does to a thread that re-attaches too late.
pub fn hang_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn exiting_for_this_thread() -> bool {
    // The finalizing thread (the one that ran our hook; the main thread if the hook was
    // unregistered) is never ended, and later atexit handlers may still wait on our types.
    if EXIT_THREAD.load(SeqCst) == thread_id() || is_main_thread() {
        return false;
    }
    EXITING.load(SeqCst) || interpreter_finalizing()
}

/// Called detached, right before re-attaching. `false`: re-attaching could end this thread, and
/// the caller must release what it holds (a lock guard it just took) and `hang_forever`.
#[must_use]
pub fn before_reattach() -> bool {
    REATTACHING.fetch_add(1, SeqCst);
    if exiting_for_this_thread() {
        leave_window();
        return false;
    }
    true
}

/// Called attached, right after a `before_reattach` that returned `true` and the re-attach.
pub fn after_reattach() {
    leave_window();
}

fn leave_window() {
    if REATTACHING.fetch_sub(1, SeqCst) == 1 && EXITING.load(SeqCst) {
        let _g = QUIET.lock();
        QUIET_CV.notify_all();
    }
}

/// Runs `f` (Python code); if a forced unwind (the thread being ended) passes, hang instead.
#[inline]
pub fn guard<R>(f: impl FnOnce() -> R) -> R {
    let parker = HangOnForeignUnwind;
    let r = f();
    std::mem::forget(parker);
    r
}

struct HangOnForeignUnwind;

impl Drop for HangOnForeignUnwind {
    fn drop(&mut self) {
        // Only reached by unwinding (`guard` forgets it otherwise). A Rust panic goes on to
        // PyO3, which turns it into an exception; anything else is the thread being ended.
        if !std::thread::panicking() {
            hang_forever();
        }
    }
}

/// The `atexit` hook. Waits (detached, bounded) for threads already re-attaching.
#[pyfunction]
fn _nogilsafe_at_exit(py: Python<'_>) {
    EXIT_THREAD.store(thread_id(), SeqCst);
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let mut g = QUIET.lock();
        // Re-attaching takes microseconds; the bound only keeps a stuck attach from stalling
        // the exit (finalization then proceeds as it would have without us).
        let give_up = std::time::Instant::now() + Duration::from_secs(2);
        while REATTACHING.load(SeqCst) > 0 {
            if QUIET_CV.wait_until(&mut g, give_up).timed_out() {
                break;
            }
        }
    });
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let hook = wrap_pyfunction!(_nogilsafe_at_exit, m)?;
    py.import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}
