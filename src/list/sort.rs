//! `sort`: exact ints or exact strs (without a key) are sorted in place under the lock, running
//! no Python code; anything else is sorted as a snapshot by `list.sort` itself (same stability,
//! same errors), with no lock held, and committed if the list did not change meanwhile. A sort
//! is the one operation that may give up (`MAX_SORT_ATTEMPTS`): holding back every writer for as
//! long as a big list's key function runs is worse than an error the caller can retry.
use std::cell::RefCell;
use std::os::raw::c_int;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString};

use super::storage::{ListCore, Refs};
use crate::{pycall, sync};

/// How many times a sort is redone because the list changed while its key or comparisons ran,
/// before it raises `RuntimeError` and leaves the list unchanged.
pub(super) const MAX_SORT_ATTEMPTS: u32 = 1000;

thread_local! {
    /// Sorts running their key or comparisons on this thread: (core address, whether that code
    /// tried to modify the list).
    static SORTING: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Called when a modification of `core` was refused as re-entrant: if it came from a sort of
/// `core` on this thread, that sort raises "list modified during sort".
pub(super) fn note_refused_modification(core: *const ListCore) {
    SORTING.with(|s| {
        for entry in s.borrow_mut().iter_mut().rev() {
            if entry.0 == core as usize {
                entry.1 = true;
                return;
            }
        }
    });
}

/// Marks a sort of `core` as running Python code on this thread, until dropped.
struct Sorting {
    core: usize,
}

impl Sorting {
    fn enter(core: *const ListCore) -> Self {
        let core = core as usize;
        SORTING.with(|s| s.borrow_mut().push((core, false)));
        Sorting { core }
    }

    /// Whether the Python code run so far tried to modify the list.
    fn modified(&self) -> bool {
        SORTING.with(|s| {
            s.borrow()
                .iter()
                .rev()
                .find(|e| e.0 == self.core)
                .is_some_and(|e| e.1)
        })
    }
}

impl Drop for Sorting {
    fn drop(&mut self) {
        SORTING.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(pos) = s.iter().rposition(|e| e.0 == self.core) {
                s.remove(pos);
            }
        });
    }
}

fn gave_up() -> PyErr {
    PyRuntimeError::new_err(format!(
        "ThreadSafeList.sort: the list kept changing under concurrent writers for \
         {MAX_SORT_ATTEMPTS} attempts; the list was left unchanged"
    ))
}

/// What `list.sort` raises when its key or a comparison modified the list. Here the
/// modification itself was refused (`ReentrancyError`, kept as the cause) and the list is left
/// unchanged.
fn modified_during_sort(py: Python<'_>, cause: Option<PyErr>) -> PyErr {
    let e = PyValueError::new_err("list modified during sort");
    e.set_cause(py, cause);
    e
}

impl ListCore {
    pub(super) fn sort(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<()> {
        let me = self as *const ListCore;
        if key.is_none() && self.sort_in_place(py, reverse)? {
            return Ok(());
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("key", key)?;
        kwargs.set_item("reverse", reverse)?;
        // Before the attempts: every snapshot and sorted copy is released at the end, with no
        // lock held.
        let mut garbage = Refs::default();
        for _ in 0..MAX_SORT_ATTEMPTS {
            let (version, snap) = {
                let g = self.read(py);
                (
                    g.version,
                    super::search::clone_range(py, &g.items, 0, g.items.len()),
                )
            };
            let tmp = PyList::new(py, snap.into_vec())?;
            let sorting = Sorting::enter(me);
            let sorted = sync::in_callback(me, || {
                pycall::call_kw(&tmp.getattr("sort")?, (), Some(&kwargs))
            });
            if sorting.modified() {
                return Err(modified_during_sort(py, sorted.err()));
            }
            sorted?;
            drop(sorting);
            // Owned by this call only: reading it runs no Python code.
            let mut sorted = Refs::from(tmp.iter().map(Bound::unbind).collect::<Vec<_>>());
            drop(tmp);
            let committed = self.write_removing::<Refs, _>(py, |state, grave| {
                if state.version != version || state.items.len() != sorted.len() {
                    return false;
                }
                let old = std::mem::replace(&mut state.items, sorted.drain(..).collect());
                grave.push(Refs::from(Vec::from(old)));
                state.changed();
                true
            })?;
            if committed {
                return Ok(());
            }
            garbage.append(&mut sorted);
            self.conflict();
            py.check_signals()?;
        }
        Err(gave_up())
    }

    /// The no-Python-code sort: true if it applied (all exact ints fitting i64, or all exact
    /// strs).
    fn sort_in_place(&self, py: Python<'_>, reverse: bool) -> PyResult<bool> {
        self.write(py, |state| {
            let items = state.items.make_contiguous();
            let mut order: Vec<usize> = (0..items.len()).collect();
            if items
                .iter()
                .all(|o| o.bind(py).is_exact_instance_of::<PyInt>())
            {
                let mut keys = Vec::with_capacity(items.len());
                for o in items.iter() {
                    let mut overflow: c_int = 0;
                    // SAFETY: an exact int; the call only reads it.
                    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(o.as_ptr(), &mut overflow) };
                    if overflow != 0 {
                        return false;
                    }
                    keys.push(v);
                }
                // Stable both ways, as list.sort(reverse=True) keeps equal elements in order.
                if reverse {
                    order.sort_by(|&a, &b| keys[b].cmp(&keys[a]));
                } else {
                    order.sort_by_key(|&a| keys[a]);
                }
            } else if items
                .iter()
                .all(|o| o.bind(py).is_exact_instance_of::<PyString>())
            {
                let cmp = |a: usize, b: usize| {
                    // SAFETY: both indices are in bounds of `items`, which hold live exact strs:
                    // PyUnicode_Compare cannot fail or call back.
                    unsafe { ffi::PyUnicode_Compare(items[a].as_ptr(), items[b].as_ptr()) }.cmp(&0)
                };
                if reverse {
                    order.sort_by(|&a, &b| cmp(b, a));
                } else {
                    order.sort_by(|&a, &b| cmp(a, b));
                }
            } else {
                return false;
            }
            // Move (never drop) each element to its place.
            let mut slots: Vec<Option<Py<PyAny>>> = std::mem::take(&mut state.items)
                .into_iter()
                .map(Some)
                .collect();
            state.items = order.iter().filter_map(|&k| slots[k].take()).collect();
            state.changed();
            true
        })
    }
}
