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
use std::sync::Arc;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::{PyClass, PyTraverseError};

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
