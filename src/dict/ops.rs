//! Operations on the table: single-key writes, the atomic compound operations, and whole-table
//! operations (which lock every shard, in index order, for a consistent cut).
//!
//! Every critical section that can remove a Python-owning value puts it in the graveyard that
//! `with_key` (through `sync::with_write`) releases after the guard. Operations that must run
//! Python code (a `compute` function, a factory, `value + delta` for non-int values) follow the
//! optimistic protocol: observe the entry's stamp, run the code with no lock held, commit only if
//! the stamp is unchanged, else run again.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pyo3::ffi;
use pyo3::prelude::*;

use super::table::{shard_index, Decided, DictCore, PendState, Pending, PendingSlot};
use super::table::{Probe, Removed};
use crate::key::{fast_eq, HKey};
use crate::{pycall, sync};

/// What a `compute`-style step function decides.
pub(super) enum Outcome {
    Store(Py<PyAny>),
    Delete,
}

/// Value comparison for `compare_and_set`/`pop_if`: identity, or equality of plain values
/// decided at C level. A Python `__eq__` is never consulted (it would have to run under the lock).
pub(super) fn same_value(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> bool {
    fast_eq(a, b).unwrap_or(false)
}

/// A Python int that fits i64, read without running Python code.
pub(super) fn small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    // SAFETY: obj is live; exact ints convert in C. An overflow (the only error possible for an
    // exact int) is cleared, leaving no exception behind.
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

fn int_obj(py: Python<'_>, v: i64) -> Py<PyAny> {
    let Ok(obj) = v.into_pyobject(py);
    obj.into_any().unbind()
}

impl DictCore {
    /// `d[k] = value`; the replaced value is released after the lock.
    pub(super) fn set(&self, k: &HKey<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.with_key(k, |shard, probe, grave| {
            let stamp = shard.stamp + 1;
            if let Some(e) = shard.table.find_mut(k.hash, |e| probe.entry(e)) {
                e.stamp = stamp;
                shard.stamp = stamp;
                let old = std::mem::replace(&mut e.value, value.clone().unbind());
                grave.push(Removed::Value(old));
                return Some(());
            }
            if probe.unsure() {
                return None;
            }
            shard.insert_new(self, k, value.clone().unbind());
            Some(())
        })
    }

    /// Insert or replace; returns the previous value.
    pub(super) fn swap(
        &self,
        k: &HKey<'_>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.with_key(k, |shard, probe, _grave| {
            let stamp = shard.stamp + 1;
            if let Some(e) = shard.table.find_mut(k.hash, |e| probe.entry(e)) {
                e.stamp = stamp;
                shard.stamp = stamp;
                return Some(Some(std::mem::replace(
                    &mut e.value,
                    value.clone().unbind(),
                )));
            }
            if probe.unsure() {
                return None;
            }
            shard.insert_new(self, k, value.clone().unbind());
            Some(None)
        })
    }

    /// Remove `k` if `pred(value)`; returns the removed value (the key is released after the
    /// lock).
    pub(super) fn take(
        &self,
        k: &HKey<'_>,
        pred: impl Fn(&Bound<'_, PyAny>) -> bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = k.obj.py();
        self.with_key(k, |shard, probe, grave| {
            match shard.table.find_entry(k.hash, |e| probe.entry(e)) {
                Ok(o) => {
                    if !pred(o.get().value.bind(py)) {
                        return Some(None);
                    }
                    let (e, _) = o.remove();
                    shard.stamp += 1;
                    grave.push(Removed::Value(e.key));
                    Some(Some(e.value))
                }
                Err(_) if probe.unsure() => None,
                Err(_) => Some(None),
            }
        })
    }

    /// `d.setdefault(k, default)`.
    pub(super) fn setdefault(
        &self,
        k: &HKey<'_>,
        default: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = k.obj.py();
        self.with_key(k, |shard, probe, _grave| {
            if let Some(e) = shard.table.find(k.hash, |e| probe.entry(e)) {
                return Some(e.value.clone_ref(py));
            }
            if probe.unsure() {
                return None;
            }
            shard.insert_new(self, k, default.clone().unbind());
            Some(default.clone().unbind())
        })
    }

    /// Set `k` to `new` if its value is `expected` (see `same_value`); whether it did.
    pub(super) fn compare_and_set(
        &self,
        k: &HKey<'_>,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = k.obj.py();
        self.with_key(k, |shard, probe, grave| {
            let stamp = shard.stamp + 1;
            match shard.table.find_mut(k.hash, |e| probe.entry(e)) {
                Some(e) => {
                    if !same_value(e.value.bind(py), expected) {
                        return Some(false);
                    }
                    e.stamp = stamp;
                    shard.stamp = stamp;
                    let old = std::mem::replace(&mut e.value, new.clone().unbind());
                    grave.push(Removed::Value(old));
                    Some(true)
                }
                None if probe.unsure() => None,
                None => Some(false),
            }
        })
    }

    /// `increment` for an exact int `delta` on an exact int value (or absent key and exact int
    /// `default`) in 64 bits, all under the shard lock. `None`: some operand is not such an int,
    /// or the sum overflows i64: the caller takes the general path.
    pub(super) fn increment_i64(
        &self,
        k: &HKey<'_>,
        delta: i64,
        default: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = k.obj.py();
        self.with_key(k, |shard, probe, grave| {
            let stamp = shard.stamp + 1;
            match shard.table.find_mut(k.hash, |e| probe.entry(e)) {
                Some(e) => {
                    let Some(new) = small_int(e.value.bind(py)).and_then(|v| v.checked_add(delta))
                    else {
                        return Some(None);
                    };
                    let obj = int_obj(py, new);
                    e.stamp = stamp;
                    shard.stamp = stamp;
                    let old = std::mem::replace(&mut e.value, obj.clone_ref(py));
                    grave.push(Removed::Value(old));
                    Some(Some(obj))
                }
                None if probe.unsure() => None,
                None => {
                    let Some(new) = small_int(default).and_then(|v| v.checked_add(delta)) else {
                        return Some(None);
                    };
                    let obj = int_obj(py, new);
                    shard.insert_new(self, k, obj.clone_ref(py));
                    Some(Some(obj))
                }
            }
        })
    }

    /// Optimistic read-compute-commit: `step` sees the current value (or `None`) with no lock
    /// held and its result is committed only if the key's entry has not changed since; otherwise
    /// it runs again. Returns the value after the operation.
    pub(super) fn compute_with(
        &self,
        k: &HKey<'_>,
        mut step: impl FnMut(Option<&Bound<'_, PyAny>>) -> PyResult<Outcome>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.check()?;
        let py = k.obj.py();
        loop {
            let seen = self.observe(k)?;
            let outcome = sync::in_callback(self as *const Self, || {
                step(seen.as_ref().map(|(v, _)| v.bind(py)))
            });
            let seen_stamp = seen.as_ref().map(|(_, s)| *s);
            if let Some((v, _)) = seen {
                pycall::release(py, v);
            }
            let outcome = outcome?;
            let committed = self.with_key(k, |shard, probe, grave| {
                let stamp = shard.stamp + 1;
                let found = shard.table.find_entry(k.hash, |e| probe.entry(e));
                match (found, seen_stamp) {
                    (Ok(o), Some(st)) if o.get().stamp == st => match &outcome {
                        Outcome::Store(v) => {
                            let e = o.into_mut();
                            e.stamp = stamp;
                            shard.stamp = stamp;
                            let old = std::mem::replace(&mut e.value, v.clone_ref(py));
                            grave.push(Removed::Value(old));
                            Some(true)
                        }
                        Outcome::Delete => {
                            let (e, _) = o.remove();
                            shard.stamp = stamp;
                            grave.push(Removed::Entry(e));
                            Some(true)
                        }
                    },
                    (Ok(_), _) => Some(false),
                    (Err(_), _) if probe.unsure() => None,
                    (Err(_), None) => {
                        if let Outcome::Store(v) = &outcome {
                            shard.insert_new(self, k, v.clone_ref(py));
                        }
                        Some(true)
                    }
                    (Err(_), Some(_)) => Some(false),
                }
            });
            let stored = match outcome {
                Outcome::Store(v) => Some(v),
                Outcome::Delete => None,
            };
            if committed? {
                return Ok(stored);
            }
            if let Some(v) = stored {
                pycall::release(py, v);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            py.check_signals()?;
        }
    }

    /// `get_or_insert_with`: one factory per absent key; concurrent callers wait for it.
    pub(super) fn get_or_insert_with(
        &self,
        k: &HKey<'_>,
        factory: &Bound<'_, PyAny>,
        deadline: Option<Instant>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let py = k.obj.py();
        enum Act {
            Have(Py<PyAny>),
            Wait(Arc<Pending>),
            Run(Arc<Pending>),
        }
        loop {
            let act = self.with_key(k, |shard, probe, _grave| {
                if let Some(e) = shard.table.find(k.hash, |e| probe.entry(e)) {
                    return Some(Act::Have(e.value.clone_ref(py)));
                }
                if let Some(p) = shard.pending.iter().find(|p| probe.is(p.hash, &p.key)) {
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
                Act::Run(w) => return self.run_factory(k, factory, &w),
            }
        }
    }

    /// The factory-running side of `get_or_insert_with`: run it with no lock held, store its
    /// value unless the key appeared meanwhile, retire the pending slot and wake the waiters,
    /// whatever happened (an error or an interruption included).
    fn run_factory(
        &self,
        k: &HKey<'_>,
        factory: &Bound<'_, PyAny>,
        w: &Arc<Pending>,
    ) -> PyResult<Py<PyAny>> {
        let py = k.obj.py();
        let made = sync::in_callback(self as *const Self, || pycall::call0(factory));
        let result = made.and_then(|v| {
            self.with_key(k, |shard, probe, grave| {
                let existing = shard
                    .table
                    .find(k.hash, |e| probe.entry(e))
                    .map(|e| e.value.clone_ref(py));
                if existing.is_none() && probe.unsure() {
                    return None;
                }
                if let Some(pos) = shard.pending.iter().position(|p| Arc::ptr_eq(&p.waiter, w)) {
                    grave.push(Removed::Pending(shard.pending.swap_remove(pos)));
                }
                Some(match existing {
                    Some(e) => e,
                    None => {
                        shard.insert_new(self, k, v.clone().unbind());
                        v.clone().unbind()
                    }
                })
            })
        });
        if result.is_err() {
            sync::with_write(py, self.shard(k.hash), |shard, grave| {
                if let Some(pos) = shard.pending.iter().position(|p| Arc::ptr_eq(&p.waiter, w)) {
                    grave.push(Removed::Pending(shard.pending.swap_remove(pos)));
                }
            });
        }
        {
            let mut st = sync::lock(py, &w.state);
            *st = match &result {
                Ok(v) => PendState::Done(v.clone_ref(py)),
                Err(_) => PendState::Failed,
            };
        }
        w.cv.notify_all();
        result
    }

    /// Apply `pairs` atomically: every shard is write-locked (in order) for the whole batch, so
    /// no reader sees part of it.
    pub(super) fn apply_batch(
        &self,
        py: Python<'_>,
        pairs: &[(HKey<'_>, Bound<'_, PyAny>)],
    ) -> PyResult<()> {
        let mut decided: Vec<Decided> = pairs.iter().map(|_| Decided::default()).collect();
        loop {
            let unsure = self.with_all(py, |guards, grave| {
                let mut unsure: Vec<(usize, Vec<Py<PyAny>>)> = Vec::new();
                // Phase 1: resolve every key; act only if all are decided.
                let mut targets: Vec<Option<*mut ffi::PyObject>> = Vec::new();
                for (i, (k, _)) in pairs.iter().enumerate() {
                    let g = &guards[shard_index(k.hash)];
                    let mut probe = Probe::new(k, &decided[i]);
                    let found = g
                        .table
                        .find(k.hash, |e| probe.entry(e))
                        .map(|e| e.key.as_ptr());
                    let unsure_here = found.is_none() && probe.unsure();
                    let undecided = probe.into_undecided();
                    if unsure_here {
                        unsure.push((i, undecided));
                    } else {
                        undecided
                            .into_iter()
                            .for_each(|k| grave.push(Removed::Value(k)));
                    }
                    targets.push(found);
                }
                if !unsure.is_empty() {
                    return unsure;
                }
                for ((k, v), t) in pairs.iter().zip(targets) {
                    let g = &mut guards[shard_index(k.hash)];
                    let stamp = g.stamp + 1;
                    // Found in phase 1 under the same guards, so still there (a miss would mean
                    // a broken table invariant; inserting is then the least harm).
                    let found =
                        t.and_then(|ptr| g.table.find_mut(k.hash, |e| e.key.as_ptr() == ptr));
                    let replaced = found.map(|e| {
                        e.stamp = stamp;
                        std::mem::replace(&mut e.value, v.clone().unbind())
                    });
                    match replaced {
                        Some(old) => {
                            g.stamp = stamp;
                            grave.push(Removed::Value(old));
                        }
                        None => g.insert_new(self, k, v.clone().unbind()),
                    }
                }
                unsure
            });
            if unsure.is_empty() {
                return Ok(());
            }
            let unsure: Vec<usize> = unsure
                .into_iter()
                .map(|(i, und)| {
                    decided[i].absorb(und);
                    i
                })
                .collect();
            for i in unsure {
                decided[i].decide(&pairs[i].0.obj)?;
            }
        }
    }

    pub(super) fn clear(&self, py: Python<'_>) {
        self.with_all(py, |guards, grave| {
            for g in guards.iter_mut() {
                g.stamp += 1;
                g.table.drain().for_each(|e| grave.push(Removed::Entry(e)));
            }
        });
    }

    /// Remove and return the most recently inserted pair (O(n), like a scan of `dict`).
    pub(super) fn popitem(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyAny>)> {
        let mut guards = self.write_all(py);
        let mut best: Option<(usize, u64, *mut ffi::PyObject, u64)> = None;
        for (i, g) in guards.iter().enumerate() {
            for e in g.table.iter() {
                if best.is_none_or(|(_, s, _, _)| e.seq > s) {
                    best = Some((i, e.seq, e.key.as_ptr(), e.hash));
                }
            }
        }
        let (i, _, ptr, hash) = best?;
        let g = &mut guards[i];
        let o = g.table.find_entry(hash, |e| e.key.as_ptr() == ptr).ok()?;
        let (e, _) = o.remove();
        g.stamp += 1;
        Some((e.key, e.value))
    }
}
