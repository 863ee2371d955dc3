//! State keys: any Python `str`, lone surrogates included (as a `dict` takes them).
//!
//! A key is stored as its UTF-8 bytes, encoded with "surrogatepass" when the string holds lone
//! surrogates (which have no UTF-8 form). That encoding is injective and decodes back to the same
//! string, so two keys are the same exactly when their strings are equal. For every other string
//! the bytes are its ordinary UTF-8, which CPython caches in the str object: the common lookup
//! encodes nothing.
use std::borrow::{Borrow, Cow};
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// A stored key. Hashes its bytes with a single `write` (a `[u8]` would add a length prefix,
/// a `str` a terminator: a fifth of the hashing on the `get` path).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Key(Arc<[u8]>);

/// A borrowed key, for lookups: hashes and compares exactly as `Key` does.
#[repr(transparent)]
#[derive(PartialEq, Eq)]
pub struct KeyRef([u8]);

impl KeyRef {
    #[inline]
    pub fn new(bytes: &[u8]) -> &KeyRef {
        // SAFETY: `KeyRef` is `repr(transparent)` over `[u8]`: same layout, same metadata.
        unsafe { &*(bytes as *const [u8] as *const KeyRef) }
    }
}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl Hash for KeyRef {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl Borrow<KeyRef> for Key {
    #[inline]
    fn borrow(&self) -> &KeyRef {
        KeyRef::new(&self.0)
    }
}

impl Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[cold]
fn not_str(key: &Bound<'_, PyAny>) -> PyErr {
    let name = key
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!("ThreadSafeState keys must be str, not {name}"))
}

/// The bytes `key` is stored under, borrowed from the str object when it is valid UTF-8.
/// `TypeError` if `key` is not a `str` (subclasses included, as before).
#[inline]
pub fn key_bytes<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    let s = key.cast::<PyString>().map_err(|_| not_str(key))?;
    str_bytes(s)
}

/// As `key_bytes`, for an object already known to be a `str`.
#[inline]
pub fn str_bytes<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, [u8]>> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str; the returned buffer is cached inside it and lives as long as
    // it does, which `'a` guarantees. NULL (with an error set) only for lone surrogates.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if !data.is_null() {
        // SAFETY: CPython guarantees `size` readable bytes at `data` (a length never negative).
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
        return Ok(Cow::Borrowed(bytes));
    }
    with_surrogates(s).map(Cow::Owned)
}

/// The "surrogatepass" encoding of a str that has no UTF-8 form.
#[cold]
fn with_surrogates(s: &Bound<'_, PyString>) -> PyResult<Vec<u8>> {
    // The UnicodeEncodeError about the surrogate: replaced by the lossless encoding below.
    drop(PyErr::take(s.py()));
    // SAFETY: a live str and two NUL-terminated C strings; a new bytes object or NULL.
    let encoded = unsafe {
        ffi::PyUnicode_AsEncodedString(s.as_ptr(), c"utf-8".as_ptr(), c"surrogatepass".as_ptr())
    };
    // SAFETY: a new reference or NULL with an error set.
    let b = unsafe { Bound::from_owned_ptr_or_err(s.py(), encoded) }?;
    Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec())
}

/// A stored key for `key`.
#[inline]
pub fn key_of(key: &Bound<'_, PyAny>) -> PyResult<Key> {
    Ok(Key(Arc::from(&*key_bytes(key)?)))
}

/// The `str` a stored key came from.
#[inline]
pub fn key_str<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // A slice is never longer than isize::MAX bytes.
    let len = key.len() as ffi::Py_ssize_t;
    // SAFETY: `key` is `len` readable bytes; decoding copies them. A new str or NULL.
    let s =
        unsafe { ffi::PyUnicode_DecodeUTF8(key.as_ptr().cast(), len, c"surrogatepass".as_ptr()) };
    // SAFETY: a new reference or NULL with an error set.
    let s = unsafe { Bound::from_owned_ptr_or_err(py, s) }?;
    Ok(s.cast_into::<PyString>()?)
}

/// `key` quoted for an error message: Rust's quoting for ordinary keys, Python's `repr` for
/// those with lone surrogates (which Rust's `str` cannot hold).
pub fn key_repr(py: Python<'_>, key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => format!("{s:?}"),
        Err(_) => key_str(py, key)
            .and_then(|s| s.repr().map(|r| r.to_string()))
            .unwrap_or_else(|_| format!("{:?}", String::from_utf8_lossy(key))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogate_keys_round_trip_and_stay_distinct() {
        Python::initialize();
        Python::attach(|py| {
            for src in [
                c"'plain'",
                c"'caf\\xe9'",
                c"'\\ud800'",
                c"'a\\udfff\\ud800b'",
            ] {
                let obj = py.eval(src, None, None).unwrap();
                let k = key_of(&obj).unwrap();
                let back = key_str(py, &k).unwrap();
                assert!(back.as_any().eq(&obj).unwrap());
            }
            let pair = key_of(&py.eval(c"'\\ud83d\\ude00'", None, None).unwrap()).unwrap();
            let emoji = key_of(&py.eval(c"'\\U0001f600'", None, None).unwrap()).unwrap();
            assert_ne!(pair, emoji);
            assert_eq!(key_repr(py, b"k"), "\"k\"");
            assert_eq!(
                key_repr(
                    py,
                    &key_of(&py.eval(c"'\\ud800'", None, None).unwrap()).unwrap()
                ),
                "'\\ud800'"
            );
            assert!(key_of(&py.eval(c"1", None, None).unwrap()).is_err());
        });
    }
}
