//! The elements, their lock, and the writer gate that lets a compound operation finish.
use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::pycall;
use crate::sync::{self, Buried, Graveyard};

/// References held outside the lock (snapshots, the examined part of a list, collected
/// arguments). Any of them may be the last one — another thread may have removed that element
/// meanwhile — so they are released through `pycall` when dropped: a `__del__` they run is then
/// exit-safe, and never runs under the lock as long as no `Refs` holding the *only* reference is
/// dropped under it (the ones made under the lock are clones of elements the list still holds).
#[derive(Default)]
pub(super) struct Refs(Vec<Py<PyAny>>);

impl Refs {
    pub fn into_vec(mut self) -> Vec<Py<PyAny>> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<Py<PyAny>>> for Refs {
    fn from(v: Vec<Py<PyAny>>) -> Self {
        Refs(v)
    }
}

impl Deref for Refs {
    type Target = Vec<Py<PyAny>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Refs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Refs {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let refs = std::mem::take(&mut self.0);
            Python::attach(|py| pycall::release_all(py, refs));
        }
    }
}

impl Buried for Refs {
    fn release(mut self, py: Python<'_>) {
        pycall::release_all(py, std::mem::take(&mut self.0));
    }
}

/// The elements and their version.
///
/// Invariants, guarded by `ListCore::state`:
/// - `version` is incremented by every operation that changes `items` (an unchanged version means
///   unchanged contents; a changed one may be spurious).
/// - While the lock is held no Python code runs: only reference increments, pointer comparisons
///   and `key::fast_eq`, which cannot call back. No object the collector tracks is allocated
///   under it (an allocation can start a collection, which runs arbitrary finalizers).
/// - No `Py` whose reference may be the last is dropped under it: elements leaving the list go
///   to the critical section's `Graveyard` (`ListCore::write_removing`), released after the
///   guard.
/// - Writers take it only through `ListCore::write` / `write_removing` (which honour the writer
///   gate), readers through `ListCore::read`; `__traverse__` and `__clear__` only `try_` it.
#[derive(Default)]
pub(super) struct ListState {
    pub items: VecDeque<Py<PyAny>>,
    pub version: u64,
}

impl ListState {
    /// Record a change of `items`.
    #[inline]
    pub fn changed(&mut self) {
        self.version += 1;
    }
}

pub struct ListCore {
    pub(super) state: RwLock<ListState>,
    /// Optimistic rounds restarted because of a concurrent write: how much callers contended.
    pub(super) retries: AtomicU64,
    /// The writer gate: `sync::thread_id` of the thread whose compound operation holds the list
    /// exclusively (`Exclusive`), 0 if none. Set and cleared with `state` write-locked, so a
    /// writer that holds the lock reads it exactly; also cleared under `gate` (the waiters'
    /// condition), so no wakeup is lost.
    exclusive: AtomicU64,
    gate: Mutex<()>,
    gate_open: Condvar,
    /// How long (µs) a writer waits at the closed gate before writing anyway: set by the holder
    /// when it claims the list (see `Exclusive`).
    patience_us: AtomicU64,
}

/// The least a writer waits at a closed gate before writing anyway: far longer than a normal
/// compound operation's Python code runs (thousands of `__eq__` calls).
const MIN_PATIENCE: Duration = Duration::from_millis(20);
const MAX_PATIENCE: Duration = Duration::from_secs(10);
/// A writer's patience is this many times the longest optimistic round of the holder: its held
/// round examines no more than that, so it commits first.
const PATIENCE_FACTOR: u32 = 4;

thread_local! {
    /// How many lists this thread's compound operations hold exclusively (see `gate_closed`).
    static HOLDING: Cell<usize> = const { Cell::new(0) };
}

impl ListCore {
    pub(super) fn new(items: VecDeque<Py<PyAny>>) -> Self {
        ListCore {
            state: RwLock::new(ListState { items, version: 0 }),
            retries: AtomicU64::new(0),
            exclusive: AtomicU64::new(0),
            gate: Mutex::new(()),
            gate_open: Condvar::new(),
            patience_us: AtomicU64::new(0),
        }
    }

    pub(super) fn read(&self, py: Python<'_>) -> RwLockReadGuard<'_, ListState> {
        sync::read(py, &self.state)
    }

    /// Run `f` with the write lock held, once no other thread's compound operation holds the
    /// list (waiting detached until then, or until the patience runs out). For writes that
    /// remove nothing; `write_removing` for the others. `Err` only if a signal handler raised
    /// while waiting.
    #[inline]
    pub(super) fn write<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut ListState) -> R,
    ) -> PyResult<R> {
        let mut impatient = false;
        loop {
            let mut g = sync::write(py, &self.state);
            if impatient || !self.gate_closed() {
                return Ok(f(&mut g));
            }
            drop(g);
            impatient = !self.wait_at_gate(py)?;
        }
    }

    /// `write` for a critical section that removes elements: it buries them in `grave`, which
    /// releases them after the lock (`sync::with_write`).
    pub(super) fn write_removing<'py, G: Buried, R>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut ListState, &mut Graveyard<'py, G>) -> R,
    ) -> PyResult<R> {
        let mut f = Some(f);
        let mut impatient = false;
        loop {
            let done = sync::with_write(py, &self.state, |state, grave| {
                if !impatient && self.gate_closed() {
                    return None;
                }
                let f = f
                    .take()
                    .expect("called once: the loop returns when it has run");
                Some(f(state, grave))
            });
            match done {
                Some(r) => return Ok(r),
                None => impatient = !self.wait_at_gate(py)?,
            }
        }
    }

    /// Whether this thread must wait before writing: another thread holds the list. A thread
    /// that itself holds a list never waits (its `__eq__` writing a second list whose own
    /// exclusive operation writes the first would otherwise deadlock): the holder of this list
    /// then sees its examined prefix change and runs another round.
    #[inline]
    fn gate_closed(&self) -> bool {
        let holder = self.exclusive.load(Ordering::SeqCst);
        holder != 0 && holder != sync::thread_id() && HOLDING.with(Cell::get) == 0
    }

    /// Wait until the gate opens (true) or the patience runs out (false).
    fn wait_at_gate(&self, py: Python<'_>) -> PyResult<bool> {
        let me = sync::thread_id();
        let patience = Duration::from_micros(self.patience_us.load(Ordering::Relaxed));
        let deadline = Instant::now().checked_add(patience);
        let opened = sync::wait_for(py, &self.gate, &self.gate_open, deadline, |_| {
            let holder = self.exclusive.load(Ordering::SeqCst);
            (holder == 0 || holder == me).then_some(())
        })?;
        Ok(opened.is_some())
    }

    pub(super) fn len(&self, py: Python<'_>) -> usize {
        self.read(py).items.len()
    }

    /// The elements now (reference increments under the read lock).
    pub(super) fn snapshot(&self, py: Python<'_>) -> Refs {
        let g = self.read(py);
        Refs(g.items.iter().map(|o| o.clone_ref(py)).collect())
    }

    pub(super) fn snapshot_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py).into_vec())
    }

    pub(super) fn conflict(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// `__clear__`: take the elements if the lock is free (the collector must never wait).
    pub(super) fn clear_for_gc(&self, py: Python<'_>) {
        let old = match self.state.try_write() {
            Some(mut g) => {
                g.changed();
                std::mem::take(&mut g.items)
            }
            None => return,
        };
        pycall::release_all(py, old);
    }
}

impl Drop for ListCore {
    /// Through `release_all`, so that freeing `x = ThreadSafeList([x])` nested 100,000 deep
    /// does not recurse once per level on the C stack.
    fn drop(&mut self) {
        let items = std::mem::take(&mut self.state.get_mut().items);
        if !items.is_empty() {
            Python::attach(|py| pycall::release_all(py, items));
        }
    }
}

/// A compound operation's hold on its list: while held, other threads' writes wait at the gate
/// (`ListCore::write`), so the operation's next validation succeeds. Writers wait with a
/// patience of `PATIENCE_FACTOR` times the longest optimistic round the holder ran (at least
/// `MIN_PATIENCE`), then write anyway: the held round, which examines no more than those, commits
/// first — and a holder whose own Python code waits for a waiting writer (an `__eq__` taking a
/// user lock that the writer holds while it writes) delays that writer instead of deadlocking
/// with it. Wall time of *optimistic* rounds only: a held round may include such a wait, and
/// measuring it would let the patience grow without bound.
///
/// Claimed and normally let go with the write lock held (so the release happens before the
/// graveyard runs `__del__`s that may wait for a thread waiting at the gate); dropping it lets
/// go too (an error path).
pub(super) struct Exclusive<'a, 'py> {
    core: &'a ListCore,
    py: Python<'py>,
    held: bool,
    /// The longest Python-code phase of the optimistic rounds so far.
    longest_round: Duration,
}

impl<'a, 'py> Exclusive<'a, 'py> {
    pub(super) fn new(py: Python<'py>, core: &'a ListCore) -> Self {
        Exclusive {
            core,
            py,
            held: false,
            longest_round: Duration::ZERO,
        }
    }

    /// Record how long a round's Python code ran (`Instant` when it started).
    pub fn round_took(&mut self, started: Instant) {
        if !self.held {
            self.longest_round = self.longest_round.max(started.elapsed());
        }
    }

    /// Call with the write lock held (inside `ListCore::write`). False if another thread holds
    /// the list — possible only for a thread that passed the gate because it holds another list
    /// (see `gate_closed`); the operation then stays optimistic.
    pub fn claim(&mut self) -> bool {
        if !self.held {
            let me = sync::thread_id();
            self.held = self
                .core
                .exclusive
                .compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if self.held {
                HOLDING.with(|h| h.set(h.get() + 1));
                let patience = self
                    .longest_round
                    .saturating_mul(PATIENCE_FACTOR)
                    .clamp(MIN_PATIENCE, MAX_PATIENCE);
                let micros = u64::try_from(patience.as_micros()).unwrap_or(u64::MAX);
                self.core.patience_us.store(micros, Ordering::Relaxed);
            }
        }
        self.held
    }

    pub fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        HOLDING.with(|h| h.set(h.get() - 1));
        {
            let _g = sync::lock(self.py, &self.core.gate);
            self.core.exclusive.store(0, Ordering::SeqCst);
        }
        self.core.gate_open.notify_all();
    }
}

impl Drop for Exclusive<'_, '_> {
    fn drop(&mut self) {
        self.release();
    }
}
