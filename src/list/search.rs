//! Comparing elements, and the read-only searches (`in`, `index`, `count`): they work on the
//! state at the call and never retry, so the `__eq__` they run may do anything, including
//! modifying the list.
use std::collections::VecDeque;

use pyo3::ffi;
use pyo3::prelude::*;

use super::storage::{ListCore, Refs};

/// `item == x` as `list` computes it (identity first, then `==`), when that runs no Python code;
/// `None` when it would. Safe under the lock: the rule is `key::fast_eq`'s, shared with the dict.
#[inline]
pub(super) fn eq_nopy(item: &Bound<'_, PyAny>, x: &Bound<'_, PyAny>) -> Option<bool> {
    crate::key::fast_eq(item, x)
}

/// `item == x` as `list` computes it: may run Python code, so never under the lock.
pub(super) fn eq_py(item: &Bound<'_, PyAny>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
    crate::pycall::compare(item, x, ffi::Py_EQ)
}

/// Whether `items` still starts with exactly the objects of `prefix` (pointer comparisons).
pub(super) fn starts_with(items: &VecDeque<Py<PyAny>>, prefix: &[Py<PyAny>]) -> bool {
    items.len() >= prefix.len()
        && items
            .iter()
            .zip(prefix)
            .all(|(a, b)| a.as_ptr() == b.as_ptr())
}

/// New references to `items[from..to]`.
pub(super) fn clone_range(
    py: Python<'_>,
    items: &VecDeque<Py<PyAny>>,
    from: usize,
    to: usize,
) -> Refs {
    Refs::from(
        items
            .range(from..to)
            .map(|o| o.clone_ref(py))
            .collect::<Vec<_>>(),
    )
}

impl ListCore {
    /// The first position in `[start, stop)` (list.index's clamping) holding an element equal to
    /// `x`, on the state at the call. Comparisons that run Python code run outside the lock.
    pub(super) fn find(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<Option<usize>> {
        let (base, rest) = {
            let g = self.read(py);
            let clamp = |i: isize| super::args::insertion_point(i, g.items.len());
            let (start, stop) = (clamp(start), clamp(stop));
            let mut i = start;
            while i < stop {
                match eq_nopy(g.items[i].bind(py), x) {
                    Some(true) => return Ok(Some(i)),
                    Some(false) => i += 1,
                    None => break,
                }
            }
            if i >= stop {
                return Ok(None);
            }
            (i, clone_range(py, &g.items, i, stop))
        };
        for (k, item) in rest.iter().enumerate() {
            if eq_py(item.bind(py), x)? {
                return Ok(Some(base + k));
            }
        }
        Ok(None)
    }

    pub(super) fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let (mut n, slow) = {
            let g = self.read(py);
            let mut n = 0;
            let mut slow = Refs::default();
            for item in g.items.iter() {
                match eq_nopy(item.bind(py), x) {
                    Some(true) => n += 1,
                    Some(false) => {}
                    None => slow.push(item.clone_ref(py)),
                }
            }
            (n, slow)
        };
        for item in slow.iter() {
            n += usize::from(eq_py(item.bind(py), x)?);
        }
        Ok(n)
    }
}
