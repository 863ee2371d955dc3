//! `Event`: `threading.Event`, also awaitable from any event loop; `set()` wakes every waiting
//! thread and every waiting task on every loop.
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::{quoted, WaitTarget};
use crate::shared::SharedCore;
use crate::sync;
use crate::waiters::{with_waiters, Reclaim, Ticket, WaitList, Wakeups};

pub struct EventCore {
    /// Invariant: set to true only under `waiters`, in the same critical section that grants
    /// every queued waiter; a waiter queues only after finding it false under `waiters`. So no
    /// waiter can queue after a `set` and miss it. Cleared without the lock (a clear cannot
    /// make anyone miss a wakeup).
    flag: AtomicBool,
    waiters: Mutex<WaitList<(), ()>>,
    name: Option<String>,
}

fn list(w: &mut WaitList<(), ()>) -> &mut WaitList<(), ()> {
    w
}

impl EventCore {
    fn set(&self, py: Python<'_>) {
        if self.flag.load(Acquire) {
            return;
        }
        with_waiters(py, &self.waiters, |w, wakes| {
            self.flag.store(true, Release);
            w.grant_all(|_| (), wakes);
        });
    }
}

impl Reclaim for EventCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        super::abandon_unit(py, &self.waiters, list, ticket, |_, _| {});
    }
}

impl WaitTarget for EventCore {
    fn label(&self) -> String {
        format!("Event{}", quoted(&self.name))
    }

    fn holders(&self, _py: Python<'_>) -> Vec<super::Holder> {
        Vec::new()
    }
}

impl Drop for EventCore {
    fn drop(&mut self) {
        let mut wakes = Wakeups::new();
        drop(self.waiters.get_mut().clear_into(&mut wakes));
        if !wakes.is_empty() {
            Python::attach(|py| wakes.perform(py));
        }
    }
}

/// `threading.Event` for threads and for any event loop: `wait` blocks a thread (detached),
/// `await wait_async()` suspends a task; `set` wakes them all.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "Event")]
pub struct Event {
    core: Arc<EventCore>,
    /// `None` for the owner, else the owner this view shares its core with.
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(Event, EventCore);

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (*, name = None))]
    fn new(name: Option<String>) -> Self {
        Self::from_core(Arc::new(EventCore {
            flag: AtomicBool::new(false),
            waiters: Mutex::new(WaitList::new()),
            name,
        }))
    }

    /// A per-thread view sharing this event.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    fn is_set(&self) -> bool {
        self.core.flag.load(Acquire)
    }

    /// Set the flag and wake every waiter, threads and tasks, on every loop.
    fn set(&self, py: Python<'_>) {
        self.core.set(py);
    }

    fn clear(&self) {
        self.core.flag.store(false, Release);
    }

    /// Block (detached) until the flag is set or `timeout` expires; the flag's value at the end
    /// (True unless it timed out), as `threading.Event.wait`.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = sync::deadline(timeout)?;
        if self.core.flag.load(Acquire) {
            return Ok(true);
        }
        let core = &self.core;
        super::wait_unit(
            py,
            Arc::clone(core) as _,
            "wait",
            &core.waiters,
            deadline,
            list,
            |_| core.flag.load(Acquire),
            |_, _| {},
        )
    }

    /// `await event.wait_async(timeout=None)`: True once set, False if `timeout` expired first.
    #[pyo3(signature = (timeout = None))]
    fn wait_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        super::glue(slf.py(), "wait_unit", (slf, timeout))
    }

    /// How many threads and tasks wait for the flag.
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
            |_| core.flag.load(Acquire),
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
        let state = if self.is_set() { "set" } else { "unset" };
        let waiting = self.waiting(py);
        format!(
            "<nogilsafe.Event{} {state}, {waiting} waiting>",
            quoted(&self.core.name)
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(super::refuse_pickle("nogilsafe.Event"))
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
    m.add_class::<Event>()
}
