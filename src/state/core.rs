//! The state's core: versions, the writer lock, and how a commit is published and announced.
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::frozen::{Frozen, Isolation};
use super::history::ChangeRecord;
use super::keys::Key;
use super::subscription::{Batch, Deliveries, Subscriber};
use crate::sync::{self, Buried};
use crate::{pycall, sync::Graveyard};

pub type Map = imbl::HashMap<Key, Arc<Frozen>>;

pub struct Version {
    pub number: u64,
    pub map: Map,
    /// How the values were stored (for a snapshot that is pickled).
    pub isolation: Isolation,
}

#[derive(Default)]
pub struct Counts {
    pub commits: u64,
    pub sets: u64,
    pub updates: u64,
    pub deletes: u64,
    pub clears: u64,
    pub rollbacks: u64,
    pub update_withs: u64,
    pub transactions: u64,
    pub compare_and_sets: u64,
}

/// Guarded by `StateCore::writer`. Invariants: `history` holds at most `max_history` records,
/// oldest first; `roots` holds the retained versions oldest first, with consecutive numbers, its
/// last element being the version `current` publishes, and its first `oldest_retained()`.
///
/// Retention follows the records, as the seeds' replayed history did: a version is kept while
/// the history still holds a change made after it. So `max_history` bounds memory by what
/// changed — at most `max_history + 1` roots, each differing from the next by the paths of the
/// keys one commit touched — whatever the shape of the commits. (Keeping `max_history` versions
/// instead kept a thousand near-complete copies of the map when each commit rewrote 100 keys,
/// and evicting those cold copies was a third of the cost of `update`.)
pub struct Writer {
    pub history: VecDeque<Arc<ChangeRecord>>,
    pub roots: VecDeque<Arc<Version>>,
    pub max_history: usize,
    pub counts: Counts,
}

impl Writer {
    /// The oldest version to keep when `current` is the newest: the one just before the oldest
    /// recorded change. A commit whose records were only partly evicted (a `clear` of more keys
    /// than `max_history`) still keeps the version before it, so such a commit can be undone.
    pub fn oldest_retained(&self, current: u64) -> u64 {
        self.history.front().map_or(current, |r| r.version - 1)
    }
}

/// What a critical section of the state takes out and releases after its lock (see `sync`):
/// dropping any of these can drop the last reference to a stored object.
pub enum Removed {
    Version(Arc<Version>),
    Record(Arc<ChangeRecord>),
}

impl Buried for Removed {
    fn release(self, _py: Python<'_>) {
        // Their Python references are `SafeRef`s: dropping releases them through `pycall`.
        match self {
            Removed::Version(v) => drop(v),
            Removed::Record(r) => drop(r),
        }
    }
}

impl Buried for Arc<Frozen> {
    fn release(self, _py: Python<'_>) {
        drop(self);
    }
}

pub struct StateCore {
    pub current: ArcSwap<Version>,
    /// Serialises commits (see `commit`); also what `wait_for` waits on, with `changed`.
    pub writer: Mutex<Writer>,
    /// Notified (after the writer lock is released) on every commit.
    pub changed: Condvar,
    /// An `Isolation` (see `isolation()`): set by `__init__`, which runs before any use.
    isolation: AtomicU8,
    /// Whether `__init__` has configured this state (it may run once).
    pub configured: AtomicBool,
    pub retries: AtomicU64,
    pub conflicts: AtomicU64,
    /// (event loop, future) of `wait_for_async` callers; `n_async` mirrors its length so commits
    /// skip the lock when nobody waits. Only refcount operations happen under this lock.
    pub async_waiters: Mutex<Vec<(Py<PyAny>, Py<PyAny>)>>,
    pub n_async: AtomicUsize,
    /// Subscribers in subscription order; `n_subs` mirrors the length (read by commits under
    /// the writer lock). Only refcount operations happen under this lock.
    pub subscribers: Mutex<Vec<Subscriber>>,
    pub n_subs: AtomicUsize,
    pub next_sub: AtomicU64,
    /// Commits not yet announced to subscribers, in version order (see `subscription`).
    pub deliveries: Mutex<Deliveries>,
}

pub enum Plan {
    Commit(Map, Vec<Pending>),
    Unchanged,
    Conflict,
}

pub struct Pending {
    pub key: Option<Key>,
    pub operation: &'static str,
    pub old: Option<Arc<Frozen>>,
    pub new: Option<Arc<Frozen>>,
    pub versions: Option<(u64, u64)>,
}

impl Pending {
    pub fn of(
        key: Key,
        operation: &'static str,
        old: Option<Arc<Frozen>>,
        new: Option<Arc<Frozen>>,
    ) -> Self {
        Pending {
            key: Some(key),
            operation,
            old,
            new,
            versions: None,
        }
    }
}

pub enum Outcome {
    Committed(u64),
    Unchanged,
    Conflict,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

static GLUE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `nogilsafe._state`, the asyncio glue.
pub fn glue(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    Ok(GLUE
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("nogilsafe._state")?.into_any().unbind())
        })?
        .bind(py))
}

impl StateCore {
    pub fn new(map: Map, max_history: usize, isolation: Isolation) -> Self {
        let v = Arc::new(Version {
            number: 0,
            map,
            isolation,
        });
        let mut roots = VecDeque::new();
        roots.push_back(Arc::clone(&v));
        StateCore {
            current: ArcSwap::new(v),
            writer: Mutex::new(Writer {
                history: VecDeque::new(),
                roots,
                max_history,
                counts: Counts::default(),
            }),
            changed: Condvar::new(),
            isolation: AtomicU8::new(isolation as u8),
            configured: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            async_waiters: Mutex::new(Vec::new()),
            n_async: AtomicUsize::new(0),
            subscribers: Mutex::new(Vec::new()),
            n_subs: AtomicUsize::new(0),
            next_sub: AtomicU64::new(1),
            deliveries: Mutex::new(Deliveries::default()),
        }
    }

    #[inline]
    pub fn isolation(&self) -> Isolation {
        match self.isolation.load(Ordering::Relaxed) {
            x if x == Isolation::DeepCopy as u8 => Isolation::DeepCopy,
            x if x == Isolation::Reference as u8 => Isolation::Reference,
            _ => Isolation::Freeze,
        }
    }

    /// What `__init__` does once, before the state is used: `map` becomes version 0.
    pub fn configure(&self, py: Python<'_>, map: Map, max_history: usize, isolation: Isolation) {
        let v = Arc::new(Version {
            number: 0,
            map,
            isolation,
        });
        sync::with_lock(py, &self.writer, |w, grave: &mut Graveyard<'_, Removed>| {
            w.max_history = max_history;
            self.isolation.store(isolation as u8, Ordering::Relaxed);
            grave.push(Removed::Version(self.current.swap(Arc::clone(&v))));
            w.roots
                .drain(..)
                .for_each(|r| grave.push(Removed::Version(r)));
            w.roots.push_back(v);
        });
    }

    /// Run `build` on the current version under the writer lock and publish what it returns;
    /// then wake waiters and announce the commit to subscribers, with no lock held.
    ///
    /// `build` runs under the lock: it must not run Python code, and must not drop what it owns
    /// (it moves it into the plan, or borrows and clones `Arc`s). Everything the commit removes
    /// (the replaced root, evicted roots and records) goes to the graveyard.
    pub fn commit(
        &self,
        py: Python<'_>,
        changed_by: Option<&str>,
        count: impl FnOnce(&mut Counts),
        build: impl FnOnce(&Version) -> Plan,
    ) -> Outcome {
        // (outcome, whether a batch was queued for the subscribers)
        let (outcome, queued) =
            sync::with_lock(py, &self.writer, |w, grave: &mut Graveyard<'_, Removed>| {
                let cur = self.current.load_full();
                let plan = build(&cur);
                let (number, isolation) = (cur.number + 1, cur.isolation);
                // Never the last reference: `w.roots` ends with the version `current` publishes.
                drop(cur);
                let (map, pending) = match plan {
                    Plan::Commit(m, p) => (m, p),
                    Plan::Unchanged => return (Outcome::Unchanged, false),
                    Plan::Conflict => return (Outcome::Conflict, false),
                };
                let ts = now();
                let by: Option<Arc<str>> = changed_by.map(Arc::from);
                let records = pending.into_iter().map(|p| {
                    Arc::new(ChangeRecord {
                        version: number,
                        key: p.key,
                        operation: p.operation,
                        old: p.old,
                        new: p.new,
                        versions: p.versions,
                        changed_by: by.clone(),
                        timestamp: ts,
                    })
                });
                // Subscribers get this commit's records through the delivery queue, in version
                // order; without any, the records go straight into the history (saving a vector and
                // two atomic operations per record).
                let queued = self.n_subs.load(Ordering::Acquire) > 0;
                if queued {
                    let records: Vec<Arc<ChangeRecord>> = records.collect();
                    if w.max_history > 0 {
                        w.history.extend(records.iter().cloned());
                    }
                    // Lock order: writer, then deliveries (nothing takes them the other way round).
                    sync::lock(py, &self.deliveries)
                        .queue
                        .push_back(Batch::new(number, records));
                } else if w.max_history > 0 {
                    w.history.extend(records);
                } else {
                    // No history, nobody to tell: the records only carried the removed values.
                    records.for_each(|r| grave.push(Removed::Record(r)));
                }
                while w.history.len() > w.max_history {
                    if let Some(r) = w.history.pop_front() {
                        grave.push(Removed::Record(r));
                    }
                }
                let new = Arc::new(Version {
                    number,
                    map,
                    isolation,
                });
                self.current.store(Arc::clone(&new));
                w.roots.push_back(new);
                let oldest = w.oldest_retained(number);
                while w.roots.front().is_some_and(|v| v.number < oldest) {
                    if let Some(v) = w.roots.pop_front() {
                        grave.push(Removed::Version(v));
                    }
                }
                w.counts.commits += 1;
                count(&mut w.counts);
                (Outcome::Committed(number), queued)
            });
        if let Outcome::Committed(number) = outcome {
            // Pairs with the fence in `register_async_waiter`: either we see its count, or its
            // snapshot (taken after registering) sees our version.
            fence(Ordering::SeqCst);
            self.changed.notify_all();
            self.wake_async_waiters(py);
            if queued {
                self.deliver(py, number);
            }
        }
        outcome
    }

    fn wake_async_waiters(&self, py: Python<'_>) {
        if self.n_async.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waiters = {
            let mut g = sync::lock(py, &self.async_waiters);
            self.n_async.store(0, Ordering::SeqCst);
            std::mem::take(&mut *g)
        };
        if let Ok(wake) = glue(py).and_then(|g| g.getattr("_wake")) {
            for (lp, fut) in &waiters {
                // A closed loop raises RuntimeError: its waiter is gone, nothing to wake.
                let _ = lp
                    .bind(py)
                    .getattr("call_soon_threadsafe")
                    .and_then(|call| pycall::call(&call, (&wake, fut)));
            }
        }
        pycall::release_all(py, waiters.into_iter().flat_map(|(lp, fut)| [lp, fut]));
    }

    pub fn register_async_waiter(&self, py: Python<'_>, event_loop: Py<PyAny>, future: Py<PyAny>) {
        {
            let mut g = sync::lock(py, &self.async_waiters);
            g.push((event_loop, future));
            self.n_async.store(g.len(), Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    pub fn discard_async_waiter(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        sync::with_lock(py, &self.async_waiters, |g, grave| {
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(g)
                .into_iter()
                .partition(|(_, f)| !f.is(future));
            *g = keep;
            grave.push(gone);
            self.n_async.store(g.len(), Ordering::SeqCst);
        });
    }
}

impl Drop for StateCore {
    /// The callbacks and waiters the core alone owns go through `pycall::release_all` (a state
    /// nested 100,000 deep inside subscriber closures must not recurse); stored values release
    /// themselves (`SafeRef`).
    fn drop(&mut self) {
        let waiters = std::mem::take(self.async_waiters.get_mut());
        let subs = std::mem::take(self.subscribers.get_mut());
        if waiters.is_empty() && subs.is_empty() {
            return;
        }
        let objs = waiters
            .into_iter()
            .flat_map(|(lp, fut)| [lp, fut])
            .chain(subs.into_iter().map(Subscriber::into_callback));
        let mut objs = Some(objs);
        let _ = Python::try_attach(|py| {
            if let Some(objs) = objs.take() {
                pycall::release_all(py, objs);
            }
        });
    }
}
