//! `AtomicInt`: a 64-bit signed integer shared by threads, updated without any lock.
//!
//! Invariants: the value is only ever changed by a single atomic instruction (`compare_exchange`,
//! `swap`, `store`), so no update is lost and no reader sees a torn value. Arithmetic is checked:
//! an update that would overflow raises `OverflowError` and changes nothing. `update(fn)` runs
//! `fn` with no lock held (there is none) and commits with a compare-exchange, retrying on
//! conflict; `fn` itself may not modify the same integer (`ReentrancyError`), since that would
//! make every commit conflict.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyTuple, PyType};

use crate::shared::{self, SharedCore};
use crate::{pycall, sync};

#[derive(Default)]
pub struct AtomicCore {
    value: AtomicI64,
    /// Compare-exchange failures in `update`: how much the callers contended.
    retries: AtomicU64,
}

#[pyclass(frozen, module = "nogilsafe", name = "AtomicInt")]
pub struct AtomicInt {
    core: Arc<AtomicCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(AtomicInt, AtomicCore);

static NUMBER: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn overflow(op: &str, a: i64, b: i64) -> PyErr {
    PyOverflowError::new_err(format!(
        "AtomicInt {op} overflows a 64-bit signed integer: {a} {op} {b}; the value is unchanged"
    ))
}

impl AtomicInt {
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "AtomicInt")
    }

    /// Atomically apply a checked operation; returns (old, new).
    fn apply(&self, f: impl Fn(i64) -> Option<i64>) -> Option<(i64, i64)> {
        let v = &self.core.value;
        let mut cur = v.load(Ordering::Relaxed);
        loop {
            let new = f(cur)?;
            match v.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some((cur, new)),
                Err(actual) => cur = actual,
            }
        }
    }

    fn add(&self, delta: i64) -> PyResult<(i64, i64)> {
        self.check()?;
        self.apply(|cur| cur.checked_add(delta))
            .ok_or_else(|| overflow("+", self.core.value.load(Ordering::Relaxed), delta))
    }

    fn sub(&self, delta: i64) -> PyResult<(i64, i64)> {
        self.check()?;
        self.apply(|cur| cur.checked_sub(delta))
            .ok_or_else(|| overflow("-", self.core.value.load(Ordering::Relaxed), delta))
    }
}

fn expect_int(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    obj.extract::<i64>().map_err(|_| {
        PyOverflowError::new_err(format!("{what} does not fit in a 64-bit signed integer"))
    })
}

/// The right operand of `+=`/`-=` as an i64.
fn operand(obj: &Bound<'_, PyAny>, op: &str) -> PyResult<i64> {
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(PyOverflowError::new_err(
            format!("AtomicInt {op}: the operand does not fit in a 64-bit signed integer"),
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "unsupported operand type(s) for {op}: 'AtomicInt' and '{}'",
            obj.get_type().name()?
        ))),
    }
}

#[pymethods]
impl AtomicInt {
    #[new]
    #[pyo3(signature = (value = 0))]
    fn new(value: i64) -> Self {
        Self::from_core(Arc::new(AtomicCore {
            value: AtomicI64::new(value),
            retries: AtomicU64::new(0),
        }))
    }

    /// A per-thread view sharing this integer: see the package docs.
    fn local<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        shared::local(slf)
    }

    fn get(&self) -> i64 {
        self.core.value.load(Ordering::Acquire)
    }

    fn set(&self, value: i64) -> PyResult<()> {
        let v = value;
        self.check()?;
        self.core.value.store(v, Ordering::Release);
        Ok(())
    }

    /// Add `delta` and return the new value.
    #[pyo3(signature = (delta = 1))]
    fn increment(&self, delta: i64) -> PyResult<i64> {
        let d = delta;
        Ok(self.add(d)?.1)
    }

    /// Subtract `delta` and return the new value.
    #[pyo3(signature = (delta = 1))]
    fn decrement(&self, delta: i64) -> PyResult<i64> {
        let d = delta;
        Ok(self.sub(d)?.1)
    }

    /// Add `delta` and return the value before the addition.
    fn fetch_add(&self, delta: i64) -> PyResult<i64> {
        let d = delta;
        Ok(self.add(d)?.0)
    }

    /// Subtract `delta` and return the value before the subtraction.
    fn fetch_sub(&self, delta: i64) -> PyResult<i64> {
        let d = delta;
        Ok(self.sub(d)?.0)
    }

    /// Store `value` and return the previous value.
    fn swap(&self, value: i64) -> PyResult<i64> {
        let v = value;
        self.check()?;
        Ok(self.core.value.swap(v, Ordering::AcqRel))
    }

    /// Store `new` only if the current value equals `expected`; True if it did.
    fn compare_and_set(&self, expected: i64, new: i64) -> PyResult<bool> {
        let (e, n) = (expected, new);
        self.check()?;
        Ok(self
            .core
            .value
            .compare_exchange(e, n, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }

    /// Atomically replace the value with `fn(value)` and return the new value.
    ///
    /// `fn` runs with no lock held and may run more than once when other threads write
    /// concurrently; only its last result is stored. If it raises, the value is unchanged.
    fn update(&self, py: Python<'_>, r#fn: &Bound<'_, PyAny>) -> PyResult<i64> {
        self.check()?;
        let ptr = self.core_ptr();
        let v = &self.core.value;
        let mut cur = v.load(Ordering::Acquire);
        loop {
            let result = sync::in_callback(ptr, || pycall::call1(r#fn, cur))?;
            let new = expect_int(&result, "update function's result")?;
            match v.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(new),
                Err(actual) => {
                    self.core.retries.fetch_add(1, Ordering::Relaxed);
                    cur = actual;
                    py.check_signals()?;
                }
            }
        }
    }

    /// How many times `update` had to rerun its function because of a concurrent write.
    #[getter]
    fn update_retries(&self) -> u64 {
        self.core.retries.load(Ordering::Relaxed)
    }

    /// `a += delta`: atomic, in place. `delta` is anything with `__index__`, as for
    /// `increment`; an int outside 64 bits is `OverflowError`, anything else `TypeError`.
    fn __iadd__(&self, delta: &Bound<'_, PyAny>) -> PyResult<()> {
        self.add(operand(delta, "+=")?).map(|_| ())
    }

    fn __isub__(&self, delta: &Bound<'_, PyAny>) -> PyResult<()> {
        self.sub(operand(delta, "-=")?).map(|_| ())
    }

    fn __int__(&self) -> i64 {
        self.get()
    }

    fn __index__(&self) -> i64 {
        self.get()
    }

    fn __float__(&self) -> f64 {
        self.get() as f64
    }

    fn __bool__(&self) -> bool {
        self.get() != 0
    }

    /// Compares as its value would: with ints, floats and any other `numbers.Number` (`Fraction`,
    /// `Decimal`, ...) exactly as an `int` does; anything else is `NotImplemented`.
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let mine = self.get();
        if let Ok(o) = other.cast::<AtomicInt>() {
            let r = op.matches(mine.cmp(&o.get().get()));
            return Ok(PyBool::new(py, r).to_owned().into_any().unbind());
        }
        let numeric = other.is_exact_instance_of::<PyInt>()
            || other.is_exact_instance_of::<PyFloat>()
            || other.is_instance_of::<PyBool>()
            || other.is_instance(NUMBER.import(py, "numbers", "Number")?)?;
        if !numeric {
            return Ok(py.NotImplemented());
        }
        let mine = mine.into_pyobject(py)?.into_any();
        let r = pycall::compare(&mine, other, op as std::os::raw::c_int)?;
        Ok(PyBool::new(py, r).to_owned().into_any().unbind())
    }

    // Mutable, so unhashable like other mutable containers.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(&self) -> String {
        format!("AtomicInt({})", self.get())
    }

    /// Pickling and `copy.deepcopy`: a view reduces to its owner's view (so an object and its
    /// views stay one counter in the copy), an owner to `AtomicInt(value)`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        if let Some(r) = shared::reduce_view(slf)? {
            return Ok(r);
        }
        let py = slf.py();
        let cls = py.get_type::<AtomicInt>();
        (cls, (slf.get().get(),)).into_pyobject(py)
    }

    /// `copy.copy`: a new, independent counter holding the current value.
    fn __copy__(&self) -> Self {
        Self::from_core(Arc::new(AtomicCore {
            value: AtomicI64::new(self.get()),
            retries: AtomicU64::new(0),
        }))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AtomicInt>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> AtomicInt {
        AtomicInt::from_core(Arc::new(AtomicCore {
            value: AtomicI64::new(v),
            retries: AtomicU64::new(0),
        }))
    }

    #[test]
    fn checked_apply_leaves_value_on_overflow() {
        let a = int(i64::MAX - 1);
        assert_eq!(
            a.apply(|c| c.checked_add(1)),
            Some((i64::MAX - 1, i64::MAX))
        );
        assert_eq!(a.apply(|c| c.checked_add(1)), None);
        assert_eq!(a.core.value.load(Ordering::SeqCst), i64::MAX);
    }

    #[test]
    fn concurrent_apply_loses_no_update() {
        let a = int(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        a.apply(|c| c.checked_add(1)).unwrap();
                    }
                });
            }
        });
        assert_eq!(a.core.value.load(Ordering::SeqCst), 40_000);
    }

    #[test]
    fn views_share_one_core() {
        let a = int(5);
        // What `view` builds, minus the owner reference (that needs the interpreter).
        let b = AtomicInt::from_parts(Arc::clone(&a.core), None);
        b.apply(|c| c.checked_add(2));
        assert_eq!(a.core.value.load(Ordering::SeqCst), 7);
        assert!(Arc::ptr_eq(&a.core, &b.core));
    }
}
