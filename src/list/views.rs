//! Views of subclass instances, and views that pickle as views.
//!
//! TODO(shared): `src/shared.rs` is getting generic versions of these (`shared::local`,
//! `shared::reduce_view`, `shared::instantiate`); once they are on main, `local` and
//! `reduce_view` here become those calls, `ThreadSafeList::__new__` takes its handed-over
//! value from `shared::adopted`, and this file goes.
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};
use pyo3::{ffi, intern, PyTypeInfo};

use super::api::ThreadSafeList;
use super::storage::ListCore;
use crate::shared::SharedCore;

/// The parts of a new object handed to `ThreadSafeList.__new__` by `instantiate`: a private
/// type no caller can make, so `__new__` never mistakes an argument for it.
#[pyclass(frozen)]
pub(super) struct Adopt {
    core: Arc<ListCore>,
    owner: Option<Py<ThreadSafeList>>,
}

/// For `ThreadSafeList.__new__`: the object `instantiate` is handing over, if `args` is its
/// `Adopt`.
pub(super) fn adopted(args: &Bound<'_, PyTuple>) -> Option<ThreadSafeList> {
    if args.len() != 1 {
        return None;
    }
    let arg = args.get_borrowed_item(0).ok()?;
    let adopt = arg.cast::<Adopt>().ok()?;
    let adopt = adopt.get();
    Some(ThreadSafeList::from_parts(
        Arc::clone(&adopt.core),
        adopt.owner.as_ref().map(|o| o.clone_ref(args.py())),
    ))
}

/// A new object of class `cls` — `ThreadSafeList` itself or a Python subclass — holding `value`.
/// For a subclass this runs `ThreadSafeList.__new__(cls, adopt)`: the type's own constructor
/// slot, not the subclass's `__new__` or `__init__`, so no user code runs.
pub(super) fn instantiate<'py>(
    cls: &Bound<'py, PyType>,
    value: ThreadSafeList,
) -> PyResult<Bound<'py, ThreadSafeList>> {
    let py = cls.py();
    let base = ThreadSafeList::type_object(py);
    if cls.is(&base) {
        return Bound::new(py, value);
    }
    let (core, owner) = (
        Arc::clone(value.core()),
        value.owner().map(|o| o.clone_ref(py)),
    );
    let adopt = Bound::new(py, Adopt { core, owner })?;
    let made = base.getattr(intern!(py, "__new__"))?.call1((cls, adopt))?;
    Ok(made.cast_into::<ThreadSafeList>()?)
}

/// `slf.local()`: a new view of `slf`'s core, of `slf`'s own class, so a subclass's methods
/// work through it. A subclass instance's attributes live in its `__dict__`, which the view
/// shares with its owner: an attribute set through any of them is seen through all.
/// (Attributes in `__slots__` are not shared.)
pub(super) fn local<'py>(slf: &Bound<'py, ThreadSafeList>) -> PyResult<Bound<'py, ThreadSafeList>> {
    let view = instantiate(&slf.get_type(), ThreadSafeList::view(slf))?;
    if !view.is_exact_instance_of::<ThreadSafeList>() {
        share_instance_dict(slf.as_any(), view.as_any())?;
    }
    Ok(view)
}

/// Make `to` use `from`'s instance `__dict__` (if its class has one), bypassing any
/// `__getattribute__`/`__setattr__` a subclass defines.
fn share_instance_dict(from: &Bound<'_, PyAny>, to: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = from.py();
    // SAFETY: a live object, attached; a new reference or NULL with an error set (no __dict__).
    let dict = unsafe { ffi::PyObject_GenericGetDict(from.as_ptr(), std::ptr::null_mut()) };
    // SAFETY: as above.
    let Ok(dict) = (unsafe { Bound::from_owned_ptr_or_err(py, dict) }) else {
        return Ok(()); // a subclass with __slots__ only: nothing to share
    };
    // SAFETY: live objects, attached; 0, or -1 with an error set.
    let r =
        unsafe { ffi::PyObject_GenericSetDict(to.as_ptr(), dict.as_ptr(), std::ptr::null_mut()) };
    if r < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// `__reduce__` for a view: `(operator.methodcaller("local"), (owner,))`, so that pickling or
/// `copy.deepcopy` of a structure holding a list and its views gives a copied owner and views of
/// *that* copy, sharing one core as the originals do. `None` for an owner.
pub(super) fn reduce_view<'py>(
    slf: &Bound<'py, ThreadSafeList>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Some(owner) = slf.get().owner() else {
        return Ok(None);
    };
    let py = slf.py();
    static LOCAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let local = LOCAL.get_or_try_init(py, || {
        py.import("operator")?
            .getattr("methodcaller")?
            .call1(("local",))
            .map(Bound::unbind)
    })?;
    Ok(Some((local.bind(py), (owner.bind(py),)).into_pyobject(py)?))
}
