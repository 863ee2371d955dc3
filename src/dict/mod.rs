//! `ThreadSafeDict`: a `MutableMapping` shared by threads, with atomic compound operations.
//!
//! Layout (`table`): `SHARDS` independent hash tables chosen by hash bits, each behind its own
//! `parking_lot::RwLock` on its own cache line, so threads working on different keys do not
//! serialise. Single-key operations lock exactly one shard. Whole-table operations (`len`,
//! `snapshot`, iteration, `update`/`update_many`, `clear`, `popitem`, `==`) lock *every* shard,
//! always in index order, which gives them a consistent cut and cannot deadlock: no operation
//! ever holds one shard while waiting for a lower-numbered one.
//!
//! Insertion order: every inserted entry takes a number from a global counter (an overwrite keeps
//! its number, like `dict`); snapshots sort by it, so iteration order is `dict`'s order.
//!
//! Python code (`__eq__` of non-plain keys, callbacks, factories, `__del__`) never runs under a
//! shard lock: see `table::Probe` for keys, `ops` for callbacks and removed objects.
//! `api` is the Python-facing class; it parses arguments and calls the core.
mod api;
mod ops;
mod table;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

pub use table::DictCore;

#[pyclass(
    frozen,
    subclass,
    module = "nogilsafe",
    name = "ThreadSafeDict",
    mapping
)]
pub struct ThreadSafeDict {
    core: Arc<DictCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeDict, DictCore);

static DELETE: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();
static MISSING: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();

/// `nogilsafe.DELETE` (returned by a `compute`/`update_value` function: remove the key) and
/// `nogilsafe.MISSING` (passed to a `compute` function: the key is absent).
#[pyclass(frozen, module = "nogilsafe")]
pub struct Sentinel {
    name: &'static str,
}

#[pymethods]
impl Sentinel {
    fn __repr__(&self) -> String {
        format!("nogilsafe.{}", self.name)
    }
    fn __reduce__(&self) -> String {
        self.name.to_string()
    }
    fn __bool__(&self) -> bool {
        false
    }
}

fn sentinel<'py>(
    py: Python<'py>,
    cell: &'py PyOnceLock<Py<Sentinel>>,
    name: &'static str,
) -> PyResult<&'py Bound<'py, Sentinel>> {
    Ok(cell
        .get_or_try_init(py, || Py::new(py, Sentinel { name }))?
        .bind(py))
}

/// Created in `register`, before any use.
fn delete_obj(py: Python<'_>) -> PyResult<&Bound<'_, Sentinel>> {
    sentinel(py, &DELETE, "DELETE")
}

fn missing_obj(py: Python<'_>) -> PyResult<&Bound<'_, Sentinel>> {
    sentinel(py, &MISSING, "MISSING")
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ThreadSafeDict>()?;
    m.add_class::<Sentinel>()?;
    m.add("DELETE", delete_obj(py)?)?;
    m.add("MISSING", missing_obj(py)?)?;
    Ok(())
}
