//! Values as a `ThreadSafeState` stores them: an immutable Rust tree of plain data.
//!
//! Freezing (on write) copies exact builtin containers into Rust slices and keeps exact
//! immutable scalars (None, bool, int, float, complex, str, bytes) as the Python objects
//! themselves: they cannot change, so sharing them is safe and rebuilding them would only cost
//! time. Thawing (on read) rebuilds fresh Python containers, so a caller mutating what `get`
//! returned never touches the stored value. Anything else — subclasses, dataclasses, user
//! objects — is stored as a `copy.deepcopy` and deep-copied again on every read (`Deep`), or
//! kept as is (`Ref`) under `isolation="reference"`.
//!
//! Freezing and thawing run Python code (`deepcopy`, dict iteration) and so never run under the
//! state's writer lock. Dropping a `Frozen` can drop the last reference of a `Deep`/`Ref`
//! object (its `__del__` runs), so the state moves removed values out of its critical sections.
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet,
    PyString, PyTuple,
};

/// How a state stores values it is given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isolation {
    /// Plain data frozen into `Frozen`, other objects deep-copied (the default).
    Freeze,
    /// Every value deep-copied on write and on read (the seeds' behaviour).
    DeepCopy,
    /// Every value stored by reference: the caller promises not to mutate it.
    Reference,
}

impl Isolation {
    pub fn parse(s: &str) -> PyResult<Self> {
        match s {
            "freeze" => Ok(Isolation::Freeze),
            "deepcopy" => Ok(Isolation::DeepCopy),
            "reference" => Ok(Isolation::Reference),
            other => Err(PyValueError::new_err(format!(
                "isolation must be 'freeze', 'deepcopy' or 'reference', not {other:?}"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Freeze => "freeze",
            Isolation::DeepCopy => "deepcopy",
            Isolation::Reference => "reference",
        }
    }
}

// `FrozenSet` names Python's `frozenset`, not a kind of `Frozen`.
#[allow(clippy::enum_variant_names)]
pub enum Frozen {
    /// An exact immutable builtin scalar: shared, never copied.
    Atom(Py<PyAny>),
    List(Box<[Frozen]>),
    Tuple(Box<[Frozen]>),
    /// Insertion order kept, as a dict keeps it.
    Dict(Box<[(Frozen, Frozen)]>),
    Set(Box<[Frozen]>),
    FrozenSet(Box<[Frozen]>),
    ByteArray(Box<[u8]>),
    /// A private deep copy, deep-copied again on each read.
    Deep(Py<PyAny>),
    /// Stored by reference (`isolation="reference"`).
    Ref(Py<PyAny>),
}

/// Deeper than this is rejected: freezing and thawing recurse.
const MAX_DEPTH: usize = 500;

static DEEPCOPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub fn deepcopy<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let f = DEEPCOPY.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("copy")?.getattr("deepcopy")?.unbind())
    })?;
    f.bind(py).call1((obj,))
}

enum FreezeErr {
    /// The value contains itself: the caller falls back to `deepcopy`, which handles cycles.
    Cycle,
    /// Boxed: keeping the error small keeps every `Result<Frozen, _>` the recursion moves small.
    Py(Box<PyErr>),
}

impl From<PyErr> for FreezeErr {
    fn from(e: PyErr) -> Self {
        FreezeErr::Py(Box::new(e))
    }
}

pub fn freeze(obj: &Bound<'_, PyAny>, isolation: Isolation) -> PyResult<Arc<Frozen>> {
    let frozen = match isolation {
        Isolation::Reference => Frozen::Ref(obj.clone().unbind()),
        Isolation::DeepCopy => Frozen::Deep(deepcopy(obj)?.unbind()),
        Isolation::Freeze => {
            if is_atom(obj) {
                return Ok(Arc::new(Frozen::Atom(obj.clone().unbind())));
            }
            let mut path = Vec::with_capacity(8);
            match freeze_plain(obj.clone(), &mut path) {
                Ok(f) => f,
                Err(FreezeErr::Cycle) => Frozen::Deep(deepcopy(obj)?.unbind()),
                Err(FreezeErr::Py(e)) => return Err(*e),
            }
        }
    };
    Ok(Arc::new(frozen))
}

fn is_atom(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_none()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyComplex>()
}

/// `path` holds the containers being frozen above `obj`: meeting one again is a cycle. Takes
/// `obj` by value so an atom moves into its `Frozen` without touching its reference count.
fn freeze_plain(obj: Bound<'_, PyAny>, path: &mut Vec<usize>) -> Result<Frozen, FreezeErr> {
    if is_atom(&obj) {
        return Ok(Frozen::Atom(obj.unbind()));
    }
    let is_container = obj.is_exact_instance_of::<PyList>()
        || obj.is_exact_instance_of::<PyTuple>()
        || obj.is_exact_instance_of::<PyDict>()
        || obj.is_exact_instance_of::<PySet>()
        || obj.is_exact_instance_of::<PyFrozenSet>();
    if obj.is_exact_instance_of::<PyByteArray>() {
        let b = obj.cast::<PyByteArray>().map_err(PyErr::from)?;
        return Ok(Frozen::ByteArray(b.to_vec().into_boxed_slice()));
    }
    if !is_container {
        return Ok(Frozen::Deep(deepcopy(&obj)?.unbind()));
    }
    let addr = obj.as_ptr() as usize;
    if path.contains(&addr) {
        return Err(FreezeErr::Cycle);
    }
    if path.len() >= MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "value is nested more than {MAX_DEPTH} levels deep"
        ))
        .into());
    }
    path.push(addr);
    let result = freeze_container(&obj, path);
    path.pop();
    result
}

/// Freeze `items` (each first made `shallow`) as a container's children.
fn freeze_items(
    py: Python<'_>,
    mut items: Vec<Frozen>,
    path: &mut Vec<usize>,
) -> Result<Box<[Frozen]>, FreezeErr> {
    finish(py, &mut items, path)?;
    Ok(items.into_boxed_slice())
}

fn freeze_container(obj: &Bound<'_, PyAny>, path: &mut Vec<usize>) -> Result<Frozen, FreezeErr> {
    let py = obj.py();
    if let Ok(l) = obj.cast::<PyList>() {
        let items = with_critical_section(l, || {
            let n = l.len();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                // SAFETY: `i < len`, and the critical section keeps the list from shrinking.
                let item = unsafe { ffi::PyList_GET_ITEM(l.as_ptr(), i as ffi::Py_ssize_t) };
                // SAFETY: `item` is a borrowed reference the list holds; it is increfed at once.
                out.push(shallow(unsafe { Bound::from_borrowed_ptr(py, item) }));
            }
            out
        });
        return Ok(Frozen::List(freeze_items(py, items, path)?));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let items = t.as_slice().iter().map(|o| shallow(o.clone())).collect();
        return Ok(Frozen::Tuple(freeze_items(py, items, path)?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut pairs = with_critical_section(d, || {
            let mut out = Vec::with_capacity(d.len());
            for_each_item(d, |k, v| out.push((shallow(k), shallow(v))));
            out
        });
        for (k, v) in pairs.iter_mut() {
            finish(py, std::slice::from_mut(k), path)?;
            finish(py, std::slice::from_mut(v), path)?;
        }
        return Ok(Frozen::Dict(pairs.into_boxed_slice()));
    }
    if let Ok(s) = obj.cast::<PySet>() {
        let items = s.iter().map(shallow).collect();
        return Ok(Frozen::Set(freeze_items(py, items, path)?));
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        let items = s.iter().map(shallow).collect();
        return Ok(Frozen::FrozenSet(freeze_items(py, items, path)?));
    }
    Err(PyTypeError::new_err("unreachable: not a container").into())
}

/// First pass over a container's items, inside its critical section where no Python code may
/// run: atoms are final; anything else is parked as `Ref` for `finish` to freeze afterwards.
/// Copying straight into the result spares a temporary vector and a reference-count round trip
/// per item — on 3.13t, together, about a third of the cost of freezing a small dict.
fn shallow(obj: Bound<'_, PyAny>) -> Frozen {
    if is_atom(&obj) {
        Frozen::Atom(obj.unbind())
    } else {
        Frozen::Ref(obj.unbind())
    }
}

/// Second pass: freeze what `shallow` parked (this may run Python code, e.g. `deepcopy`).
fn finish(py: Python<'_>, items: &mut [Frozen], path: &mut Vec<usize>) -> Result<(), FreezeErr> {
    for item in items.iter_mut() {
        if let Frozen::Ref(_) = item {
            let Frozen::Ref(obj) = std::mem::replace(item, Frozen::ByteArray(Box::default()))
            else {
                unreachable!()
            };
            *item = freeze_plain(obj.into_bound(py), path)?;
        }
    }
    Ok(())
}

/// Call `f` on each item of `d`. The caller holds `d`'s critical section, and `f` must not run
/// Python code.
fn for_each_item<'py>(
    d: &Bound<'py, PyDict>,
    mut f: impl FnMut(Bound<'py, PyAny>, Bound<'py, PyAny>),
) {
    let py = d.py();
    let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the critical section keeps the dict from changing under PyDict_Next, and the
    // borrowed key and value are increfed before it ends.
    while unsafe { ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut k, &mut v) } != 0 {
        // SAFETY: PyDict_Next hands out borrowed references the dict holds; both are increfed at once.
        f(unsafe { Bound::from_borrowed_ptr(py, k) }, unsafe {
            Bound::from_borrowed_ptr(py, v)
        });
    }
}

/// A dict's items, copied in one critical section: consistent even while another thread writes
/// to the dict, and cheaper than PyO3's iterator, which enters a critical section per item.
/// (Not PyO3's `locked_for_each`: it nests the per-item sections inside its own, and 3.13t
/// re-acquires a mutex its thread already holds by parking — 24 ms for a 100-item dict.)
pub fn dict_items<'py>(d: &Bound<'py, PyDict>) -> Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    with_critical_section(d, || {
        let mut out = Vec::with_capacity(d.len());
        for_each_item(d, |k, v| out.push((k, v)));
        out
    })
}

pub fn thaw<'py>(py: Python<'py>, f: &Frozen) -> PyResult<Bound<'py, PyAny>> {
    Ok(match f {
        Frozen::Atom(o) | Frozen::Ref(o) => o.bind(py).clone(),
        Frozen::Deep(o) => deepcopy(o.bind(py))?,
        Frozen::List(items) => {
            let v = thaw_all(py, items)?;
            PyList::new(py, v)?.into_any()
        }
        Frozen::Tuple(items) => {
            let v = thaw_all(py, items)?;
            PyTuple::new(py, v)?.into_any()
        }
        Frozen::Dict(pairs) => {
            let d = PyDict::new(py);
            for (k, v) in pairs.iter() {
                d.set_item(thaw(py, k)?, thaw(py, v)?)?;
            }
            d.into_any()
        }
        Frozen::Set(items) => {
            let v = thaw_all(py, items)?;
            PySet::new(py, v)?.into_any()
        }
        Frozen::FrozenSet(items) => {
            let v = thaw_all(py, items)?;
            PyFrozenSet::new(py, v)?.into_any()
        }
        Frozen::ByteArray(b) => PyByteArray::new(py, b).into_any(),
    })
}

fn thaw_all<'py>(py: Python<'py>, items: &[Frozen]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    items.iter().map(|f| thaw(py, f)).collect()
}
