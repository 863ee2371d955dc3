//! `StateSnapshot`: an immutable view of one version (O(1) to take: one `Arc` clone).
use std::borrow::Cow;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{exceptions::PyKeyError, ffi};

use super::core::{Map, Version};
use super::frozen::{freeze, thaw, Frozen, Isolation};
use super::keys::{key_of, key_str, str_bytes, KeyRef};
use crate::pycall;

/// Registered as a `collections.abc.Mapping`. Immutable, so copies are the object itself;
/// picklable (as its version number, isolation and a dict of its values).
#[pyclass(frozen, module = "nogilsafe", name = "StateSnapshot")]
pub struct StateSnapshot {
    pub v: Arc<Version>,
}

impl StateSnapshot {
    pub fn new(v: Arc<Version>) -> Self {
        StateSnapshot { v }
    }

    fn find(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<&Arc<Frozen>>> {
        match key.cast::<PyString>() {
            Ok(s) => {
                let k: Cow<'_, [u8]> = str_bytes(s)?;
                Ok(self.v.map.get(KeyRef::new(&k)))
            }
            Err(_) => Ok(None),
        }
    }
}

static MAPPING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ISINSTANCE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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
        match self.find(key)? {
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
        match self.find(key)? {
            Some(f) => thaw(py, f),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.find(key)?.is_some())
    }

    fn __len__(&self) -> usize {
        self.v.map.len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.keys(py)?)?
            .as_any()
            .try_iter()?
            .into_any())
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyString>>> {
        self.v.map.keys().map(|k| key_str(py, k)).collect()
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.v.map.values().map(|v| thaw(py, v)).collect()
    }

    fn items<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>> {
        self.v
            .map
            .iter()
            .map(|(k, v)| Ok((key_str(py, k)?, thaw(py, v)?)))
            .collect()
    }

    /// A new dict of this version's keys and (fresh) values.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.v.map.iter() {
            d.set_item(key_str(py, k)?, thaw(py, v)?)?;
        }
        Ok(d)
    }

    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let theirs = if let Ok(o) = other.cast::<StateSnapshot>() {
            if Arc::ptr_eq(&self.v, &o.get().v) {
                return Ok(true.into_pyobject(py)?.to_owned().into_any().unbind());
            }
            o.get().to_dict(py)?
        } else {
            let mapping = MAPPING.get_or_try_init(py, || -> PyResult<_> {
                Ok(py.import("collections.abc")?.getattr("Mapping")?.unbind())
            })?;
            let isinstance = ISINSTANCE.get_or_try_init(py, || -> PyResult<_> {
                Ok(py.import("builtins")?.getattr("isinstance")?.unbind())
            })?;
            // `isinstance` and `dict()` may run the other mapping's Python code.
            let is_mapping = pycall::call(isinstance.bind(py), (other, mapping.bind(py)))?;
            if !pycall::truthy(&is_mapping)? {
                return Ok(py.NotImplemented());
            }
            pycall::call1(py.get_type::<PyDict>().as_any(), other)?.cast_into::<PyDict>()?
        };
        let eq = pycall::compare(self.to_dict(py)?.as_any(), theirs.as_any(), ffi::Py_EQ)?;
        Ok(eq.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    fn __repr__(&self) -> String {
        format!(
            "StateSnapshot(version={}, keys={})",
            self.v.number,
            self.v.map.len()
        )
    }

    /// Immutable: a copy is the same object.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let restore = py.import("nogilsafe._core")?.getattr("_restore_snapshot")?;
        // An unpickled snapshot stores its values as the state did.
        let args = (self.v.number, self.to_dict(py)?, self.v.isolation.name());
        (restore, args).into_pyobject(py)
    }
}

/// Unpickles a `StateSnapshot` (see `StateSnapshot.__reduce__`).
#[pyfunction]
pub fn _restore_snapshot(
    version: u64,
    items: &Bound<'_, PyDict>,
    isolation: &str,
) -> PyResult<StateSnapshot> {
    let isolation = Isolation::parse(isolation)?;
    let mut map = Map::new();
    for (k, v) in items.iter() {
        map.insert(key_of(&k)?, freeze(&v, isolation)?);
    }
    Ok(StateSnapshot::new(Arc::new(Version {
        number: version,
        map,
        isolation,
    })))
}
