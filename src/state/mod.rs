//! `ThreadSafeState`: versioned shared state with O(1) snapshots and rollback.
//!
//! Every version is an immutable persistent map (`imbl::HashMap`, a HAMT) of `str` key →
//! `Arc<Frozen>`; versions share all unchanged structure, so a snapshot is one `Arc` clone and
//! retained history costs memory proportional to what changed.
//!
//! Locking (see `StateCore`):
//! - `current` is an `ArcSwap`: readers never lock.
//! - `writer` serialises commits. Under it a commit only does Rust work: clone the current map
//!   (O(1)), insert/remove `Arc`s, push history, publish the new version. No Python code runs
//!   under it: values are frozen before it and removed roots/records drop after it.
//! - Operations that run Python code (`update_with`, `transaction`, `compare_and_set`) are
//!   optimistic: read the current version, run the code with no lock held, then commit under the
//!   writer lock only if the entries they read are still the same `Arc`s, else retry
//!   (bounded, then `StateConflictError`). Their callbacks run in a `CallbackScope`, so a
//!   callback mutating the same state gets `ReentrancyError` instead of conflicting forever.
//! - Notification happens after the writer lock is released: the `changed` condvar (for
//!   `wait_for`), async waiters (woken with `loop.call_soon_threadsafe`), then subscribers.
//!
//! Documented choices: keys are `str` only (hashing and equality then never run Python code;
//! other keys raise `TypeError`). A rollback is one history record (`key=None`, old/new value =
//! the version numbers) so it stays O(1); `clear` records every removed key. `compare_and_set`
//! compares with `==` on a fresh copy of the current value (a missing key never matches).
//! Garbage collection: the owner reports the subscriber callbacks and async waiters (which the
//! core alone owns); see `__traverse__` for why stored values are never reported. Plain-data
//! values cannot form cycles; an `isolation="reference"` value that refers back to the state
//! keeps it alive until it is replaced.
mod frozen;

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};
use pyo3::PyTraverseError;

use crate::errors::{
    STATE_CONFLICT_ERROR, STATE_KEY_ERROR, STATE_ROLLBACK_ERROR, STATE_VERSION_ERROR,
};
use crate::shared::SharedCore;
use crate::{pycall, sync};
use frozen::{freeze, thaw, Frozen, Isolation};

type Key = Arc<str>;
type Map = imbl::HashMap<Key, Arc<Frozen>>;

/// How many times an optimistic operation reruns its callback before `StateConflictError`.
const MAX_RETRIES: usize = 1000;

pub struct Version {
    number: u64,
    map: Map,
}

pub struct ChangeRecord {
    version: u64,
    /// `None` for a rollback, which replaces the whole map in one record.
    key: Option<Key>,
    operation: &'static str,
    old: Option<Arc<Frozen>>,
    new: Option<Arc<Frozen>>,
    /// For a rollback: (version rolled back from, target version).
    versions: Option<(u64, u64)>,
    changed_by: Option<Arc<str>>,
    timestamp: f64,
}

#[derive(Default)]
struct Counts {
    commits: u64,
    sets: u64,
    updates: u64,
    deletes: u64,
    clears: u64,
    rollbacks: u64,
    update_withs: u64,
    transactions: u64,
    compare_and_sets: u64,
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
struct Writer {
    history: VecDeque<Arc<ChangeRecord>>,
    roots: VecDeque<Arc<Version>>,
    max_history: usize,
    counts: Counts,
}

impl Writer {
    /// The oldest version to keep when `current` is the newest: the one just before the oldest
    /// recorded change. A commit whose records were only partly evicted (a `clear` of more keys
    /// than `max_history`) still keeps the version before it, so such a commit can be undone.
    fn oldest_retained(&self, current: u64) -> u64 {
        self.history.front().map_or(current, |r| r.version - 1)
    }
}

pub struct StateCore {
    current: ArcSwap<Version>,
    writer: Mutex<Writer>,
    /// Notified (after the writer lock is released) on every commit; waits use `writer`.
    changed: Condvar,
    isolation: Isolation,
    retries: AtomicU64,
    conflicts: AtomicU64,
    /// (event loop, future) of `wait_for_async` callers; `n_async` mirrors its length so commits
    /// skip the lock when nobody waits. Only refcount operations happen under this lock.
    async_waiters: Mutex<Vec<(Py<PyAny>, Py<PyAny>)>>,
    n_async: AtomicUsize,
    /// (handle id, callback); `n_subs` mirrors the length. Only refcount operations under it.
    subscribers: Mutex<Vec<(u64, Py<PyAny>)>>,
    n_subs: AtomicUsize,
    next_sub: AtomicU64,
}

enum Plan {
    Commit(Map, Vec<Pending>),
    Unchanged,
    Conflict,
}

struct Pending {
    key: Option<Key>,
    operation: &'static str,
    old: Option<Arc<Frozen>>,
    new: Option<Arc<Frozen>>,
    versions: Option<(u64, u64)>,
}

impl Pending {
    fn of(
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

enum Outcome {
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

fn same(a: Option<&Arc<Frozen>>, b: Option<&Arc<Frozen>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

fn opt_repr(s: Option<&str>) -> String {
    s.map_or_else(|| "None".to_owned(), |s| format!("{s:?}"))
}

fn key_of(key: &Bound<'_, PyAny>) -> PyResult<Key> {
    match key.cast::<PyString>() {
        Ok(s) => Ok(Arc::from(s.to_str()?)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "ThreadSafeState keys must be str, not {}",
            key.get_type().name()?
        ))),
    }
}

fn key_str<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    match key.cast::<PyString>() {
        Ok(s) => s.to_cow(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "ThreadSafeState keys must be str, not {}",
            key.get_type().name()?
        ))),
    }
}

static GLUE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn glue(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    Ok(GLUE
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("nogilsafe._state")?.into_any().unbind())
        })?
        .bind(py))
}

impl StateCore {
    fn new(map: Map, max_history: usize, isolation: Isolation) -> Self {
        let v = Arc::new(Version { number: 0, map });
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
            isolation,
            retries: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            async_waiters: Mutex::new(Vec::new()),
            n_async: AtomicUsize::new(0),
            subscribers: Mutex::new(Vec::new()),
            n_subs: AtomicUsize::new(0),
            next_sub: AtomicU64::new(1),
        }
    }

    /// Run `build` on the current version under the writer lock and publish what it returns.
    /// `build` must not run Python code or drop Python objects (it only moves `Arc`s).
    fn commit(
        &self,
        py: Python<'_>,
        changed_by: Option<&str>,
        count: impl FnOnce(&mut Counts),
        build: impl FnOnce(&Version) -> Plan,
    ) -> PyResult<Outcome> {
        // Declared before the guard: whatever these hold drops after it.
        let mut old_roots: Vec<Arc<Version>> = Vec::new();
        let mut old_records: Vec<Arc<ChangeRecord>> = Vec::new();
        let records: Vec<Arc<ChangeRecord>>;
        let number;
        {
            let mut w = sync::lock(py, &self.writer);
            let cur = self.current.load_full();
            let (map, pending) = match build(&cur) {
                Plan::Commit(m, p) => (m, p),
                Plan::Unchanged => {
                    old_roots.push(cur);
                    return Ok(Outcome::Unchanged);
                }
                Plan::Conflict => {
                    old_roots.push(cur);
                    return Ok(Outcome::Conflict);
                }
            };
            number = cur.number + 1;
            old_roots.push(cur);
            let ts = now();
            let by: Option<Arc<str>> = changed_by.map(Arc::from);
            let records_iter = pending.into_iter().map(|p| {
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
            // Subscribers get this commit's records after the lock; without any, the records go
            // straight into the history (saving a vector and two atomic operations per record).
            // With no history either, they are still collected: they must drop after the lock.
            if self.n_subs.load(Ordering::Acquire) > 0 || w.max_history == 0 {
                records = records_iter.collect();
                if w.max_history > 0 {
                    w.history.extend(records.iter().cloned());
                }
            } else {
                records = Vec::new();
                if w.max_history > 0 {
                    w.history.extend(records_iter);
                }
            }
            while w.history.len() > w.max_history {
                old_records.extend(w.history.pop_front());
            }
            let new = Arc::new(Version { number, map });
            self.current.store(Arc::clone(&new));
            w.roots.push_back(new);
            let oldest = w.oldest_retained(number);
            while w.roots.front().is_some_and(|v| v.number < oldest) {
                old_roots.extend(w.roots.pop_front());
            }
            w.counts.commits += 1;
            count(&mut w.counts);
        }
        // Pairs with the fence in `register_async_waiter`: either we see its count, or its
        // snapshot (taken after registering) sees our version.
        fence(Ordering::SeqCst);
        self.changed.notify_all();
        self.notify(py, &records);
        drop(old_roots);
        drop(old_records);
        Ok(Outcome::Committed(number))
    }

    fn notify(&self, py: Python<'_>, records: &[Arc<ChangeRecord>]) {
        if self.n_async.load(Ordering::SeqCst) > 0 {
            let waiters = {
                let mut g = sync::lock(py, &self.async_waiters);
                self.n_async.store(0, Ordering::SeqCst);
                std::mem::take(&mut *g)
            };
            if let Ok(wake) = glue(py).and_then(|g| g.getattr("_wake")) {
                for (lp, fut) in waiters {
                    // A closed loop raises RuntimeError: its waiter is gone, nothing to wake.
                    let _ = lp.call_method1(py, "call_soon_threadsafe", (&wake, fut));
                }
            }
        }
        // No records: a subscriber registered after this commit took the writer lock.
        if self.n_subs.load(Ordering::Acquire) > 0 && !records.is_empty() {
            let subs: Vec<Py<PyAny>> = {
                let g = sync::lock(py, &self.subscribers);
                g.iter().map(|(_, cb)| cb.clone_ref(py)).collect()
            };
            if subs.is_empty() {
                return;
            }
            let changes: Vec<StateChange> = records
                .iter()
                .map(|r| StateChange { rec: Arc::clone(r) })
                .collect();
            let changes = match PyList::new(py, changes) {
                Ok(l) => l,
                Err(e) => return e.write_unraisable(py, None),
            };
            for cb in subs {
                let cb = cb.bind(py);
                if let Err(e) = pycall::call1(cb, changes.clone()) {
                    e.write_unraisable(py, Some(cb));
                }
            }
        }
    }

    /// The retained version `n`: the current one, or one the history still holds.
    fn version_at(&self, py: Python<'_>, n: u64, for_rollback: bool) -> PyResult<Arc<Version>> {
        let cur = self.current.load_full();
        if n == cur.number {
            return Ok(cur);
        }
        if n > cur.number {
            return Err(STATE_VERSION_ERROR.err(format!(
                "version {n} does not exist yet: the current version is {}",
                cur.number
            )));
        }
        let w = sync::lock(py, &self.writer);
        let oldest = w.roots.front().map(|v| v.number).unwrap_or(cur.number);
        // Retained versions are consecutive: index, don't search.
        if let Some(v) = n.checked_sub(oldest).and_then(|i| w.roots.get(i as usize)) {
            debug_assert_eq!(v.number, n);
            return Ok(Arc::clone(v));
        }
        let msg = format!(
            "version {n} is no longer retained: the oldest retained version is {oldest} \
             (max_history={})",
            w.max_history
        );
        drop(w);
        Err(if for_rollback {
            STATE_ROLLBACK_ERROR.err(msg)
        } else {
            STATE_VERSION_ERROR.err(msg)
        })
    }
}

#[pyclass(frozen, module = "nogilsafe", name = "ThreadSafeState")]
pub struct ThreadSafeState {
    core: Arc<StateCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeState, StateCore);

impl ThreadSafeState {
    /// An optimistic operation lost to other writers `MAX_RETRIES` times: count it and say so.
    fn gave_up(&self, what: &str, outcome: &str) -> PyErr {
        self.core.conflicts.fetch_add(1, Ordering::Relaxed);
        STATE_CONFLICT_ERROR.err(format!(
            "{what} conflicted with other writers {MAX_RETRIES} times; {outcome}"
        ))
    }
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "ThreadSafeState")
    }

    fn freeze(&self, v: &Bound<'_, PyAny>) -> PyResult<Arc<Frozen>> {
        freeze(v, self.core.isolation)
    }

    fn committed(o: Outcome) -> u64 {
        match o {
            Outcome::Committed(n) => n,
            _ => 0,
        }
    }

    fn available_keys(&self) -> String {
        let cur = self.core.current.load();
        let mut keys: Vec<&str> = cur.map.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        let shown: Vec<String> = keys.iter().take(20).map(|k| format!("{k:?}")).collect();
        let more = if keys.len() > 20 {
            format!(", ... ({} keys)", keys.len())
        } else {
            String::new()
        };
        format!("[{}{more}]", shown.join(", "))
    }
}

fn initial_map(py: Python<'_>, obj: &Bound<'_, PyAny>, iso: Isolation) -> PyResult<Map> {
    let mut map = Map::new();
    if obj.is_none() {
        return Ok(map);
    }
    let data = if let Some(dump) = obj.getattr_opt("model_dump")? {
        dump.call0()?
    } else {
        let dc = py.import("dataclasses")?;
        if dc.getattr("is_dataclass")?.call1((obj,))?.is_truthy()?
            && !obj.is_instance_of::<PyType>()
        {
            dc.getattr("asdict")?.call1((obj,))?
        } else {
            obj.clone()
        }
    };
    let dict = py.get_type::<PyDict>().call1((data,)).map_err(|e| {
        if e.is_instance_of::<PyTypeError>(py) || e.is_instance_of::<PyValueError>(py) {
            PyTypeError::new_err(format!(
                "initial_state must be a mapping, a dataclass instance or an object with \
                 model_dump(), not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        } else {
            e
        }
    })?;
    for (k, v) in dict.cast::<PyDict>()?.iter() {
        map.insert(key_of(&k)?, freeze(&v, iso)?);
    }
    Ok(map)
}

#[pymethods]
impl ThreadSafeState {
    #[new]
    #[pyo3(signature = (initial_state = None, *, max_history = 1000, isolation = "freeze"))]
    fn new(
        py: Python<'_>,
        initial_state: Option<&Bound<'_, PyAny>>,
        max_history: i64,
        isolation: &str,
    ) -> PyResult<Self> {
        if max_history < 0 {
            return Err(PyValueError::new_err("max_history must be >= 0"));
        }
        let iso = Isolation::parse(isolation)?;
        let map = match initial_state {
            Some(obj) => initial_map(py, obj, iso)?,
            None => Map::new(),
        };
        Ok(Self::from_core(Arc::new(StateCore::new(
            map,
            max_history as usize,
            iso,
        ))))
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    /// A per-thread view sharing this state.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_str(key)?;
        let found = self.core.current.load().map.get(&*k).cloned();
        match found {
            Some(f) => thaw(py, &f),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn get_required<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_str(key)?;
        let found = self.core.current.load().map.get(&*k).cloned();
        match found {
            Some(f) => thaw(py, &f),
            None => Err(STATE_KEY_ERROR.err(format!(
                "required key {k:?} not found; available keys: {}",
                self.available_keys()
            ))),
        }
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_str(key)?;
        let found = self.core.current.load().map.get(&*k).cloned();
        match found {
            Some(f) => thaw(py, &f),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Store `value` under `key`; return the new version.
    #[pyo3(signature = (key, value, changed_by = None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<u64> {
        self.check()?;
        let key = key_of(key)?;
        let new = self.freeze(value)?;
        let o = self.core.commit(
            py,
            changed_by,
            |c| c.sets += 1,
            |cur| {
                let mut m = cur.map.clone();
                let old = m.insert(Arc::clone(&key), Arc::clone(&new));
                Plan::Commit(m, vec![Pending::of(key, "set", old, Some(new))])
            },
        )?;
        Ok(Self::committed(o))
    }

    /// Store every item of `mapping` as one new version; return it.
    #[pyo3(signature = (mapping, changed_by = None))]
    fn update(
        &self,
        py: Python<'_>,
        mapping: &Bound<'_, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<u64> {
        self.check()?;
        let dict = match mapping.cast::<PyDict>() {
            Ok(d) => d.clone(),
            Err(_) => py
                .get_type::<PyDict>()
                .call1((mapping,))?
                .cast_into::<PyDict>()?,
        };
        let mut items = Vec::with_capacity(dict.len());
        for (k, v) in frozen::dict_items(&dict) {
            items.push((key_of(&k)?, self.freeze(&v)?));
        }
        if items.is_empty() {
            return Ok(self.core.current.load().number);
        }
        let o = self.core.commit(
            py,
            changed_by,
            |c| c.updates += 1,
            |cur| {
                let mut m = cur.map.clone();
                let pending = items
                    .into_iter()
                    .map(|(k, v)| {
                        let old = m.insert(Arc::clone(&k), Arc::clone(&v));
                        Pending::of(k, "update", old, Some(v))
                    })
                    .collect();
                Plan::Commit(m, pending)
            },
        )?;
        Ok(Self::committed(o))
    }

    /// Remove `key`; return whether it was present.
    #[pyo3(signature = (key, changed_by = None))]
    fn delete(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<bool> {
        self.check()?;
        let key = key_of(key)?;
        let o = self.core.commit(
            py,
            changed_by,
            |c| c.deletes += 1,
            |cur| {
                if !cur.map.contains_key(&key) {
                    return Plan::Unchanged;
                }
                let mut m = cur.map.clone();
                let old = m.remove(&key);
                Plan::Commit(m, vec![Pending::of(key, "delete", old, None)])
            },
        )?;
        Ok(matches!(o, Outcome::Committed(_)))
    }

    /// Remove every key (one history record per key); return the new version.
    #[pyo3(signature = (changed_by = None))]
    fn clear(&self, py: Python<'_>, changed_by: Option<&str>) -> PyResult<u64> {
        self.check()?;
        let o = self.core.commit(
            py,
            changed_by,
            |c| c.clears += 1,
            |cur| {
                if cur.map.is_empty() {
                    return Plan::Unchanged;
                }
                let pending = cur
                    .map
                    .iter()
                    .map(|(k, v)| Pending::of(Arc::clone(k), "clear", Some(Arc::clone(v)), None))
                    .collect();
                Plan::Commit(Map::new(), pending)
            },
        )?;
        Ok(match o {
            Outcome::Committed(n) => n,
            _ => self.core.current.load().number,
        })
    }

    fn has(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_str(key)?;
        Ok(self.core.current.load().map.contains_key(&*k))
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        if !key.is_instance_of::<PyString>() {
            return Ok(false);
        }
        self.has(key)
    }

    fn __len__(&self) -> usize {
        self.core.current.load().map.len()
    }

    fn keys(&self) -> Vec<String> {
        self.core
            .current
            .load()
            .map
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let cur = self.core.current.load_full();
        cur.map.values().map(|v| thaw(py, v)).collect()
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        let cur = self.core.current.load_full();
        cur.map
            .iter()
            .map(|(k, v)| Ok((k.to_string(), thaw(py, v)?)))
            .collect()
    }

    /// An immutable view of the current version: O(1), values converted on access.
    fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            v: self.core.current.load_full(),
        }
    }

    #[getter(version)]
    fn current_version(&self) -> u64 {
        self.core.current.load().number
    }

    fn get_version(&self) -> u64 {
        self.current_version()
    }

    /// Make a retained version current again, as a new version; return its number.
    #[pyo3(signature = (target_version, changed_by = None))]
    fn rollback(
        &self,
        py: Python<'_>,
        target_version: u64,
        changed_by: Option<&str>,
    ) -> PyResult<u64> {
        self.check()?;
        let target = self.core.version_at(py, target_version, true)?;
        let o = self.core.commit(
            py,
            changed_by,
            |c| c.rollbacks += 1,
            |cur| {
                Plan::Commit(
                    target.map.clone(),
                    vec![Pending {
                        key: None,
                        operation: "rollback",
                        old: None,
                        new: None,
                        versions: Some((cur.number, target.number)),
                    }],
                )
            },
        )?;
        drop(target);
        Ok(Self::committed(o))
    }

    /// Change records, oldest first, filtered by key and/or version; `limit` keeps the newest.
    #[pyo3(signature = (key = None, limit = None, since_version = None))]
    fn history(
        &self,
        py: Python<'_>,
        key: Option<&str>,
        limit: Option<usize>,
        since_version: Option<u64>,
    ) -> Vec<StateChange> {
        let recs: Vec<Arc<ChangeRecord>> = {
            let w = sync::lock(py, &self.core.writer);
            w.history.iter().cloned().collect()
        };
        let mut out: Vec<StateChange> = recs
            .into_iter()
            .filter(|r| since_version.is_none_or(|s| r.version >= s))
            .filter(|r| key.is_none_or(|k| r.key.as_deref() == Some(k)))
            .map(|rec| StateChange { rec })
            .collect();
        if let Some(l) = limit {
            let n = out.len();
            if l < n {
                out.drain(..n - l);
            }
        }
        out
    }

    /// Forget every change record and every retained version but the current one.
    fn clear_history(&self, py: Python<'_>) {
        let mut old_roots: Vec<Arc<Version>> = Vec::new();
        let mut old_records: VecDeque<Arc<ChangeRecord>> = VecDeque::new();
        {
            let mut w = sync::lock(py, &self.core.writer);
            std::mem::swap(&mut old_records, &mut w.history);
            while w.roots.len() > 1 {
                old_roots.extend(w.roots.pop_front());
            }
        }
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let cur = self.core.current.load_full();
        {
            let w = sync::lock(py, &self.core.writer);
            let c = &w.counts;
            for (k, v) in [
                ("commits", c.commits),
                ("sets", c.sets),
                ("updates", c.updates),
                ("deletes", c.deletes),
                ("clears", c.clears),
                ("rollbacks", c.rollbacks),
                ("update_withs", c.update_withs),
                ("transactions", c.transactions),
                ("compare_and_sets", c.compare_and_sets),
                ("history_size", w.history.len() as u64),
                ("retained_versions", w.roots.len() as u64),
                (
                    "oldest_retained_version",
                    w.roots.front().map_or(cur.number, |v| v.number),
                ),
                ("max_history", w.max_history as u64),
            ] {
                d.set_item(k, v)?;
            }
        }
        d.set_item("retries", self.core.retries.load(Ordering::Relaxed))?;
        d.set_item("conflicts", self.core.conflicts.load(Ordering::Relaxed))?;
        d.set_item("current_version", cur.number)?;
        d.set_item("key_count", cur.map.len())?;
        d.set_item("subscribers", self.core.n_subs.load(Ordering::Relaxed))?;
        d.set_item("async_waiters", self.core.n_async.load(Ordering::Relaxed))?;
        d.set_item("isolation", self.core.isolation.name())?;
        Ok(d)
    }

    /// Replace `key`'s value with `fn(value)` atomically (`fn` may rerun); return the new value.
    #[pyo3(signature = (key, r#fn, default = None, changed_by = None))]
    fn update_with<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        r#fn: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
        changed_by: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let key = key_of(key)?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        for _ in 0..MAX_RETRIES {
            let seen = self.core.current.load().map.get(&key).cloned();
            let arg = match &seen {
                Some(f) => thaw(py, f)?,
                None => default.clone(),
            };
            let result = sync::in_callback(self.core_ptr(), || pycall::call1(r#fn, arg))?;
            let new = self.freeze(&result)?;
            let k = Arc::clone(&key);
            // The closure gets a clone: on conflict it drops under the writer lock, and `new`
            // (which may hold a deep copy with a __del__) must drop after it.
            let nv = Arc::clone(&new);
            let o = self.core.commit(
                py,
                changed_by,
                |c| c.update_withs += 1,
                |cur| {
                    let old = cur.map.get(&k);
                    if !same(old, seen.as_ref()) {
                        return Plan::Conflict;
                    }
                    let mut m = cur.map.clone();
                    let old = m.insert(Arc::clone(&k), Arc::clone(&nv));
                    Plan::Commit(m, vec![Pending::of(k, "update_with", old, Some(nv))])
                },
            )?;
            drop((seen, new));
            match o {
                Outcome::Conflict => {
                    self.core.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(result),
            }
        }
        Err(self.gave_up(&format!("update_with({key:?})"), "nothing was changed"))
    }

    /// Set `key` to `new` only if its current value == `expected` (a missing key never matches).
    #[pyo3(signature = (key, expected, new, changed_by = None))]
    fn compare_and_set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<bool> {
        self.check()?;
        let key = key_of(key)?;
        let frozen_new = self.freeze(new)?;
        for _ in 0..MAX_RETRIES {
            let seen = self.core.current.load().map.get(&key).cloned();
            let Some(seen_val) = seen else {
                return Ok(false);
            };
            let cur = thaw(py, &seen_val)?;
            let eq = sync::in_callback(self.core_ptr(), || {
                pycall::compare(&cur, expected, pyo3::ffi::Py_EQ)
            })?;
            if !eq {
                return Ok(false);
            }
            let k = Arc::clone(&key);
            let nv = Arc::clone(&frozen_new);
            let o = self.core.commit(
                py,
                changed_by,
                |c| c.compare_and_sets += 1,
                |cur| {
                    if !same(cur.map.get(&k), Some(&seen_val)) {
                        return Plan::Conflict;
                    }
                    let mut m = cur.map.clone();
                    let old = m.insert(Arc::clone(&k), Arc::clone(&nv));
                    Plan::Commit(m, vec![Pending::of(k, "compare_and_set", old, Some(nv))])
                },
            )?;
            drop(seen_val);
            match o {
                Outcome::Conflict => {
                    self.core.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(true),
            }
        }
        self.core.conflicts.fetch_add(1, Ordering::Relaxed);
        Err(STATE_CONFLICT_ERROR.err("compare_and_set kept conflicting with other writers"))
    }

    /// Run `fn(view)` and commit its writes atomically if nothing it read changed, else rerun.
    #[pyo3(signature = (r#fn, changed_by = None))]
    fn transaction<'py>(
        &self,
        py: Python<'py>,
        r#fn: &Bound<'py, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        for _ in 0..MAX_RETRIES {
            let base = self.core.current.load_full();
            let view = Bound::new(
                py,
                StateTransaction {
                    isolation: self.core.isolation,
                    base,
                    inner: Mutex::new(TxInner::default()),
                },
            )?;
            let result = sync::in_callback(self.core_ptr(), || pycall::call1(r#fn, view.clone()));
            let (base_number, inner) = {
                let tx = view.get();
                let mut g = sync::lock(py, &tx.inner);
                let inner = std::mem::take(&mut *g);
                g.closed = true;
                (tx.base.number, inner)
            };
            let result = result?;
            if inner.writes.is_empty() {
                return Ok(result);
            }
            let o = self.core.commit(
                py,
                changed_by,
                |c| c.transactions += 1,
                |cur| {
                    if inner.read_all && cur.number != base_number {
                        return Plan::Conflict;
                    }
                    for (k, seen) in &inner.reads {
                        if !same(cur.map.get(k), seen.as_ref()) {
                            return Plan::Conflict;
                        }
                    }
                    let mut m = cur.map.clone();
                    let mut pending = Vec::new();
                    for (k, v) in &inner.writes {
                        match v {
                            Some(v) => {
                                let old = m.insert(Arc::clone(k), Arc::clone(v));
                                pending.push(Pending::of(
                                    Arc::clone(k),
                                    "transaction",
                                    old,
                                    Some(Arc::clone(v)),
                                ));
                            }
                            None => {
                                if let Some(old) = m.remove(k) {
                                    pending.push(Pending::of(
                                        Arc::clone(k),
                                        "transaction",
                                        Some(old),
                                        None,
                                    ));
                                }
                            }
                        }
                    }
                    if pending.is_empty() {
                        return Plan::Unchanged;
                    }
                    Plan::Commit(m, pending)
                },
            )?;
            drop(inner);
            match o {
                Outcome::Conflict => {
                    self.core.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(result),
            }
        }
        Err(self.gave_up("transaction", "nothing was committed"))
    }

    /// Block (detached) until `predicate(snapshot)` is true; re-evaluated after each commit.
    #[pyo3(signature = (predicate, timeout = None))]
    fn wait_for(
        &self,
        py: Python<'_>,
        predicate: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<StateSnapshot> {
        let deadline = sync::deadline(timeout)?;
        loop {
            let snap = StateSnapshot {
                v: self.core.current.load_full(),
            };
            let seen = snap.v.number;
            let obj = Bound::new(py, snap)?;
            if pycall::truthy(&pycall::call1(predicate, obj.clone())?)? {
                return Ok(StateSnapshot {
                    v: Arc::clone(&obj.get().v),
                });
            }
            drop(obj);
            // Commits publish under `writer` and then notify `changed`: checking the version
            // under it cannot miss one.
            let changed =
                sync::wait_for(py, &self.core.writer, &self.core.changed, deadline, |_| {
                    (self.core.current.load().number != seen).then_some(())
                })?;
            // The deadline is checked on every path, also when a commit came in while the
            // predicate ran (then nothing waited above, and the predicate would run again).
            if changed.is_none() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(sync::timeout_error("ThreadSafeState.wait_for", timeout));
            }
        }
    }

    /// Await until `predicate(snapshot)` is true, from any thread's running event loop.
    #[pyo3(signature = (predicate, timeout = None))]
    fn wait_for_async<'py>(
        slf: &Bound<'py, Self>,
        predicate: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        glue(slf.py())?
            .getattr("wait_for_async")?
            .call1((slf, predicate, timeout))
    }

    fn _register_async_waiter(&self, py: Python<'_>, event_loop: Py<PyAny>, future: Py<PyAny>) {
        {
            let mut g = sync::lock(py, &self.core.async_waiters);
            g.push((event_loop, future));
            self.core.n_async.store(g.len(), Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    fn _discard_async_waiter(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        let mut removed: Vec<(Py<PyAny>, Py<PyAny>)> = Vec::new();
        {
            let mut g = sync::lock(py, &self.core.async_waiters);
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut *g)
                .into_iter()
                .partition(|(_, f)| !f.is(future));
            *g = keep;
            removed.extend(gone);
            self.core.n_async.store(g.len(), Ordering::SeqCst);
        }
    }

    /// Call `callback(changes)` after each commit; returns a handle whose `close()` stops it.
    fn subscribe(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<Subscription> {
        if !callback.bind(py).is_callable() {
            return Err(PyTypeError::new_err("subscribe() needs a callable"));
        }
        let id = self.core.next_sub.fetch_add(1, Ordering::Relaxed);
        {
            let mut g = sync::lock(py, &self.core.subscribers);
            g.push((id, callback));
            self.core.n_subs.store(g.len(), Ordering::Release);
        }
        Ok(Subscription {
            core: Arc::downgrade(&self.core),
            id,
        })
    }

    /// `{key: (old_value, new_value)}` for every key that differs between two retained versions
    /// (a missing side is None).
    fn diff<'py>(
        &self,
        py: Python<'py>,
        from_version: u64,
        to_version: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let a = self.core.version_at(py, from_version, false)?;
        let b = self.core.version_at(py, to_version, false)?;
        let out = PyDict::new(py);
        let none = || py.None().into_bound(py);
        for (k, va) in a.map.iter() {
            match b.map.get(k) {
                Some(vb) if Arc::ptr_eq(va, vb) => {}
                Some(vb) => out.set_item(&**k, (thaw(py, va)?, thaw(py, vb)?))?,
                None => out.set_item(&**k, (thaw(py, va)?, none()))?,
            }
        }
        for (k, vb) in b.map.iter() {
            if !a.map.contains_key(k) {
                out.set_item(&**k, (none(), thaw(py, vb)?))?;
            }
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        let cur = self.core.current.load();
        format!(
            "ThreadSafeState(version={}, keys={}, isolation='{}')",
            cur.number,
            cur.map.len(),
            self.core.isolation.name()
        )
    }

    /// Reports the subscriber callbacks and async waiters, which the core alone owns, so that
    /// `state.subscribe(self.on_change)` on an object holding the state is collectable. Only the
    /// owner reports them; a view reports its owner (see `shared`). The locks are only tried:
    /// this may run while another thread holds them.
    ///
    /// Stored values are not reported: a value's reference belongs to a `Frozen` that snapshots
    /// and history records outside the state may share, so the collector could clear a value
    /// that is still reachable through them. Values that refer back to the state (possible only
    /// with `isolation="reference"` or deep-copied objects) keep it alive until replaced.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        if let Some(g) = self.core.subscribers.try_lock() {
            for (_, cb) in g.iter() {
                visit.call(cb)?;
            }
        }
        if let Some(g) = self.core.async_waiters.try_lock() {
            for (lp, fut) in g.iter() {
                visit.call(lp)?;
                visit.call(fut)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if self.owner.is_some() {
            return;
        }
        // Taken under the locks, dropped after them: a callback's __del__ may re-enter.
        let subs = self.core.subscribers.try_lock().map(|mut g| {
            self.core.n_subs.store(0, Ordering::Release);
            std::mem::take(&mut *g)
        });
        let waiters = self.core.async_waiters.try_lock().map(|mut g| {
            self.core.n_async.store(0, Ordering::SeqCst);
            std::mem::take(&mut *g)
        });
        drop((subs, waiters));
    }
}

/// An immutable view of one version. Registered as a `collections.abc.Mapping`.
#[pyclass(frozen, module = "nogilsafe", name = "StateSnapshot")]
pub struct StateSnapshot {
    v: Arc<Version>,
}

#[pymethods]
impl StateSnapshot {
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    #[getter]
    fn version(&self) -> u64 {
        self.v.number
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let found = match key.cast::<PyString>() {
            Ok(s) => self.v.map.get(&*s.to_cow()?),
            Err(_) => None,
        };
        match found {
            Some(f) => thaw(py, f),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let found = match key.cast::<PyString>() {
            Ok(s) => self.v.map.get(&*s.to_cow()?),
            Err(_) => None,
        };
        match found {
            Some(f) => thaw(py, f),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(match key.cast::<PyString>() {
            Ok(s) => self.v.map.contains_key(&*s.to_cow()?),
            Err(_) => false,
        })
    }

    fn __len__(&self) -> usize {
        self.v.map.len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.keys())?
            .as_any()
            .try_iter()?
            .into_any())
    }

    fn keys(&self) -> Vec<String> {
        self.v.map.keys().map(|k| k.to_string()).collect()
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.v.map.values().map(|v| thaw(py, v)).collect()
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        self.v
            .map
            .iter()
            .map(|(k, v)| Ok((k.to_string(), thaw(py, v)?)))
            .collect()
    }

    /// A new dict of this version's keys and (fresh) values.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.v.map.iter() {
            d.set_item(&**k, thaw(py, v)?)?;
        }
        Ok(d)
    }

    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(o) = other.cast::<StateSnapshot>() {
            if Arc::ptr_eq(&self.v, &o.get().v) {
                return Ok(true.into_pyobject(py)?.to_owned().into_any().unbind());
            }
            return Ok(self
                .to_dict(py)?
                .eq(o.get().to_dict(py)?)?
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind());
        }
        let mapping = py.import("collections.abc")?.getattr("Mapping")?;
        if other.is_instance(&mapping)? {
            let d = py.get_type::<PyDict>().call1((other,))?;
            return Ok(self
                .to_dict(py)?
                .eq(d)?
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind());
        }
        Ok(py.NotImplemented())
    }

    fn __repr__(&self) -> String {
        format!(
            "StateSnapshot(version={}, keys={})",
            self.v.number,
            self.v.map.len()
        )
    }
}

/// One recorded change. Immutable; values are rebuilt on each access.
#[pyclass(frozen, module = "nogilsafe", name = "StateChange")]
pub struct StateChange {
    rec: Arc<ChangeRecord>,
}

#[pymethods]
impl StateChange {
    #[getter]
    fn version(&self) -> u64 {
        self.rec.version
    }
    #[getter]
    fn key(&self) -> Option<&str> {
        self.rec.key.as_deref()
    }
    #[getter]
    fn operation(&self) -> &'static str {
        self.rec.operation
    }
    #[getter]
    fn changed_by(&self) -> Option<&str> {
        self.rec.changed_by.as_deref()
    }
    #[getter]
    fn timestamp(&self) -> f64 {
        self.rec.timestamp
    }
    /// The value before the change (None if absent); for a rollback, the version rolled back from.
    #[getter]
    fn old_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some((from, _)) = self.rec.versions {
            return Ok(from.into_pyobject(py)?.into_any());
        }
        match &self.rec.old {
            Some(f) => thaw(py, f),
            None => Ok(py.None().into_bound(py)),
        }
    }
    /// The value after the change (None if removed); for a rollback, the target version.
    #[getter]
    fn new_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some((_, to)) = self.rec.versions {
            return Ok(to.into_pyobject(py)?.into_any());
        }
        match &self.rec.new {
            Some(f) => thaw(py, f),
            None => Ok(py.None().into_bound(py)),
        }
    }
    fn __repr__(&self) -> String {
        format!(
            "StateChange(version={}, key={}, operation='{}', changed_by={})",
            self.rec.version,
            opt_repr(self.rec.key.as_deref()),
            self.rec.operation,
            opt_repr(self.rec.changed_by.as_deref())
        )
    }
}

#[derive(Default)]
struct TxInner {
    /// Key → the entry seen when first read (`None`: absent).
    reads: hashbrown::HashMap<Key, Option<Arc<Frozen>>>,
    /// The transaction iterated or sized the whole state: any commit conflicts.
    read_all: bool,
    /// In order; a later write of a key replaces the earlier one. `None` deletes.
    writes: Vec<(Key, Option<Arc<Frozen>>)>,
    closed: bool,
}

/// The mutable view `transaction(fn)` passes to `fn`. Valid only during that call.
#[pyclass(frozen, module = "nogilsafe", name = "StateTransaction")]
pub struct StateTransaction {
    isolation: Isolation,
    base: Arc<Version>,
    /// Guards the read/write sets; only Rust work under it (values are frozen/thawed outside).
    inner: Mutex<TxInner>,
}

impl StateTransaction {
    fn lookup(&self, py: Python<'_>, key: &Key) -> PyResult<Option<Arc<Frozen>>> {
        let mut g = sync::lock(py, &self.inner);
        if g.closed {
            return Err(PyRuntimeError::new_err(
                "this transaction view is no longer valid",
            ));
        }
        if let Some((_, v)) = g.writes.iter().rev().find(|(k, _)| k == key) {
            return Ok(v.clone());
        }
        let seen = self.base.map.get(key).cloned();
        g.reads
            .entry(Arc::clone(key))
            .or_insert_with(|| seen.clone());
        Ok(seen)
    }

    fn write(&self, py: Python<'_>, key: Key, v: Option<Arc<Frozen>>) -> PyResult<()> {
        let mut g = sync::lock(py, &self.inner);
        if g.closed {
            return Err(PyRuntimeError::new_err(
                "this transaction view is no longer valid",
            ));
        }
        g.writes.retain(|(k, _)| *k != key);
        g.writes.push((key, v));
        Ok(())
    }
}

#[pymethods]
impl StateTransaction {
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(py, &key_of(key)?)? {
            Some(f) => thaw(py, &f),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(py, &key_of(key)?)? {
            Some(f) => thaw(py, &f),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }
    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup(py, &key_of(key)?)?.is_some())
    }
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = key_of(key)?;
        let v = freeze(value, self.isolation)?;
        self.write(py, k, Some(v))
    }
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set(py, key, value)
    }
    /// Remove `key`; return whether it was present (in this transaction's view).
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_of(key)?;
        let present = self.lookup(py, &k)?.is_some();
        self.write(py, k, None)?;
        Ok(present)
    }
    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.delete(py, key)? {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        }
        Ok(())
    }
    /// The keys visible in this transaction (makes the transaction depend on every key).
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let mut g = sync::lock(py, &self.inner);
        if g.closed {
            return Err(PyRuntimeError::new_err(
                "this transaction view is no longer valid",
            ));
        }
        g.read_all = true;
        let mut keys: Vec<Key> = self.base.map.keys().cloned().collect();
        for (k, v) in &g.writes {
            let present = keys.contains(k);
            match (v, present) {
                (Some(_), false) => keys.push(Arc::clone(k)),
                (None, true) => keys.retain(|x| x != k),
                _ => {}
            }
        }
        Ok(keys.iter().map(|k| k.to_string()).collect())
    }
    #[getter]
    fn version(&self) -> u64 {
        self.base.number
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

#[pymethods]
impl Subscription {
    fn close(&self, py: Python<'_>) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let mut removed: Vec<(u64, Py<PyAny>)> = Vec::new();
        {
            let mut g = sync::lock(py, &core.subscribers);
            if let Some(pos) = g.iter().position(|(id, _)| *id == self.id) {
                removed.push(g.remove(pos));
            }
            core.n_subs.store(g.len(), Ordering::Release);
        }
    }
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        let Some(core) = self.core.upgrade() else {
            return true;
        };
        let g = sync::lock(py, &core.subscribers);
        !g.iter().any(|(id, _)| *id == self.id)
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ThreadSafeState>()?;
    m.add_class::<StateSnapshot>()?;
    m.add_class::<StateChange>()?;
    m.add_class::<StateTransaction>()?;
    m.add_class::<Subscription>()?;
    Ok(())
}
