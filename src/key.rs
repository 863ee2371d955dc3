//! Hashed keys for the Rust-side hash tables.
//!
//! The Python hash is computed once, before any lock is taken (`__hash__` is Python code and may
//! raise or re-enter). Equality is decided without running Python code whenever that is possible:
//! pointer identity first, then a C-level rich comparison when both keys are "plain" (exact
//! str/int/float/complex/bytes/bool/None, or exact tuples of those), whose comparisons are
//! implemented in C and cannot call back into Python. Anything else needs `__eq__`, which the
//! callers run with no lock held (see `dict::Probe`).
use pyo3::ffi;
use pyo3::prelude::*;

/// A key with its (scrambled) hash.
pub struct HKey<'py> {
    pub obj: Bound<'py, PyAny>,
    pub hash: u64,
}

impl<'py> HKey<'py> {
    /// Hash `obj` like `dict` does: `TypeError` for unhashable keys, a raising `__hash__`
    /// propagates. Runs Python code: call it before locking.
    pub fn new(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let h = obj.hash()?;
        Ok(HKey {
            obj: obj.clone(),
            hash: scramble(h),
        })
    }
}

/// `hashbrown` takes its 7-bit tag from the top bits and the bucket from the low bits, and small
/// ints hash to themselves: spread every input bit over the whole word first.
#[inline]
pub fn scramble(h: isize) -> u64 {
    let x = (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29) ^ (x >> 47)
}

/// True when comparing `obj` with another plain object runs only C code.
fn is_plain(obj: *mut ffi::PyObject, depth: u32) -> bool {
    // SAFETY: obj is a valid, live object pointer (callers hold a reference).
    unsafe {
        if obj == ffi::Py_None()
            || ffi::PyUnicode_CheckExact(obj) != 0
            || ffi::PyLong_CheckExact(obj) != 0
            || ffi::PyFloat_CheckExact(obj) != 0
            || ffi::PyBytes_CheckExact(obj) != 0
            || ffi::PyBool_Check(obj) != 0
            || ffi::PyComplex_CheckExact(obj) != 0
        {
            return true;
        }
        if depth < 8 && ffi::PyTuple_CheckExact(obj) != 0 {
            let n = ffi::PyTuple_Size(obj);
            for i in 0..n {
                // Borrowed reference; the tuple keeps it alive and tuples are immutable.
                if !is_plain(ffi::PyTuple_GetItem(obj, i), depth + 1) {
                    return false;
                }
            }
            return true;
        }
        false
    }
}

/// `Some(a == b)` when it can be decided without running Python code, else `None`.
/// Safe to call while holding a Rust lock.
#[inline]
pub fn fast_eq(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> Option<bool> {
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    if pa == pb {
        return Some(true);
    }
    if !(is_plain(pa, 0) && is_plain(pb, 0)) {
        return None;
    }
    // SAFETY: both are live; for plain builtin types this comparison is C code only.
    let r = unsafe { ffi::PyObject_RichCompareBool(pa, pb, ffi::Py_EQ) };
    if r < 0 {
        // Not expected for plain types (a MemoryError at worst): treat as unequal.
        // SAFETY: called attached, right after the failed comparison that set the error.
        unsafe { ffi::PyErr_Clear() };
        return Some(false);
    }
    Some(r == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_spreads_small_ints() {
        let tags: std::collections::HashSet<u64> = (0..64).map(|i| scramble(i) >> 57).collect();
        assert!(tags.len() > 20);
    }

    #[test]
    fn plain_keys_compare_at_c_level() {
        Python::initialize();
        Python::attach(|py| {
            let one = 1i64.into_pyobject(py).unwrap().into_any();
            let onef = 1.0f64.into_pyobject(py).unwrap().into_any();
            let s = "a".into_pyobject(py).unwrap().into_any();
            assert_eq!(fast_eq(&one, &onef), Some(true));
            assert_eq!(fast_eq(&one, &s), Some(false));
            let obj = py.eval(c"object()", None, None).unwrap();
            assert_eq!(fast_eq(&obj, &one), None);
            assert_eq!(fast_eq(&obj, &obj), Some(true));
            let t1 = py.eval(c"(1, 'x', (None, 2.5))", None, None).unwrap();
            let t2 = py.eval(c"(1, 'x', (None, 2.5))", None, None).unwrap();
            assert_eq!(fast_eq(&t1, &t2), Some(true));
        });
    }
}
