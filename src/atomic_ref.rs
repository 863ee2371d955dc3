//! `AtomicRef` (an atomic reference to any Python object) and `AtomicBool`.
//!
//! `AtomicRef` keeps its value behind an `arc_swap::ArcSwap`: readers never lock and never wait,
//! writers replace the whole slot atomically, and `compare_and_set` compares the slot it read
//! (so object identity, with no ABA: the slot it holds cannot be reused meanwhile). `update(fn)`
//! runs `fn` with nothing held and retries when another write came first; `fn` may not write the
//! same reference (`ReentrancyError`: every commit would conflict).
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::shared::SharedCore;
use crate::{pycall, sync};

/// One stored value. Its reference is released through `pycall` when the last `Arc` of the slot
/// goes, in whichever thread that is (always an attached one: every path runs in a method).
struct Slot(Option<Py<PyAny>>);

impl Slot {
    fn new(obj: Py<PyAny>) -> Arc<Slot> {
        Arc::new(Slot(Some(obj)))
    }

    fn obj(&self) -> &Py<PyAny> {
        self.0
            .as_ref()
            .expect("a slot holds its object until it is dropped")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            Python::attach(|py| pycall::release(py, obj));
        }
    }
}

pub struct RefCore {
    value: ArcSwap<Slot>,
    /// Compare-and-swap failures in `update`.
    retries: AtomicU64,
}

#[pyclass(frozen, subclass, module = "nogilsafe", name = "AtomicRef")]
pub struct AtomicRef {
    core: Arc<RefCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(AtomicRef, RefCore);

impl AtomicRef {
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "AtomicRef")
    }

    fn load(&self, py: Python<'_>) -> Py<PyAny> {
        self.core.value.load().obj().clone_ref(py)
    }
}

#[pymethods]
impl AtomicRef {
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyGenericAlias>> {
        crate::shared::class_getitem(cls, item)
    }

    #[new]
    #[pyo3(signature = (value = None))]
    fn new(py: Python<'_>, value: Option<Py<PyAny>>) -> Self {
        let value = value.unwrap_or_else(|| py.None());
        Self::from_core(Arc::new(RefCore {
            value: ArcSwap::new(Slot::new(value)),
            retries: AtomicU64::new(0),
        }))
    }

    /// A per-thread view sharing this reference.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    fn get(&self, py: Python<'_>) -> Py<PyAny> {
        self.load(py)
    }

    fn set(&self, value: Py<PyAny>) -> PyResult<()> {
        self.check()?;
        drop(self.core.value.swap(Slot::new(value)));
        Ok(())
    }

    /// Store `value` and return the previous one.
    fn swap(&self, py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.check()?;
        let old = self.core.value.swap(Slot::new(value));
        let out = old.obj().clone_ref(py);
        drop(old);
        Ok(out)
    }

    /// Store `new` only if the current value *is* `expected` (identity, as `is`); True if stored.
    fn compare_and_set(
        &self,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.check()?;
        let v = &self.core.value;
        loop {
            let cur = v.load_full();
            if cur.obj().as_ptr() != expected.as_ptr() {
                return Ok(false);
            }
            let prev = v.compare_and_swap(&cur, Slot::new(new.clone().unbind()));
            if Arc::ptr_eq(&prev, &cur) {
                return Ok(true);
            }
            // Another write replaced the slot, perhaps with `expected` again: look again.
        }
    }

    /// Atomically replace the value with `fn(value)` and return the new value.
    ///
    /// `fn` runs with nothing held and may run more than once when other threads write
    /// concurrently; only its last result is stored. If it raises, the value is unchanged.
    fn update(&self, py: Python<'_>, r#fn: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.check()?;
        let ptr = self.core_ptr();
        let v = &self.core.value;
        loop {
            let cur = v.load_full();
            let arg = cur.obj().bind(py).clone();
            let new = sync::in_callback(ptr, || pycall::call1(r#fn, arg))?.unbind();
            let out = new.clone_ref(py);
            let prev = v.compare_and_swap(&cur, Slot::new(new));
            if Arc::ptr_eq(&prev, &cur) {
                return Ok(out);
            }
            self.core.retries.fetch_add(1, Ordering::Relaxed);
            py.check_signals()?;
        }
    }

    /// How many times `update` had to rerun its function because of a concurrent write.
    #[getter]
    fn update_retries(&self) -> u64 {
        self.core.retries.load(Ordering::Relaxed)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.load(py);
        Ok(format!("AtomicRef({})", v.bind(py).repr()?))
    }

    // Mutable, so unhashable like other mutable containers.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        (slf.get_type(), (slf.get().load(py),)).into_pyobject(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        // A lock-free read: never waits, never attaches.
        let cur = self.core.value.load();
        visit.call(cur.obj())
    }

    fn __clear__(&self) {
        if self.owner.is_some() {
            return;
        }
        Python::attach(|py| drop(self.core.value.swap(Slot::new(py.None()))));
    }
}

/// A boolean shared by threads, changed by single atomic instructions (for "stop now" flags).
#[pyclass(frozen, subclass, module = "nogilsafe", name = "AtomicBool")]
pub struct AtomicBool {
    core: Arc<StdAtomicBool>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(AtomicBool, StdAtomicBool);

#[pymethods]
impl AtomicBool {
    #[new]
    #[pyo3(signature = (value = None))]
    fn new(value: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let v = match value {
            Some(v) => pycall::truthy(v)?,
            None => false,
        };
        Ok(Self::from_core(Arc::new(StdAtomicBool::new(v))))
    }

    /// A per-thread view sharing this flag.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    fn get(&self) -> bool {
        self.core.load(Ordering::Acquire)
    }

    fn set(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = pycall::truthy(value)?;
        self.core.store(v, Ordering::Release);
        Ok(())
    }

    /// Store `value` and return the previous value.
    fn swap(&self, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let v = pycall::truthy(value)?;
        Ok(self.core.swap(v, Ordering::AcqRel))
    }

    /// Store `new` only if the current value is `expected`; True if it did.
    fn compare_and_set(&self, expected: bool, new: bool) -> bool {
        self.core
            .compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Invert the value; returns the new value.
    fn toggle(&self) -> bool {
        !self.core.fetch_xor(true, Ordering::AcqRel)
    }

    fn __bool__(&self) -> bool {
        self.get()
    }

    fn __repr__(&self) -> String {
        format!("AtomicBool({})", if self.get() { "True" } else { "False" })
    }

    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        (slf.get_type(), (slf.get().get(),)).into_pyobject(py)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AtomicRef>()?;
    m.add_class::<AtomicBool>()?;
    Ok(())
}
