//! Hashed keys for the Rust-side hash tables.
//!
//! The Python hash is computed once, before any lock is taken (`__hash__` is Python code and may
//! raise or re-enter). Equality is decided without running Python code whenever that is possible:
//! pointer identity first, then a C-level rich comparison when both keys are "plain" (exact
//! str/int/float/complex/bytes/bool/None, or exact tuples of those), whose comparisons are
//! implemented in C and cannot call back into Python — except bytes against str or int, which
//! warns under `python -b`. Anything else needs `__eq__`, which the callers run with no lock held
//! (see `dict::Probe`, `list`).
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
        let h = crate::pycall::hash(obj)?;
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

/// The comparison family of an exact builtin "plain" object: one whose `==` with another plain
/// object is C code only. Subclasses are never plain: they may override `__eq__`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Str,
    Bytes,
    Nothing,
    Tuple,
}

fn kind(obj: *mut ffi::PyObject) -> Option<Kind> {
    // SAFETY: obj is a valid, live object pointer (callers hold a reference); these are type
    // checks only.
    unsafe {
        if obj == ffi::Py_None() {
            Some(Kind::Nothing)
        } else if ffi::PyUnicode_CheckExact(obj) != 0 {
            Some(Kind::Str)
        } else if ffi::PyLong_CheckExact(obj) != 0
            || ffi::PyBool_Check(obj) != 0
            || ffi::PyFloat_CheckExact(obj) != 0
            || ffi::PyComplex_CheckExact(obj) != 0
        {
            Some(Kind::Num)
        } else if ffi::PyBytes_CheckExact(obj) != 0 {
            Some(Kind::Bytes)
        } else if ffi::PyTuple_CheckExact(obj) != 0 {
            Some(Kind::Tuple)
        } else {
            None
        }
    }
}

/// What a plain object contains, for the one C comparison that can still run Python code:
/// under `python -b`, `bytes == str` and `bytes == int` issue a `BytesWarning`, and the warnings
/// machinery (filters, `showwarning`) is Python code.
const HAS_BYTES: u8 = 1;
const HAS_STR_OR_INT: u8 = 2;

/// `HAS_*` bits of `obj` and everything in it; `None` if it is not plain (or nested too deep).
fn contents(obj: *mut ffi::PyObject, depth: u32) -> Option<u8> {
    match kind(obj)? {
        Kind::Bytes => Some(HAS_BYTES),
        Kind::Str => Some(HAS_STR_OR_INT),
        // SAFETY: a live object; a type check only.
        Kind::Num if unsafe { ffi::PyLong_Check(obj) } != 0 => Some(HAS_STR_OR_INT),
        Kind::Num | Kind::Nothing => Some(0),
        Kind::Tuple if depth < 8 => {
            let mut bits = 0;
            // SAFETY: an exact tuple (immutable); items are borrowed references it keeps alive.
            let n = unsafe { ffi::PyTuple_GET_SIZE(obj) };
            for i in 0..n {
                // SAFETY: `i < n`, as above.
                bits |= contents(unsafe { ffi::PyTuple_GET_ITEM(obj, i) }, depth + 1)?;
            }
            Some(bits)
        }
        Kind::Tuple => None,
    }
}

/// `Some(a == b)` (identity first, as containers compare) when it can be decided without running
/// Python code, else `None`: then the caller runs `==` with no lock held. Safe under a lock.
///
/// This is the one rule for every container here (dict keys, list items).
#[inline]
pub fn fast_eq(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> Option<bool> {
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    if pa == pb {
        return Some(true);
    }
    let (ka, kb) = (kind(pa)?, kind(pb)?);
    let warns = |x: u8, y: u8| x & HAS_BYTES != 0 && y & HAS_STR_OR_INT != 0;
    if ka != kb {
        if ka == Kind::Bytes || kb == Kind::Bytes {
            // bytes against a str or an int warns under -b; leave every such pair to Python.
            let (ca, cb) = (contents(pa, 0)?, contents(pb, 0)?);
            if warns(ca, cb) || warns(cb, ca) {
                return None;
            }
        }
        // Different families of plain objects are never equal (and `==` would say so in C).
        return Some(false);
    }
    if ka == Kind::Tuple {
        let (ca, cb) = (contents(pa, 0)?, contents(pb, 0)?);
        if warns(ca, cb) || warns(cb, ca) {
            return None;
        }
    }
    // SAFETY: both are live; for plain builtin types this comparison is C code only and, with
    // the bytes pairs excluded above, issues no warning.
    let r = unsafe { ffi::PyObject_RichCompareBool(pa, pb, ffi::Py_EQ) };
    if r < 0 {
        // Not expected for plain types (a MemoryError at worst): let the Python path decide.
        // SAFETY: called attached, right after the failed comparison that set the error.
        unsafe { ffi::PyErr_Clear() };
        return None;
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
            // bytes against str or int would warn under -b: left to Python (and run unlocked).
            let b = py.eval(c"b'a'", None, None).unwrap();
            assert_eq!(fast_eq(&b, &s), None);
            assert_eq!(fast_eq(&b, &one), None);
            assert_eq!(fast_eq(&b, &onef), Some(false));
            let tb = py.eval(c"(b'a', 1)", None, None).unwrap();
            let ts = py.eval(c"('a', 1)", None, None).unwrap();
            assert_eq!(fast_eq(&tb, &ts), None);
            assert_eq!(fast_eq(&tb, &one), Some(false)); // a tuple is never an int
            assert_eq!(fast_eq(&s, &one), Some(false));
        });
    }
}
