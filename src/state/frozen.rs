//! Values as a `ThreadSafeState` stores them: an immutable Rust tree of plain data.
//!
//! Freezing (on write) copies exact builtin containers into Rust slices and keeps deeply
//! immutable builtins — None, bool, int, float, complex, str, bytes, and tuples and frozensets
//! made only of those — as the Python objects themselves: they cannot change, so sharing them is
//! safe, and it is what `copy.deepcopy` does with them too. Thawing (on read) rebuilds fresh
//! Python containers, so a caller mutating what `get` returned never touches the stored value.
//!
//! The result must be what `copy.deepcopy` would give, aliasing included. Plain containers are
//! rebuilt one by one on each read, which is only right when no container occurs twice in the
//! value (`[x, x]`, a cycle) and nothing else could refer back into it. So a value holding a
//! shared container, a cycle, or any other object (subclasses, dataclasses, user objects) is
//! stored as one `copy.deepcopy` of the whole and deep-copied again on every read (`Deep`), which
//! keeps every alias; under `isolation="reference"` a value is kept as is (`Ref`).
//!
//! Freezing and thawing run Python code (`deepcopy`) and so never run under the state's writer
//! lock. Python references inside a `Frozen` that may own arbitrary objects are `SafeRef`s:
//! whoever drops the last one releases it through `pycall` (see `safe_ref`).
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet,
    PyString, PyTuple,
};

use crate::pycall;
use crate::safe_ref::SafeRef;

/// How a state stores values it is given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isolation {
    /// Plain data frozen into `Frozen`, anything else deep-copied (the default).
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

pub enum Frozen {
    /// A deeply immutable builtin (a scalar, or a tuple or frozenset of such): shared, never
    /// copied. Its deallocation runs no Python code, so a plain `Py` is enough.
    Atom(Py<PyAny>),
    List(Box<[Frozen]>),
    /// A tuple holding a mutable container somewhere (others are atoms).
    Tuple(Box<[Frozen]>),
    /// Insertion order kept, as a dict keeps it. Keys are always atoms.
    Dict(Box<[(Frozen, Frozen)]>),
    /// Items are always atoms.
    Set(Box<[Frozen]>),
    ByteArray(Box<[u8]>),
    /// A private deep copy of the whole value, deep-copied again on each read.
    Deep(SafeRef),
    /// Stored by reference (`isolation="reference"`).
    Ref(SafeRef),
}

/// Deeper than this is rejected: freezing and thawing recurse.
const MAX_DEPTH: usize = 500;
/// How deep `immutable` looks into nested tuples before giving up (the value is then frozen
/// container by container instead, which is just as correct).
const MAX_ATOM_DEPTH: usize = 32;

static DEEPCOPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub fn deepcopy<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let f = DEEPCOPY.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("copy")?.getattr("deepcopy")?.unbind())
    })?;
    pycall::call1(f.bind(py), obj)
}

enum FreezeErr {
    /// Not plain data without aliasing: the caller stores a `deepcopy` of the whole value.
    NotPlain,
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
        Isolation::Reference => Frozen::Ref(SafeRef::new(obj.clone().unbind())),
        Isolation::DeepCopy => Frozen::Deep(SafeRef::new(deepcopy(obj)?.unbind())),
        Isolation::Freeze => {
            if is_atom(obj) {
                return Ok(Arc::new(Frozen::Atom(obj.clone().unbind())));
            }
            match Freezer::default().freeze(obj.clone()) {
                Ok(f) => f,
                Err(FreezeErr::NotPlain) => Frozen::Deep(SafeRef::new(deepcopy(obj)?.unbind())),
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

/// Whether `obj` is deeply immutable: an atom, or an exact tuple or frozenset of such. Runs no
/// Python code.
fn immutable(obj: &Bound<'_, PyAny>, depth: usize) -> bool {
    if is_atom(obj) {
        return true;
    }
    if depth >= MAX_ATOM_DEPTH {
        return false;
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return t.as_slice().iter().all(|o| immutable(o, depth + 1));
    }
    if let Ok(s) = obj.cast_exact::<PyFrozenSet>() {
        return s.iter().all(|o| immutable(&o, depth + 1));
    }
    false
}

/// Addresses are multiples of 16: spread them before hashbrown takes buckets from the low bits.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
        self.0 = crate::key::scramble(self.0 as isize);
    }
    fn write_usize(&mut self, addr: usize) {
        self.0 = crate::key::scramble(addr as isize);
    }
}

/// One freezing pass over a value.
#[derive(Default)]
struct Freezer {
    /// Every container met so far, by address: meeting one again means the value shares it (or
    /// contains itself), which rebuilt containers would not reproduce.
    seen: hashbrown::HashSet<usize, BuildHasherDefault<AddrHasher>>,
    depth: usize,
}

impl Freezer {
    /// Takes `obj` by value so an atom moves into its `Frozen` without touching its reference
    /// count.
    fn freeze(&mut self, obj: Bound<'_, PyAny>) -> Result<Frozen, FreezeErr> {
        if is_atom(&obj) {
            return Ok(Frozen::Atom(obj.unbind()));
        }
        let mutable_container = obj.is_exact_instance_of::<PyList>()
            || obj.is_exact_instance_of::<PyDict>()
            || obj.is_exact_instance_of::<PySet>()
            || obj.is_exact_instance_of::<PyByteArray>();
        if !mutable_container {
            if !obj.is_exact_instance_of::<PyTuple>() && !obj.is_exact_instance_of::<PyFrozenSet>()
            {
                return Err(FreezeErr::NotPlain);
            }
            if immutable(&obj, 0) {
                return Ok(Frozen::Atom(obj.unbind()));
            }
            // A frozenset's items are hashable: not all immutable means some other object.
            if obj.is_exact_instance_of::<PyFrozenSet>() {
                return Err(FreezeErr::NotPlain);
            }
        }
        if !self.seen.insert(obj.as_ptr() as usize) {
            return Err(FreezeErr::NotPlain);
        }
        if self.depth >= MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "value is nested more than {MAX_DEPTH} levels deep"
            ))
            .into());
        }
        self.depth += 1;
        let result = self.container(&obj);
        self.depth -= 1;
        result
    }

    fn container(&mut self, obj: &Bound<'_, PyAny>) -> Result<Frozen, FreezeErr> {
        let py = obj.py();
        if let Ok(l) = obj.cast::<PyList>() {
            let mut items = with_critical_section(l, || {
                let n = l.len();
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    // SAFETY: `i < len`, and the critical section keeps the list from shrinking.
                    let item = unsafe { ffi::PyList_GET_ITEM(l.as_ptr(), i as ffi::Py_ssize_t) };
                    // SAFETY: a borrowed reference the list holds; it is increfed at once.
                    out.push(shallow(unsafe { Bound::from_borrowed_ptr(py, item) }));
                }
                out
            });
            self.finish(py, &mut items)?;
            return Ok(Frozen::List(items.into_boxed_slice()));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let mut items: Vec<Frozen> = t.as_slice().iter().map(|o| shallow(o.clone())).collect();
            self.finish(py, &mut items)?;
            return Ok(Frozen::Tuple(items.into_boxed_slice()));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let mut pairs = with_critical_section(d, || {
                let mut out = Vec::with_capacity(d.len());
                for_each_item(d, |k, v| out.push((shallow(k), shallow(v))));
                out
            });
            for (k, v) in pairs.iter_mut() {
                hashed(py, k)?;
                self.finish(py, std::slice::from_mut(v))?;
            }
            return Ok(Frozen::Dict(pairs.into_boxed_slice()));
        }
        if let Ok(s) = obj.cast::<PySet>() {
            let mut items: Vec<Frozen> = s.iter().map(shallow).collect();
            for item in items.iter_mut() {
                hashed(py, item)?;
            }
            return Ok(Frozen::Set(items.into_boxed_slice()));
        }
        let b = obj.cast::<PyByteArray>().map_err(PyErr::from)?;
        Ok(Frozen::ByteArray(b.to_vec().into_boxed_slice()))
    }

    /// Second pass over a container's items: freeze what `shallow` parked (after the container's
    /// critical section, as this may meet any object).
    fn finish(&mut self, py: Python<'_>, items: &mut [Frozen]) -> Result<(), FreezeErr> {
        for item in items.iter_mut() {
            if let Frozen::Ref(_) = item {
                let Frozen::Ref(obj) = std::mem::replace(item, Frozen::ByteArray(Box::default()))
                else {
                    unreachable!("matched above")
                };
                *item = self.freeze(obj.into_inner().into_bound(py))?;
            }
        }
        Ok(())
    }
}

/// A dict key or set item `shallow` parked: an immutable one becomes an atom; anything else
/// hashable is some other object.
fn hashed(py: Python<'_>, item: &mut Frozen) -> Result<(), FreezeErr> {
    if let Frozen::Ref(obj) = item {
        if !immutable(obj.bind(py), 0) {
            return Err(FreezeErr::NotPlain);
        }
        let Frozen::Ref(obj) = std::mem::replace(item, Frozen::ByteArray(Box::default())) else {
            unreachable!("matched above")
        };
        *item = Frozen::Atom(obj.into_inner());
    }
    Ok(())
}

/// First pass over a container's items, inside its critical section where no Python code may
/// run: atoms are final; anything else is parked as `Ref` for the second pass. Copying straight
/// into the result spares a temporary vector and a reference-count round trip per item — on
/// 3.13t, together, about a third of the cost of freezing a small dict.
fn shallow(obj: Bound<'_, PyAny>) -> Frozen {
    if is_atom(&obj) {
        Frozen::Atom(obj.unbind())
    } else {
        Frozen::Ref(SafeRef::new(obj.unbind()))
    }
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
        Frozen::Atom(o) => o.bind(py).clone(),
        Frozen::Ref(o) => o.bind(py).clone(),
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
        Frozen::ByteArray(b) => PyByteArray::new(py, b).into_any(),
    })
}

fn thaw_all<'py>(py: Python<'py>, items: &[Frozen]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    items.iter().map(|f| thaw(py, f)).collect()
}
