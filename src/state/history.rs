//! History: change records, retained versions, rollback and diff.
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::core::{Outcome, Pending, Plan, Removed, StateCore, Version};
use super::frozen::{thaw, Frozen};
use super::keys::{key_repr, key_str, str_bytes, Key};
use crate::errors::{STATE_ROLLBACK_ERROR, STATE_VERSION_ERROR};
use crate::sync::{self, Graveyard};

pub struct ChangeRecord {
    pub version: u64,
    /// `None` for a rollback, which replaces the whole map in one record.
    pub key: Option<Key>,
    pub operation: &'static str,
    pub old: Option<Arc<Frozen>>,
    pub new: Option<Arc<Frozen>>,
    /// For a rollback: (version rolled back from, target version).
    pub versions: Option<(u64, u64)>,
    pub changed_by: Option<Arc<str>>,
    pub timestamp: f64,
}

impl StateCore {
    /// The retained version `n`: the current one, or one the history still holds.
    pub fn version_at(&self, py: Python<'_>, n: u64, for_rollback: bool) -> PyResult<Arc<Version>> {
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
        let oldest = w.roots.front().map_or(cur.number, |v| v.number);
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

    /// Make a retained version current again, as a new version (one record, `key=None`).
    pub fn rollback(&self, py: Python<'_>, target: u64, changed_by: Option<&str>) -> PyResult<u64> {
        let target = self.version_at(py, target, true)?;
        let o = self.commit(
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
        );
        Ok(match o {
            Outcome::Committed(n) => n,
            _ => self.current.load().number,
        })
    }

    /// Records oldest first, filtered by key and version; `limit` keeps the newest.
    pub fn history(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        limit: Option<usize>,
        since_version: Option<u64>,
    ) -> PyResult<Vec<StateChange>> {
        let key = match key {
            None => None,
            Some(k) => match k.cast::<PyString>() {
                Ok(s) => Some(str_bytes(s)?.into_owned()),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "history(key=...) takes a str or None, not {}",
                        k.get_type().name()?
                    )))
                }
            },
        };
        let recs: Vec<Arc<ChangeRecord>> = {
            let w = sync::lock(py, &self.writer);
            w.history.iter().cloned().collect()
        };
        let mut out: Vec<StateChange> = recs
            .into_iter()
            .filter(|r| since_version.is_none_or(|s| r.version >= s))
            .filter(|r| {
                key.as_ref()
                    .is_none_or(|k| r.key.as_deref() == Some(&k[..]))
            })
            .map(StateChange::new)
            .collect();
        if let Some(l) = limit {
            let n = out.len();
            if l < n {
                out.drain(..n - l);
            }
        }
        Ok(out)
    }

    /// Forget every change record and every retained version but the current one.
    pub fn clear_history(&self, py: Python<'_>) {
        sync::with_lock(py, &self.writer, |w, grave: &mut Graveyard<'_, Removed>| {
            w.history
                .drain(..)
                .for_each(|r| grave.push(Removed::Record(r)));
            while w.roots.len() > 1 {
                if let Some(v) = w.roots.pop_front() {
                    grave.push(Removed::Version(v));
                }
            }
        });
    }

    /// `{key: (old, new)}` for every key that differs between two retained versions.
    pub fn diff<'py>(
        &self,
        py: Python<'py>,
        from_version: u64,
        to_version: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let a = self.version_at(py, from_version, false)?;
        let b = self.version_at(py, to_version, false)?;
        let out = PyDict::new(py);
        let none = || py.None().into_bound(py);
        for (k, va) in a.map.iter() {
            match b.map.get(k) {
                Some(vb) if Arc::ptr_eq(va, vb) => {}
                Some(vb) => out.set_item(key_str(py, k)?, (thaw(py, va)?, thaw(py, vb)?))?,
                None => out.set_item(key_str(py, k)?, (thaw(py, va)?, none()))?,
            }
        }
        for (k, vb) in b.map.iter() {
            if !a.map.contains_key(k) {
                out.set_item(key_str(py, k)?, (none(), thaw(py, vb)?))?;
            }
        }
        Ok(out)
    }
}

/// One recorded change. Immutable; values are rebuilt on each access.
#[pyclass(frozen, module = "nogilsafe", name = "StateChange")]
pub struct StateChange {
    rec: Arc<ChangeRecord>,
}

impl StateChange {
    pub fn new(rec: Arc<ChangeRecord>) -> Self {
        StateChange { rec }
    }
}

#[pymethods]
impl StateChange {
    #[getter]
    fn version(&self) -> u64 {
        self.rec.version
    }
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        self.rec.key.as_deref().map(|k| key_str(py, k)).transpose()
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
    fn __repr__(&self, py: Python<'_>) -> String {
        let key = self
            .rec
            .key
            .as_deref()
            .map_or_else(|| "None".to_owned(), |k| key_repr(py, k));
        let by = self
            .rec
            .changed_by
            .as_deref()
            .map_or_else(|| "None".to_owned(), |s| format!("{s:?}"));
        format!(
            "StateChange(version={}, key={key}, operation='{}', changed_by={by})",
            self.rec.version, self.rec.operation,
        )
    }
    /// Immutable: a copy is the same object.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }
    fn __reduce_ex__(&self, _protocol: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(
            "cannot pickle 'StateChange': it is one record of a live ThreadSafeState's history \
             (its values are rebuilt from the state's storage on each access); pickle its \
             fields (version, key, operation, old_value, new_value, changed_by, timestamp) or a \
             StateSnapshot instead",
        ))
    }
    fn __reduce__(&self) -> PyResult<Py<PyAny>> {
        Err(PyTypeError::new_err(
            "cannot pickle 'StateChange': it is one record of a live ThreadSafeState's history; \
             pickle its fields or a StateSnapshot instead",
        ))
    }
}
