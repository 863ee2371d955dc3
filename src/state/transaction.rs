//! The optimistic operations — `update_with`, `compare_and_set`, `transaction` — and the view a
//! transaction function gets.
//!
//! Each reads the current version, runs Python code with no lock held (inside a
//! `CallbackScope`, so the code writing to the same state gets `ReentrancyError` instead of
//! conflicting forever), and commits only if the entries it read are still the same `Arc`s;
//! otherwise it reruns, `MAX_RETRIES` times at most, then raises `StateConflictError`.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};

use super::core::{Outcome, Pending, Plan, StateCore, Version};
use super::frozen::{freeze, thaw, Frozen, Isolation};
use super::keys::{key_of, key_repr, key_str, Key};
use crate::errors::STATE_CONFLICT_ERROR;
use crate::{pycall, sync};

/// How many times an optimistic operation reruns its callback before `StateConflictError`.
pub const MAX_RETRIES: usize = 1000;

fn same(a: Option<&Arc<Frozen>>, b: Option<&Arc<Frozen>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl StateCore {
    /// An optimistic operation lost to other writers `MAX_RETRIES` times: count it and say so.
    fn gave_up(&self, what: &str, outcome: &str) -> PyErr {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        STATE_CONFLICT_ERROR.err(format!(
            "{what} conflicted with other writers {MAX_RETRIES} times; {outcome}"
        ))
    }

    fn ptr(&self) -> *const StateCore {
        self
    }

    pub fn update_with<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        f: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        for _ in 0..MAX_RETRIES {
            let seen = self.current.load().map.get(&key).cloned();
            let arg = match &seen {
                Some(v) => thaw(py, v)?,
                None => default.clone(),
            };
            let result = sync::in_callback(self.ptr(), || pycall::call1(f, arg))?;
            let new = freeze(&result, self.isolation())?;
            // Borrowed by the plan: on a conflict nothing is dropped under the lock.
            let o = self.commit(
                py,
                changed_by,
                |c| c.update_withs += 1,
                |cur| {
                    let old = cur.map.get(&key);
                    if !same(old, seen.as_ref()) {
                        return Plan::Conflict;
                    }
                    let mut m = cur.map.clone();
                    let old = m.insert(key.clone(), Arc::clone(&new));
                    let p = Pending::of(key.clone(), "update_with", old, Some(Arc::clone(&new)));
                    Plan::Commit(m, vec![p])
                },
            );
            match o {
                Outcome::Conflict => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(result),
            }
        }
        let what = format!("update_with({})", key_repr(py, &key));
        Err(self.gave_up(&what, "nothing was changed"))
    }

    pub fn compare_and_set(
        &self,
        py: Python<'_>,
        key: Key,
        expected: &Bound<'_, PyAny>,
        new: Arc<Frozen>,
        changed_by: Option<&str>,
    ) -> PyResult<bool> {
        for _ in 0..MAX_RETRIES {
            let Some(seen) = self.current.load().map.get(&key).cloned() else {
                return Ok(false);
            };
            let cur = thaw(py, &seen)?;
            let eq = sync::in_callback(self.ptr(), || {
                pycall::compare(&cur, expected, pyo3::ffi::Py_EQ)
            })?;
            if !eq {
                return Ok(false);
            }
            let o = self.commit(
                py,
                changed_by,
                |c| c.compare_and_sets += 1,
                |cur| {
                    if !same(cur.map.get(&key), Some(&seen)) {
                        return Plan::Conflict;
                    }
                    let mut m = cur.map.clone();
                    let old = m.insert(key.clone(), Arc::clone(&new));
                    let p =
                        Pending::of(key.clone(), "compare_and_set", old, Some(Arc::clone(&new)));
                    Plan::Commit(m, vec![p])
                },
            );
            match o {
                Outcome::Conflict => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(true),
            }
        }
        Err(self.gave_up("compare_and_set", "nothing was changed"))
    }

    pub fn transaction<'py>(
        &self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
        changed_by: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        for _ in 0..MAX_RETRIES {
            let view = Bound::new(
                py,
                StateTransaction {
                    isolation: self.isolation(),
                    base: self.current.load_full(),
                    inner: Mutex::new(TxInner::default()),
                },
            )?;
            let result = sync::in_callback(self.ptr(), || pycall::call1(f, view.clone()));
            let tx = view.get();
            // Closed first, so a view the function kept is dead whatever happens next.
            let inner = sync::lock(py, &tx.inner).close();
            let result = result?;
            if inner.writes.is_empty() {
                return Ok(result);
            }
            let o = self.commit(
                py,
                changed_by,
                |c| c.transactions += 1,
                |cur| inner.plan(tx.base.number, cur),
            );
            match o {
                Outcome::Conflict => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok(result),
            }
        }
        Err(self.gave_up("transaction", "nothing was committed"))
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

impl TxInner {
    /// The read and write sets, leaving this view closed.
    fn close(&mut self) -> TxInner {
        let taken = std::mem::take(self);
        self.closed = true;
        taken
    }

    fn check_open(&self) -> PyResult<()> {
        if self.closed {
            return Err(PyRuntimeError::new_err(
                "this transaction view is no longer valid",
            ));
        }
        Ok(())
    }

    /// The commit of these writes on `cur`, if nothing read changed since `base`.
    fn plan(&self, base: u64, cur: &Version) -> Plan {
        if self.read_all && cur.number != base {
            return Plan::Conflict;
        }
        for (k, seen) in &self.reads {
            if !same(cur.map.get(k), seen.as_ref()) {
                return Plan::Conflict;
            }
        }
        let mut m = cur.map.clone();
        let mut pending = Vec::new();
        for (k, v) in &self.writes {
            let old = match v {
                Some(v) => m.insert(k.clone(), Arc::clone(v)),
                None => m.remove(k),
            };
            if v.is_some() || old.is_some() {
                pending.push(Pending::of(k.clone(), "transaction", old, v.clone()));
            }
        }
        if pending.is_empty() {
            return Plan::Unchanged;
        }
        Plan::Commit(m, pending)
    }
}

/// The mutable view `transaction(fn)` passes to `fn`. Valid only during that call.
#[pyclass(frozen, module = "nogilsafe", name = "StateTransaction")]
pub struct StateTransaction {
    isolation: Isolation,
    base: Arc<Version>,
    /// Guards the read/write sets; only Rust work under it (values are frozen/thawed outside,
    /// and replaced writes are released after it).
    inner: Mutex<TxInner>,
}

impl StateTransaction {
    fn lookup(&self, py: Python<'_>, key: &Key) -> PyResult<Option<Arc<Frozen>>> {
        let mut g = sync::lock(py, &self.inner);
        g.check_open()?;
        if let Some((_, v)) = g.writes.iter().rev().find(|(k, _)| k == key) {
            return Ok(v.clone());
        }
        let seen = self.base.map.get(key).cloned();
        g.reads.entry(key.clone()).or_insert_with(|| seen.clone());
        Ok(seen)
    }

    fn write(&self, py: Python<'_>, key: Key, v: Option<Arc<Frozen>>) -> PyResult<()> {
        sync::with_lock(py, &self.inner, |g, grave| {
            g.check_open()?;
            if let Some(pos) = g.writes.iter().position(|(k, _)| *k == key) {
                grave.push(g.writes.remove(pos).1);
            }
            g.writes.push((key, v));
            Ok(())
        })
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
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyString>>> {
        let keys: Vec<Key> = {
            let mut g = sync::lock(py, &self.inner);
            g.check_open()?;
            g.read_all = true;
            let mut keys: Vec<Key> = self.base.map.keys().cloned().collect();
            for (k, v) in &g.writes {
                let present = keys.contains(k);
                match (v, present) {
                    (Some(_), false) => keys.push(k.clone()),
                    (None, true) => keys.retain(|x| x != k),
                    _ => {}
                }
            }
            keys
        };
        keys.iter().map(|k| key_str(py, k)).collect()
    }
    #[getter]
    fn version(&self) -> u64 {
        self.base.number
    }
}
