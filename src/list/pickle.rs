//! Pickling, `copy.copy` and `copy.deepcopy` like a `list` (and a `list` subclass), and views
//! that stay views of their owner's copy.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::api::ThreadSafeList;
use crate::pycall;

fn newobj(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static NEWOBJ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(NEWOBJ
        .get_or_try_init(py, || {
            py.import("copyreg")?
                .getattr("__newobj__")
                .map(Bound::unbind)
        })?
        .bind(py))
}

/// What `object.__reduce_ex__` would give a subclass instance as its state: `__getstate__()`
/// (Python 3.11+, possibly overridden: Python code, through `pycall`), else its `__dict__` if
/// not empty.
fn subclass_state<'py>(obj: &Bound<'py, ThreadSafeList>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if let Ok(getstate) = obj.getattr("__getstate__") {
        return pycall::call0(&getstate);
    }
    match obj.getattr("__dict__") {
        Ok(d) if d.cast::<PyDict>().is_ok_and(|d| !d.is_empty()) => Ok(d),
        _ => Ok(py.None().into_bound(py)),
    }
}

impl ThreadSafeList {
    /// The elements go as list items (not constructor arguments), so a list that contains itself
    /// pickles and deep-copies like a builtin list. A subclass instance is rebuilt without its
    /// `__init__` (`copyreg.__newobj__`) and gets its state back, as a `list` subclass does.
    pub(super) fn reduce<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        if let Some(r) = crate::shared::reduce_view(slf)? {
            return Ok(r);
        }
        let items = slf.get().core.snapshot_list(py)?.into_any().try_iter()?;
        let base = py.get_type::<ThreadSafeList>();
        let cls = slf.get_type();
        if cls.is(&base) {
            return (base, PyTuple::empty(py), py.None(), items).into_pyobject(py);
        }
        let state = subclass_state(slf)?;
        (newobj(py)?, (cls,), state, items).into_pyobject(py)
    }

    /// `copy.copy` of a subclass instance: what `copy.copy` makes of a `list` subclass's
    /// reduction: a new instance of the subclass without `__init__`, the state, then each
    /// element appended.
    pub(super) fn copy_subclass<'py>(
        slf: &Bound<'py, Self>,
        cls: &Bound<'py, PyType>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let copy = pycall::call1(newobj(py)?, cls)?;
        let state = subclass_state(slf)?;
        if !state.is_none() {
            set_state(&copy, &state)?;
        }
        let append = copy.getattr("append")?;
        for item in slf.get().core.snapshot(py).iter() {
            pycall::call1(&append, item.bind(py))?;
        }
        Ok(copy)
    }
}

/// Give `obj` the `state` of a reduction, as `copy` and `pickle` do: `__setstate__` if it has
/// one, else its `__dict__` updated and its slots set from a `(dict, slots)` pair.
fn set_state(obj: &Bound<'_, PyAny>, state: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(setstate) = obj.getattr("__setstate__") {
        pycall::call1(&setstate, state)?;
        return Ok(());
    }
    let (dict, slots) = match state.cast::<PyTuple>() {
        Ok(t) if t.len() == 2 => (t.get_item(0)?, Some(t.get_item(1)?)),
        _ => (state.clone(), None),
    };
    if !dict.is_none() {
        pycall::call1(&obj.getattr("__dict__")?.getattr("update")?, dict)?;
    }
    if let Some(slots) = slots.filter(|s| !s.is_none()) {
        let setattr = obj.py().import("builtins")?.getattr("setattr")?;
        for kv in slots.cast::<PyDict>()?.iter() {
            pycall::call(&setattr, (obj, kv.0, kv.1))?;
        }
    }
    Ok(())
}
