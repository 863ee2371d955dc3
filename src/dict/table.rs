//! The sharded table: shards, entries, and key matching under a shard lock.
//!
//! Python code never runs under a shard lock. A key's hash is computed before locking (`HKey`);
//! a probe compares the stored *full* hash first, as `dict` does, so a key's `__eq__` only ever
//! runs against keys with the same hash; identity and plain keys are then decided at C level
//! (`key::fast_eq`), and any other key with the same hash is left undecided: the operation
//! releases the lock, runs `__eq__`, and retries (`Probe`, `DictCore::with_key`). What a critical
//! section removes goes into the `sync::Graveyard` of `with_key`, released after the guard.
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use pyo3::prelude::*;

use crate::key::{fast_eq, HKey};
use crate::sync::{Buried, Graveyard};
use crate::{pycall, sync};

const SHARD_BITS: u32 = 5;
pub(super) const SHARDS: usize = 1 << SHARD_BITS;

/// The shard a (scrambled) hash belongs to: bits hashbrown uses neither for its tag (top 7) nor,
/// mostly, for its bucket (low).
#[inline]
pub(super) fn shard_index(hash: u64) -> usize {
    ((hash >> 40) as usize) & (SHARDS - 1)
}

pub(super) struct Entry {
    /// The key's scrambled hash (`key::scramble` is a bijection, so equal stored hashes mean
    /// equal Python hashes).
    pub hash: u64,
    pub key: Py<PyAny>,
    pub value: Py<PyAny>,
    /// Insertion order (global, increasing).
    pub seq: u64,
    /// The shard's write stamp when this entry's value last changed: optimistic operations
    /// commit only if it is unchanged.
    pub stamp: u64,
}

impl Buried for Entry {
    fn release(self, py: Python<'_>) {
        pycall::release_all(py, [self.key, self.value]);
    }
}

/// A `get_or_insert_with` whose factory is running: later callers for the same key wait for it
/// instead of running their own factory.
pub(super) struct Pending {
    pub state: Mutex<PendState>,
    pub cv: Condvar,
}

pub(super) enum PendState {
    Running,
    Done(Py<PyAny>),
    Failed,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The last waiter to let go may hold the last reference to the value.
        if let PendState::Done(v) = std::mem::replace(self.state.get_mut(), PendState::Failed) {
            Python::attach(|py| pycall::release(py, v));
        }
    }
}

pub(super) struct PendingSlot {
    pub hash: u64,
    pub key: Py<PyAny>,
    pub waiter: Arc<Pending>,
}

impl Buried for PendingSlot {
    fn release(self, py: Python<'_>) {
        pycall::release(py, self.key);
    }
}

/// What a dict critical section removes.
pub(super) enum Removed {
    Value(Py<PyAny>),
    Entry(Entry),
    Pending(PendingSlot),
}

impl Buried for Removed {
    #[inline]
    fn release(self, py: Python<'_>) {
        match self {
            Removed::Value(v) => pycall::release(py, v),
            Removed::Entry(e) => e.release(py),
            Removed::Pending(p) => p.release(py),
        }
    }
}

pub(super) type Grave<'py> = Graveyard<'py, Removed>;

#[derive(Default)]
pub(super) struct Shard {
    pub table: HashTable<Entry>,
    /// Bumped by every mutation of this shard.
    pub stamp: u64,
    pub pending: Vec<PendingSlot>,
}

impl Shard {
    pub fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// Add an entry for a key known to be absent.
    pub fn insert_new(&mut self, core: &DictCore, k: &HKey<'_>, value: Py<PyAny>) {
        let stamp = self.next_stamp();
        let seq = core.next_seq.fetch_add(1, Ordering::Relaxed);
        self.table.insert_unique(
            k.hash,
            Entry {
                hash: k.hash,
                key: k.obj.clone().unbind(),
                value,
                seq,
                stamp,
            },
            |e| e.hash,
        );
    }
}

/// One shard on its own cache line (two, against adjacent-line prefetch).
#[repr(align(128))]
pub(super) struct Padded(
    /// Invariants: the table holds at most one entry per key (by the key's equality); an entry's
    /// `hash` is its key's scrambled hash and selects this shard; nothing running Python code
    /// holds this lock, and nothing is dropped under it (removed objects go to a graveyard); a
    /// thread holding it holds no higher-numbered shard's lock unless it took them all in order.
    pub RwLock<Shard>,
);

pub struct DictCore {
    pub(super) shards: Box<[Padded]>,
    pub(super) next_seq: AtomicU64,
    /// Optimistic operations that had to rerun their callable because of a concurrent write.
    pub(super) retries: AtomicU64,
}

impl Drop for DictCore {
    /// Released through `pycall::release_all`, so that freeing `ThreadSafeDict({0: x})` nested
    /// 100,000 deep never recurses on the C stack.
    fn drop(&mut self) {
        let mut refs: Vec<Py<PyAny>> = Vec::new();
        for s in self.shards.iter_mut() {
            let shard = s.0.get_mut();
            for e in shard.table.drain() {
                refs.push(e.key);
                refs.push(e.value);
            }
            refs.extend(shard.pending.drain(..).map(|p| p.key));
        }
        if !refs.is_empty() {
            Python::attach(|py| pycall::release_all(py, refs));
        }
    }
}

/// `__eq__` results of stored keys against the probed key, computed with no lock held, keyed by
/// the stored key's identity (`None`: not computed yet). Holding each stored key keeps its
/// address from being reused meanwhile.
///
/// `ManuallyDrop`: the empty case (nearly every probe) costs no drop glue; `drop` takes the
/// contents out and releases them, leaving an empty `Vec`, which owns nothing.
#[derive(Default)]
pub(super) struct Decided(ManuallyDrop<Vec<(Py<PyAny>, Option<bool>)>>);

impl Decided {
    fn lookup(&self, key: &Py<PyAny>) -> Option<Option<bool>> {
        let (_, eq) = self.0.iter().find(|(k, _)| k.as_ptr() == key.as_ptr())?;
        Some(*eq)
    }

    /// Run, with no lock held, `__eq__` of every stored key whose answer is not known yet
    /// against `key`. As during a `dict` lookup, an `__eq__` may read or write the dict (under
    /// `python -b`, so may the warnings machinery a bytes/str comparison runs): no lock is held,
    /// and each stored key's answer is kept, so its writes cannot make a probe retry forever
    /// unless they keep adding colliding keys with their own `__eq__`, which makes `dict` loop
    /// too.
    pub(super) fn decide(&mut self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        for i in 0..self.0.len() {
            if self.0[i].1.is_some() {
                continue;
            }
            let ptr = self.0[i].0.as_ptr();
            let known = self.0[..i].iter().find(|(k, _)| k.as_ptr() == ptr);
            let eq = match known {
                Some((_, eq)) => *eq,
                // Like dict: the stored key's __eq__ is asked first.
                None => Some(pycall::compare(
                    self.0[i].0.bind(py),
                    key,
                    pyo3::ffi::Py_EQ,
                )?),
            };
            self.0[i].1 = eq;
        }
        py.check_signals()
    }

    /// Take ownership of keys a probe could not decide (their results still unknown).
    pub(super) fn absorb(&mut self, undecided: Vec<Py<PyAny>>) {
        self.0.extend(undecided.into_iter().map(|k| (k, None)));
    }
}

impl Drop for Decided {
    #[inline]
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let keys = std::mem::take(&mut *self.0);
            Python::attach(|py| pycall::release_all(py, keys.into_iter().map(|(k, _)| k)));
        }
    }
}

/// Key matching under a lock. An operation that found no match while some stored key with the
/// same hash is undecided (its `__eq__` would have to run) must not act: it returns `None`, and
/// `with_key` runs those `__eq__` with no lock held and retries.
pub(super) struct Probe<'a, 'py> {
    key: &'a Bound<'py, PyAny>,
    hash: u64,
    decided: &'a Decided,
    undecided: Vec<Py<PyAny>>,
}

impl<'a, 'py> Probe<'a, 'py> {
    pub fn new(k: &'a HKey<'py>, decided: &'a Decided) -> Self {
        Probe {
            key: &k.obj,
            hash: k.hash,
            decided,
            undecided: Vec::new(),
        }
    }

    /// Whether the stored key `other` (with stored hash `hash`) is the probed key, as far as it
    /// can be decided without running Python code.
    #[inline]
    pub fn is(&mut self, hash: u64, other: &Py<PyAny>) -> bool {
        if hash != self.hash {
            return false;
        }
        let py = self.key.py();
        if let Some(b) = fast_eq(self.key, other.bind(py)) {
            return b;
        }
        match self.decided.lookup(other) {
            Some(Some(b)) => b,
            _ => {
                self.undecided.push(other.clone_ref(py));
                false
            }
        }
    }

    /// `is` for a table entry.
    #[inline]
    pub fn entry(&mut self, e: &Entry) -> bool {
        self.is(e.hash, &e.key)
    }

    /// Whether a stored key could not be decided (a miss is then not a miss).
    pub fn unsure(&self) -> bool {
        !self.undecided.is_empty()
    }

    pub fn into_undecided(self) -> Vec<Py<PyAny>> {
        self.undecided
    }
}

impl DictCore {
    pub fn new() -> Self {
        DictCore {
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
            next_seq: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(super) fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[shard_index(hash)].0
    }

    pub(super) fn read_all<'a>(&'a self, py: Python<'_>) -> Vec<RwLockReadGuard<'a, Shard>> {
        self.shards.iter().map(|s| sync::read(py, &s.0)).collect()
    }

    pub(super) fn write_all<'a>(&'a self, py: Python<'_>) -> Vec<RwLockWriteGuard<'a, Shard>> {
        self.shards.iter().map(|s| sync::write(py, &s.0)).collect()
    }

    /// Run `f` with every shard write-locked (in index order: a consistent cut that cannot
    /// deadlock with single-shard operations); what it puts in the graveyard is released after
    /// every guard, as `sync::with_write` does for one lock.
    pub(super) fn with_all<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut [RwLockWriteGuard<'_, Shard>], &mut Vec<Removed>) -> R,
    ) -> R {
        let mut grave: Vec<Removed> = Vec::new();
        let r = f(&mut self.write_all(py), &mut grave);
        grave.release(py);
        r
    }

    /// Raise `ReentrancyError` if this thread is inside a callback an operation on this dict runs.
    #[inline]
    pub(super) fn check(&self) -> PyResult<()> {
        sync::check_reentry(self as *const Self, "ThreadSafeDict")
    }

    /// Run `op` under `k`'s shard write lock until it can decide (see `Probe`); what `op` puts in
    /// the graveyard is released after the lock.
    pub(super) fn with_key<'py, R>(
        &self,
        k: &HKey<'py>,
        mut op: impl FnMut(&mut Shard, &mut Probe<'_, 'py>, &mut Grave<'py>) -> Option<R>,
    ) -> PyResult<R> {
        let py = k.obj.py();
        let lock = self.shard(k.hash);
        let mut decided = Decided::default();
        loop {
            let mut probe = Probe::new(k, &decided);
            let r = sync::with_write(py, lock, |shard, grave| op(shard, &mut probe, grave));
            let undecided = probe.into_undecided();
            if let Some(r) = r {
                if undecided.is_empty() {
                    // Never pushed to, so it owns no allocation: skip its out-of-line drop.
                    std::mem::forget(undecided);
                } else {
                    decided.absorb(undecided);
                }
                return Ok(r);
            }
            decided.absorb(undecided);
            decided.decide(&k.obj)?;
        }
    }

    /// Read-only counterpart of `with_key` (it removes nothing).
    pub(super) fn with_key_read<'py, R>(
        &self,
        k: &HKey<'py>,
        mut op: impl FnMut(&Shard, &mut Probe<'_, 'py>) -> Option<R>,
    ) -> PyResult<R> {
        let py = k.obj.py();
        let lock = self.shard(k.hash);
        let mut decided = Decided::default();
        loop {
            let mut probe = Probe::new(k, &decided);
            let r = op(&sync::read(py, lock), &mut probe);
            let undecided = probe.into_undecided();
            if let Some(r) = r {
                if undecided.is_empty() {
                    // Never pushed to, so it owns no allocation: skip its out-of-line drop.
                    std::mem::forget(undecided);
                } else {
                    decided.absorb(undecided);
                }
                return Ok(r);
            }
            decided.absorb(undecided);
            decided.decide(&k.obj)?;
        }
    }

    /// `k`'s value, if present.
    pub(super) fn get(&self, k: &HKey<'_>) -> PyResult<Option<Py<PyAny>>> {
        let py = k.obj.py();
        self.with_key_read(k, |shard, probe| {
            match shard.table.find(k.hash, |e| probe.entry(e)) {
                Some(e) => Some(Some(e.value.clone_ref(py))),
                None if probe.unsure() => None,
                None => Some(None),
            }
        })
    }

    /// Whether `k` is present.
    pub(super) fn contains(&self, k: &HKey<'_>) -> PyResult<bool> {
        self.with_key_read(k, |shard, probe| {
            match shard.table.find(k.hash, |e| probe.entry(e)) {
                Some(_) => Some(true),
                None if probe.unsure() => None,
                None => Some(false),
            }
        })
    }

    /// `k`'s value and its stamp, if present.
    pub(super) fn observe(&self, k: &HKey<'_>) -> PyResult<Option<(Py<PyAny>, u64)>> {
        let py = k.obj.py();
        self.with_key_read(k, |shard, probe| {
            match shard.table.find(k.hash, |e| probe.entry(e)) {
                Some(e) => Some(Some((e.value.clone_ref(py), e.stamp))),
                None if probe.unsure() => None,
                None => Some(None),
            }
        })
    }

    pub(super) fn len(&self, py: Python<'_>) -> usize {
        self.read_all(py).iter().map(|g| g.table.len()).sum()
    }

    /// An ordered copy of the contents, taken under every shard's read lock (a consistent cut).
    pub(super) fn items(&self, py: Python<'_>) -> Items {
        let mut all: Vec<(u64, Py<PyAny>, Py<PyAny>)> = Vec::new();
        {
            let guards = self.read_all(py);
            all.reserve(guards.iter().map(|g| g.table.len()).sum());
            for g in &guards {
                for e in g.table.iter() {
                    all.push((e.seq, e.key.clone_ref(py), e.value.clone_ref(py)));
                }
            }
        }
        all.sort_unstable_by_key(|(s, _, _)| *s);
        Items(all.into_iter().map(|(_, k, v)| (k, v)).collect())
    }
}

/// An ordered copy of a dict's contents. The references are released through `pycall` when it is
/// dropped: a concurrent removal may have left this copy holding the last one.
pub(super) struct Items(pub Vec<(Py<PyAny>, Py<PyAny>)>);

impl Drop for Items {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let items = std::mem::take(&mut self.0);
            Python::attach(|py| {
                pycall::release_all(py, items.into_iter().flat_map(|(k, v)| [k, v]))
            });
        }
    }
}
