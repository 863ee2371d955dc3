//! `ThreadSafeState`: versioned shared state with O(1) snapshots and rollback.
//!
//! Every version is an immutable persistent map (`imbl::HashMap`, a HAMT) of `str` key →
//! `Arc<Frozen>`; versions share all unchanged structure, so a snapshot is one `Arc` clone and
//! retained history costs memory proportional to what changed.
//!
//! The files, by concept:
//! - `core`: the versions, the writer lock, and `commit` (publish, then wake waiters and hand
//!   the records to the subscribers);
//! - `frozen`: values as stored; `keys`: keys as stored (any `str`);
//! - `snapshot`: `StateSnapshot`; `history`: change records, rollback, diff;
//! - `transaction`: the optimistic operations and `StateTransaction`;
//! - `subscription`: `subscribe` and in-order delivery;
//! - this file: the Python class, which only parses arguments and delegates.
//!
//! Locking (see `StateCore`):
//! - `current` is an `ArcSwap`: readers never lock.
//! - `writer` serialises commits. Under it a commit only does Rust work: clone the current map
//!   (O(1)), insert/remove `Arc`s, push history, publish the new version. No Python code runs
//!   under it: values are frozen before it, and what it removes goes to a graveyard released
//!   after it.
//! - Operations that run Python code (`update_with`, `transaction`, `compare_and_set`) are
//!   optimistic (see `transaction`).
//! - After the writer lock is released: the `changed` condvar (for `wait_for`), async waiters
//!   (woken with `loop.call_soon_threadsafe`), then subscribers, in version order.
//!
//! Documented choices: keys are `str` only (hashing and equality then never run Python code;
//! other keys raise `TypeError`). A rollback is one history record (`key=None`, old/new value =
//! the version numbers) so it stays O(1); `clear` records every removed key. `compare_and_set`
//! compares with `==` on a fresh copy of the current value (a missing key never matches).
//! A state is live, shared and has waiters and subscribers: it is neither picklable nor
//! copyable (its snapshots are). Garbage collection: the owner reports the subscriber callbacks
//! and async waiters (which the core alone owns); see `__traverse__` for why stored values are
//! never reported.
mod core;
mod frozen;
mod history;
mod keys;
mod snapshot;
mod subscription;
mod transaction;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::PyTraverseError;

use self::core::{glue, Map, Outcome, Pending, Plan, StateCore};
use crate::errors::STATE_KEY_ERROR;
use crate::shared::SharedCore;
use crate::{pycall, sync};
use frozen::{freeze, thaw, Frozen, Isolation};
use history::StateChange;
use keys::{key_bytes, key_of, key_repr, key_str, KeyRef};
use snapshot::StateSnapshot;
use subscription::Subscription;
use transaction::StateTransaction;

/// Shared, versioned state. Subclassable: `__new__` accepts any arguments and `__init__`
/// configures the state, once, as `dict.__init__` fills a dict.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "ThreadSafeState")]
pub struct ThreadSafeState {
    core: Arc<StateCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeState, StateCore);

impl ThreadSafeState {
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "ThreadSafeState")
    }

    fn freeze(&self, v: &Bound<'_, PyAny>) -> PyResult<Arc<Frozen>> {
        freeze(v, self.core.isolation())
    }

    fn committed(o: Outcome) -> u64 {
        match o {
            Outcome::Committed(n) => n,
            _ => 0,
        }
    }

    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Frozen>>> {
        let k = key_bytes(key)?;
        Ok(self.core.current.load().map.get(KeyRef::new(&k)).cloned())
    }

    fn available_keys(&self, py: Python<'_>) -> String {
        let cur = self.core.current.load();
        let mut keys: Vec<&[u8]> = cur.map.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        let shown: Vec<String> = keys.iter().take(20).map(|k| key_repr(py, k)).collect();
        let more = if keys.len() > 20 {
            format!(", ... ({} keys)", keys.len())
        } else {
            String::new()
        };
        format!("[{}{more}]", shown.join(", "))
    }

    fn snapshot_of(&self, v: Arc<core::Version>) -> StateSnapshot {
        StateSnapshot::new(v)
    }
}

fn initial_map(py: Python<'_>, obj: &Bound<'_, PyAny>, iso: Isolation) -> PyResult<Map> {
    let mut map = Map::new();
    if obj.is_none() {
        return Ok(map);
    }
    let data = if let Some(dump) = obj.getattr_opt("model_dump")? {
        pycall::call0(&dump)?
    } else {
        let dc = py.import("dataclasses")?;
        if pycall::truthy(&pycall::call1(&dc.getattr("is_dataclass")?, obj)?)?
            && !obj.is_instance_of::<PyType>()
        {
            pycall::call1(&dc.getattr("asdict")?, obj)?
        } else {
            obj.clone()
        }
    };
    let dict = pycall::call1(py.get_type::<PyDict>().as_any(), data).map_err(|e| {
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

const NOT_COPYABLE: &str = "cannot pickle or copy 'ThreadSafeState': it is live shared state \
     (other threads' views, waiters, subscribers and history hang on it); pickle or copy \
     state.snapshot() instead, and build a new state from it";

#[pymethods]
impl ThreadSafeState {
    /// Accepts any arguments, so a subclass's `__init__` may have its own signature; `__init__`
    /// configures the state.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self::from_core(Arc::new(StateCore::new(
            Map::new(),
            1000,
            Isolation::Freeze,
        )))
    }

    #[pyo3(signature = (initial_state = None, *, max_history = 1000, isolation = "freeze"))]
    fn __init__(
        &self,
        py: Python<'_>,
        initial_state: Option<&Bound<'_, PyAny>>,
        max_history: i64,
        isolation: &str,
    ) -> PyResult<()> {
        if max_history < 0 {
            return Err(PyValueError::new_err("max_history must be >= 0"));
        }
        let iso = Isolation::parse(isolation)?;
        if self.owner.is_some() {
            return Err(PyRuntimeError::new_err(
                "ThreadSafeState.__init__ on a view: initialise the state it views instead",
            ));
        }
        let map = match initial_state {
            Some(obj) => initial_map(py, obj, iso)?,
            None => Map::new(),
        };
        if self.core.current.load().number != 0 {
            return Err(PyRuntimeError::new_err(
                "ThreadSafeState.__init__ must run before the state is first written",
            ));
        }
        if self.core.configured.swap(true, Ordering::AcqRel) {
            return Err(PyRuntimeError::new_err(
                "ThreadSafeState.__init__ runs once: this state is already initialised",
            ));
        }
        self.core.configure(py, map, max_history as usize, iso);
        Ok(())
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    /// A per-thread view sharing this state (a plain `ThreadSafeState`, also for a subclass).
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
        match self.lookup(key)? {
            Some(f) => thaw(py, &f),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn get_required<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(key)? {
            Some(f) => thaw(py, &f),
            None => Err(STATE_KEY_ERROR.err(format!(
                "required key {} not found; available keys: {}",
                key_repr(py, &key_bytes(key)?),
                self.available_keys(py)
            ))),
        }
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(key)? {
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
                let old = m.insert(key.clone(), Arc::clone(&new));
                Plan::Commit(m, vec![Pending::of(key, "set", old, Some(new))])
            },
        );
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
            Err(_) => {
                pycall::call1(py.get_type::<PyDict>().as_any(), mapping)?.cast_into::<PyDict>()?
            }
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
                // Moves every item into the map and the records: nothing drops under the lock.
                let mut m = cur.map.clone();
                let pending = items
                    .into_iter()
                    .map(|(k, v)| {
                        let old = m.insert(k.clone(), Arc::clone(&v));
                        Pending::of(k, "update", old, Some(v))
                    })
                    .collect();
                Plan::Commit(m, pending)
            },
        );
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
                Plan::Commit(m, vec![Pending::of(key.clone(), "delete", old, None)])
            },
        );
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
                    .map(|(k, v)| Pending::of(k.clone(), "clear", Some(Arc::clone(v)), None))
                    .collect();
                Plan::Commit(Map::new(), pending)
            },
        );
        Ok(match o {
            Outcome::Committed(n) => n,
            _ => self.core.current.load().number,
        })
    }

    fn has(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup(key)?.is_some())
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

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyString>>> {
        let cur = self.core.current.load_full();
        cur.map.keys().map(|k| key_str(py, k)).collect()
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let cur = self.core.current.load_full();
        cur.map.values().map(|v| thaw(py, v)).collect()
    }

    fn items<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>> {
        let cur = self.core.current.load_full();
        cur.map
            .iter()
            .map(|(k, v)| Ok((key_str(py, k)?, thaw(py, v)?)))
            .collect()
    }

    /// An immutable view of the current version: O(1), values converted on access.
    fn snapshot(&self) -> StateSnapshot {
        self.snapshot_of(self.core.current.load_full())
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
        self.core.rollback(py, target_version, changed_by)
    }

    /// Change records, oldest first, filtered by key and/or version; `limit` keeps the newest.
    #[pyo3(signature = (key = None, limit = None, since_version = None))]
    fn history(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        limit: Option<usize>,
        since_version: Option<u64>,
    ) -> PyResult<Vec<StateChange>> {
        self.core.history(py, key, limit, since_version)
    }

    /// Forget every change record and every retained version but the current one.
    fn clear_history(&self, py: Python<'_>) {
        self.core.clear_history(py)
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
        d.set_item("isolation", self.core.isolation().name())?;
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
        self.core.update_with(py, key, r#fn, default, changed_by)
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
        let new = self.freeze(new)?;
        self.core
            .compare_and_set(py, key, expected, new, changed_by)
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
        self.core.transaction(py, r#fn, changed_by)
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
            let v = self.core.current.load_full();
            let seen = v.number;
            let obj = Bound::new(py, self.snapshot_of(v))?;
            if pycall::truthy(&pycall::call1(predicate, obj.clone())?)? {
                return Ok(self.snapshot_of(Arc::clone(&obj.get().v)));
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
        let f = glue(slf.py())?.getattr("wait_for_async")?;
        pycall::call(&f, (slf, predicate, timeout))
    }

    fn _register_async_waiter(&self, py: Python<'_>, event_loop: Py<PyAny>, future: Py<PyAny>) {
        self.core.register_async_waiter(py, event_loop, future)
    }

    fn _discard_async_waiter(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        self.core.discard_async_waiter(py, future)
    }

    /// Call `callback(changes)` after each commit, in version order; returns a handle whose
    /// `close()` stops it.
    fn subscribe(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<Subscription> {
        if !callback.bind(py).is_callable() {
            return Err(PyTypeError::new_err("subscribe() needs a callable"));
        }
        let id = self.core.subscribe(py, callback);
        Ok(Subscription::new(&self.core, id))
    }

    /// `{key: (old_value, new_value)}` for every key that differs between two retained versions
    /// (a missing side is None).
    fn diff<'py>(
        &self,
        py: Python<'py>,
        from_version: u64,
        to_version: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.core.diff(py, from_version, to_version)
    }

    fn __repr__(&self) -> String {
        let cur = self.core.current.load();
        format!(
            "ThreadSafeState(version={}, keys={}, isolation='{}')",
            cur.number,
            cur.map.len(),
            self.core.isolation().name()
        )
    }

    fn __reduce_ex__(&self, _protocol: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(NOT_COPYABLE))
    }

    fn __reduce__(&self) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(NOT_COPYABLE))
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
            for s in g.iter() {
                visit.call(s.callback())?;
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
        // Taken under the locks, released after them: a callback's __del__ may re-enter.
        let subs = self.core.subscribers.try_lock().map(|mut g| {
            self.core.n_subs.store(0, Ordering::Release);
            std::mem::take(&mut *g)
        });
        let waiters = self.core.async_waiters.try_lock().map(|mut g| {
            self.core.n_async.store(0, Ordering::SeqCst);
            std::mem::take(&mut *g)
        });
        let objs = subs.into_iter().flatten().map(|s| s.into_callback()).chain(
            waiters
                .into_iter()
                .flatten()
                .flat_map(|(lp, fut)| [lp, fut]),
        );
        let mut objs = Some(objs);
        let _ = Python::try_attach(|py| {
            if let Some(objs) = objs.take() {
                pycall::release_all(py, objs);
            }
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ThreadSafeState>()?;
    m.add_class::<StateSnapshot>()?;
    m.add_class::<StateChange>()?;
    m.add_class::<StateTransaction>()?;
    m.add_class::<Subscription>()?;
    m.add_function(wrap_pyfunction!(snapshot::_restore_snapshot, m)?)?;
    Ok(())
}
