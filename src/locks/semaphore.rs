//! `Semaphore` / `BoundedSemaphore`: `threading`'s, also awaitable from any event loop, to cap
//! concurrent use of a resource across every thread and loop of a process.
//!
//! Strictly FIFO: a release hands its permit straight to the oldest waiter, and a newcomer never
//! takes a permit while anyone waits (as `asyncio.Semaphore` guarantees since 3.11). A permit
//! granted to a waiter that left meanwhile goes to the next one.
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::{quoted, WaitTarget};
use crate::shared::SharedCore;
use crate::sync;
use crate::waiters::{with_waiters, Reclaim, Ticket, WaitList, Wakeups};

pub struct SemState {
    /// Invariant: `value > 0` only while `waiters` is empty (a release with waiters hands its
    /// permit over instead).
    value: u64,
    waiters: WaitList<(), ()>,
}

fn list(s: &mut SemState) -> &mut WaitList<(), ()> {
    &mut s.waiters
}

pub struct SemCore {
    state: Mutex<SemState>,
    /// `BoundedSemaphore`: the initial value, which releases may not exceed.
    bound: Option<u64>,
    name: Option<String>,
}

impl SemCore {
    fn kind(&self) -> &'static str {
        if self.bound.is_some() {
            "BoundedSemaphore"
        } else {
            "Semaphore"
        }
    }

    /// Under the lock: one permit comes back, to the oldest waiter if there is one.
    fn put_back(s: &mut SemState, wakes: &mut Wakeups) {
        if s.waiters.grant_front((), wakes).is_err() {
            s.value = s.value.saturating_add(1);
        }
    }

    fn take_now(s: &mut SemState) -> bool {
        if s.value > 0 && s.waiters.is_empty() {
            s.value -= 1;
            true
        } else {
            false
        }
    }
}

impl Reclaim for SemCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        super::abandon_unit(py, &self.state, list, ticket, SemCore::put_back);
    }
}

impl WaitTarget for SemCore {
    fn label(&self) -> String {
        format!("{}{}", self.kind(), quoted(&self.name))
    }

    fn holders(&self, _py: Python<'_>) -> Vec<super::Holder> {
        Vec::new()
    }
}

impl Drop for SemCore {
    fn drop(&mut self) {
        let mut wakes = Wakeups::new();
        drop(self.state.get_mut().waiters.clear_into(&mut wakes));
        if !wakes.is_empty() {
            Python::attach(|py| wakes.perform(py));
        }
    }
}

macro_rules! semaphore_class {
    ($ty:ident, $name:literal, $bounded:expr, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, module = "nogilsafe", name = $name)]
        pub struct $ty {
            core: Arc<SemCore>,
            /// `None` for the owner, else the owner this view shares its core with.
            owner: Option<Py<Self>>,
        }

        crate::shared::shared_core!($ty, SemCore);

        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (value = 1, *, name = None))]
            fn new(value: i64, name: Option<String>) -> PyResult<Self> {
                let value = u64::try_from(value)
                    .map_err(|_| PyValueError::new_err("semaphore initial value must be >= 0"))?;
                Ok(Self::from_core(Arc::new(SemCore {
                    state: Mutex::new(SemState {
                        value,
                        waiters: WaitList::new(),
                    }),
                    bound: $bounded.then_some(value),
                    name,
                })))
            }

            /// A per-thread view sharing this semaphore.
            fn local(slf: &Bound<'_, Self>) -> Self {
                Self::view(slf)
            }

            /// Take a permit, waiting (detached, in FIFO order) at most `timeout` seconds; True
            /// if taken.
            #[pyo3(signature = (blocking = true, timeout = None))]
            fn acquire(
                &self,
                py: Python<'_>,
                blocking: bool,
                timeout: Option<f64>,
            ) -> PyResult<bool> {
                if !blocking && timeout.is_some() {
                    return Err(PyValueError::new_err(
                        "can't specify timeout for non-blocking acquire",
                    ));
                }
                let deadline = sync::deadline(timeout)?;
                let core = &self.core;
                if !blocking {
                    return Ok(SemCore::take_now(&mut sync::lock(py, &core.state)));
                }
                super::wait_unit(
                    py,
                    Arc::clone(core) as _,
                    "acquire",
                    &core.state,
                    deadline,
                    list,
                    SemCore::take_now,
                    SemCore::put_back,
                )
            }

            /// Give back `n` permits, waking as many waiters.
            #[pyo3(signature = (n = 1))]
            fn release(&self, py: Python<'_>, n: i64) -> PyResult<()> {
                let n = u64::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| PyValueError::new_err("n must be one or more"))?;
                let bound = self.core.bound;
                with_waiters(py, &self.core.state, |s, wakes| {
                    if let Some(b) = bound {
                        if s.value.saturating_add(n) > b {
                            return Err(PyValueError::new_err("Semaphore released too many times"));
                        }
                    }
                    for _ in 0..n {
                        SemCore::put_back(s, wakes);
                    }
                    Ok(())
                })
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
                self.release(py, 1)?;
                Ok(false)
            }

            /// `await sem.acquire_async(timeout=None)`: True once a permit is taken, False if
            /// `timeout` expired first.
            #[pyo3(signature = (timeout = None))]
            fn acquire_async<'py>(
                slf: &Bound<'py, Self>,
                timeout: Option<f64>,
            ) -> PyResult<Bound<'py, PyAny>> {
                sync::deadline(timeout)?;
                super::glue(slf.py(), "wait_unit", (slf, timeout))
            }

            fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                super::glue(slf.py(), "enter_unit", (slf,))
            }

            #[pyo3(signature = (*_args))]
            fn __aexit__<'py>(
                &self,
                py: Python<'py>,
                _args: &Bound<'py, PyTuple>,
            ) -> PyResult<Bound<'py, PyAny>> {
                self.release(py, 1)?;
                super::done(py)
            }

            /// Permits available now.
            #[getter]
            fn value(&self, py: Python<'_>) -> u64 {
                sync::lock(py, &self.core.state).value
            }

            /// Whether `acquire` would have to wait (as `asyncio.Semaphore.locked`).
            fn locked(&self, py: Python<'_>) -> bool {
                let s = sync::lock(py, &self.core.state);
                s.value == 0 || !s.waiters.is_empty()
            }

            /// How many threads and tasks wait for a permit.
            #[getter]
            fn waiting(&self, py: Python<'_>) -> usize {
                sync::lock(py, &self.core.state).waiters.len()
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
            ) -> PyResult<Bound<'py, PyTuple>> {
                let _ = retry; // grants here are handovers: a waiter is never asked to retry
                let core = &self.core;
                super::begin_unit(
                    py,
                    Arc::clone(core) as _,
                    &core.state,
                    list,
                    SemCore::take_now,
                    event_loop,
                    future,
                )
            }

            fn _finish<'py>(
                &self,
                py: Python<'py>,
                ticket: Ticket,
            ) -> PyResult<Bound<'py, PyTuple>> {
                super::finish_unit(py, &self.core.state, list, ticket)
            }

            fn _abandon(&self, py: Python<'_>, ticket: Ticket) {
                super::abandon_unit(py, &self.core.state, list, ticket, SemCore::put_back);
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                let (value, waiting) = {
                    let s = sync::lock(py, &self.core.state);
                    (s.value, s.waiters.len())
                };
                format!(
                    "<nogilsafe.{}{} value={value}, {waiting} waiting>",
                    $name,
                    quoted(&self.core.name)
                )
            }

            fn __reduce__(&self) -> PyResult<()> {
                Err(super::refuse_pickle(concat!("nogilsafe.", $name)))
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                if self.visit_owner(&visit)? {
                    return Ok(());
                }
                if let Some(s) = self.core.state.try_lock() {
                    s.waiters.traverse(&visit)?;
                }
                Ok(())
            }
        }
    };
}

semaphore_class!(
    Semaphore,
    "Semaphore",
    false,
    "`threading.Semaphore` for threads and for any event loop, served in FIFO order."
);
semaphore_class!(
    BoundedSemaphore,
    "BoundedSemaphore",
    true,
    "A `Semaphore` whose releases may not raise its value above the initial one \
     (`ValueError`), as `threading.BoundedSemaphore`."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Semaphore>()?;
    m.add_class::<BoundedSemaphore>()?;
    Ok(())
}
