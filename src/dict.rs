//! `ThreadSafeDict`: a `MutableMapping` shared by threads, with atomic compound operations.
//!
//! Layout: `SHARDS` independent hash tables chosen by hash bits, each behind its own
//! `parking_lot::RwLock` on its own cache line, so threads working on different keys do not
//! serialise. Single-key operations lock exactly one shard. Whole-table operations (`len`,
//! `snapshot`, iteration, `update`/`update_many`, `clear`, `popitem`, `==`) lock *every* shard,
//! always in index order, which gives them a consistent cut and cannot deadlock: no operation
//! ever holds one shard while waiting for a lower-numbered one.
//!
//! Insertion order: every inserted entry takes a number from a global counter (an overwrite keeps
//! its number, like `dict`); snapshots sort by it, so iteration order is `dict`'s order.
//!
//! Python code (`__eq__` of non-plain keys, callbacks, factories, `__del__`) never runs under a
//! shard lock: see `Probe` for keys, `compute_with` for callbacks; removed objects go to a
//! `grave` declared before the guard, so they are released after it.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;
use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::PyTraverseError;

use crate::key::{fast_eq, HKey};
use crate::shared::SharedCore;
use crate::{pycall, sync};

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;

struct Entry {
    hash: u64,
    key: Py<PyAny>,
    value: Py<PyAny>,
    /// Insertion order (global, increasing).
    seq: u64,
    /// The shard's write stamp when this entry's value last changed: optimistic operations
    /// commit only if it is unchanged.
    stamp: u64,
}

/// A `get_or_insert_with` whose factory is running: later callers for the same key wait for it
/// instead of running their own factory.
struct Pending {
    state: Mutex<PendState>,
    cv: Condvar,
}

enum PendState {
    Running,
    Done(Py<PyAny>),
    Failed,
}

struct PendingSlot {
    hash: u64,
    key: Py<PyAny>,
    waiter: Arc<Pending>,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    /// Bumped by every mutation of this shard.
    stamp: u64,
    pending: Vec<PendingSlot>,
}

impl Shard {
    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }
}

/// One shard on its own cache line (two, against adjacent-line prefetch).
#[repr(align(128))]
struct Padded(
    /// Invariants: the table holds at most one entry per key (by the key's equality); an entry's
    /// `hash` is its key's scrambled hash and selects this shard; nothing running Python code
    /// holds this lock; a thread holding it holds no higher-numbered shard's lock unless it took
    /// them all in order.
    RwLock<Shard>,
);

pub struct DictCore {
    shards: Box<[Padded]>,
    next_seq: AtomicU64,
    /// Optimistic operations that had to rerun their callable because of a concurrent write.
    retries: AtomicU64,
}

impl DictCore {
    fn new() -> Self {
        DictCore {
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
            next_seq: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits hashbrown uses neither for its tag (top 7) nor, mostly, for its bucket (low).
        &self.shards[((hash >> 40) as usize) & (SHARDS - 1)].0
    }

    fn read_all<'a>(&'a self, py: Python<'_>) -> Vec<RwLockReadGuard<'a, Shard>> {
        self.shards.iter().map(|s| sync::read(py, &s.0)).collect()
    }

    fn write_all<'a>(&'a self, py: Python<'_>) -> Vec<RwLockWriteGuard<'a, Shard>> {
        self.shards.iter().map(|s| sync::write(py, &s.0)).collect()
    }
}

/// Key matching under a lock. Identity and plain keys are decided at C level; any other stored
/// key with the same hash is looked up in `decided` (results of `__eq__` run earlier with no lock
/// held, keyed by the candidate's identity, kept alive so the address cannot be reused) or else
/// recorded in `undecided` and treated as unequal. An operation that found no match while
/// something is undecided must not act: it returns `None`, the caller runs `__eq__` outside the
/// lock and retries.
struct Probe<'a, 'py> {
    key: &'a Bound<'py, PyAny>,
    decided: &'a [(Py<PyAny>, bool)],
    undecided: Vec<Py<PyAny>>,
}

impl Probe<'_, '_> {
    #[inline]
    fn eq(&mut self, other: &Py<PyAny>) -> bool {
        let py = self.key.py();
        if let Some(b) = fast_eq(self.key, other.bind(py)) {
            return b;
        }
        if let Some((_, d)) = self
            .decided
            .iter()
            .find(|(k, _)| k.as_ptr() == other.as_ptr())
        {
            return *d;
        }
        self.undecided.push(other.clone_ref(py));
        false
    }

    fn unsure(&self) -> bool {
        !self.undecided.is_empty()
    }
}

/// What `compute_with`'s step function decides.
enum Outcome {
    Store(Py<PyAny>),
    Delete,
}

static DELETE: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();
static MISSING: PyOnceLock<Py<Sentinel>> = PyOnceLock::new();
static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static GENERIC_ALIAS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `nogilsafe.DELETE` (returned by a `compute`/`update_value` function: remove the key) and
/// `nogilsafe.MISSING` (passed to a `compute` function: the key is absent).
#[pyclass(frozen, module = "nogilsafe")]
pub struct Sentinel {
    name: &'static str,
}

#[pymethods]
impl Sentinel {
    fn __repr__(&self) -> String {
        format!("nogilsafe.{}", self.name)
    }
    fn __reduce__(&self) -> String {
        self.name.to_string()
    }
    fn __bool__(&self) -> bool {
        false
    }
}

/// What a `compute`/`update_value` function's result asks for: `DELETE` removes the key.
fn outcome_of(py: Python<'_>, out: Bound<'_, PyAny>) -> Outcome {
    if out.is(delete_obj(py)) {
        Outcome::Delete
    } else {
        Outcome::Store(out.unbind())
    }
}

fn sentinel<'py>(
    py: Python<'py>,
    cell: &'py PyOnceLock<Py<Sentinel>>,
    name: &'static str,
) -> &'py Bound<'py, Sentinel> {
    cell.get_or_init(py, || Py::new(py, Sentinel { name }).expect("sentinel"))
        .bind(py)
}
fn delete_obj(py: Python<'_>) -> &'_ Bound<'_, Sentinel> {
    sentinel(py, &DELETE, "DELETE")
}
fn missing_obj(py: Python<'_>) -> &Bound<'_, Sentinel> {
    sentinel(py, &MISSING, "MISSING")
}

fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err((key.clone().unbind(),))
}

/// Value comparison for `compare_and_set`/`pop_if`: identity, or equality of plain values
/// decided at C level. A Python `__eq__` is never consulted (it would have to run under the lock).
fn same_value(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> bool {
    fast_eq(a, b).unwrap_or(false)
}

/// A Python int that fits i64, read without running Python code.
fn small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    // SAFETY: obj is live; exact ints convert in C.
    unsafe {
        if ffi::PyLong_CheckExact(obj.as_ptr()) == 0 {
            return None;
        }
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow);
        if overflow != 0 || (v == -1 && !ffi::PyErr_Occurred().is_null()) {
            ffi::PyErr_Clear();
            return None;
        }
        Some(v)
    }
}

#[pyclass(frozen, module = "nogilsafe", name = "ThreadSafeDict", mapping)]
pub struct ThreadSafeDict {
    core: Arc<DictCore>,
    /// `None` for the owner, else the owner this view shares its core with (see `shared`).
    owner: Option<Py<Self>>,
}

crate::shared::shared_core!(ThreadSafeDict, DictCore);

/// Ordered, owned copy of the contents taken under every shard's read lock.
type Items = Vec<(Py<PyAny>, Py<PyAny>)>;

impl ThreadSafeDict {
    fn check(&self) -> PyResult<()> {
        sync::check_reentry(self.core_ptr(), "ThreadSafeDict")
    }

    /// Run `op` under `key`'s shard write lock, resolving `__eq__` of non-plain keys
    /// outside the lock until `op` can decide (see `Probe`). Objects `op` puts in the grave are
    /// released after the lock.
    fn with_key<R>(
        &self,
        k: &HKey<'_>,
        mut op: impl FnMut(&mut Shard, &mut Probe<'_, '_>, &mut Vec<Py<PyAny>>) -> Option<R>,
    ) -> PyResult<R> {
        let py = k.obj.py();
        let lock = self.core.shard(k.hash);
        let mut decided: Vec<(Py<PyAny>, bool)> = Vec::new();
        loop {
            let mut grave: Vec<Py<PyAny>> = Vec::new();
            let (r, undecided) = {
                let mut probe = Probe {
                    key: &k.obj,
                    decided: &decided,
                    undecided: Vec::new(),
                };
                let r = {
                    let mut g = sync::write(py, lock);
                    op(&mut g, &mut probe, &mut grave)
                };
                (r, probe.undecided)
            };
            drop(grave);
            if let Some(r) = r {
                return Ok(r);
            }
            self.decide(py, &k.obj, undecided, &mut decided)?;
        }
    }

    /// Read-only counterpart of `with_key`.
    fn with_key_read<R>(
        &self,
        k: &HKey<'_>,
        mut op: impl FnMut(&Shard, &mut Probe<'_, '_>) -> Option<R>,
    ) -> PyResult<R> {
        let py = k.obj.py();
        let lock = self.core.shard(k.hash);
        let mut decided: Vec<(Py<PyAny>, bool)> = Vec::new();
        loop {
            let (r, undecided) = {
                let mut probe = Probe {
                    key: &k.obj,
                    decided: &decided,
                    undecided: Vec::new(),
                };
                let g = sync::read(py, lock);
                let r = op(&g, &mut probe);
                drop(g);
                (r, probe.undecided)
            };
            if let Some(r) = r {
                return Ok(r);
            }
            self.decide(py, &k.obj, undecided, &mut decided)?;
        }
    }

    /// Run the stored keys' `__eq__` against `key`, no lock held, marked as a callback of this
    /// dict (so an `__eq__` that mutates the dict gets `ReentrancyError`).
    fn decide(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        undecided: Vec<Py<PyAny>>,
        decided: &mut Vec<(Py<PyAny>, bool)>,
    ) -> PyResult<()> {
        debug_assert!(!undecided.is_empty());
        for cand in undecided {
            if decided.iter().any(|(k, _)| k.as_ptr() == cand.as_ptr()) {
                continue;
            }
            // Like dict: the stored key's __eq__ is asked first.
            let eq = sync::in_callback(self.core_ptr(), || {
                pycall::compare(cand.bind(py), key, pyo3::ffi::Py_EQ)
            })?;
            decided.push((cand, eq));
        }
        py.check_signals()
    }

    fn get_opt(&self, k: &HKey<'_>) -> PyResult<Option<Py<PyAny>>> {
        let py = k.obj.py();
        self.with_key_read(k, |shard, probe| {
            match shard.table.find(k.hash, |e| probe.eq(&e.key)) {
                Some(e) => Some(Some(e.value.clone_ref(py))),
                None if probe.unsure() => None,
                None => Some(None),
            }
        })
    }

    /// Current value and its stamp, or `None` if absent.
    fn observe(&self, k: &HKey<'_>) -> PyResult<Option<(Py<PyAny>, u64)>> {
        let py = k.obj.py();
        self.with_key_read(k, |shard, probe| {
            match shard.table.find(k.hash, |e| probe.eq(&e.key)) {
                Some(e) => Some(Some((e.value.clone_ref(py), e.stamp))),
                None if probe.unsure() => None,
                None => Some(None),
            }
        })
    }

    /// Insert or replace; returns the previous value (released by the caller, after the lock).
    fn set_kv(&self, k: &HKey<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let core = &self.core;
        self.with_key(k, |shard, probe, _grave| {
            let stamp = shard.next_stamp();
            if let Some(e) = shard.table.find_mut(k.hash, |e| probe.eq(&e.key)) {
                e.stamp = stamp;
                return Some(Some(std::mem::replace(
                    &mut e.value,
                    value.clone().unbind(),
                )));
            }
            if probe.unsure() {
                return None;
            }
            insert_new(core, shard, k, value.clone().unbind(), stamp);
            Some(None)
        })
    }

    /// Remove `key` if `pred(value)`; returns the removed value.
    fn remove_if(
        &self,
        k: &HKey<'_>,
        pred: impl Fn(&Bound<'_, PyAny>) -> bool,
    ) -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
        let py = k.obj.py();
        self.with_key(k, |shard, probe, _grave| {
            match shard.table.find_entry(k.hash, |e| probe.eq(&e.key)) {
                Ok(o) => {
                    if !pred(o.get().value.bind(py)) {
                        return Some(None);
                    }
                    let (e, _) = o.remove();
                    shard.stamp += 1;
                    Some(Some((e.key, e.value)))
                }
                Err(_) if probe.unsure() => None,
                Err(_) => Some(None),
            }
        })
    }

    /// Optimistic read-compute-commit: `step` sees the current value (or `None`) with no lock
    /// held and its result is committed only if the key's entry has not changed since; otherwise
    /// it runs again. Returns the value after the operation.
    fn compute_with(
        &self,
        k: &HKey<'_>,
        mut step: impl FnMut(Option<&Bound<'_, PyAny>>) -> PyResult<Outcome>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.check()?;
        let py = k.obj.py();
        let core = &self.core;
        loop {
            let seen = self.observe(k)?;
            let outcome = sync::in_callback(self.core_ptr(), || {
                step(seen.as_ref().map(|(v, _)| v.bind(py)))
            })?;
            let seen_stamp = seen.as_ref().map(|(_, s)| *s);
            let committed = self.with_key(k, |shard, probe, grave| {
                let stamp = shard.stamp + 1;
                let found = shard.table.find_entry(k.hash, |e| probe.eq(&e.key));
                match (found, seen_stamp) {
                    (Ok(o), Some(st)) if o.get().stamp == st => match &outcome {
                        Outcome::Store(v) => {
                            let e = o.into_mut();
                            e.stamp = stamp;
                            grave.push(std::mem::replace(&mut e.value, v.clone_ref(py)));
                            shard.stamp = stamp;
                            Some(Some(true))
                        }
                        Outcome::Delete => {
                            let (e, _) = o.remove();
                            grave.push(e.key);
                            grave.push(e.value);
                            shard.stamp += 1;
                            Some(Some(false))
                        }
                    },
                    (Ok(_), _) => Some(None),
                    (Err(_), _) if probe.unsure() => None,
                    (Err(_), None) => match &outcome {
                        Outcome::Store(v) => {
                            let stamp = shard.next_stamp();
                            insert_new(core, shard, k, v.clone_ref(py), stamp);
                            Some(Some(true))
                        }
                        Outcome::Delete => Some(Some(false)),
                    },
                    (Err(_), Some(_)) => Some(None),
                }
            })?;
            match committed {
                Some(_) => {
                    return Ok(match outcome {
                        Outcome::Store(v) => Some(v),
                        Outcome::Delete => None,
                    });
                }
                None => {
                    self.core.retries.fetch_add(1, Ordering::Relaxed);
                    py.check_signals()?;
                }
            }
        }
    }

    fn ordered_items(&self, py: Python<'_>) -> Items {
        let mut all: Vec<(u64, Py<PyAny>, Py<PyAny>)> = Vec::new();
        {
            let guards = self.core.read_all(py);
            all.reserve(guards.iter().map(|g| g.table.len()).sum());
            for g in &guards {
                for e in g.table.iter() {
                    all.push((e.seq, e.key.clone_ref(py), e.value.clone_ref(py)));
                }
            }
        }
        all.sort_unstable_by_key(|(s, _, _)| *s);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    fn snapshot_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.ordered_items(py) {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Everything `dict(arg, **kwargs)` accepts, as an ordered, de-duplicated list of hashed
    /// pairs. Runs Python code (iteration, `__hash__`, `__eq__`): call it before locking.
    fn collect_items<'py>(
        py: Python<'py>,
        arg: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<(HKey<'py>, Bound<'py, PyAny>)>> {
        let tmp = PyDict::new(py);
        if let Some(a) = arg {
            if let Ok(other) = a.cast::<ThreadSafeDict>() {
                for (k, v) in other.get().ordered_items(py) {
                    tmp.set_item(k, v)?;
                }
            } else {
                tmp.call_method1("update", (a,))?;
            }
        }
        if let Some(kw) = kwargs {
            tmp.update(kw.as_mapping())?;
        }
        tmp.iter().map(|(k, v)| Ok((HKey::new(&k)?, v))).collect()
    }

    /// Apply `pairs` atomically: every shard is write-locked (in order) for the whole batch, so
    /// no reader sees part of it.
    fn apply_batch(&self, py: Python<'_>, pairs: &[(HKey<'_>, Bound<'_, PyAny>)]) -> PyResult<()> {
        let core = &self.core;
        let mut decided: Vec<Vec<(Py<PyAny>, bool)>> = pairs.iter().map(|_| Vec::new()).collect();
        loop {
            let mut grave: Vec<Py<PyAny>> = Vec::new();
            let mut unsure: Vec<(usize, Vec<Py<PyAny>>)> = Vec::new();
            {
                let mut guards = core.write_all(py);
                // Phase 1: resolve every key; act only if all are decided.
                let mut targets: Vec<Option<*mut ffi::PyObject>> = Vec::with_capacity(pairs.len());
                for (i, (k, _)) in pairs.iter().enumerate() {
                    let g = &guards[((k.hash >> 40) as usize) & (SHARDS - 1)];
                    let mut probe = Probe {
                        key: &k.obj,
                        decided: &decided[i],
                        undecided: Vec::new(),
                    };
                    let found = g
                        .table
                        .find(k.hash, |e| probe.eq(&e.key))
                        .map(|e| e.key.as_ptr());
                    if found.is_none() && probe.unsure() {
                        unsure.push((i, probe.undecided));
                    }
                    targets.push(found);
                }
                if unsure.is_empty() {
                    for ((k, v), t) in pairs.iter().zip(targets) {
                        let g = &mut guards[((k.hash >> 40) as usize) & (SHARDS - 1)];
                        let stamp = g.next_stamp();
                        match t {
                            Some(ptr) => {
                                let e = g
                                    .table
                                    .find_mut(k.hash, |e| e.key.as_ptr() == ptr)
                                    .expect("entry found in phase 1");
                                e.stamp = stamp;
                                grave.push(std::mem::replace(&mut e.value, v.clone().unbind()));
                            }
                            None => insert_new(core, g, k, v.clone().unbind(), stamp),
                        }
                    }
                }
            }
            drop(grave);
            if unsure.is_empty() {
                return Ok(());
            }
            for (i, und) in unsure {
                self.decide(py, &pairs[i].0.obj, und, &mut decided[i])?;
            }
        }
    }

    fn update_from(
        &self,
        py: Python<'_>,
        arg: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        self.check()?;
        let pairs = Self::collect_items(py, arg, kwargs)?;
        if pairs.is_empty() {
            return Ok(());
        }
        self.apply_batch(py, &pairs)
    }

    fn is_mapping(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = obj.py();
        if obj.is_instance_of::<PyDict>() || obj.cast::<ThreadSafeDict>().is_ok() {
            return Ok(true);
        }
        obj.is_instance(MAPPING.import(py, "collections.abc", "Mapping")?)
    }

    fn new_from_items(py: Python<'_>, items: Items) -> PyResult<ThreadSafeDict> {
        let d = ThreadSafeDict::from_core(Arc::new(DictCore::new()));
        let pairs = items
            .iter()
            .map(|(k, v)| Ok((HKey::new(k.bind(py))?, v.bind(py).clone())))
            .collect::<PyResult<Vec<_>>>()?;
        d.apply_batch(py, &pairs)?;
        Ok(d)
    }
}

fn insert_new(core: &DictCore, shard: &mut Shard, k: &HKey<'_>, value: Py<PyAny>, stamp: u64) {
    let seq = core.next_seq.fetch_add(1, Ordering::Relaxed);
    shard.table.insert_unique(
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

#[pymethods]
impl ThreadSafeDict {
    #[new]
    #[pyo3(signature = (arg = None, /, **kwargs))]
    fn py_new(
        py: Python<'_>,
        arg: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let d = ThreadSafeDict::from_core(Arc::new(DictCore::new()));
        d.update_from(py, arg, kwargs)?;
        Ok(d)
    }

    /// A per-thread view sharing this dict's table.
    fn local(slf: &Bound<'_, Self>) -> Self {
        Self::view(slf)
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        self.get_opt(&k)?.ok_or_else(|| key_error(key))
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let k = HKey::new(key)?;
        let _old = self.set_kv(&k, value)?;
        Ok(())
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check()?;
        let k = HKey::new(key)?;
        match self.remove_if(&k, |_| true)? {
            Some(_) => Ok(()),
            None => Err(key_error(key)),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = HKey::new(key)?;
        Ok(self.get_opt(&k)?.is_some())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.core.read_all(py).iter().map(|g| g.table.len()).sum()
    }

    fn __bool__(&self, py: Python<'_>) -> bool {
        self.__len__(py) > 0
    }

    /// Iterate over a snapshot of the keys taken now: never raises because of concurrent writes.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let keys: Vec<Py<PyAny>> = self.ordered_items(py).into_iter().map(|(k, _)| k).collect();
        PyList::new(py, keys)?
            .into_any()
            .try_iter()
            .map(|i| i.into_any())
    }

    fn __reversed__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let keys: Vec<Py<PyAny>> = self
            .ordered_items(py)
            .into_iter()
            .rev()
            .map(|(k, _)| k)
            .collect();
        PyList::new(py, keys)?
            .into_any()
            .try_iter()
            .map(|i| i.into_any())
    }

    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        Ok(self
            .get_opt(&k)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    /// Insert `key` with `default` if absent (atomically); return the value now stored.
    #[pyo3(signature = (key, default = None))]
    fn setdefault(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.check()?;
        let k = HKey::new(key)?;
        let none = py.None().into_bound(py);
        let default = default.unwrap_or(&none);
        let core = &self.core;
        self.with_key(&k, |shard, probe, _| {
            if let Some(e) = shard.table.find(k.hash, |e| probe.eq(&e.key)) {
                return Some(e.value.clone_ref(py));
            }
            if probe.unsure() {
                return None;
            }
            let stamp = shard.next_stamp();
            insert_new(core, shard, &k, default.clone().unbind(), stamp);
            Some(default.clone().unbind())
        })
    }

    #[pyo3(signature = (key, *default))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        self.check()?;
        let k = HKey::new(key)?;
        match self.remove_if(&k, |_| true)? {
            Some((_k, v)) => Ok(v),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(key_error(key)),
        }
    }

    /// Remove and return the most recently inserted (key, value) pair, like `dict` (O(n)).
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check()?;
        let removed = {
            let mut guards = self.core.write_all(py);
            let mut best: Option<(usize, u64, *mut ffi::PyObject, u64)> = None;
            for (i, g) in guards.iter().enumerate() {
                for e in g.table.iter() {
                    if best.is_none_or(|(_, s, _, _)| e.seq > s) {
                        best = Some((i, e.seq, e.key.as_ptr(), e.hash));
                    }
                }
            }
            best.map(|(i, _, ptr, hash)| {
                let g = &mut guards[i];
                g.stamp += 1;
                let o = g
                    .table
                    .find_entry(hash, |e| e.key.as_ptr() == ptr)
                    .ok()
                    .expect("found");
                let (e, _) = o.remove();
                (e.key, e.value)
            })
        };
        match removed {
            Some((k, v)) => PyTuple::new(py, [k, v]),
            None => Err(PyKeyError::new_err("popitem(): dictionary is empty")),
        }
    }

    /// Like `dict.update`, but atomic: either every pair is applied or (on error) none is, and
    /// no reader sees a part of it.
    #[pyo3(signature = (arg = None, /, **kwargs))]
    fn update(
        &self,
        py: Python<'_>,
        arg: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        self.update_from(py, arg, kwargs)
    }

    /// Apply every pair of `mapping` (anything `dict()` accepts) atomically.
    fn update_many(&self, py: Python<'_>, mapping: &Bound<'_, PyAny>) -> PyResult<()> {
        self.update_from(py, Some(mapping), None)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.check()?;
        let mut dead: Vec<Entry> = Vec::new();
        {
            let mut guards = self.core.write_all(py);
            for g in guards.iter_mut() {
                g.stamp += 1;
                dead.extend(g.table.drain());
            }
        }
        drop(dead);
        Ok(())
    }

    /// A shallow copy taken atomically (a new, independent ThreadSafeDict).
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        Self::new_from_items(py, self.ordered_items(py))
    }

    fn __copy__(&self, py: Python<'_>) -> PyResult<Self> {
        self.copy(py)
    }

    /// A plain `dict` copy taken atomically.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.snapshot_dict(py)
    }

    /// The keys of a snapshot taken now (a `dict_keys` of a private copy: set operations work).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0("keys")
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0("values")
    }

    #[pyo3(name = "items")]
    fn items_view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.snapshot_dict(py)?.call_method0("items")
    }

    #[classmethod]
    #[pyo3(signature = (iterable, value = None))]
    fn fromkeys(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        iterable: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let d = py
            .get_type::<PyDict>()
            .call_method1("fromkeys", (iterable, value))?;
        Self::py_new(py, Some(&d), None)
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        GENERIC_ALIAS
            .import(py, "types", "GenericAlias")?
            .call1((cls, item))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        // SAFETY: slf is live; ReprEnter/Leave are paired below.
        let busy = unsafe { ffi::Py_ReprEnter(slf.as_ptr()) };
        if busy != 0 {
            return if busy > 0 {
                Ok("ThreadSafeDict({...})".into())
            } else {
                Err(PyErr::fetch(py))
            };
        }
        let r = slf
            .get()
            .snapshot_dict(py)
            .and_then(|d| d.repr().map(|s| s.to_string()));
        // SAFETY: paired with the Py_ReprEnter above on the same live object.
        unsafe { ffi::Py_ReprLeave(slf.as_ptr()) };
        Ok(format!("ThreadSafeDict({})", r?))
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let eq = match op {
            CompareOp::Eq | CompareOp::Ne => {
                if !Self::is_mapping(other)? {
                    return Ok(py.NotImplemented());
                }
                let mine = self.snapshot_dict(py)?;
                let theirs: Bound<'_, PyAny> = if let Ok(t) = other.cast::<ThreadSafeDict>() {
                    t.get().snapshot_dict(py)?.into_any()
                } else if other.is_instance_of::<PyDict>() {
                    other.clone()
                } else {
                    PyDict::from_sequence(&other.call_method0("items")?)?.into_any()
                };
                mine.eq(theirs)?
            }
            _ => return Ok(py.NotImplemented()),
        };
        let r = if matches!(op, CompareOp::Eq) { eq } else { !eq };
        Ok(r.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    fn __or__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !Self::is_mapping(other)? {
            return Ok(py.NotImplemented());
        }
        let new = self.copy(py)?;
        new.update_from(py, Some(other), None)?;
        Ok(Py::new(py, new)?.into_any())
    }

    fn __ror__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !Self::is_mapping(other)? {
            return Ok(py.NotImplemented());
        }
        let new = Self::py_new(py, Some(other), None)?;
        new.apply_batch(
            py,
            &self
                .ordered_items(py)
                .iter()
                .map(|(k, v)| Ok((HKey::new(k.bind(py))?, v.bind(py).clone())))
                .collect::<PyResult<Vec<_>>>()?,
        )?;
        Ok(Py::new(py, new)?.into_any())
    }

    fn __ior__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.update_from(py, Some(other), None)
    }

    /// Pickle/copy support: the items are set after the object exists, so cycles work.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let items = slf
            .get()
            .snapshot_dict(py)?
            .call_method0("items")?
            .try_iter()?;
        PyTuple::new(
            py,
            [
                slf.get_type().into_any(),
                PyTuple::empty(py).into_any(),
                py.None().into_bound(py),
                py.None().into_bound(py),
                items.into_any(),
            ],
        )
    }

    /// Return `key`'s value, inserting `factory()` first if the key is absent.
    ///
    /// `factory` runs with no lock held, once per successful insert: concurrent callers for the
    /// same key wait (up to `timeout` seconds, then `LockTimeoutError`) for the one running
    /// factory and all return its value. If it raises, the error propagates to its caller and
    /// one of the waiters runs its own factory.
    #[pyo3(signature = (key, factory, *, timeout = None))]
    fn get_or_insert_with(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        factory: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        self.check()?;
        let deadline: Option<Instant> = sync::deadline(timeout)?;
        let k = HKey::new(key)?;
        enum Act {
            Have(Py<PyAny>),
            Wait(Arc<Pending>),
            Run(Arc<Pending>),
        }
        loop {
            let act = self.with_key(&k, |shard, probe, _| {
                if let Some(e) = shard.table.find(k.hash, |e| probe.eq(&e.key)) {
                    return Some(Act::Have(e.value.clone_ref(py)));
                }
                if let Some(p) = shard
                    .pending
                    .iter()
                    .find(|p| p.hash == k.hash && probe.eq(&p.key))
                {
                    return Some(Act::Wait(Arc::clone(&p.waiter)));
                }
                if probe.unsure() {
                    return None;
                }
                let w = Arc::new(Pending {
                    state: Mutex::new(PendState::Running),
                    cv: Condvar::new(),
                });
                shard.pending.push(PendingSlot {
                    hash: k.hash,
                    key: k.obj.clone().unbind(),
                    waiter: Arc::clone(&w),
                });
                Some(Act::Run(w))
            })?;
            match act {
                Act::Have(v) => return Ok(v),
                Act::Wait(w) => {
                    let ended = sync::wait_for(py, &w.state, &w.cv, deadline, |st| {
                        (!matches!(st, PendState::Running)).then_some(())
                    })?;
                    if ended.is_none() {
                        return Err(sync::timeout_error(
                            "ThreadSafeDict.get_or_insert_with",
                            timeout,
                        ));
                    }
                    if let PendState::Done(v) = &*sync::lock(py, &w.state) {
                        return Ok(v.clone_ref(py));
                    }
                    // The factory failed: go round, and maybe run it ourselves.
                }
                Act::Run(w) => {
                    let made = sync::in_callback(self.core_ptr(), || pycall::call0(factory));
                    let core = &self.core;
                    let result = made.and_then(|v| {
                        self.with_key(&k, |shard, probe, grave| {
                            let existing = shard
                                .table
                                .find(k.hash, |e| probe.eq(&e.key))
                                .map(|e| e.value.clone_ref(py));
                            if existing.is_none() && probe.unsure() {
                                return None;
                            }
                            if let Some(pos) = shard
                                .pending
                                .iter()
                                .position(|p| Arc::ptr_eq(&p.waiter, &w))
                            {
                                grave.push(shard.pending.swap_remove(pos).key);
                            }
                            Some(match existing {
                                Some(e) => e,
                                None => {
                                    let stamp = shard.next_stamp();
                                    insert_new(core, shard, &k, v.clone().unbind(), stamp);
                                    v.clone().unbind()
                                }
                            })
                        })
                    });
                    if result.is_err() {
                        let mut grave: Vec<PendingSlot> = Vec::new();
                        {
                            let mut shard = sync::write(py, core.shard(k.hash));
                            if let Some(pos) = shard
                                .pending
                                .iter()
                                .position(|p| Arc::ptr_eq(&p.waiter, &w))
                            {
                                grave.push(shard.pending.swap_remove(pos));
                            }
                        }
                        drop(grave);
                    }
                    {
                        let mut st = sync::lock(py, &w.state);
                        *st = match &result {
                            Ok(v) => PendState::Done(v.clone_ref(py)),
                            Err(_) => PendState::Failed,
                        };
                    }
                    w.cv.notify_all();
                    return result;
                }
            }
        }
    }

    /// Atomically replace `key`'s value with `fn(value)` (`fn(nogilsafe.MISSING)` when absent)
    /// and return it. `fn` runs with no lock held and reruns if the entry changed meanwhile;
    /// returning `nogilsafe.DELETE` removes the key (the call then returns None).
    fn compute(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        let r = self.compute_with(&k, |cur| {
            let arg = match cur {
                Some(v) => v.clone(),
                None => missing_obj(py).clone().into_any(),
            };
            Ok(outcome_of(py, pycall::call1(r#fn, arg)?))
        })?;
        Ok(r.unwrap_or_else(|| py.None()))
    }

    /// Atomically replace `key`'s value with `fn(value)`; an absent key uses `default` (or
    /// raises KeyError without one). Returning `nogilsafe.DELETE` removes the key.
    #[pyo3(signature = (key, r#fn, default = None))]
    fn update_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = HKey::new(key)?;
        let default = default.filter(|d| !d.is(missing_obj(py)));
        let mut absent = false;
        let r = self.compute_with(&k, |cur| {
            let arg = match (cur, default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    absent = true;
                    return Ok(Outcome::Delete);
                }
            };
            absent = false;
            Ok(outcome_of(py, pycall::call1(r#fn, arg)?))
        })?;
        if absent {
            return Err(key_error(key));
        }
        Ok(r.unwrap_or_else(|| py.None()))
    }

    /// Set `key` to `new` only if its current value is `expected`: the same object, or an equal
    /// plain value (int/float/str/bytes/bool/None/tuples of those, compared in C). A Python
    /// `__eq__` is never called. Returns whether it stored.
    fn compare_and_set(
        &self,
        key: &Bound<'_, PyAny>,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.check()?;
        let k = HKey::new(key)?;
        let py = key.py();
        self.with_key(&k, |shard, probe, grave| {
            let stamp = shard.stamp + 1;
            match shard.table.find_mut(k.hash, |e| probe.eq(&e.key)) {
                Some(e) => {
                    if !same_value(e.value.bind(py), expected) {
                        return Some(false);
                    }
                    e.stamp = stamp;
                    grave.push(std::mem::replace(&mut e.value, new.clone().unbind()));
                    shard.stamp = stamp;
                    Some(true)
                }
                None if probe.unsure() => None,
                None => Some(false),
            }
        })
    }

    /// Remove `key` only if its value is `expected` (same rule as `compare_and_set`).
    fn pop_if(&self, key: &Bound<'_, PyAny>, expected: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.check()?;
        let k = HKey::new(key)?;
        Ok(self.remove_if(&k, |v| same_value(v, expected))?.is_some())
    }

    /// Store `value` and return the previous value (`default` if the key was absent).
    #[pyo3(signature = (key, value, default = None))]
    fn swap(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.check()?;
        let k = HKey::new(key)?;
        Ok(self
            .set_kv(&k, value)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    /// Add `delta` to `key`'s value (`default` when absent) and return the result. Exact ints
    /// that fit 64 bits are added in Rust under the shard lock; anything else falls back to
    /// `value + delta` run optimistically with no lock held.
    #[pyo3(signature = (key, delta = None, default = None))]
    fn increment(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.check()?;
        let k = HKey::new(key)?;
        let one = 1i64.into_pyobject(py)?.into_any();
        let zero = 0i64.into_pyobject(py)?.into_any();
        let delta = delta.unwrap_or(&one);
        let default = default.unwrap_or(&zero);
        if let Some(d) = small_int(delta) {
            let core = &self.core;
            let fast = self.with_key(&k, |shard, probe, grave| {
                let stamp = shard.stamp + 1;
                match shard.table.find_mut(k.hash, |e| probe.eq(&e.key)) {
                    Some(e) => {
                        let Some(new) = small_int(e.value.bind(py)).and_then(|v| v.checked_add(d))
                        else {
                            return Some(None);
                        };
                        let obj = new.into_pyobject(py).expect("int").into_any().unbind();
                        e.stamp = stamp;
                        grave.push(std::mem::replace(&mut e.value, obj.clone_ref(py)));
                        shard.stamp = stamp;
                        Some(Some(obj))
                    }
                    None if probe.unsure() => None,
                    None => {
                        let new = small_int(default).and_then(|v| v.checked_add(d));
                        let Some(new) = new else { return Some(None) };
                        let obj = new.into_pyobject(py).expect("int").into_any().unbind();
                        let stamp = shard.next_stamp();
                        insert_new(core, shard, &k, obj.clone_ref(py), stamp);
                        Some(Some(obj))
                    }
                }
            });
            if let Some(v) = fast? {
                return Ok(v);
            }
        }
        let r = self.compute_with(&k, |cur| {
            let base = cur.cloned().unwrap_or_else(|| default.clone());
            Ok(Outcome::Store(base.add(delta)?.unbind()))
        })?;
        Ok(r.expect("stored"))
    }

    /// How many times an optimistic operation reran its function because of a concurrent write.
    #[getter]
    fn compute_retries(&self) -> u64 {
        self.core.retries.load(Ordering::Relaxed)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only the owner reports the entries, once; a view reports its owner (see `shared`).
        // Never block here: a lock's holder may be waiting for this very collection.
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        for s in self.core.shards.iter() {
            let Some(g) = s.0.try_read() else { continue };
            for e in g.table.iter() {
                visit.call(&e.key)?;
                visit.call(&e.value)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Views are never cleared: their owner breaks the cycle by clearing the entries.
        if self.owner.is_some() {
            return;
        }
        let mut dead: Vec<Entry> = Vec::new();
        for s in self.core.shards.iter() {
            if let Some(mut g) = s.0.try_write() {
                g.stamp += 1;
                dead.extend(g.table.drain());
            }
        }
        drop(dead);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ThreadSafeDict>()?;
    m.add_class::<Sentinel>()?;
    m.add("DELETE", delete_obj(py))?;
    m.add("MISSING", missing_obj(py))?;
    Ok(())
}
