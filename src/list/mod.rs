//! `ThreadSafeList`: a `MutableSequence` whose compound operations are single atomic calls and
//! whose iteration works on a snapshot, so it never breaks because of concurrent writers.
//!
//! Design. The elements live in one `RwLock<ListState>` (`storage`); every read takes the read
//! lock, every write the write lock, both through `sync` (try first, detach only to wait), and
//! nothing that can run Python code happens under it. Operations that must run Python code —
//! `__eq__` in `remove`/`index`/`count`/`in`, sort keys and comparisons, predicates, update
//! functions — work like this:
//!
//! * Elements whose comparison runs no Python code (`key::fast_eq`: exact builtin scalars and
//!   tuples of them, identity first as `list` does) are compared under the lock: the common case
//!   needs no snapshot and no retry.
//! * At the first element that would run Python code, the rest of the list is copied (reference
//!   increments only), the lock is released and the comparisons run outside it. A mutating
//!   operation then re-locks and commits only if the part of the list it examined is still the
//!   same objects at the same positions ("prefix validation"); elements appended meanwhile are
//!   examined in the next round (`scan`). After `OPTIMISTIC_ROUNDS` failed validations the
//!   operation holds the list: other threads' writes wait at the list's writer gate until it
//!   commits (readers never wait), with a patience that doubles each time it proves too short,
//!   so the operation finishes whatever the contention and a holder's Python code that waits
//!   for a writer cannot deadlock with it (`storage::Exclusive`). Only `sort` is never promoted:
//!   it may give up after `MAX_SORT_ATTEMPTS` (`sort`).
//! * Python code run by a *mutating* operation (in a `sync::CallbackScope`) that tries to mutate
//!   the same list gets `ReentrancyError` (a sort's gets `ValueError`, as `list.sort` raises): it
//!   would invalidate the operation's own commit forever. Read-only operations (`in`, `index`,
//!   `count`, `==`) work on a snapshot and never retry, so their `__eq__` may do anything.
//! * Elements leaving the list under the lock go to a `sync::Graveyard`, released (through
//!   `pycall`) after the lock; references held outside the lock are `storage::Refs`, released
//!   through `pycall` too. So a `__del__` may use the list, and interpreter exit cannot abort
//!   inside one.
//!
//! The elements are a `VecDeque`, so the queue-like `append` + `pop(0)` is O(1) at both ends.
//! Views (`local()`) share the core; only the owner shows the collector the elements, and a
//! view shows it its owner (see `shared`), so cycles through views are collected too.
mod api;
mod args;
mod pickle;
mod scan;
mod search;
mod sort;
mod storage;

pub use api::ThreadSafeList;

pub fn register(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    use pyo3::types::PyModuleMethods;
    m.add_class::<ThreadSafeList>()
}
