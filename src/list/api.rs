//! The Python class: `list`'s contract (construction in `__init__`, subclassing, indexing and
//! slicing, operators, comparisons, copies) plus the compound operations, each a call into the
//! core (`storage`, `search`, `scan`, `sort`).
use std::sync::Arc;

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyGenericAlias, PyInt, PyList, PyTuple, PyType};
use pyo3::{PyTraverseError, PyTypeInfo};

use super::args::{
    adjust, arg_isize, clamped_index, collect_for_extended, collect_for_slice, collect_items,
    collect_like_list, insertion_point, out_of_range, position, repeat_count, slice_positions,
    to_index, Index,
};
use super::scan::{AddAbsent, Decision, RemoveFirst, RemoveIf};
use super::search::{eq_nopy, eq_py};
use super::sort;
use super::storage::{ListCore, Refs};
use crate::shared::SharedCore;
use crate::{pycall, sync};

/// A list shared by threads. See the module docs.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "ThreadSafeList")]
pub struct ThreadSafeList {
    pub(super) core: Arc<ListCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeList, ListCore);

impl ThreadSafeList {
    /// `ReentrancyError` if this thread is running Python code for an operation on this list
    /// (noted for a sort, which then raises "list modified during sort").
    #[inline]
    fn check(&self) -> PyResult<()> {
        let r = sync::check_reentry(self.core_ptr(), "ThreadSafeList");
        if r.is_err() {
            sort::note_refused_modification(self.core_ptr());
        }
        r
    }

    /// A new owner of a new core: what copies, slices, `+` and `*` return (the base class, as
    /// `list`'s return a `list` for a subclass instance).
    fn with_items(items: Refs) -> Self {
        Self::from_core(Arc::new(ListCore::new(items.into_vec().into())))
    }

    fn new_object(py: Python<'_>, items: Refs) -> PyResult<Py<PyAny>> {
        Ok(Bound::new(py, Self::with_items(items))?.into_any().unbind())
    }
}

/// Whether `slf` is exactly a `ThreadSafeList` (not a subclass instance).
fn is_exact(slf: &Bound<'_, ThreadSafeList>) -> bool {
    // SAFETY: a live object; reads its type pointer only.
    let ty = unsafe { ffi::Py_TYPE(slf.as_ptr()) };
    ty == ThreadSafeList::type_object_raw(slf.py())
}

/// `repr(obj)` (Python code: through `pycall`).
fn py_repr(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    static REPR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = obj.py();
    let repr = REPR.get_or_try_init(py, || {
        py.import("builtins")?.getattr("repr").map(Bound::unbind)
    })?;
    pycall::call1(repr.bind(py), obj)?.extract()
}

#[pymethods]
impl ThreadSafeList {
    /// An empty list; `__init__` fills it (as `list.__new__` ignores its arguments, so that a
    /// subclass's `__init__` may take its own).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        crate::shared::adopted::<Self>().unwrap_or_else(|| Self::with_items(Refs::default()))
    }

    /// `list.__init__`: the elements become those of `iterable` (none without it), atomically —
    /// on an existing list too, where it replaces the contents.
    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if kwargs.is_some_and(|k| !k.is_empty()) {
            return Err(PyTypeError::new_err(
                "ThreadSafeList() takes no keyword arguments",
            ));
        }
        let items = match args.len() {
            0 => Refs::default(),
            1 => {
                let it = args.get_item(0)?;
                match it.cast::<ThreadSafeList>() {
                    // list.__init__ empties the list before reading the iterable: a list
                    // initialised from itself ends up empty.
                    Ok(other) if Arc::ptr_eq(&other.get().core, &self.core) => Refs::default(),
                    _ => collect_like_list(&it)?,
                }
            }
            n => {
                return Err(PyTypeError::new_err(format!(
                    "ThreadSafeList expected at most 1 argument, got {n}"
                )))
            }
        };
        self.check()?;
        self.core.write_removing::<Refs, _>(py, |state, grave| {
            let old = std::mem::replace(&mut state.items, items.into_vec().into());
            grave.push(Refs::from(Vec::from(old)));
            state.changed();
        })
    }

    /// A per-thread view sharing this list (of the same class).
    fn local<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        crate::shared::local(slf)
    }

    /// An atomic copy of the elements, as a builtin list.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.core.snapshot_list(py)
    }

    /// Optimistic rounds restarted because of concurrent writes.
    #[getter]
    fn conflict_retries(&self) -> u64 {
        self.core.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[pyo3(signature = (object, /))]
    fn append(&self, py: Python<'_>, object: Py<PyAny>) -> PyResult<()> {
        self.check()?;
        self.core.write(py, |state| {
            state.items.push_back(object);
            state.changed();
        })
    }

    #[pyo3(signature = (iterable, /))]
    fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let items = collect_items(iterable)?;
        if items.is_empty() {
            return Ok(());
        }
        self.core.write(py, |state| {
            state.items.extend(items.into_vec());
            state.changed();
        })
    }

    #[pyo3(signature = (index, object, /))]
    fn insert(&self, py: Python<'_>, index: &Bound<'_, PyAny>, object: Py<PyAny>) -> PyResult<()> {
        let index = arg_isize(index)?;
        self.check()?;
        self.core.write(py, |state| {
            let i = insertion_point(index, state.items.len());
            state.items.insert(i, object);
            state.changed();
        })
    }

    #[pyo3(signature = (index = None, /))]
    fn pop(&self, py: Python<'_>, index: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let index = index.map(arg_isize).transpose()?.unwrap_or(-1);
        self.check()?;
        self.core.write(py, |state| {
            if state.items.is_empty() {
                return Err(out_of_range("pop from empty list"));
            }
            let item = position(index, state.items.len())
                .and_then(|i| state.items.remove(i))
                .ok_or_else(|| out_of_range("pop index out of range"))?;
            state.changed();
            Ok(item)
        })?
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
        let popped = self.core.write(py, |state| {
            let item = position(index, state.items.len()).and_then(|i| state.items.remove(i));
            if item.is_some() {
                state.changed();
            }
            item
        })?;
        Ok(popped.or(default).unwrap_or_else(|| py.None()))
    }

    #[pyo3(signature = (value, /))]
    fn remove(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        if self.core.run_scan(py, &mut RemoveFirst { x: value })? {
            Ok(())
        } else {
            Err(PyValueError::new_err("list.remove(x): x not in list"))
        }
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.check()?;
        self.core.write_removing::<Refs, _>(py, |state, grave| {
            state.changed();
            grave.push(Refs::from(Vec::from(std::mem::take(&mut state.items))));
        })
    }

    #[pyo3(signature = (value, start = None, stop = None, /))]
    fn index(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let start = clamped_index(start, 0)?;
        let stop = clamped_index(stop, isize::MAX)?;
        match self.core.find(py, value, start, stop)? {
            Some(i) => Ok(i),
            // Let a real list word the error: its message differs between Python versions.
            None => {
                let index = PyList::empty(py).getattr("index")?;
                match pycall::call1(&index, value) {
                    Err(e) => Err(e),
                    Ok(_) => Err(PyValueError::new_err("value is not in list")),
                }
            }
        }
    }

    #[pyo3(signature = (value, /))]
    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.core.count(py, value)
    }

    fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        self.check()?;
        self.core.write(py, |state| {
            state.items.make_contiguous().reverse();
            state.changed();
        })
    }

    /// Stable sort, atomic to observers. `key` and comparisons run with no lock held, on a
    /// snapshot committed only if the list did not change meanwhile (else the sort is redone).
    /// If they raise, the list is unchanged. If they modify the list: `ValueError`, as
    /// `list.sort` raises ("list modified during sort"), and the list is unchanged.
    #[pyo3(signature = (*, key = None, reverse = None))]
    fn sort(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let reverse = match reverse {
            None => false,
            Some(r) => {
                if !r.is_instance_of::<PyInt>() {
                    // Which objects `list.sort` takes for `reverse` depends on the version.
                    let probe = PyList::empty(py).getattr("sort")?;
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("reverse", r)?;
                    pycall::call_kw(&probe, (), Some(&kwargs))?;
                }
                pycall::truthy(r)?
            }
        };
        self.check()?;
        let key = key.filter(|k| !k.is_none());
        self.core.sort(py, key, reverse)
    }

    /// Take every element out atomically; returns them as a builtin list.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.check()?;
        let items = self.core.write(py, |state| {
            state.changed();
            std::mem::take(&mut state.items)
        })?;
        PyList::new(py, items)
    }

    /// Append `object` unless an equal element (identity, then `==`) is present, atomically.
    /// True if it was appended.
    #[pyo3(signature = (object, /))]
    fn append_if_absent(&self, py: Python<'_>, object: Py<PyAny>) -> PyResult<bool> {
        self.check()?;
        let mut scan = AddAbsent::new(py, &self.core, Refs::from(vec![object]))?;
        Ok(self.core.run_scan(py, &mut scan)? == 1)
    }

    /// Append, in order, each element of `iterable` not equal to an element already in the list
    /// nor to an earlier element of `iterable`, as one atomic step. Returns how many were added.
    #[pyo3(signature = (iterable, /))]
    fn extend_if_absent(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.check()?;
        let items = collect_items(iterable)?;
        let mut scan = AddAbsent::new(py, &self.core, items)?;
        self.core.run_scan(py, &mut scan)
    }

    /// Remove every element for which `predicate(element)` is true, atomically; how many.
    #[pyo3(signature = (predicate, /))]
    fn remove_if(&self, py: Python<'_>, predicate: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.check()?;
        let mut scan = RemoveIf {
            predicate,
            doomed: Vec::new(),
        };
        self.core.run_scan(py, &mut scan)
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
        self.core.update_slot(
            py,
            index,
            |_| None,
            |current| {
                let new = pycall::call1(r#fn, current)?.unbind();
                Ok(Decision::Replace(new.clone_ref(py), new))
            },
        )
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
        let decide = |equal: bool| {
            if equal {
                Decision::Replace(new.clone_ref(py), true)
            } else {
                Decision::Keep(false)
            }
        };
        self.core.update_slot(
            py,
            index,
            |current| eq_nopy(current, expected).map(decide),
            |current| eq_py(current, expected).map(decide),
        )
    }

    /// A shallow copy taken atomically: a new, independent `ThreadSafeList` (of the base class
    /// for a subclass instance, as `list.copy` gives a `list`).
    fn copy(&self, py: Python<'_>) -> Self {
        Self::with_items(self.core.snapshot(py))
    }

    /// `copy.copy`: what it gives for a `list` (subclass): for a subclass instance, a new
    /// instance of the subclass with the same attributes and elements.
    fn __copy__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        if is_exact(slf) {
            let py = slf.py();
            return Ok(Bound::new(py, slf.get().copy(py))?.into_any());
        }
        Self::copy_subclass(slf, &slf.get_type())
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
                let g = self.core.read(py);
                let i = position(i, g.items.len())
                    .ok_or_else(|| out_of_range("list index out of range"))?;
                Ok(g.items[i].clone_ref(py))
            }
            Index::Slice(start, stop, step) => {
                let items = {
                    let g = self.core.read(py);
                    let (start, _, n) = adjust(g.items.len(), start, stop, step);
                    slice_positions(start, step, n)
                        .map(|p| g.items[p].clone_ref(py))
                        .collect::<Vec<_>>()
                };
                Self::new_object(py, items.into())
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
            Index::At(i) => self
                .core
                .write_removing::<Py<PyAny>, _>(py, |state, grave| {
                    let i = position(i, state.items.len())
                        .ok_or_else(|| out_of_range("list assignment index out of range"))?;
                    grave.push(std::mem::replace(
                        &mut state.items[i],
                        value.clone().unbind(),
                    ));
                    state.changed();
                    Ok(())
                })?,
            Index::Slice(start, stop, step) => {
                let new = if step == 1 {
                    collect_for_slice(value)?
                } else {
                    collect_for_extended(value)?
                };
                self.core.write_removing::<Refs, _>(py, |state, grave| {
                    let (start, stop, n) = adjust(state.items.len(), start, stop, step);
                    if step == 1 {
                        let (lo, hi) = (start as usize, stop.max(start) as usize);
                        let tail = state.items.split_off(hi);
                        grave.push(Refs::from(state.items.drain(lo..).collect::<Vec<_>>()));
                        state.items.extend(new.into_vec());
                        state.items.extend(tail);
                    } else {
                        if new.len() != n {
                            let err = PyValueError::new_err(format!(
                                "attempt to assign sequence of size {} to extended slice of \
                                 size {n}",
                                new.len()
                            ));
                            // Possibly the only references to these: not dropped under the lock.
                            grave.push(new);
                            return Err(err);
                        }
                        let mut old = Vec::with_capacity(n);
                        for (p, v) in slice_positions(start, step, n).zip(new.into_vec()) {
                            old.push(std::mem::replace(&mut state.items[p], v));
                        }
                        grave.push(Refs::from(old));
                    }
                    state.changed();
                    Ok(())
                })?
            }
        }
    }

    fn __delitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let index = to_index(index)?;
        self.core.write_removing::<Refs, _>(py, |state, grave| {
            let len = state.items.len();
            match index {
                Index::At(i) => {
                    let item = position(i, len)
                        .and_then(|i| state.items.remove(i))
                        .ok_or_else(|| out_of_range("list assignment index out of range"))?;
                    grave.push(Refs::from(vec![item]));
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
                    let mut removed = Vec::with_capacity(n);
                    let old = std::mem::take(&mut state.items);
                    state.items.reserve_exact(len - n);
                    for (item, d) in old.into_iter().zip(doomed) {
                        if d {
                            removed.push(item);
                        } else {
                            state.items.push_back(item);
                        }
                    }
                    grave.push(Refs::from(removed));
                }
            }
            state.changed();
            Ok(())
        })?
    }

    /// Iterates over a snapshot taken when `iter()` is called: concurrent writes neither break
    /// nor show up in an iteration already started.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.core.snapshot_list(py)?.as_any().try_iter()?.into_any())
    }

    fn __reversed__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.core.snapshot_list(py)?.call_method0("__reversed__")
    }

    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if other.cast::<ThreadSafeList>().is_err() && other.cast::<PyList>().is_err() {
            return Ok(py.NotImplemented());
        }
        let mut items = self.core.snapshot(py);
        let mut theirs = collect_items(other)?;
        items.append(&mut theirs);
        Self::new_object(py, items)
    }

    /// `list + ThreadSafeList` is a ThreadSafeList.
    fn __radd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if other.cast::<PyList>().is_err() {
            return Ok(py.NotImplemented());
        }
        let mut items = collect_items(other)?;
        let mut mine = self.core.snapshot(py);
        items.append(&mut mine);
        Self::new_object(py, items)
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
        let mut items: Vec<Py<PyAny>> = Vec::new();
        items
            .try_reserve_exact(total)
            .map_err(|_| PyMemoryError::new_err(()))?;
        if !snap.is_empty() {
            for _ in 0..n {
                items.extend(snap.iter().map(|o| o.clone_ref(py)));
            }
        }
        Self::new_object(py, items.into())
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
        self.core.write_removing::<Refs, _>(py, |state, grave| {
            let len = state.items.len();
            if n == 0 {
                grave.push(Refs::from(Vec::from(std::mem::take(&mut state.items))));
            } else if n > 1 && len > 0 {
                let total = len
                    .checked_mul(n)
                    .ok_or_else(|| PyMemoryError::new_err(()))?;
                state
                    .items
                    .try_reserve_exact(total - len)
                    .map_err(|_| PyMemoryError::new_err(()))?;
                for _ in 1..n {
                    for k in 0..len {
                        let o = state.items[k].clone_ref(py);
                        state.items.push_back(o);
                    }
                }
            }
            state.changed();
            Ok(())
        })?
    }

    /// Compares snapshots as lists do (element comparisons are Python code: through `pycall`).
    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let theirs: Bound<'_, PyAny> = if let Ok(o) = other.cast::<ThreadSafeList>() {
            o.get().core.snapshot_list(py)?.into_any()
        } else if other.cast::<PyList>().is_ok() {
            other.clone()
        } else {
            return Ok(py.NotImplemented());
        };
        let name = match op {
            CompareOp::Lt => "__lt__",
            CompareOp::Le => "__le__",
            CompareOp::Eq => "__eq__",
            CompareOp::Ne => "__ne__",
            CompareOp::Gt => "__gt__",
            CompareOp::Ge => "__ge__",
        };
        let mine = self.core.snapshot_list(py)?;
        Ok(pycall::call1(&mine.getattr(name)?, theirs)?.unbind())
    }

    // Mutable, so unhashable like list.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    /// `ThreadSafeList([...])` (the class's own name for a subclass instance).
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
            .core
            .snapshot_list(py)
            .and_then(|l| py_repr(l.as_any()));
        // SAFETY: paired with the Py_ReprEnter above on the same live object.
        unsafe { ffi::Py_ReprLeave(slf.as_ptr()) };
        let name = if is_exact(slf) {
            "ThreadSafeList".to_owned()
        } else {
            slf.get_type().name()?.to_string()
        };
        Ok(format!("{name}({})", r?))
    }

    /// See `pickle`: a view pickles as its owner's view.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        Self::reduce(slf)
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
        if self.owner.is_none() {
            Python::attach(|py| self.core.clear_for_gc(py));
        }
    }
}
