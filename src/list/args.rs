//! Arguments converted the way `list` converts them — subscripts, integers, iterables — before
//! any lock is taken, with `list`'s exceptions. Python code they may run (`__index__`, a user
//! iterator) runs through `pycall`. Sizes and indices from the user only reach arithmetic that
//! cannot overflow, and never size an allocation by themselves (`__length_hint__` is left to
//! `list`, which turns an absurd one into `MemoryError`).
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyList, PySlice, PyTuple};

use super::api::ThreadSafeList;
use super::storage::Refs;
use crate::pycall;

pub(super) enum Index {
    At(isize),
    Slice(isize, isize, isize),
}

/// Whether `obj` can be used as an integer (`__index__`), as `PyIndex_Check` says.
fn has_index(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a live object; a type slot check only.
    unsafe { ffi::PyIndex_Check(obj.as_ptr()) != 0 }
}

/// `operator.index(obj)`: `obj` itself for an `int` (as `PyNumber_Index` does, subclasses
/// included — no Python code), else through `pycall`, since `__index__` is Python code. Raises
/// `TypeError` ("... cannot be interpreted as an integer") for objects without `__index__`.
fn as_int<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if obj.is_instance_of::<PyInt>() {
        return Ok(obj.clone());
    }
    static INDEX: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    pycall::call1(builtin(obj.py(), &INDEX, "operator", "index")?, obj)
}

fn fetch_if_set(py: Python<'_>) -> PyResult<()> {
    match PyErr::take(py) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `PyNumber_AsSsize_t(orig, overflow)` for `int`, `orig`'s `__index__()` (no Python code
/// runs here): values out of range are clamped if `overflow` is `None`, else raise it with
/// `PyNumber_AsSsize_t`'s message, which names `orig`'s type.
fn int_to_isize(
    orig: &Bound<'_, PyAny>,
    int: &Bound<'_, PyAny>,
    overflow: Option<fn(String) -> PyErr>,
) -> PyResult<isize> {
    let py = int.py();
    // SAFETY: `int` is a live int (as_int), so no `__index__` runs and out-of-range values are
    // clamped, not errors.
    let clamped = unsafe { ffi::PyNumber_AsSsize_t(int.as_ptr(), std::ptr::null_mut()) };
    if clamped == -1 {
        fetch_if_set(py)?;
    }
    let Some(overflow) = overflow else {
        return Ok(clamped);
    };
    if clamped == isize::MIN || clamped == isize::MAX {
        // SAFETY: as above; an error here can only be the overflow, taken below.
        let exact = unsafe { ffi::PyLong_AsSsize_t(int.as_ptr()) };
        if exact == -1 && PyErr::take(py).is_some() {
            return Err(overflow(format!(
                "cannot fit '{}' into an index-sized integer",
                orig.get_type().name()?
            )));
        }
    }
    Ok(clamped)
}

/// Convert a subscript like `list` does.
pub(super) fn to_index(obj: &Bound<'_, PyAny>) -> PyResult<Index> {
    let py = obj.py();
    if obj.is_instance_of::<PyInt>() {
        // The common case, without a new reference: an int runs no Python code, and the
        // overflow message names its own type.
        // SAFETY: a live int; reads the static exception type; errors are fetched below.
        let i = unsafe { ffi::PyNumber_AsSsize_t(obj.as_ptr(), ffi::PyExc_IndexError) };
        if i == -1 {
            fetch_if_set(py)?;
        }
        return Ok(Index::At(i));
    }
    if let Ok(s) = obj.cast::<PySlice>() {
        let s = int_slice(s)?;
        let (mut a, mut b, mut c) = (0isize, 0isize, 0isize);
        // SAFETY: a valid slice whose fields are ints or None (int_slice), so no Python code
        // runs; out-pointers to locals.
        if unsafe { ffi::PySlice_Unpack(s.as_ptr(), &mut a, &mut b, &mut c) } < 0 {
            return Err(PyErr::fetch(py));
        }
        return Ok(Index::Slice(a, b, c));
    }
    if has_index(obj) {
        let i = int_to_isize(obj, &as_int(obj)?, Some(PyIndexError::new_err))?;
        return Ok(Index::At(i));
    }
    Err(PyTypeError::new_err(format!(
        "list indices must be integers or slices, not {}",
        obj.get_type().name()?
    )))
}

/// `s` with each field that has `__index__` but is not an `int` replaced by its `__index__()`,
/// so that `PySlice_Unpack` runs no Python code. Fields without `__index__` stay, for
/// `PySlice_Unpack` to reject with `list`'s message.
fn int_slice<'py>(s: &Bound<'py, PySlice>) -> PyResult<Bound<'py, PyAny>> {
    let py = s.py();
    let raw = s.as_ptr().cast::<ffi::PySliceObject>();
    // SAFETY: `s` is a live slice; its three fields are immutable strong references it holds.
    let fields = unsafe { [(*raw).start, (*raw).stop, (*raw).step] };
    // SAFETY: as above: borrowed for the lifetime of `s`.
    let fields = fields.map(|p| unsafe { Bound::from_borrowed_ptr(py, p) });
    let plain = |f: &Bound<'_, PyAny>| f.is_none() || f.is_instance_of::<PyInt>() || !has_index(f);
    if fields.iter().all(plain) {
        return Ok(s.clone().into_any());
    }
    let mut ints = Vec::with_capacity(3);
    for f in &fields {
        ints.push(if plain(f) { f.clone() } else { as_int(f)? });
    }
    // SAFETY: three live objects; PySlice_New returns a new reference or NULL with an error.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PySlice_New(ints[0].as_ptr(), ints[1].as_ptr(), ints[2].as_ptr()),
        )
    }
}

/// The `start` / `stop` arguments of `list.index`: anything with `__index__`, clamped.
pub(super) fn clamped_index(obj: Option<&Bound<'_, PyAny>>, default: isize) -> PyResult<isize> {
    let Some(obj) = obj else { return Ok(default) };
    if !has_index(obj) {
        return Err(PyTypeError::new_err(
            "slice indices must be integers or have an __index__ method",
        ));
    }
    int_to_isize(obj, &as_int(obj)?, None)
}

/// An integer argument the way argument clinic converts it for `list` (`__index__`, then a C
/// ssize_t: `OverflowError` out of range), with list's messages (PyO3's would name the
/// argument).
pub(super) fn arg_isize(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    let converted;
    let int = if obj.is_instance_of::<PyInt>() {
        obj
    } else {
        converted = as_int(obj)?;
        &converted
    };
    // SAFETY: `int` is a live int; errors are fetched below.
    let i = unsafe { ffi::PyLong_AsSsize_t(int.as_ptr()) };
    if i == -1 {
        fetch_if_set(obj.py())?;
    }
    Ok(i)
}

/// The count of a repetition (`*`), or `None` if `n` is not an integer (NotImplemented).
/// Negative counts are 0; counts beyond a ssize_t raise `OverflowError`, as for `list`.
pub(super) fn repeat_count(n: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if !has_index(n) {
        return Ok(None);
    }
    let v = int_to_isize(n, &as_int(n)?, Some(PyOverflowError::new_err))?;
    Ok(Some(v.max(0).unsigned_abs()))
}

/// A position `i` (negative from the end) in a list of `len`, if in range.
#[inline]
pub(super) fn position(i: isize, len: usize) -> Option<usize> {
    // A VecDeque never holds more than isize::MAX elements, so neither cast wraps and the sum
    // of a negative i and len cannot overflow.
    let len = len as isize;
    let j = if i < 0 { i + len } else { i };
    (0..len).contains(&j).then_some(j as usize)
}

/// `i` clamped into `[0, len]`, as `list.insert` does.
#[inline]
pub(super) fn insertion_point(i: isize, len: usize) -> usize {
    let len = len as isize;
    let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
    j as usize
}

/// `PySlice_AdjustIndices`: pure arithmetic, fine under the lock. Returns (start, stop, length).
pub(super) fn adjust(
    len: usize,
    mut start: isize,
    mut stop: isize,
    step: isize,
) -> (isize, isize, usize) {
    // SAFETY: pointers to locals; the function only does arithmetic.
    let n = unsafe { ffi::PySlice_AdjustIndices(len as isize, &mut start, &mut stop, step) };
    (start, stop, n.unsigned_abs())
}

/// The positions of an adjusted slice: each is in `[0, len)`, so no step overflows.
pub(super) fn slice_positions(start: isize, step: isize, n: usize) -> impl Iterator<Item = usize> {
    (0..n as isize).map(move |k| (start + k * step) as usize)
}

pub(super) fn out_of_range(what: &'static str) -> PyErr {
    PyIndexError::new_err(what)
}

/// A builtin function, looked up once.
fn builtin<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))?
        .bind(py))
}

/// The elements of any iterable, collected before any lock is taken, as `list.extend` takes
/// them. A `ThreadSafeList` gives a snapshot, a list or tuple its items (reference increments
/// only; exact types only, as `list` honours a subclass's `__iter__`); anything else goes
/// through `list.extend` itself, by `pycall`: the user's iterator and `__length_hint__` run
/// exit-safe, at C speed, with `list`'s exceptions.
pub(super) fn collect_items(obj: &Bound<'_, PyAny>) -> PyResult<Refs> {
    collect(obj, false)
}

/// The same, as `list(iterable)` takes them: `list.__init__` believes the *iterable's* length
/// hint where `list.extend` asks its iterator, so an absurd hint is a `MemoryError` here.
pub(super) fn collect_like_list(obj: &Bound<'_, PyAny>) -> PyResult<Refs> {
    collect(obj, true)
}

fn collect(obj: &Bound<'_, PyAny>, like_constructor: bool) -> PyResult<Refs> {
    let py = obj.py();
    if let Ok(other) = obj.cast_exact::<ThreadSafeList>() {
        return Ok(other.get().core.snapshot(py));
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return Ok(t.iter().map(Bound::unbind).collect::<Vec<_>>().into());
    }
    let list = match obj.cast_exact::<PyList>() {
        Ok(l) => l.clone(),
        Err(_) if like_constructor => {
            pycall::call1(&py.get_type::<PyList>(), obj)?.cast_into::<PyList>()?
        }
        Err(_) => {
            let list = PyList::empty(py);
            pycall::call1(&list.getattr("extend")?, obj)?;
            list
        }
    };
    Ok(list.iter().map(Bound::unbind).collect::<Vec<_>>().into())
}

/// The elements of a sequence for an extended-slice assignment, with `list`'s error message
/// (`PySequence_Fast`'s: only a failing `iter()` is reworded).
pub(super) fn collect_for_extended(obj: &Bound<'_, PyAny>) -> PyResult<Refs> {
    let py = obj.py();
    if obj.cast_exact::<ThreadSafeList>().is_ok()
        || obj.cast_exact::<PyList>().is_ok()
        || obj.cast_exact::<PyTuple>().is_ok()
    {
        return collect_items(obj);
    }
    static ITER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    match pycall::call1(builtin(py, &ITER, "builtins", "iter")?, obj) {
        Ok(it) => collect_items(&it),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => Err(PyTypeError::new_err(
            "must assign iterable to extended slice",
        )),
        Err(e) => Err(e),
    }
}

/// The elements for a plain (step 1) slice assignment, with the running interpreter's error
/// message (3.11 and 3.13 word it differently): an empty list does the conversion.
pub(super) fn collect_for_slice(obj: &Bound<'_, PyAny>) -> PyResult<Refs> {
    let py = obj.py();
    if obj.cast_exact::<ThreadSafeList>().is_ok() {
        return collect_items(obj);
    }
    let tmp = PyList::empty(py);
    let set = tmp.getattr("__setitem__")?;
    pycall::call(&set, (PySlice::new(py, 0, 0, 1), obj))?;
    Ok(tmp.iter().map(Bound::unbind).collect::<Vec<_>>().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_list_rules() {
        assert_eq!(position(0, 3), Some(0));
        assert_eq!(position(-1, 3), Some(2));
        assert_eq!(position(-3, 3), Some(0));
        assert_eq!(position(-4, 3), None);
        assert_eq!(position(3, 3), None);
        assert_eq!(position(0, 0), None);
        assert_eq!(position(isize::MIN, 3), None);
        assert_eq!(position(isize::MAX, 3), None);
    }

    #[test]
    fn insertion_points_clamp_like_list_insert() {
        assert_eq!(insertion_point(-1, 3), 2);
        assert_eq!(insertion_point(isize::MIN, 3), 0);
        assert_eq!(insertion_point(isize::MAX, 3), 3);
        assert_eq!(insertion_point(1, 0), 0);
    }
}
