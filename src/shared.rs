//! The shared-core pattern every primitive follows.
//!
//! A Python-visible type is a small frozen `#[pyclass]` holding only an `Arc` of its Rust core.
//! On a free-threaded build every thread that touches one Python object fights over that object's
//! reference count (each method lookup increments it), which caps a shared object at well under a
//! million operations a second at 16 threads whatever its internals. `.local()` returns a *new*
//! Python object holding a clone of the same `Arc`: a view that one thread can own, so threads
//! holding their own views share the core but no Python object. No state lives in the Python
//! object itself, so there is no PyO3 borrow flag to race on, and a view costs one allocation.
use std::sync::Arc;

pub trait SharedCore: Sized {
    type Core;
    fn core(&self) -> &Arc<Self::Core>;
    fn from_core(core: Arc<Self::Core>) -> Self;

    /// A new handle on the same core: what every type's `local()` returns.
    fn view(&self) -> Self {
        Self::from_core(Arc::clone(self.core()))
    }

    /// The core's address: its identity for re-entrance checks (`sync::check_reentry`).
    fn core_ptr(&self) -> *const Self::Core {
        Arc::as_ptr(self.core())
    }
}

/// `impl SharedCore` for a pyclass whose only field is `core: Arc<$core>`.
macro_rules! shared_core {
    ($ty:ident, $core:ty) => {
        impl $crate::shared::SharedCore for $ty {
            type Core = $core;
            fn core(&self) -> &::std::sync::Arc<$core> {
                &self.core
            }
            fn from_core(core: ::std::sync::Arc<$core>) -> Self {
                $ty { core }
            }
        }
    };
}
pub(crate) use shared_core;
