//! Subscribers: `subscribe(callback)` and how commits reach them, in version order.
//!
//! Commits announce themselves after the writer lock is released, so two threads committing at
//! once would otherwise call the subscribers in whatever order they got there (on 3.13t, 49 of
//! 2,400 changes arrived out of order). Instead each commit queues its records under the writer
//! lock — the queue is in version order by construction — and after the lock one committing
//! thread at a time delivers the queue, oldest first ("flat combining"):
//!
//! - a committer that finds nobody delivering becomes the deliverer and hands its own batch over;
//! - one that finds a deliverer at work hands its batch over to it and returns at once;
//! - the deliverer delivers handed-over batches from the front and stops at the first batch whose
//!   committer has not arrived yet (that committer will deliver from there), or when the queue is
//!   empty.
//!
//! So every subscriber sees every commit made after it subscribed, once and in version order;
//! callbacks run with no lock held, in a committing thread (usually the one that committed; when
//! commits overlap, the one already delivering), and never two at once for one state. A callback
//! that commits to the same state queues its batch, which the loop around it delivers next.
//! Nobody waits for a delivery, so a callback that blocks on another committer cannot deadlock.
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::core::StateCore;
use super::history::{ChangeRecord, StateChange};
use crate::{pycall, sync};

pub struct Subscriber {
    id: u64,
    /// The version current when it subscribed: it is told about later commits only.
    since: u64,
    callback: Py<PyAny>,
}

impl Subscriber {
    pub fn callback(&self) -> &Py<PyAny> {
        &self.callback
    }
    pub fn into_callback(self) -> Py<PyAny> {
        self.callback
    }
}

impl sync::Buried for Subscriber {
    fn release(self, py: Python<'_>) {
        pycall::release(py, self.callback);
    }
}

/// One commit's records, waiting to be delivered.
pub struct Batch {
    version: u64,
    records: Vec<Arc<ChangeRecord>>,
    /// Its committer has arrived (handing it over to whoever delivers).
    handed_over: bool,
}

impl Batch {
    pub fn new(version: u64, records: Vec<Arc<ChangeRecord>>) -> Self {
        Batch {
            version,
            records,
            handed_over: false,
        }
    }
}

/// Guarded by `StateCore::deliveries`. Invariant: `queue` is in version order (batches are
/// pushed under the writer lock); at most one thread delivers (`delivering`).
#[derive(Default)]
pub struct Deliveries {
    pub queue: VecDeque<Batch>,
    delivering: bool,
}

/// Lowers `delivering` if the deliverer leaves its loop by unwinding, so a later commit can
/// deliver again.
struct DeliveringFlag<'a, 'py> {
    core: &'a StateCore,
    py: Python<'py>,
    armed: bool,
}

impl Drop for DeliveringFlag<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            sync::lock(self.py, &self.core.deliveries).delivering = false;
        }
    }
}

impl StateCore {
    pub fn subscribe(&self, py: Python<'_>, callback: Py<PyAny>) -> u64 {
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        // Under the writer lock, `since` and the commits that will queue batches for this
        // subscriber (those that see `n_subs > 0`) agree. Lock order: writer, then subscribers.
        let w = sync::lock(py, &self.writer);
        let since = self.current.load().number;
        {
            let mut g = sync::lock(py, &self.subscribers);
            g.push(Subscriber {
                id,
                since,
                callback,
            });
            self.n_subs.store(g.len(), Ordering::Release);
        }
        drop(w);
        id
    }

    fn unsubscribe(&self, py: Python<'_>, id: u64) {
        sync::with_lock(py, &self.subscribers, |g, grave| {
            if let Some(pos) = g.iter().position(|s| s.id == id) {
                grave.push(g.remove(pos));
            }
            self.n_subs.store(g.len(), Ordering::Release);
        });
    }

    fn is_subscribed(&self, py: Python<'_>, id: u64) -> bool {
        sync::lock(py, &self.subscribers).iter().any(|s| s.id == id)
    }

    /// Called by the thread that committed `version` (which queued a batch if anyone was
    /// subscribed), after every lock is released.
    pub fn deliver(&self, py: Python<'_>, version: u64) {
        {
            let mut d = sync::lock(py, &self.deliveries);
            // The batches are in version order and this one is among the newest.
            let Some(mine) = d.queue.iter_mut().rev().find(|b| b.version == version) else {
                return; // nobody was subscribed, or another deliverer took it already
            };
            mine.handed_over = true;
            if d.delivering {
                return;
            }
            d.delivering = true;
        }
        let mut flag = DeliveringFlag {
            core: self,
            py,
            armed: true,
        };
        loop {
            let batch = {
                let mut d = sync::lock(py, &self.deliveries);
                if d.queue.front().is_some_and(|b| b.handed_over) {
                    d.queue.pop_front()
                } else {
                    d.delivering = false;
                    None
                }
            };
            let Some(batch) = batch else { break };
            self.announce(py, &batch);
            drop(batch);
        }
        flag.armed = false;
    }

    /// Call each subscriber that predates `batch` with its records.
    fn announce(&self, py: Python<'_>, batch: &Batch) {
        let subs: Vec<Py<PyAny>> = {
            let g = sync::lock(py, &self.subscribers);
            g.iter()
                .filter(|s| s.since < batch.version)
                .map(|s| s.callback.clone_ref(py))
                .collect()
        };
        if subs.is_empty() || batch.records.is_empty() {
            pycall::release_all(py, subs);
            return;
        }
        let changes: Vec<StateChange> = batch
            .records
            .iter()
            .map(|r| StateChange::new(Arc::clone(r)))
            .collect();
        match PyList::new(py, changes) {
            Ok(changes) => {
                for cb in &subs {
                    let cb = cb.bind(py);
                    if let Err(e) = pycall::call1(cb, changes.clone()) {
                        e.write_unraisable(py, Some(cb));
                    }
                }
            }
            Err(e) => e.write_unraisable(py, None),
        }
        pycall::release_all(py, subs);
    }
}

/// Returned by `subscribe`; `close()` (or leaving a `with` block) stops the callbacks.
#[pyclass(frozen, module = "nogilsafe", name = "StateSubscription")]
pub struct Subscription {
    /// Weak: a handle kept by the subscriber must not keep the state alive (the state holds
    /// the subscriber, so that would be a cycle the collector cannot see).
    core: Weak<StateCore>,
    id: u64,
}

impl Subscription {
    pub fn new(core: &Arc<StateCore>, id: u64) -> Self {
        Subscription {
            core: Arc::downgrade(core),
            id,
        }
    }
}

#[pymethods]
impl Subscription {
    fn close(&self, py: Python<'_>) {
        if let Some(core) = self.core.upgrade() {
            core.unsubscribe(py, self.id);
        }
    }
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.core
            .upgrade()
            .is_none_or(|core| !core.is_subscribed(py, self.id))
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    fn __exit__(
        &self,
        py: Python<'_>,
        _a: &Bound<'_, PyAny>,
        _b: &Bound<'_, PyAny>,
        _c: &Bound<'_, PyAny>,
    ) {
        self.close(py)
    }
}
