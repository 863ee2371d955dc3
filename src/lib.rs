//! nogilsafe's native core. This file only registers: every primitive lives in its own module,
//! and the locking rules they all follow live in `sync`.
use pyo3::prelude::*;

mod atomic;
mod errors;
mod list;
mod once;
mod shared;
mod sync;

/// `gil_used = false`: importing the module never re-enables the GIL on a free-threaded build.
/// Every type below is safe to share between threads without it (see `sync`).
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    atomic::register(m)?;
    list::register(m)?;
    once::register(m)?;
    Ok(())
}
