//! Calling Python code from Rust: every user callback, comparison, hash and released reference
//! goes through here, so that interpreter exit can never abort the process from inside it.
//!
//! Why these few entry points instead of PyO3's `call1`, `eq`, `hash`: PyO3 declares CPython's
//! functions `extern "C"`, which rustc treats as never unwinding, so a call site of one has no
//! landing pad. When Python code re-attaches during finalization (Python < 3.14 ends the thread
//! with `pthread_exit`, a forced unwind), such a call site is where the unwinder meets Rust, and
//! it aborts the process. Here the same functions are declared `extern "C-unwind"` and called
//! directly inside `exit::guard`, whose frame then parks the thread instead (see `exit`). Nothing
//! with a destructor lives between the guard and the C call.
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::ptr;

use pyo3::ffi::{PyObject, Py_hash_t};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::BoundObject;

use crate::exit;

/// CPython's functions, called as `extern "C-unwind"`, so that the forced unwind of a thread being
/// ended reaches `exit::guard`.
///
/// They cannot simply be declared `extern "C-unwind"` here: PyO3 declares the same symbols
/// `extern "C"` (never unwinding), LTO merges the two declarations, and LLVM then turns our calls
/// into no-unwind calls with no landing pad. So each is called through a function pointer that
/// `black_box` hides from the optimiser: an indirect call of a `C-unwind` pointer keeps its
/// landing pad.
#[allow(non_snake_case)]
mod unwinding {
    use super::*;
    use pyo3::ffi;
    use std::hint::black_box;

    macro_rules! unwinding {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
            #[inline(always)]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                type Unwinding = unsafe extern "C-unwind" fn($($ty),*) -> $ret;
                // SAFETY: the same function with the same C calling convention; the two ABIs
                // differ only in whether unwinding out of the callee is allowed.
                let f: Unwinding = unsafe {
                    std::mem::transmute::<unsafe extern "C" fn($($ty),*) -> $ret, Unwinding>(
                        ffi::$name,
                    )
                };
                // SAFETY: the caller upholds the C API's contract for these arguments.
                unsafe { black_box(f)($($arg),*) }
            }
        )*};
    }

    unwinding! {
        fn PyObject_Call(callable: *mut PyObject, args: *mut PyObject, kw: *mut PyObject)
            -> *mut PyObject;
        fn PyObject_CallNoArgs(callable: *mut PyObject) -> *mut PyObject;
        fn PyObject_RichCompareBool(a: *mut PyObject, b: *mut PyObject, op: c_int) -> c_int;
        fn PyObject_Hash(o: *mut PyObject) -> Py_hash_t;
        fn PyObject_IsTrue(o: *mut PyObject) -> c_int;
    }

    /// `Py_DecRef` returns nothing, which the macro's `-> $ret` form cannot express.
    #[inline(always)]
    pub unsafe fn Py_DecRef(o: *mut PyObject) {
        type Unwinding = unsafe extern "C-unwind" fn(*mut PyObject);
        // SAFETY: as in the macro.
        let f: Unwinding = unsafe {
            std::mem::transmute::<unsafe extern "C" fn(*mut PyObject), Unwinding>(ffi::Py_DecRef)
        };
        // SAFETY: the caller owns the reference it gives up.
        unsafe { black_box(f)(o) }
    }
}

/// `callable()`.
pub fn call0<'py>(callable: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let c = callable.as_ptr();
    // SAFETY: a live object, attached; the result is a new reference or NULL with an error set.
    let r = exit::guard(|| unsafe { unwinding::PyObject_CallNoArgs(c) });
    // SAFETY: as above.
    unsafe { Bound::from_owned_ptr_or_err(callable.py(), r) }
}

/// `callable(*args)`.
#[inline]
pub fn call<'py>(
    callable: &Bound<'py, PyAny>,
    args: impl IntoPyObject<'py, Target = PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    call_kw(callable, args, None)
}

/// `callable(*args, **kwargs)`.
pub fn call_kw<'py>(
    callable: &Bound<'py, PyAny>,
    args: impl IntoPyObject<'py, Target = PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    let args = args.into_pyobject(py).map_err(Into::into)?;
    let (c, a) = (callable.as_ptr(), args.as_ptr());
    let k = kwargs.map_or(ptr::null_mut(), |k| k.as_ptr());
    // SAFETY: live objects, attached; `args` (a tuple) and `kwargs` (a dict or NULL) outlive the
    // call.
    let r = exit::guard(|| unsafe { unwinding::PyObject_Call(c, a, k) });
    // SAFETY: a new reference or NULL with an error set.
    unsafe { Bound::from_owned_ptr_or_err(py, r) }
}

/// `callable(arg)`.
#[inline]
pub fn call1<'py>(
    callable: &Bound<'py, PyAny>,
    arg: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    let arg = arg
        .into_pyobject(py)
        .map_err(Into::into)?
        .into_any()
        .into_bound();
    call(callable, PyTuple::new(py, [arg])?)
}

/// `a <op> b` as a bool (`ffi::Py_EQ`, `Py_LT`, ...), identity first for `Py_EQ` as containers
/// compare.
pub fn compare(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, op: c_int) -> PyResult<bool> {
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: live objects, attached; -1 means an exception is set.
    let r = exit::guard(|| unsafe { unwinding::PyObject_RichCompareBool(pa, pb, op) });
    if r < 0 {
        Err(PyErr::fetch(a.py()))
    } else {
        Ok(r == 1)
    }
}

/// `hash(obj)`.
pub fn hash(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    let p = obj.as_ptr();
    // SAFETY: a live object, attached; -1 with an error set on failure.
    let h = exit::guard(|| unsafe { unwinding::PyObject_Hash(p) });
    if h == -1 {
        if let Some(e) = PyErr::take(obj.py()) {
            return Err(e);
        }
    }
    Ok(h)
}

/// `bool(obj)`.
pub fn truthy(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let p = obj.as_ptr();
    // SAFETY: a live object, attached; -1 with an error set on failure.
    let r = exit::guard(|| unsafe { unwinding::PyObject_IsTrue(p) });
    if r < 0 {
        Err(PyErr::fetch(obj.py()))
    } else {
        Ok(r == 1)
    }
}

/// A module of Python glue (the coroutines that async methods return: `nogilsafe._locks`,
/// `nogilsafe._channel`), imported on first use and kept.
pub struct Glue {
    module_name: &'static str,
    module: pyo3::sync::PyOnceLock<Py<pyo3::types::PyModule>>,
}

impl Glue {
    pub const fn new(module_name: &'static str) -> Self {
        Glue {
            module_name,
            module: pyo3::sync::PyOnceLock::new(),
        }
    }

    /// `<module>.<function>(*args)`.
    pub fn call<'py>(
        &self,
        py: Python<'py>,
        function: &str,
        args: impl IntoPyObject<'py, Target = PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let module = self
            .module
            .get_or_try_init(py, || py.import(self.module_name).map(Bound::unbind))?;
        call(&module.bind(py).getattr(function)?, args)
    }
}

/// Drop a reference (running `__del__` if it was the last one). Must be called attached.
#[inline]
pub fn release(py: Python<'_>, obj: Py<PyAny>) {
    release_all(py, std::iter::once(obj));
}

/// The per-thread trampoline of `release_all`. One thread-local (one TLS lookup per release: in a
/// dynamically loaded module each lookup is a call, and a release sits on every dict write).
struct Releaser {
    /// Whether a `release_all` is running on this thread.
    active: Cell<bool>,
    /// References waiting to be dropped by the `release_all` running lower on this stack.
    deferred: RefCell<Vec<Py<PyAny>>>,
}

thread_local! {
    static RELEASER: Releaser = const {
        Releaser {
            active: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
        }
    };
}

/// Drop many references without recursing on the C stack.
///
/// Freeing `x = ThreadSafeList([x])` nested 100,000 deep would otherwise recurse once per level
/// (our deallocation drops the contents, whose deallocation drops theirs, ...) and overflow the
/// stack; CPython's own containers avoid that with the "trashcan". Here, a release that happens
/// while another is running on the same thread only queues its references, and the outermost
/// one drops the queue in a loop: the depth stays constant whatever the nesting. Every type's
/// core releases its contents through this on drop.
pub fn release_all(_py: Python<'_>, objs: impl IntoIterator<Item = Py<PyAny>>) {
    let decref = |o: Py<PyAny>| {
        let p = o.into_ptr();
        // SAFETY: attached (the token proves it); we own the reference `into_ptr` handed over.
        exit::guard(|| unsafe { unwinding::Py_DecRef(p) });
    };
    RELEASER.with(|r| {
        if r.active.get() {
            r.deferred.borrow_mut().extend(objs);
            return;
        }
        r.active.set(true);
        objs.into_iter().for_each(decref);
        // A `__del__` above may have queued more (re-entering this function): drop them here,
        // never holding the queue's borrow across a decref.
        loop {
            let next = r.deferred.borrow_mut().pop();
            match next {
                Some(o) => decref(o),
                None => break,
            }
        }
        r.active.set(false);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::ffi;

    #[test]
    fn calls_compare_hash_and_release_like_pyo3() {
        Python::initialize();
        Python::attach(|py| {
            let f = py.eval(c"lambda *a: a", None, None).unwrap();
            assert_eq!(call0(&f).unwrap().len().unwrap(), 0);
            assert_eq!(
                call1(&f, 5)
                    .unwrap()
                    .get_item(0)
                    .unwrap()
                    .extract::<i64>()
                    .unwrap(),
                5
            );
            let one = 1i64.into_pyobject(py).unwrap().into_any();
            let two = 2i64.into_pyobject(py).unwrap().into_any();
            assert!(compare(&one, &one, ffi::Py_EQ).unwrap());
            assert!(compare(&one, &two, ffi::Py_LT).unwrap());
            assert!(!compare(&two, &one, ffi::Py_LT).unwrap());
            assert_eq!(hash(&one).unwrap(), 1);
            let unhashable = py.eval(c"[]", None, None).unwrap();
            assert!(hash(&unhashable).is_err());
            assert!(truthy(&one).unwrap());
            let raising = py.eval(c"lambda: 1/0", None, None).unwrap();
            assert!(call0(&raising).is_err());
            release(py, one.unbind());
            let nested = py.eval(c"[[1]]", None, None).unwrap().unbind();
            release_all(py, vec![nested]);
        });
    }
}
