//! `ThreadSafeList`: a `MutableSequence` whose compound operations are single atomic calls and
//! whose iteration works on a snapshot, so it never breaks because of concurrent writers.
//!
//! Design. The elements live in one `RwLock<ListState>`; every read takes the read lock, every
//! write the write lock, both through `sync` (try first, detach only to wait). Nothing that can run
//! Python code happens under the lock (see `ListState`). Operations that must run Python code —
//! `__eq__` in `remove`/`index`/`count`/`in`, sort keys and comparisons, predicates, update
//! functions — follow one optimistic protocol:
//!
//! * Elements of exact builtin scalar types (`int`, `bool`, `float`, `str`, `bytes`, `None`) are
//!   compared under the lock, because comparing them runs no Python code: the common case needs
//!   no snapshot and no retry. Identity is checked first, as `list` does.
//! * At the first element that would run Python code, the rest of the list is copied (reference
//!   increments only), the lock is released and the comparisons run outside it. A mutating
//!   operation then re-locks and commits only if the part of the list it examined is still the
//!   same objects at the same positions ("prefix validation"); elements appended meanwhile are
//!   examined in the next round, so append-heavy contention does not restart the work. Anything
//!   else restarts it, at most `MAX_ATTEMPTS` times, after which the operation raises
//!   `RuntimeError` and changes nothing (a sort of a big list with a slow key cannot otherwise win
//!   against a stream of writers).
//! * Python code run by a *mutating* operation (in a `CallbackScope`) that tries to mutate the
//!   same list gets `ReentrancyError`: it would invalidate the operation's own commit forever.
//!   Read-only operations (`in`, `index`, `count`, `==`) work on a snapshot and never retry, so
//!   their `__eq__` may do anything, including mutating the list.
//! * `update_at` and `compare_and_set` revalidate one slot: they commit only if the object they
//!   read (and ran Python code on) is still at that position, else rerun (lock-free progress: a
//!   failed commit means another writer succeeded, so they are not bounded).
//!
//! The elements are a `VecDeque`, so the queue-like `append` + `pop(0)` is O(1) at both ends.
//! Views (`local()`) share the core; only the owner shows the collector the elements, and a
//! view shows it its owner (see `shared`), so cycles through views are collected too.
use std::collections::VecDeque;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{
    PyDict, PyGenericAlias, PyInt, PyIterator, PyList, PySlice, PyString, PyTuple, PyType,
};
use pyo3::PyTraverseError;

use crate::shared::SharedCore;
use crate::{pycall, sync};

type Items = Vec<Py<PyAny>>;

/// How many times an optimistic operation restarts because the examined part of the list changed
/// before it gives up with `RuntimeError` (leaving the list unchanged).
const MAX_ATTEMPTS: u32 = 1000;

/// The elements and their version.
///
/// Invariants, guarded by `ListCore::state`:
/// - `version` is incremented by every operation that changes `items` (an unchanged version means
///   unchanged contents; a changed one may be spurious).
/// - While the lock is held no Python code runs: only reference increments, pointer comparisons
///   and comparisons between exact builtin scalars (`eq_nopy`), which cannot call back. No object
///   that could be garbage-collected is allocated under it (an allocation can start a collection,
///   and a collection runs arbitrary finalizers).
/// - No `Py` is dropped under it: elements leaving the list are moved into a local declared before
///   the guard (`later`), so their `__del__` runs after the guard, free to use the list.
/// - It is only taken through `sync::read` / `sync::write`, except by `__traverse__` and
///   `__clear__`, which only `try_` it.
#[derive(Default)]
struct ListState {
    items: VecDeque<Py<PyAny>>,
    version: u64,
}

#[derive(Default)]
pub struct ListCore {
    state: RwLock<ListState>,
    /// Optimistic rounds restarted because of a concurrent write: how much callers contended.
    retries: AtomicU64,
}

/// A list shared by threads. See the module docs.
#[pyclass(frozen, module = "nogilsafe", name = "ThreadSafeList")]
pub struct ThreadSafeList {
    core: Arc<ListCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeList, ListCore);

// ---------------------------------------------------------------------------------------------
// Comparisons

/// `item == x` as `list` computes it (identity first, then `==`), when that runs no Python code;
/// `None` when it would (the rule is `key::fast_eq`'s, shared with the dict).
#[inline]
fn eq_nopy(item: &Bound<'_, PyAny>, x: &Bound<'_, PyAny>) -> Option<bool> {
    crate::key::fast_eq(item, x)
}

/// `item == x` as `list` computes it: may run Python code, so never under the lock.
fn eq_py(item: &Bound<'_, PyAny>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
    crate::pycall::compare(item, x, ffi::Py_EQ)
}

/// Whether `items` still starts with exactly the objects of `prefix` (pointer comparisons).
fn starts_with(items: &VecDeque<Py<PyAny>>, prefix: &[Py<PyAny>]) -> bool {
    items.len() >= prefix.len()
        && items
            .iter()
            .zip(prefix)
            .all(|(a, b)| a.as_ptr() == b.as_ptr())
}

fn clone_range(py: Python<'_>, items: &VecDeque<Py<PyAny>>, from: usize, to: usize) -> Items {
    items.range(from..to).map(|o| o.clone_ref(py)).collect()
}

// ---------------------------------------------------------------------------------------------
// Indices

enum Index {
    At(isize),
    Slice(isize, isize, isize),
}

fn fetch_if_set(py: Python<'_>) -> PyResult<()> {
    match PyErr::take(py) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Convert a subscript like `list` does, before any lock (`__index__` may run Python code).
fn to_index(obj: &Bound<'_, PyAny>) -> PyResult<Index> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PySlice>() {
        let (mut a, mut b, mut c) = (0isize, 0isize, 0isize);
        // SAFETY: a valid slice object and out-pointers to locals.
        if unsafe { ffi::PySlice_Unpack(s.as_ptr(), &mut a, &mut b, &mut c) } < 0 {
            return Err(PyErr::fetch(py));
        }
        return Ok(Index::Slice(a, b, c));
    }
    // SAFETY: a valid object.
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } != 0 {
        // SAFETY: a valid object that passed PyIndex_Check; errors are fetched below.
        let i = unsafe { ffi::PyNumber_AsSsize_t(obj.as_ptr(), ffi::PyExc_IndexError) };
        if i == -1 {
            fetch_if_set(py)?;
        }
        return Ok(Index::At(i));
    }
    Err(PyTypeError::new_err(format!(
        "list indices must be integers or slices, not {}",
        obj.get_type().name()?
    )))
}

/// `index` / `start` / `stop` arguments of `list.index`: anything with `__index__`, clamped.
fn slice_index(obj: Option<&Bound<'_, PyAny>>, default: isize) -> PyResult<isize> {
    let Some(obj) = obj else { return Ok(default) };
    // SAFETY: a valid object.
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(
            "slice indices must be integers or have an __index__ method",
        ));
    }
    // SAFETY: a valid object with __index__ (checked above); errors are fetched below.
    let i = unsafe { ffi::PyNumber_AsSsize_t(obj.as_ptr(), std::ptr::null_mut()) };
    if i == -1 {
        fetch_if_set(obj.py())?;
    }
    Ok(i)
}

/// An integer argument the way argument clinic converts it for `list` (`__index__`, then a C
/// ssize_t), with list's messages (PyO3's would name the argument).
fn arg_isize(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    let py = obj.py();
    // SAFETY: a valid object; PyNumber_Index returns a new reference or NULL with an error set.
    let index = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(obj.as_ptr()))? };
    // SAFETY: `index` is a live exact int from PyNumber_Index; errors are fetched below.
    let i = unsafe { ffi::PyLong_AsSsize_t(index.as_ptr()) };
    if i == -1 {
        fetch_if_set(py)?;
    }
    Ok(i)
}

/// A position `i` (negative from the end) in a list of `len`, if in range.
#[inline]
fn position(i: isize, len: usize) -> Option<usize> {
    let len = len as isize;
    let j = if i < 0 { i + len } else { i };
    (0..len).contains(&j).then_some(j as usize)
}

/// `PySlice_AdjustIndices`: pure arithmetic, fine under the lock. Returns (start, stop, length).
fn adjust(len: usize, mut start: isize, mut stop: isize, step: isize) -> (isize, isize, usize) {
    // SAFETY: pointers to locals; the function only does arithmetic.
    let n = unsafe { ffi::PySlice_AdjustIndices(len as isize, &mut start, &mut stop, step) };
    (start, stop, n as usize)
}

fn slice_positions(start: isize, step: isize, n: usize) -> impl Iterator<Item = usize> {
    (0..n as isize).map(move |k| (start + k * step) as usize)
}

fn out_of_range(what: &'static str) -> PyErr {
    PyIndexError::new_err(what)
}

fn gave_up(op: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "ThreadSafeList.{op}: the list kept changing under concurrent writers for \
         {MAX_ATTEMPTS} attempts; the list was left unchanged"
    ))
}

// ---------------------------------------------------------------------------------------------
// Core operations

impl ListCore {
    fn snapshot(&self, py: Python<'_>) -> Items {
        let g = sync::read(py, &self.state);
        g.items.iter().map(|o| o.clone_ref(py)).collect()
    }

    fn len(&self, py: Python<'_>) -> usize {
        sync::read(py, &self.state).items.len()
    }

    fn conflict(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The first position in `[start, stop)` (list.index's clamping) holding an element equal to
    /// `x`, on the state at the call. Comparisons that run Python code run outside the lock.
    fn find(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<Option<usize>> {
        let (base, rest) = {
            let g = sync::read(py, &self.state);
            let len = g.items.len() as isize;
            let clamp = |i: isize| if i < 0 { (i + len).max(0) } else { i.min(len) };
            let (start, stop) = (clamp(start) as usize, clamp(stop) as usize);
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

    fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let (mut n, slow) = {
            let g = sync::read(py, &self.state);
            let mut n = 0;
            let mut slow = Vec::new();
            for item in g.items.iter() {
                match eq_nopy(item.bind(py), x) {
                    Some(true) => n += 1,
                    Some(false) => {}
                    None => slow.push(item.clone_ref(py)),
                }
            }
            (n, slow)
        };
        for item in &slow {
            n += eq_py(item.bind(py), x)? as usize;
        }
        Ok(n)
    }

    /// Remove the first element equal to `x`; whether there was one. See the module docs for
    /// the protocol: `checked` is a prefix of the list known to hold no element equal to `x`,
    /// `found` the element right after it, found equal outside the lock.
    fn remove_eq(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
        let me = self as *const ListCore;
        let mut checked: Items = Vec::new();
        let mut found: Option<Py<PyAny>> = None;
        let mut restarts = 0;
        loop {
            let mut later: Items = Vec::new();
            let tail: Items = {
                let mut g = sync::write(py, &self.state);
                if !starts_with(&g.items, &checked) {
                    later.append(&mut checked);
                    later.extend(found.take());
                    self.conflict();
                    restarts += 1;
                    if restarts >= MAX_ATTEMPTS {
                        return Err(gave_up("remove"));
                    }
                }
                let mut i = checked.len();
                if let Some(f) = found.take() {
                    if g.items.get(i).is_some_and(|o| o.is(&f)) {
                        later.push(f);
                        later.extend(g.items.remove(i));
                        g.version += 1;
                        return Ok(true);
                    }
                    later.push(f);
                }
                let len = g.items.len();
                while i < len {
                    match eq_nopy(g.items[i].bind(py), x) {
                        Some(true) => {
                            later.extend(g.items.remove(i));
                            g.version += 1;
                            return Ok(true);
                        }
                        Some(false) => i += 1,
                        None => break,
                    }
                }
                if i == len {
                    return Ok(false);
                }
                let from = checked.len();
                checked.extend(clone_range(py, &g.items, from, i));
                clone_range(py, &g.items, i, len)
            };
            drop(later);
            let _scope = sync::CallbackScope::enter(me);
            for item in tail {
                if found.is_some() {
                    break;
                }
                if eq_py(item.bind(py), x)? {
                    found = Some(item);
                } else {
                    checked.push(item);
                }
            }
            py.check_signals()?;
        }
    }

    /// Append, in order, each of `cands` not equal to an element of the list nor to an earlier
    /// candidate, as one atomic step; how many were appended.
    fn add_absent(&self, py: Python<'_>, cands: Items, op: &str) -> PyResult<usize> {
        let me = self as *const ListCore;
        // Candidates equal to an earlier one are dropped first: that needs no lock.
        let mut uniq: Items = Vec::with_capacity(cands.len());
        {
            let _scope = sync::CallbackScope::enter(me);
            'next: for c in cands {
                for u in &uniq {
                    let equal = match eq_nopy(u.bind(py), c.bind(py)) {
                        Some(e) => e,
                        None => eq_py(u.bind(py), c.bind(py))?,
                    };
                    if equal {
                        continue 'next;
                    }
                }
                uniq.push(c);
            }
        }
        let mut present = vec![false; uniq.len()];
        let mut checked: Items = Vec::new();
        let mut restarts = 0;
        loop {
            let mut later: Items = Vec::new();
            let tail: Items = {
                let mut g = sync::write(py, &self.state);
                if !starts_with(&g.items, &checked) {
                    later.append(&mut checked);
                    present.iter_mut().for_each(|p| *p = false);
                    self.conflict();
                    restarts += 1;
                    if restarts >= MAX_ATTEMPTS {
                        return Err(gave_up(op));
                    }
                }
                let len = g.items.len();
                let mut i = checked.len();
                let mut slow = false;
                'scan: while i < len {
                    let item = g.items[i].bind(py);
                    for (c, p) in uniq.iter().zip(present.iter_mut()) {
                        if *p {
                            continue;
                        }
                        match eq_nopy(item, c.bind(py)) {
                            Some(true) => *p = true,
                            Some(false) => {}
                            None => {
                                slow = true;
                                break 'scan;
                            }
                        }
                    }
                    i += 1;
                }
                if !slow {
                    let mut added = 0;
                    for (c, p) in uniq.iter().zip(&present) {
                        if !*p {
                            g.items.push_back(c.clone_ref(py));
                            added += 1;
                        }
                    }
                    if added > 0 {
                        g.version += 1;
                    }
                    drop(g);
                    drop(later);
                    return Ok(added);
                }
                // Element `i` needs Python code for some candidate; so may the later ones.
                // Comparisons made under the lock for element `i` had no side effects; redo them.
                let from = checked.len();
                checked.extend(clone_range(py, &g.items, from, i));
                clone_range(py, &g.items, i, len)
            };
            drop(later);
            let _scope = sync::CallbackScope::enter(me);
            for item in tail {
                for (c, p) in uniq.iter().zip(present.iter_mut()) {
                    if !*p && eq_py(item.bind(py), c.bind(py))? {
                        *p = true;
                    }
                }
                checked.push(item);
            }
            py.check_signals()?;
        }
    }

    /// Remove every element for which `predicate` is true, atomically; how many.
    fn remove_if(&self, py: Python<'_>, predicate: &Bound<'_, PyAny>) -> PyResult<usize> {
        let me = self as *const ListCore;
        let mut checked: Items = Vec::new();
        let mut doomed: Vec<bool> = Vec::new();
        let mut restarts = 0;
        loop {
            let mut later: Items = Vec::new();
            let tail: Items = {
                let mut g = sync::write(py, &self.state);
                if !starts_with(&g.items, &checked) {
                    later.append(&mut checked);
                    doomed.clear();
                    self.conflict();
                    restarts += 1;
                    if restarts >= MAX_ATTEMPTS {
                        return Err(gave_up("remove_if"));
                    }
                }
                let len = g.items.len();
                if checked.len() == len {
                    let n = doomed.iter().filter(|d| **d).count();
                    if n > 0 {
                        let old = std::mem::take(&mut g.items);
                        let mut kept = VecDeque::with_capacity(len - n);
                        for (item, d) in old.into_iter().zip(&doomed) {
                            if *d {
                                later.push(item);
                            } else {
                                kept.push_back(item);
                            }
                        }
                        g.items = kept;
                        g.version += 1;
                    }
                    drop(g);
                    drop(later);
                    return Ok(n);
                }
                clone_range(py, &g.items, checked.len(), len)
            };
            drop(later);
            let _scope = sync::CallbackScope::enter(me);
            for item in tail {
                doomed.push(pycall::truthy(&pycall::call1(predicate, item.bind(py))?)?);
                checked.push(item);
            }
            py.check_signals()?;
        }
    }

    /// Sort without running Python code under the lock: exact ints or exact strs (without a
    /// key) are sorted in place under it; anything else is sorted as a snapshot by `list.sort`
    /// itself (same stability, same errors) and committed if the list did not change meanwhile.
    fn sort(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>, reverse: bool) -> PyResult<()> {
        let me = self as *const ListCore;
        if key.is_none() && self.sort_in_place(py, reverse) {
            return Ok(());
        }
        for _ in 0..MAX_ATTEMPTS {
            let (version, snap) = {
                let g = sync::read(py, &self.state);
                (
                    g.version,
                    g.items.iter().map(|o| o.clone_ref(py)).collect::<Items>(),
                )
            };
            let tmp = PyList::new(py, &snap)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("key", key)?;
            kwargs.set_item("reverse", reverse)?;
            sync::in_callback(me, || {
                pycall::call_kw(&tmp.getattr("sort")?, (), Some(&kwargs))
            })?;
            // Owned by this call only: reading it under our lock runs no Python code.
            let sorted: Items = tmp.iter().map(|o| o.unbind()).collect();
            let old: VecDeque<Py<PyAny>>;
            {
                let mut g = sync::write(py, &self.state);
                if g.version == version && g.items.len() == sorted.len() {
                    old = std::mem::replace(&mut g.items, sorted.into());
                    g.version += 1;
                } else {
                    drop(g);
                    self.conflict();
                    py.check_signals()?;
                    continue;
                }
            }
            drop(old);
            return Ok(());
        }
        Err(gave_up("sort"))
    }

    /// The no-Python-code sort: true if it applied (all exact ints fitting i64, or all exact strs).
    fn sort_in_place(&self, py: Python<'_>, reverse: bool) -> bool {
        let mut g = sync::write(py, &self.state);
        let items = g.items.make_contiguous();
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
            // SAFETY: exact strs: PyUnicode_Compare cannot fail or call back.
            let cmp = |a: usize, b: usize| {
                // SAFETY: both indices are in bounds of `items`, which hold live exact strs.
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
        let mut slots: Vec<Option<Py<PyAny>>> =
            std::mem::take(&mut g.items).into_iter().map(Some).collect();
        g.items = order
            .iter()
            .map(|&k| slots[k].take().expect("order is a permutation"))
            .collect();
        g.version += 1;
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The Python type

impl ThreadSafeList {
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "ThreadSafeList")
    }

    fn with_items(items: impl IntoIterator<Item = Py<PyAny>>) -> Self {
        Self::from_core(Arc::new(ListCore {
            state: RwLock::new(ListState {
                items: items.into_iter().collect(),
                version: 0,
            }),
            retries: AtomicU64::new(0),
        }))
    }

    fn snapshot_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.core.snapshot(py))
    }
}

/// The elements of any iterable, collected before any lock is taken (iterating runs Python code).
fn collect_items(obj: &Bound<'_, PyAny>) -> PyResult<Items> {
    let py = obj.py();
    if let Ok(other) = obj.cast::<ThreadSafeList>() {
        return Ok(other.get().core.snapshot(py));
    }
    let iter = obj.try_iter()?;
    let (lo, _) = iter.size_hint();
    let mut v = Vec::with_capacity(lo);
    for item in iter {
        v.push(item?.unbind());
    }
    Ok(v)
}

/// The elements of a sequence for an extended-slice assignment, with `list`'s error message.
fn collect_for_extended(obj: &Bound<'_, PyAny>) -> PyResult<Items> {
    let py = obj.py();
    if obj.cast::<ThreadSafeList>().is_ok() {
        return collect_items(obj);
    }
    // SAFETY: a valid object and a NUL-terminated message; the result is a new reference.
    let seq = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PySequence_Fast(
                obj.as_ptr(),
                c"must assign iterable to extended slice".as_ptr(),
            ),
        )?
    };
    collect_items(&seq)
}

/// The elements for a plain (step 1) slice assignment, with the running interpreter's error
/// message (3.11 and 3.13 word it differently): an empty list does the conversion.
fn collect_for_slice(obj: &Bound<'_, PyAny>) -> PyResult<Items> {
    let py = obj.py();
    if obj.cast::<ThreadSafeList>().is_ok() {
        return collect_items(obj);
    }
    let tmp = PyList::empty(py);
    tmp.as_any().set_item(PySlice::new(py, 0, 0, 1), obj)?;
    Ok(tmp.iter().map(|o| o.unbind()).collect())
}

#[pymethods]
impl ThreadSafeList {
    #[new]
    #[pyo3(signature = (iterable = None, /))]
    fn new(iterable: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let items = match iterable {
            Some(it) => collect_items(it)?,
            None => Vec::new(),
        };
        Ok(Self::with_items(items))
    }

    /// A per-thread view sharing this list: see the package docs.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    /// An atomic copy of the elements, as a builtin list.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.snapshot_list(py)
    }

    /// Optimistic rounds restarted because of concurrent writes.
    #[getter]
    fn conflict_retries(&self) -> u64 {
        self.core.retries.load(Ordering::Relaxed)
    }

    #[pyo3(signature = (object, /))]
    fn append(&self, py: Python<'_>, object: Py<PyAny>) -> PyResult<()> {
        self.check()?;
        let mut g = sync::write(py, &self.core.state);
        g.items.push_back(object);
        g.version += 1;
        Ok(())
    }

    #[pyo3(signature = (iterable, /))]
    fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let items = collect_items(iterable)?;
        if items.is_empty() {
            return Ok(());
        }
        let mut g = sync::write(py, &self.core.state);
        g.items.extend(items);
        g.version += 1;
        Ok(())
    }

    #[pyo3(signature = (index, object, /))]
    fn insert(&self, py: Python<'_>, index: &Bound<'_, PyAny>, object: Py<PyAny>) -> PyResult<()> {
        let index = arg_isize(index)?;
        self.check()?;
        let mut g = sync::write(py, &self.core.state);
        let len = g.items.len() as isize;
        let i = if index < 0 {
            (index + len).max(0)
        } else {
            index.min(len)
        };
        g.items.insert(i as usize, object);
        g.version += 1;
        Ok(())
    }

    #[pyo3(signature = (index = None, /))]
    fn pop(&self, py: Python<'_>, index: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let index = index.map(arg_isize).transpose()?.unwrap_or(-1);
        self.check()?;
        let mut g = sync::write(py, &self.core.state);
        if g.items.is_empty() {
            return Err(out_of_range("pop from empty list"));
        }
        let i =
            position(index, g.items.len()).ok_or_else(|| out_of_range("pop index out of range"))?;
        let item = g.items.remove(i).expect("position is in range");
        g.version += 1;
        Ok(item)
    }

    /// Remove and return the element at `index` (default: the last), or return `default` if
    /// there is none: the list is empty or too short. Never raises `IndexError`.
    #[pyo3(signature = (default = None, index = None))]
    fn pop_or(
        &self,
        py: Python<'_>,
        default: Option<Py<PyAny>>,
        index: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let index = index.map(arg_isize).transpose()?.unwrap_or(-1);
        self.check()?;
        let popped = {
            let mut g = sync::write(py, &self.core.state);
            match position(index, g.items.len()) {
                Some(i) => {
                    g.version += 1;
                    g.items.remove(i)
                }
                None => None,
            }
        };
        Ok(popped.or(default).unwrap_or_else(|| py.None()))
    }

    #[pyo3(signature = (value, /))]
    fn remove(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        if self.core.remove_eq(py, value)? {
            Ok(())
        } else {
            Err(PyValueError::new_err("list.remove(x): x not in list"))
        }
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.check()?;
        sync::with_write(py, &self.core.state, |g, grave| {
            g.version += 1;
            grave.push(std::mem::take(&mut g.items));
        });
        Ok(())
    }

    #[pyo3(signature = (value, start = None, stop = None, /))]
    fn index(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let start = slice_index(start, 0)?;
        let stop = slice_index(stop, isize::MAX)?;
        match self.core.find(py, value, start, stop)? {
            Some(i) => Ok(i),
            // Let a real list word the error: its message differs between Python versions.
            None => match PyList::empty(py).call_method1("index", (value,)) {
                Err(e) => Err(e),
                Ok(_) => Err(PyValueError::new_err("value is not in list")),
            },
        }
    }

    #[pyo3(signature = (value, /))]
    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.core.count(py, value)
    }

    fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        self.check()?;
        let mut g = sync::write(py, &self.core.state);
        g.items.make_contiguous().reverse();
        g.version += 1;
        Ok(())
    }

    /// Stable sort, atomic to observers. `key` and comparisons run with no lock held, on a
    /// snapshot committed only if the list did not change meanwhile (else the sort is redone).
    /// If they raise, the list is unchanged. If they modify the list: `ReentrancyError`.
    #[pyo3(signature = (*, key = None, reverse = None))]
    fn sort(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let reverse = match reverse {
            Some(r) => r.is_truthy()?,
            None => false,
        };
        self.check()?;
        let key = key.filter(|k| !k.is_none());
        self.core.sort(py, key, reverse)
    }

    /// Take every element out atomically; returns them as a builtin list.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.check()?;
        let items = {
            let mut g = sync::write(py, &self.core.state);
            g.version += 1;
            std::mem::take(&mut g.items)
        };
        PyList::new(py, items)
    }

    /// Append `object` unless an equal element (identity, then `==`) is present, atomically.
    /// True if it was appended.
    #[pyo3(signature = (object, /))]
    fn append_if_absent(&self, py: Python<'_>, object: Py<PyAny>) -> PyResult<bool> {
        self.check()?;
        Ok(self.core.add_absent(py, vec![object], "append_if_absent")? == 1)
    }

    /// Append, in order, each element of `iterable` not equal to an element already in the list
    /// nor to an earlier element of `iterable`, as one atomic step. Returns how many were added.
    #[pyo3(signature = (iterable, /))]
    fn extend_if_absent(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.check()?;
        let items = collect_items(iterable)?;
        self.core.add_absent(py, items, "extend_if_absent")
    }

    /// Remove every element for which `predicate(element)` is true, atomically; how many.
    #[pyo3(signature = (predicate, /))]
    fn remove_if(&self, py: Python<'_>, predicate: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.check()?;
        self.core.remove_if(py, predicate)
    }

    /// Replace the element at `index` with `fn(element)` atomically and return the new element.
    /// `fn` runs with no lock held; if another thread replaced that element meanwhile, `fn` runs
    /// again on the new one. If `fn` raises, the list is unchanged.
    #[pyo3(signature = (index, r#fn, /))]
    fn update_at(
        &self,
        py: Python<'_>,
        index: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let index = arg_isize(index)?;
        self.check()?;
        let me = self.core_ptr();
        loop {
            let current = {
                let g = sync::read(py, &self.core.state);
                let i = position(index, g.items.len())
                    .ok_or_else(|| out_of_range("list index out of range"))?;
                g.items[i].clone_ref(py)
            };
            let new = sync::in_callback(me, || pycall::call1(r#fn, current.bind(py)))?.unbind();
            let _replaced = {
                let mut g = sync::write(py, &self.core.state);
                match position(index, g.items.len()) {
                    Some(i) if g.items[i].is(&current) => {
                        g.version += 1;
                        Some(std::mem::replace(&mut g.items[i], new.clone_ref(py)))
                    }
                    _ => None,
                }
            };
            if _replaced.is_some() {
                return Ok(new);
            }
            self.core.conflict();
            py.check_signals()?;
        }
    }

    /// Store `new` at `index` if the element there equals `expected` (identity, then `==`, as
    /// `list` compares); True if it did. `==` that runs Python code runs with no lock held, and
    /// the store then happens only if the same object is still at `index`.
    #[pyo3(signature = (index, expected, new, /))]
    fn compare_and_set(
        &self,
        py: Python<'_>,
        index: &Bound<'_, PyAny>,
        expected: &Bound<'_, PyAny>,
        new: Py<PyAny>,
    ) -> PyResult<bool> {
        let index = arg_isize(index)?;
        self.check()?;
        let me = self.core_ptr();
        loop {
            let mut replaced: Option<Py<PyAny>> = None;
            let current = {
                let mut g = sync::write(py, &self.core.state);
                let i = position(index, g.items.len())
                    .ok_or_else(|| out_of_range("list index out of range"))?;
                match eq_nopy(g.items[i].bind(py), expected) {
                    Some(true) => {
                        replaced = Some(std::mem::replace(&mut g.items[i], new.clone_ref(py)));
                        g.version += 1;
                        None
                    }
                    Some(false) => return Ok(false),
                    None => Some(g.items[i].clone_ref(py)),
                }
            };
            let Some(current) = current else {
                drop(replaced);
                return Ok(true);
            };
            let equal = sync::in_callback(me, || eq_py(current.bind(py), expected))?;
            if !equal {
                return Ok(false);
            }
            {
                let mut g = sync::write(py, &self.core.state);
                if let Some(i) = position(index, g.items.len()).filter(|&i| g.items[i].is(&current))
                {
                    replaced = Some(std::mem::replace(&mut g.items[i], new.clone_ref(py)));
                    g.version += 1;
                }
            }
            if replaced.is_some() {
                drop(replaced);
                return Ok(true);
            }
            self.core.conflict();
            py.check_signals()?;
        }
    }

    fn copy(&self, py: Python<'_>) -> Self {
        Self::with_items(self.core.snapshot(py))
    }

    fn __copy__(&self, py: Python<'_>) -> Self {
        self.copy(py)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.core.len(py)
    }

    fn __bool__(&self, py: Python<'_>) -> bool {
        self.core.len(py) != 0
    }

    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.core.find(py, value, 0, isize::MAX)?.is_some())
    }

    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match to_index(index)? {
            Index::At(i) => {
                let g = sync::read(py, &self.core.state);
                let i = position(i, g.items.len())
                    .ok_or_else(|| out_of_range("list index out of range"))?;
                Ok(g.items[i].clone_ref(py))
            }
            Index::Slice(start, stop, step) => {
                let items: Items = {
                    let g = sync::read(py, &self.core.state);
                    let (start, _, n) = adjust(g.items.len(), start, stop, step);
                    slice_positions(start, step, n)
                        .map(|p| g.items[p].clone_ref(py))
                        .collect()
                };
                Ok(Bound::new(py, Self::with_items(items))?.into_any().unbind())
            }
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        index: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.check()?;
        match to_index(index)? {
            Index::At(i) => {
                let _old = {
                    let mut g = sync::write(py, &self.core.state);
                    let i = position(i, g.items.len())
                        .ok_or_else(|| out_of_range("list assignment index out of range"))?;
                    g.version += 1;
                    std::mem::replace(&mut g.items[i], value.clone().unbind())
                };
                Ok(())
            }
            Index::Slice(start, stop, step) => {
                let new = if step == 1 {
                    collect_for_slice(value)?
                } else {
                    collect_for_extended(value)?
                };
                let mut later: Items = Vec::new();
                let mut g = sync::write(py, &self.core.state);
                let len = g.items.len();
                let (start, stop, n) = adjust(len, start, stop, step);
                if step == 1 {
                    let (lo, hi) = (start as usize, (stop.max(start)) as usize);
                    let tail = g.items.split_off(hi);
                    later.extend(g.items.drain(lo..));
                    g.items.extend(new);
                    g.items.extend(tail);
                } else {
                    if new.len() != n {
                        return Err(PyValueError::new_err(format!(
                            "attempt to assign sequence of size {} to extended slice of size {}",
                            new.len(),
                            n
                        )));
                    }
                    for (p, v) in slice_positions(start, step, n).zip(new) {
                        later.push(std::mem::replace(&mut g.items[p], v));
                    }
                }
                g.version += 1;
                drop(g);
                drop(later);
                Ok(())
            }
        }
    }

    fn __delitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let mut later: Items = Vec::new();
        let idx = to_index(index)?;
        let mut g = sync::write(py, &self.core.state);
        let len = g.items.len();
        match idx {
            Index::At(i) => {
                let i = position(i, len)
                    .ok_or_else(|| out_of_range("list assignment index out of range"))?;
                later.extend(g.items.remove(i));
            }
            Index::Slice(start, stop, step) => {
                let (start, _, n) = adjust(len, start, stop, step);
                if n == 0 {
                    return Ok(());
                }
                let mut doomed = vec![false; len];
                for p in slice_positions(start, step, n) {
                    doomed[p] = true;
                }
                let old = std::mem::take(&mut g.items);
                for (item, d) in old.into_iter().zip(doomed) {
                    if d {
                        later.push(item);
                    } else {
                        g.items.push_back(item);
                    }
                }
            }
        }
        g.version += 1;
        drop(g);
        drop(later);
        Ok(())
    }

    /// Iterates over a snapshot taken when `iter()` is called: concurrent writes neither break
    /// nor show up in an iteration already started.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        self.snapshot_list(py)?.as_any().try_iter()
    }

    fn __reversed__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_list(py)?.call_method0("__reversed__")
    }

    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if other.cast::<ThreadSafeList>().is_err() && other.cast::<PyList>().is_err() {
            return Ok(py.NotImplemented());
        }
        let mut items = self.core.snapshot(py);
        items.extend(collect_items(other)?);
        Ok(Bound::new(py, Self::with_items(items))?.into_any().unbind())
    }

    /// `list + ThreadSafeList` is a ThreadSafeList.
    fn __radd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if other.cast::<PyList>().is_err() {
            return Ok(py.NotImplemented());
        }
        let mut items = collect_items(other)?;
        items.extend(self.core.snapshot(py));
        Ok(Bound::new(py, Self::with_items(items))?.into_any().unbind())
    }

    fn __iadd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.extend(py, other)
    }

    fn __mul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(n) = repeat_count(n)? else {
            return Ok(py.NotImplemented());
        };
        let snap = self.core.snapshot(py);
        let total = snap
            .len()
            .checked_mul(n)
            .ok_or_else(|| PyMemoryError::new_err(()))?;
        let mut items: Items = Vec::new();
        items
            .try_reserve_exact(total)
            .map_err(|_| PyMemoryError::new_err(()))?;
        for _ in 0..n {
            items.extend(snap.iter().map(|o| o.clone_ref(py)));
        }
        Ok(Bound::new(py, Self::with_items(items))?.into_any().unbind())
    }

    fn __rmul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__mul__(py, n)
    }

    fn __imul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let Some(n) = repeat_count(n)? else {
            return Err(PyTypeError::new_err(format!(
                "can't multiply sequence by non-int of type '{}'",
                n.get_type().name()?
            )));
        };
        let mut later = VecDeque::new();
        {
            let mut g = sync::write(py, &self.core.state);
            let len = g.items.len();
            if n == 0 {
                later = std::mem::take(&mut g.items);
            } else if n > 1 && len > 0 {
                let total = len
                    .checked_mul(n)
                    .ok_or_else(|| PyMemoryError::new_err(()))?;
                g.items
                    .try_reserve_exact(total - len)
                    .map_err(|_| PyMemoryError::new_err(()))?;
                for _ in 1..n {
                    for k in 0..len {
                        let o = g.items[k].clone_ref(py);
                        g.items.push_back(o);
                    }
                }
            }
            g.version += 1;
        }
        drop(later);
        Ok(())
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let theirs: Bound<'_, PyAny> = if let Ok(o) = other.cast::<ThreadSafeList>() {
            o.get().snapshot_list(py)?.into_any()
        } else if other.cast::<PyList>().is_ok() {
            other.clone()
        } else {
            return Ok(py.NotImplemented());
        };
        Ok(self.snapshot_list(py)?.rich_compare(theirs, op)?.unbind())
    }

    // Mutable, so unhashable like list.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        // A list containing itself prints as `[...]` there, as list and deque do.
        // SAFETY: a valid object; every successful enter is paired with a leave below.
        let busy = unsafe { ffi::Py_ReprEnter(slf.as_ptr()) };
        if busy != 0 {
            if busy < 0 {
                return Err(PyErr::fetch(py));
            }
            return Ok("[...]".to_owned());
        }
        let r = slf
            .get()
            .snapshot_list(py)
            .and_then(|l| l.repr().map(|r| r.to_string()));
        // SAFETY: paired with the Py_ReprEnter above on the same live object.
        unsafe { ffi::Py_ReprLeave(slf.as_ptr()) };
        Ok(format!("ThreadSafeList({})", r?))
    }

    /// Pickles the elements as list items (not constructor arguments), so a list that contains
    /// itself pickles and deep-copies like a builtin list.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let cls = py.get_type::<ThreadSafeList>();
        let items = slf.get().snapshot_list(py)?.as_any().try_iter()?;
        (cls, PyTuple::empty(py), py.None(), items).into_pyobject(py)
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only the owner reports the elements, once; a view reports its owner (see `shared`).
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        // Never wait here: the holder may be waiting for this very collection.
        if let Some(g) = self.core.state.try_read() {
            for o in g.items.iter() {
                visit.call(o)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Views are never cleared: their owner breaks the cycle by clearing the elements.
        if self.owner.is_some() {
            return;
        }
        let _old = match self.core.state.try_write() {
            Some(mut g) => {
                g.version += 1;
                std::mem::take(&mut g.items)
            }
            None => return,
        };
    }
}

/// The count of a repetition (`*`), or `None` if `n` is not an integer (NotImplemented).
fn repeat_count(n: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    // SAFETY: a valid object.
    if unsafe { ffi::PyIndex_Check(n.as_ptr()) } == 0 {
        return Ok(None);
    }
    // SAFETY: a valid object that passed PyIndex_Check; errors are fetched below.
    let v = unsafe { ffi::PyNumber_AsSsize_t(n.as_ptr(), ffi::PyExc_OverflowError) };
    if v == -1 {
        fetch_if_set(n.py())?;
    }
    Ok(Some(v.max(0) as usize))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ThreadSafeList>()
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
    }
}
