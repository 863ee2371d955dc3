//! The shared-core pattern every primitive follows.
//!
//! A Python-visible type is a small frozen `#[pyclass]` holding an `Arc` of its Rust core.
//! On a free-threaded build every thread that touches one Python object fights over that object's
//! reference count (each method lookup increments it), which caps a shared object at well under a
//! million operations a second at 16 threads whatever its internals. `.local()` returns a *new*
//! Python object holding a clone of the same `Arc`: a view that one thread can own, so threads
//! holding their own views share the core but no Python object. No state lives in the Python
//! object itself, so there is no PyO3 borrow flag to race on, and a view costs one allocation.
//!
//! Garbage collection. The collector must see each reference the core holds exactly once, and
//! only from an object that dies no sooner than the core's contents are still needed. So the
//! object a constructor returns is the core's *owner*: only it reports (and clears) the core's
//! references. A view holds a strong reference to its owner — touched once when the view is made
//! and once when it dies, never per operation — and reports just that. Hence:
//! - a cycle through a view (an object holding `d.local()` that `d` contains) is collected: the
//!   collector follows view → owner → contents;
//! - the owner cannot be collected, nor cleared, while a live view can still reach the core.
//!   (Reporting from every view would count each reference once per view, and the collector
//!   could then free objects still in use; reporting from none left such cycles uncollected.)
//!
//! Subclasses and copies. `local` makes a view of the object's own class (`instantiate` builds a
//! subclass instance around a given core without running the subclass's Python code), sharing
//! the owner's instance `__dict__`. A view pickles and deep-copies as its owner's view
//! (`reduce_view`), so an object and its views stay one core in the copy. Every generic type's
//! `__class_getitem__` is `class_getitem`.
use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyGenericAlias, PyTuple, PyType};
use pyo3::{ffi, intern, PyClass, PyClassInitializer, PyTraverseError, PyTypeInfo};

pub trait SharedCore: PyClass + Sized {
    type Core;
    fn core(&self) -> &Arc<Self::Core>;
    /// `None` for the owner; a view's owner otherwise.
    fn owner(&self) -> Option<&Py<Self>>;
    fn from_parts(core: Arc<Self::Core>, owner: Option<Py<Self>>) -> Self;

    /// A new owner of a new core: what constructors return.
    fn from_core(core: Arc<Self::Core>) -> Self {
        Self::from_parts(core, None)
    }

    /// A new view of `slf`'s core: what every type's `local()` returns.
    fn view(slf: &Bound<'_, Self>) -> Self
    where
        Self: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
    {
        let this = slf.get();
        let owner = match this.owner() {
            Some(o) => o.clone_ref(slf.py()),
            None => slf.clone().unbind(),
        };
        Self::from_parts(Arc::clone(this.core()), Some(owner))
    }

    /// For `__traverse__`: a view reports its owner and returns `true`; the owner returns
    /// `false` and goes on to report the core's references.
    fn visit_owner(&self, visit: &PyVisit<'_>) -> Result<bool, PyTraverseError> {
        match self.owner() {
            Some(o) => visit.call(o).map(|_| true),
            None => Ok(false),
        }
    }

    /// The core's address: its identity for re-entrance checks (`sync::check_reentry`).
    fn core_ptr(&self) -> *const Self::Core {
        Arc::as_ptr(self.core())
    }
}

/// `impl SharedCore` for a pyclass whose fields are `core: Arc<$core>` and
/// `owner: Option<Py<Self>>`.
macro_rules! shared_core {
    ($ty:ident, $core:ty) => {
        impl $crate::shared::SharedCore for $ty {
            type Core = $core;
            fn core(&self) -> &::std::sync::Arc<$core> {
                &self.core
            }
            fn owner(&self) -> ::std::option::Option<&::pyo3::Py<Self>> {
                self.owner.as_ref()
            }
            fn from_parts(
                core: ::std::sync::Arc<$core>,
                owner: ::std::option::Option<::pyo3::Py<Self>>,
            ) -> Self {
                $ty { core, owner }
            }
        }
    };
}
pub(crate) use shared_core;

/// `cls[item]` for every generic type here (`ThreadSafeDict[str, int]`, `OnceCell[Config]`, ...):
/// a `types.GenericAlias`, as the builtin containers give. Each type's `__class_getitem__` is a
/// one-line call of this.
pub fn class_getitem<'py>(
    cls: &Bound<'py, PyType>,
    item: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyGenericAlias>> {
    PyGenericAlias::new(cls.py(), cls.as_any(), item)
}

static LOCAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `__reduce__` for a view: `(operator.methodcaller("local"), (owner,))`, so that pickling or
/// `copy.deepcopy` of a structure holding an object and its views gives a copied owner and views
/// of *that* copy, sharing one core as the originals do. `None` for an owner: the type then
/// reduces to a copy of its contents as usual.
pub fn reduce_view<'py, T>(slf: &Bound<'py, T>) -> PyResult<Option<Bound<'py, PyTuple>>>
where
    T: SharedCore + PyClass<Frozen = True> + Sync,
{
    let Some(owner) = slf.get().owner() else {
        return Ok(None);
    };
    let py = slf.py();
    let local = LOCAL.get_or_try_init(py, || {
        py.import("operator")?
            .getattr("methodcaller")?
            .call1(("local",))
            .map(Bound::unbind)
    })?;
    Ok(Some((local.bind(py), (owner.bind(py),)).into_pyobject(py)?))
}

thread_local! {
    /// A value `instantiate` hands to its type's `#[new]` (see `adopted`).
    static ADOPT: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// A new object of class `cls` — `T` itself or a Python subclass of it — holding `value`.
///
/// For a subclass this runs `T.__new__(cls)` (the type's own constructor slot, not the subclass's
/// `__new__` or `__init__`, so no user code runs and a subclass `__init__` with its own signature
/// is no obstacle), and `T`'s `#[new]` takes `value` from `adopted` instead of building a core.
pub fn instantiate<'py, T>(cls: &Bound<'py, PyType>, value: T) -> PyResult<Bound<'py, T>>
where
    T: SharedCore + PyTypeInfo + 'static,
    PyClassInitializer<T>: From<T>,
{
    let py = cls.py();
    let base = T::type_object(py);
    if cls.is(&base) {
        return Bound::new(py, value);
    }
    // SAFETY: two live type objects; a C-level check of the MRO that runs no Python code.
    if unsafe { ffi::PyType_IsSubtype(cls.as_type_ptr(), base.as_type_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "{} is not a subclass of {}",
            cls.name()?,
            base.name()?
        )));
    }
    let new = base.getattr(intern!(py, "__new__"))?;
    ADOPT.with(|a| *a.borrow_mut() = Some(Box::new(value)));
    let made = new.call1((cls,));
    // Still there only if `#[new]` never ran (an error before it): drop it here.
    let _unused = ADOPT.with(|a| a.borrow_mut().take());
    Ok(made?.cast_into::<T>()?)
}

/// For a shared-core type's `#[new]`: the value `instantiate` is handing over, if any (then the
/// constructor returns it instead of a new core).
pub fn adopted<T: 'static>() -> Option<T> {
    ADOPT.with(|a| {
        let mut slot = a.borrow_mut();
        match slot.take()?.downcast::<T>() {
            Ok(v) => Some(*v),
            Err(other) => {
                *slot = Some(other);
                None
            }
        }
    })
}

/// `slf.local()` for every shared-core type: a new view of `slf`'s core, of `slf`'s own class, so
/// a subclass's methods (and hooks such as `__missing__`) work through it. A subclass instance's
/// attributes live in its `__dict__`, which the view shares with its owner: an attribute set
/// through any of them is seen through all. (Attributes in `__slots__` are not shared.)
pub fn local<'py, T>(slf: &Bound<'py, T>) -> PyResult<Bound<'py, T>>
where
    T: SharedCore + PyClass<Frozen = True> + Sync + PyTypeInfo + 'static,
    PyClassInitializer<T>: From<T>,
{
    let py = slf.py();
    let cls = slf.as_any().get_type();
    let view = instantiate(&cls, T::view(slf))?;
    if !cls.is(T::type_object(py)) {
        let owner = match slf.get().owner() {
            Some(o) => o.bind(py).clone(),
            None => slf.clone(),
        };
        share_instance_dict(owner.as_any(), view.as_any())?;
    }
    Ok(view)
}

/// Make `to` use `from`'s instance `__dict__` (if its class has one), bypassing any
/// `__getattribute__`/`__setattr__` a subclass defines.
fn share_instance_dict(from: &Bound<'_, PyAny>, to: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = from.py();
    let name = intern!(py, "__dict__");
    // SAFETY: live objects and an interned str, attached; a new reference or NULL with an error.
    let dict = unsafe { ffi::PyObject_GenericGetAttr(from.as_ptr(), name.as_ptr()) };
    // SAFETY: as above.
    let Ok(dict) = (unsafe { Bound::from_owned_ptr_or_err(py, dict) }) else {
        return Ok(()); // no __dict__ (a subclass with __slots__ only): nothing to share
    };
    // SAFETY: live objects, attached; 0 or -1 with an error set.
    let r = unsafe { ffi::PyObject_GenericSetAttr(to.as_ptr(), name.as_ptr(), dict.as_ptr()) };
    if r < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}
