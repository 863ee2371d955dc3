//! nogilsafe's native core. This file only registers: every primitive lives in its own module,
//! and the locking rules they all follow live in `sync`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]
use pyo3::prelude::*;

mod atomic;
mod atomic_ref;
mod channel;
mod dict;
mod errors;
mod exit;
mod key;
mod list;
mod locks;
mod once;
mod pycall;
mod safe_ref;
mod shared;
mod state;
mod sync;
mod waiters;

/// Rust-side allocations (frozen state values, HAMT nodes, shard tables) go to mimalloc: with
/// glibc's allocator, malloc/free was a fifth of a 100-key `ThreadSafeState.update` on 3.13t,
/// and its arenas contend across threads. Python objects still come from Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `gil_used = false`: importing the module never re-enables the GIL on a free-threaded build.
/// Every type below is safe to share between threads without it (see `sync`).
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    sync::register(m)?;
    exit::register(m)?;
    atomic::register(m)?;
    list::register(m)?;
    once::register(m)?;
    dict::register(m)?;
    state::register(m)?;
    locks::register(m)?;
    atomic_ref::register(m)?;
    channel::register(m)?;
    Ok(())
}
