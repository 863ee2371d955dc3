//! The Python class: argument parsing, the `dict` contract (construction in `__init__`,
//! subclassing, `__missing__`, copies, pickling), and calls into the core (`table`, `ops`).
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::basic::CompareOp;
use pyo3::conversion::FromPyObject;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyGenericAlias, PyList, PyString, PyTuple, PyType};
use pyo3::{ffi, intern, Borrowed, PyTraverseError, PyTypeInfo};

use super::ops::{same_value, small_int, Outcome};
use super::table::{DictCore, Items};
use super::{delete_obj, missing_obj, ThreadSafeDict};
use crate::key::HKey;
use crate::shared::{self, SharedCore};
use crate::{pycall, sync};

static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NEWOBJ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ADD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static REPR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// An optional argument whose absence differs from an explicit `None` (`increment(k, None)` is
/// a `TypeError`, as `None + 1` is).
pub(super) enum Given<'py> {
    Yes(Bound<'py, PyAny>),
    Absent,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Given::Yes(obj.to_owned()))
    }
}

fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err((key.clone().unbind(),))
}

/// What a `compute`/`update_value` function's result asks for: `DELETE` removes the key.
fn outcome_of(py: Python<'_>, out: Bound<'_, PyAny>) -> PyResult<Outcome> {
    Ok(if out.is(delete_obj(py)?) {
        Outcome::Delete
    } else {
        Outcome::Store(out.unbind())
    })
}

/// `dict`'s rule for `*args`: at most one positional argument.
fn at_most_one<'a, 'py>(
    what: &str,
    args: &'a Bound<'py, PyTuple>,
) -> PyResult<Option<Borrowed<'a, 'py, PyAny>>> {
    match args.len() {
        0 => Ok(None),
        1 => Ok(Some(args.get_borrowed_item(0)?)),
        n => Err(PyTypeError::new_err(format!(
            "{what} expected at most 1 argument, got {n}"
        ))),
    }
}

/// Whether `slf` is exactly a `ThreadSafeDict` (not a subclass instance), without touching the
/// type object's reference count.
#[inline]
fn is_exact(slf: &Bound<'_, ThreadSafeDict>) -> bool {
    // SAFETY: a live object; reads its type pointer only.
    let ty = unsafe { ffi::Py_TYPE(slf.as_ptr()) };
    ty == ThreadSafeDict::type_object_raw(slf.py())
}

/// `obj.<name>` looked up on its type only and bound, as the interpreter looks up special
/// methods (`dict` finds `__missing__` this way).
fn lookup_special<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    let ty = obj.get_type();
    for cls in ty.mro().iter() {
        let ns = cls.getattr(intern!(py, "__dict__"))?;
        if !ns.contains(name)? {
            continue;
        }
        let attr = ns.get_item(name)?;
        let get = attr.get_type().getattr_opt(intern!(py, "__get__"))?;
        return Ok(Some(match get {
            Some(get) => pycall::call(&get, (&attr, obj, &ty))?,
            None => attr,
        }));
    }
    Ok(None)
}

fn py_repr(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = obj.py();
    let repr = REPR.import(py, "builtins", "repr")?;
    Ok(pycall::call1(repr, obj)?.str()?.to_string())
}

impl ThreadSafeDict {
    fn new_owner() -> Self {
        Self::from_core(Arc::new(DictCore::new()))
    }

    fn snapshot_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.core.items(py).0 {
            d.set_item(k.bind(py), v.bind(py))?;
        }
        Ok(d)
    }

    fn keys_list<'py>(&self, py: Python<'py>, rev: bool) -> PyResult<Bound<'py, PyList>> {
        let items = self.core.items(py);
        let keys = items.0.iter().map(|(k, _)| k.bind(py));
        if rev {
            PyList::new(py, keys.rev())
        } else {
            PyList::new(py, keys)
        }
    }

    /// Everything `dict(arg, **kwargs)` accepts, as an ordered, de-duplicated list of hashed
    /// pairs. Runs Python code (iteration, `__hash__`, `__eq__`): call it before locking.
    fn collect_items<'py>(
        py: Python<'py>,
        arg: Option<Borrowed<'_, 'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<(HKey<'py>, Bound<'py, PyAny>)>> {
        let tmp = PyDict::new(py);
        if let Some(a) = arg {
            if let Ok(other) = a.cast::<ThreadSafeDict>() {
                for (k, v) in &other.get().core.items(py).0 {
                    tmp.set_item(k.bind(py), v.bind(py))?;
                }
            } else {
                pycall::call1(&tmp.getattr(intern!(py, "update"))?, a)?;
            }
        }
        if let Some(kw) = kwargs {
            tmp.update(kw.as_mapping())?;
        }
        tmp.iter().map(|(k, v)| Ok((HKey::new(&k)?, v))).collect()
    }

    fn update_from(
        &self,
        py: Python<'_>,
        arg: Option<Borrowed<'_, '_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        self.core.check()?;
        let pairs = Self::collect_items(py, arg, kwargs)?;
        if pairs.is_empty() {
            return Ok(());
        }
        self.core.apply_batch(py, &pairs)
    }

    fn is_mapping(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = obj.py();
        if obj.is_instance_of::<PyDict>() || obj.cast::<ThreadSafeDict>().is_ok() {
            return Ok(true);
        }
        obj.is_instance(MAPPING.import(py, "collections.abc", "Mapping")?)
    }

    /// A new, independent dict (of the base class) holding `items`.
    fn new_from_items(py: Python<'_>, items: &Items) -> PyResult<ThreadSafeDict> {
        let d = Self::new_owner();
        let pairs = items
            .0
            .iter()
            .map(|(k, v)| Ok((HKey::new(k.bind(py))?, v.bind(py).clone())))
            .collect::<PyResult<Vec<_>>>()?;
        d.core.apply_batch(py, &pairs)?;
        Ok(d)
    }

    /// `dict.__getitem__`'s miss: a subclass's `__missing__(key)`, else `KeyError`.
    fn missing(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !is_exact(slf) {
            if let Some(m) = lookup_special(slf.as_any(), intern!(slf.py(), "__missing__"))? {
                return Ok(pycall::call1(&m, key)?.unbind());
            }
        }
        Err(key_error(key))
    }
}

#[pymethods]
impl ThreadSafeDict {
    /// An empty dict; `__init__` fills it (as `dict.__new__` ignores its arguments, so that a
    /// subclass's `__init__` may take its own).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        shared::adopted::<Self>().unwrap_or_else(Self::new_owner)
    }

    /// `dict.__init__`: add the pairs of a mapping or iterable of pairs and of the keywords (on an
    /// existing dict too, where it updates, atomically).
    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let arg = at_most_one("ThreadSafeDict", args)?;
        self.update_from(py, arg, kwargs)
    }

    /// A per-thread view sharing this dict's table (of the same class).
    fn local<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        shared::local(slf)
    }

    fn __getitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        match slf.get().core.get(&k)? {
            Some(v) => Ok(v),
            None => Self::missing(slf, key),
        }
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.check()?;
        let k = HKey::new(key)?;
        self.core.set(&k, value)
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.check()?;
        let k = HKey::new(key)?;
        match self.core.take(&k, |_| true)? {
            Some(v) => {
                pycall::release(key.py(), v);
                Ok(())
            }
            None => Err(key_error(key)),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = HKey::new(key)?;
        self.core.contains(&k)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.core.len(py)
    }

    fn __bool__(&self, py: Python<'_>) -> bool {
        self.core.len(py) > 0
    }

    /// Iterate over a snapshot of the keys taken now: never raises because of concurrent writes.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys_list(py, false)?
            .into_any()
            .try_iter()
            .map(Bound::into_any)
    }

    fn __reversed__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys_list(py, true)?
            .into_any()
            .try_iter()
            .map(Bound::into_any)
    }

    #[pyo3(signature = (key, default = None, /))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        Ok(self
            .core
            .get(&k)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    /// Insert `key` with `default` if absent (atomically); return the value now stored.
    #[pyo3(signature = (key, default = None, /))]
    fn setdefault(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.core.check()?;
        let k = HKey::new(key)?;
        let none = py.None().into_bound(py);
        self.core.setdefault(&k, default.unwrap_or(&none))
    }

    #[pyo3(signature = (key, /, *default))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len().saturating_add(1)
            )));
        }
        self.core.check()?;
        let k = HKey::new(key)?;
        match self.core.take(&k, |_| true)? {
            Some(v) => Ok(v),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(key_error(key)),
        }
    }

    /// Remove and return the most recently inserted (key, value) pair, like `dict` (O(n)).
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.core.check()?;
        match self.core.popitem(py) {
            Some((k, v)) => PyTuple::new(py, [k, v]),
            None => Err(PyKeyError::new_err("popitem(): dictionary is empty")),
        }
    }

    /// Like `dict.update`, but atomic: either every pair is applied or (on error) none is, and
    /// no reader sees a part of it.
    #[pyo3(signature = (*args, **kwargs))]
    fn update(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let arg = at_most_one("update", args)?;
        self.update_from(py, arg, kwargs)
    }

    /// Apply every pair of `mapping` (anything `dict()` accepts) atomically.
    fn update_many(&self, py: Python<'_>, mapping: &Bound<'_, PyAny>) -> PyResult<()> {
        self.update_from(py, Some(mapping.as_borrowed()), None)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.core.check()?;
        self.core.clear(py);
        Ok(())
    }

    /// A shallow copy taken atomically: a new, independent `ThreadSafeDict` (of the base class
    /// for a subclass instance, as `dict.copy` gives a `dict`).
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        Self::new_from_items(py, &self.core.items(py))
    }

    /// `copy.copy`: a new, independent dict of the same class with the same instance attributes
    /// (what `copy.copy` gives for a `dict` subclass); for a view, a copy of what it sees.
    fn __copy__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let fresh = Self::new_from_items(py, &slf.get().core.items(py))?;
        let cls = slf.get_type();
        let new = shared::instantiate(&cls, fresh)?;
        if !is_exact(slf) {
            if let Ok(attrs) = slf.getattr(intern!(py, "__dict__")) {
                if let Ok(attrs) = attrs.cast::<PyDict>() {
                    new.getattr(intern!(py, "__dict__"))?
                        .cast::<PyDict>()?
                        .update(attrs.as_mapping())?;
                }
            }
        }
        Ok(new)
    }

    /// A plain `dict` copy taken atomically.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.snapshot_dict(py)
    }

    /// The keys of a snapshot taken now (a `dict_keys` of a private copy: set operations work).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0(intern!(py, "keys"))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0(intern!(py, "values"))
    }

    #[pyo3(name = "items")]
    fn items_view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0(intern!(py, "items"))
    }

    /// `dict.fromkeys`: an instance of `cls` (built by `cls()`) mapping each key to `value`;
    /// for a subclass, each pair is set with `__setitem__`, as for `dict` subclasses.
    #[classmethod]
    #[pyo3(signature = (iterable, value = None, /))]
    fn fromkeys<'py>(
        cls: &Bound<'py, PyType>,
        iterable: &Bound<'py, PyAny>,
        value: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        let value = value.cloned().unwrap_or_else(|| py.None().into_bound(py));
        if cls.is(ThreadSafeDict::type_object(py)) {
            let keys = py.get_type::<PyDict>().getattr(intern!(py, "fromkeys"))?;
            let plain = pycall::call(&keys, (iterable, &value))?;
            let d = Self::new_owner();
            d.update_from(py, Some(plain.as_borrowed()), None)?;
            return Ok(Bound::new(py, d)?.into_any());
        }
        let d = pycall::call0(cls)?;
        let set = d.getattr(intern!(py, "__setitem__"))?;
        for key in iterable.try_iter()? {
            pycall::call(&set, (key?, &value))?;
        }
        Ok(d)
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyGenericAlias>> {
        shared::class_getitem(cls, item)
    }

    /// `ThreadSafeDict({...})` (the class's own name for a subclass): unlike `dict`'s bare
    /// `{...}`, so that logs tell the two apart.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let name = slf.get_type().name()?;
        // SAFETY: slf is live; ReprEnter/Leave are paired below.
        let busy = unsafe { ffi::Py_ReprEnter(slf.as_ptr()) };
        if busy != 0 {
            return if busy > 0 {
                Ok(format!("{name}({{...}})"))
            } else {
                Err(PyErr::fetch(py))
            };
        }
        let r = slf
            .get()
            .snapshot_dict(py)
            .and_then(|d| py_repr(d.as_any()));
        // SAFETY: paired with the Py_ReprEnter above on the same live object.
        unsafe { ffi::Py_ReprLeave(slf.as_ptr()) };
        Ok(format!("{name}({})", r?))
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let eq = match op {
            CompareOp::Eq | CompareOp::Ne => {
                if !Self::is_mapping(other)? {
                    return Ok(py.NotImplemented());
                }
                let mine = self.snapshot_dict(py)?;
                let theirs: Bound<'_, PyAny> = if let Ok(t) = other.cast::<ThreadSafeDict>() {
                    t.get().snapshot_dict(py)?.into_any()
                } else if other.is_instance_of::<PyDict>() {
                    other.clone()
                } else {
                    let items = pycall::call0(&other.getattr(intern!(py, "items"))?)?;
                    PyDict::from_sequence(&items)?.into_any()
                };
                pycall::compare(mine.as_any(), &theirs, ffi::Py_EQ)?
            }
            _ => return Ok(py.NotImplemented()),
        };
        let r = if matches!(op, CompareOp::Eq) { eq } else { !eq };
        Ok(r.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    /// `self | other`: a new `ThreadSafeDict` (the base class, as `dict | dict` gives a `dict`).
    fn __or__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !Self::is_mapping(other)? {
            return Ok(py.NotImplemented());
        }
        let new = self.copy(py)?;
        new.update_from(py, Some(other.as_borrowed()), None)?;
        Ok(Py::new(py, new)?.into_any())
    }

    fn __ror__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !Self::is_mapping(other)? {
            return Ok(py.NotImplemented());
        }
        let new = Self::new_owner();
        new.update_from(py, Some(other.as_borrowed()), None)?;
        let mine = self
            .core
            .items(py)
            .0
            .iter()
            .map(|(k, v)| Ok((HKey::new(k.bind(py))?, v.bind(py).clone())))
            .collect::<PyResult<Vec<_>>>()?;
        new.core.apply_batch(py, &mine)?;
        Ok(Py::new(py, new)?.into_any())
    }

    fn __ior__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.update_from(py, Some(other.as_borrowed()), None)
    }

    /// Pickle/copy support. A view reduces to its owner's view (`shared::reduce_view`). An owner
    /// reduces to `cls.__new__(cls)`, its instance state (a subclass's attributes) and its items,
    /// set after the object exists, so cycles work.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        if let Some(r) = shared::reduce_view(slf)? {
            return Ok(r);
        }
        let py = slf.py();
        let newobj = NEWOBJ.import(py, "copyreg", "__newobj__")?;
        let state = if is_exact(slf) {
            py.None().into_bound(py)
        } else if let Some(get) = slf.getattr_opt(intern!(py, "__getstate__"))? {
            pycall::call0(&get)?
        } else {
            match slf.getattr_opt(intern!(py, "__dict__"))? {
                Some(d) if d.is_truthy()? => d,
                _ => py.None().into_bound(py),
            }
        };
        let items = slf
            .get()
            .snapshot_dict(py)?
            .call_method0(intern!(py, "items"))?
            .try_iter()?;
        PyTuple::new(
            py,
            [
                newobj.clone().into_any(),
                PyTuple::new(py, [slf.get_type()])?.into_any(),
                state,
                py.None().into_bound(py),
                items.into_any(),
            ],
        )
    }

    /// Return `key`'s value, inserting `factory()` first if the key is absent.
    ///
    /// `factory` runs with no lock held, once per successful insert: concurrent callers for the
    /// same key wait (up to `timeout` seconds, then `LockTimeoutError`) for the one running
    /// factory and all return its value. If it raises, the error propagates to its caller and
    /// one of the waiters runs its own factory.
    #[pyo3(signature = (key, factory, *, timeout = None))]
    fn get_or_insert_with(
        &self,
        key: &Bound<'_, PyAny>,
        factory: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        self.core.check()?;
        let deadline = sync::deadline(timeout)?;
        let k = HKey::new(key)?;
        self.core.get_or_insert_with(&k, factory, deadline, timeout)
    }

    /// Atomically replace `key`'s value with `fn(value)` (`fn(nogilsafe.MISSING)` when absent)
    /// and return it. `fn` runs with no lock held and reruns if the entry changed meanwhile;
    /// returning `nogilsafe.DELETE` removes the key (the call then returns None).
    fn compute(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        let missing = missing_obj(py)?.clone().into_any();
        let r = self.core.compute_with(&k, |cur| {
            let arg = cur.unwrap_or(&missing);
            outcome_of(py, pycall::call1(r#fn, arg)?)
        })?;
        Ok(r.unwrap_or_else(|| py.None()))
    }

    /// Atomically replace `key`'s value with `fn(value)`; an absent key uses `default` (or
    /// raises KeyError without one). Returning `nogilsafe.DELETE` removes the key.
    #[pyo3(signature = (key, r#fn, default = Given::Absent))]
    fn update_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
        default: Given<'_>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        let missing = missing_obj(py)?;
        let default = match &default {
            Given::Yes(d) if !d.is(missing) => Some(d),
            _ => None,
        };
        let mut absent = false;
        let r = self.core.compute_with(&k, |cur| {
            let arg = match (cur, default) {
                (Some(v), _) => v,
                (None, Some(d)) => d,
                (None, None) => {
                    absent = true;
                    return Ok(Outcome::Delete);
                }
            };
            absent = false;
            outcome_of(py, pycall::call1(r#fn, arg)?)
        })?;
        if absent {
            return Err(key_error(key));
        }
        Ok(r.unwrap_or_else(|| py.None()))
    }

    /// Set `key` to `new` only if its current value is `expected`: the same object, or an equal
    /// plain value (int/float/str/bytes/bool/None/tuples of those, compared in C). A Python
    /// `__eq__` is never called. Returns whether it stored.
    fn compare_and_set(
        &self,
        key: &Bound<'_, PyAny>,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.core.check()?;
        let k = HKey::new(key)?;
        self.core.compare_and_set(&k, expected, new)
    }

    /// Remove `key` only if its value is `expected` (same rule as `compare_and_set`).
    fn pop_if(&self, key: &Bound<'_, PyAny>, expected: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.core.check()?;
        let k = HKey::new(key)?;
        Ok(match self.core.take(&k, |v| same_value(v, expected))? {
            Some(v) => {
                pycall::release(key.py(), v);
                true
            }
            None => false,
        })
    }

    /// Store `value` and return the previous value (`default` if the key was absent).
    #[pyo3(signature = (key, value, default = None))]
    fn swap(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.core.check()?;
        let k = HKey::new(key)?;
        Ok(self
            .core
            .swap(&k, value)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    /// Add `delta` to `key`'s value (`default` when absent) and return the result. Exact ints
    /// that fit 64 bits are added in Rust under the shard lock; anything else falls back to
    /// `value + delta` run optimistically with no lock held.
    #[pyo3(signature = (key, delta = Given::Absent, default = Given::Absent))]
    fn increment(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        delta: Given<'_>,
        default: Given<'_>,
    ) -> PyResult<Py<PyAny>> {
        self.core.check()?;
        let k = HKey::new(key)?;
        let delta = match delta {
            Given::Yes(d) => d,
            Given::Absent => 1i64.into_pyobject(py)?.into_any(),
        };
        let default = match default {
            Given::Yes(d) => d,
            Given::Absent => 0i64.into_pyobject(py)?.into_any(),
        };
        if let Some(d) = small_int(&delta) {
            if let Some(v) = self.core.increment_i64(&k, d, &default)? {
                return Ok(v);
            }
        }
        let add = ADD.import(py, "operator", "add")?;
        let r = self.core.compute_with(&k, |cur| {
            let base = cur.unwrap_or(&default);
            Ok(Outcome::Store(pycall::call(add, (base, &delta))?.unbind()))
        })?;
        // `compute_with` returns what the step stored, and this step always stores.
        Ok(r.unwrap_or_else(|| py.None()))
    }

    /// How many times an optimistic operation reran its function because of a concurrent write.
    #[getter]
    fn compute_retries(&self) -> u64 {
        self.core.retries.load(Ordering::Relaxed)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only the owner reports the entries, once; a view reports its owner (see `shared`).
        // Never block here: a lock's holder may be waiting for this very collection.
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        for s in self.core.shards.iter() {
            let Some(g) = s.0.try_read() else { continue };
            for e in g.table.iter() {
                visit.call(&e.key)?;
                visit.call(&e.value)?;
            }
            for p in &g.pending {
                visit.call(&p.key)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Views are never cleared: their owner breaks the cycle by clearing the entries.
        if self.owner.is_some() {
            return;
        }
        let mut refs: Vec<Py<PyAny>> = Vec::new();
        for s in self.core.shards.iter() {
            if let Some(mut g) = s.0.try_write() {
                g.stamp += 1;
                for e in g.table.drain() {
                    refs.push(e.key);
                    refs.push(e.value);
                }
            }
        }
        // Every guard is gone: `__del__` may run now.
        if !refs.is_empty() {
            Python::attach(|py| pycall::release_all(py, refs));
        }
    }
}
