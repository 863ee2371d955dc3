//! `CountDownLatch`: opens once `count_down()` has been called `count` times; waiters (threads,
//! and tasks on any loop) are released together. For "start when all N workers are ready" and
//! "stop when all N have finished". It never closes again.
use std::sync::atomic::{AtomicU64, Ordering::*};
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

pub struct LatchCore {
    /// Invariant: only lowered under `waiters`, and the section that brings it to 0 grants every
    /// queued waiter; a waiter queues only after finding it non-zero under `waiters`.
    count: AtomicU64,
    waiters: Mutex<WaitList<(), ()>>,
    name: Option<String>,
}

fn list(w: &mut WaitList<(), ()>) -> &mut WaitList<(), ()> {
    w
}

impl Reclaim for LatchCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        super::abandon_unit(py, &self.waiters, list, ticket, |_, _| {});
    }
}

impl WaitTarget for LatchCore {
    fn label(&self) -> String {
        format!(
            "CountDownLatch{} (count {})",
            quoted(&self.name),
            self.count.load(Relaxed)
        )
    }

    fn holders(&self, _py: Python<'_>) -> Vec<super::Holder> {
        Vec::new()
    }
}

impl Drop for LatchCore {
    fn drop(&mut self) {
        let mut wakes = Wakeups::new();
        drop(self.waiters.get_mut().clear_into(&mut wakes));
        if !wakes.is_empty() {
            Python::attach(|py| wakes.perform(py));
        }
    }
}

/// A latch that opens after `count` calls of `count_down()`; `wait` / `await wait_async()` until
/// then, from any thread or event loop.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "CountDownLatch")]
pub struct CountDownLatch {
    core: Arc<LatchCore>,
    /// `None` for the owner, else the owner this view shares its core with.
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(CountDownLatch, LatchCore);

#[pymethods]
impl CountDownLatch {
    #[new]
    #[pyo3(signature = (count, *, name = None))]
    fn new(count: i64, name: Option<String>) -> PyResult<Self> {
        let count = u64::try_from(count).map_err(|_| {
            PyValueError::new_err(format!("count must be zero or more, not {count}"))
        })?;
        Ok(Self::from_core(Arc::new(LatchCore {
            count: AtomicU64::new(count),
            waiters: Mutex::new(WaitList::new()),
            name,
        })))
    }

    /// A per-thread view sharing this latch.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    /// Lower the count by `n` (not below zero); at zero, release every waiter. Returns the new
    /// count.
    #[pyo3(signature = (n = 1))]
    fn count_down(&self, py: Python<'_>, n: i64) -> PyResult<u64> {
        let n = u64::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("n must be zero or more, not {n}")))?;
        if n == 0 || self.core.count.load(Acquire) == 0 {
            return Ok(self.core.count.load(Acquire));
        }
        Ok(with_waiters(py, &self.core.waiters, |w, wakes| {
            let left = self.core.count.load(Relaxed).saturating_sub(n);
            self.core.count.store(left, Release);
            if left == 0 {
                w.grant_all(|_| (), wakes);
            }
            left
        }))
    }

    #[getter]
    fn count(&self) -> u64 {
        self.core.count.load(Acquire)
    }

    /// Block (detached) until the count reaches zero; False if `timeout` expired first.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = sync::deadline(timeout)?;
        let core = &self.core;
        if core.count.load(Acquire) == 0 {
            return Ok(true);
        }
        super::wait_unit(
            py,
            Arc::clone(core) as _,
            "wait",
            &core.waiters,
            deadline,
            list,
            |_| core.count.load(Acquire) == 0,
            |_, _| {},
        )
    }

    /// `await latch.wait_async(timeout=None)`: True once open, False if `timeout` expired first.
    #[pyo3(signature = (timeout = None))]
    fn wait_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        super::glue(slf.py(), "wait_unit", (slf, timeout))
    }

    /// How many threads and tasks wait for the latch to open.
    #[getter]
    fn waiting(&self, py: Python<'_>) -> usize {
        sync::lock(py, &self.core.waiters).len()
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
            &core.waiters,
            list,
            |_| core.count.load(Acquire) == 0,
            event_loop,
            future,
        )
    }

    fn _finish<'py>(&self, py: Python<'py>, ticket: Ticket) -> PyResult<Bound<'py, PyTuple>> {
        super::finish_unit(py, &self.core.waiters, list, ticket)
    }

    fn _abandon(&self, py: Python<'_>, ticket: Ticket) {
        super::abandon_unit(py, &self.core.waiters, list, ticket, |_, _| {});
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<nogilsafe.CountDownLatch{} count={}, {} waiting>",
            quoted(&self.core.name),
            self.count(),
            self.waiting(py)
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(super::refuse_pickle("nogilsafe.CountDownLatch"))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        if let Some(w) = self.core.waiters.try_lock() {
            w.traverse(&visit)?;
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CountDownLatch>()
}
