//! A Python reference that is released through `pycall` wherever its last owner drops it.
//!
//! The values a core shares through `Arc`s (a state's frozen values, a once-cell's value, an
//! attempt's outcome) can be dropped by whichever thread lets go last: a reader finishing with a
//! snapshot, a commit evicting history, the collector freeing a cell. Dropping a plain `Py` there
//! would run the object's `__del__` (or, for a nested nogilsafe object, its whole deallocation)
//! on the spot: recursing on the C stack through 100,000 nested cells, or through a call site
//! that interpreter exit cannot unwind. A `SafeRef` hands its reference to
//! `pycall::release` instead, which neither recurses nor aborts. Where it is dropped is still
//! the holder's business: critical sections move removed values into a `sync::Graveyard`.
use std::mem::ManuallyDrop;
use std::ops::Deref;

use pyo3::prelude::*;

use crate::{pycall, sync};

pub struct SafeRef(ManuallyDrop<Py<PyAny>>);

impl SafeRef {
    #[inline]
    pub fn new(obj: Py<PyAny>) -> Self {
        SafeRef(ManuallyDrop::new(obj))
    }

    /// The reference itself, for a holder that passes it on instead of dropping it.
    #[inline]
    pub fn into_inner(self) -> Py<PyAny> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the field is taken exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }
}

impl Deref for SafeRef {
    type Target = Py<PyAny>;
    #[inline]
    fn deref(&self) -> &Py<PyAny> {
        &self.0
    }
}

impl Drop for SafeRef {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads the field afterwards.
        let obj = unsafe { ManuallyDrop::take(&mut self.0) };
        let mut obj = Some(obj);
        // Not attached and unable to attach (the interpreter is finalizing, or this is a GC
        // traversal): PyO3's own drop defers the decrement until a thread attaches.
        let _ = Python::try_attach(|py| {
            if let Some(o) = obj.take() {
                pycall::release(py, o);
            }
        });
        drop(obj);
    }
}

impl sync::Buried for SafeRef {
    #[inline]
    fn release(self, _py: Python<'_>) {
        drop(self);
    }
}
