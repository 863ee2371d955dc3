//! The protocol of every mutating operation that runs Python code on elements (`remove`,
//! `append_if_absent`, `extend_if_absent`, `remove_if`, `update_at`, `compare_and_set`), written
//! once: examine without Python code under the lock as far as possible, run the Python code
//! outside it, commit only if what was examined is unchanged, and after `OPTIMISTIC_ROUNDS`
//! failed validations hold the list (`storage::Exclusive`) so the next round commits.
use std::time::Instant;

use pyo3::prelude::*;

use super::args::{out_of_range, position};
use super::search::{clone_range, eq_nopy, eq_py, starts_with};
use super::storage::{Exclusive, ListCore, ListState, Refs};
use crate::pycall;
use crate::sync::{self, Graveyard};

/// Failed validations after which an operation holds the list instead of staying optimistic:
/// enough that occasional writers never make anyone wait, few enough that a steady stream of
/// writers costs a handful of wasted rounds.
pub(super) const OPTIMISTIC_ROUNDS: u32 = 3;

/// What examining one element decided.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Go on with the next element.
    Next,
    /// The operation is decided by this element; the rest need not be examined.
    Stop,
}

/// A mutating operation that examines the list from the front, in order, then commits.
pub(super) trait Scan {
    type Out;
    /// Examine `item` under the lock, without running Python code; `None` if that needs Python
    /// code. Whatever it records before answering `None` must be harmless to record again: the
    /// same element then goes to `slow`.
    fn quick(&mut self, item: &Bound<'_, PyAny>) -> Option<Step>;
    /// Examine `item` outside the lock (Python code, in the operation's callback scope).
    fn slow(&mut self, item: &Bound<'_, PyAny>) -> PyResult<Step>;
    /// The list changed under the operation: forget everything examined.
    fn restart(&mut self);
    /// With the lock held: apply the decision. The first `examined` elements are the ones
    /// examined, in order (the one that said `Stop` last, if `stopped`); removed values go to
    /// `grave`.
    fn commit(
        &mut self,
        py: Python<'_>,
        state: &mut ListState,
        examined: usize,
        stopped: bool,
        grave: &mut Graveyard<'_, Refs>,
    ) -> Self::Out;
}

enum Round<T> {
    Done(T),
    /// Elements to examine with Python code, from the end of the examined prefix on.
    Slow(Refs),
}

impl ListCore {
    /// Run `scan` over the list to its commit. Never gives up: see the module docs.
    pub(super) fn run_scan<S: Scan>(&self, py: Python<'_>, scan: &mut S) -> PyResult<S::Out> {
        let me = self as *const ListCore;
        // Declared before `hold`, so dropped after it: nothing is released (no `__del__` runs)
        // while the list is held and other writers wait.
        let mut garbage = Refs::default();
        let mut examined = Refs::default();
        let mut hold = Exclusive::new(py, self);
        let mut stopped = false;
        let mut failures = 0;
        loop {
            let round = self.write_removing::<Refs, _>(py, |state, grave| {
                if !starts_with(&state.items, &examined) {
                    garbage.append(&mut examined);
                    stopped = false;
                    scan.restart();
                    self.conflict();
                    failures += 1;
                }
                if failures >= OPTIMISTIC_ROUNDS {
                    hold.claim();
                }
                let len = state.items.len();
                let mut i = examined.len();
                while !stopped && i < len {
                    match scan.quick(state.items[i].bind(py)) {
                        Some(step) => {
                            i += 1;
                            stopped = step == Step::Stop;
                        }
                        None => break,
                    }
                }
                if stopped || i == len {
                    let out = scan.commit(py, state, i, stopped, grave);
                    hold.release();
                    return Round::Done(out);
                }
                let from = examined.len();
                examined.append(&mut clone_range(py, &state.items, from, i));
                Round::Slow(clone_range(py, &state.items, i, len))
            })?;
            let tail = match round {
                Round::Done(out) => return Ok(out),
                Round::Slow(tail) => tail,
            };
            let mut tail = tail.into_vec().into_iter();
            let started = Instant::now();
            let examined_all = sync::in_callback(me, || -> PyResult<()> {
                for item in tail.by_ref() {
                    let step = scan.slow(item.bind(py));
                    examined.push(item);
                    if step? == Step::Stop {
                        stopped = true;
                        break;
                    }
                }
                Ok(())
            });
            hold.round_took(started);
            garbage.extend(tail);
            examined_all?;
            py.check_signals()?;
        }
    }

    /// Replace the element at `index` (negative from the end) as `decide` says: `quick` under
    /// the lock without Python code (`None` if it needs some), else `slow` outside it, committed
    /// only if the same object is still at `index`. Same progress guarantee as `run_scan`.
    pub(super) fn update_slot<R>(
        &self,
        py: Python<'_>,
        index: isize,
        mut quick: impl FnMut(&Bound<'_, PyAny>) -> Option<Decision<R>>,
        mut slow: impl FnMut(&Bound<'_, PyAny>) -> PyResult<Decision<R>>,
    ) -> PyResult<R> {
        let me = self as *const ListCore;
        // Before `hold`, so released after it (see `run_scan`).
        let mut garbage = Refs::default();
        let mut hold = Exclusive::new(py, self);
        let mut failures = 0;
        loop {
            let read = self.write_removing::<Py<PyAny>, _>(py, |state, grave| {
                if failures >= OPTIMISTIC_ROUNDS {
                    hold.claim();
                }
                let i = position(index, state.items.len())
                    .ok_or_else(|| out_of_range("list index out of range"))?;
                match quick(state.items[i].bind(py)) {
                    Some(decision) => {
                        let out = decision.apply(state, i, grave);
                        hold.release();
                        PyResult::Ok(Err(out))
                    }
                    None => Ok(Ok(state.items[i].clone_ref(py))),
                }
            })??;
            let current = match read {
                Ok(current) => current,
                Err(out) => return Ok(out),
            };
            let started = Instant::now();
            let decision = sync::in_callback(me, || slow(current.bind(py)));
            hold.round_took(started);
            let (new, out) = match decision {
                Ok(Decision::Replace(new, out)) => (new, out),
                Ok(Decision::Keep(out)) => {
                    garbage.push(current);
                    return Ok(out);
                }
                Err(e) => {
                    garbage.push(current);
                    return Err(e);
                }
            };
            let mut new = Some(new);
            let committed = self.write_removing::<Py<PyAny>, _>(py, |state, grave| {
                let i =
                    position(index, state.items.len()).filter(|&i| state.items[i].is(&current))?;
                let new = new.take().expect("taken once: this closure runs once");
                grave.push(std::mem::replace(&mut state.items[i], new));
                state.changed();
                hold.release();
                Some(())
            })?;
            garbage.push(current);
            if committed.is_some() {
                return Ok(out);
            }
            // Made by `slow` from an element since replaced.
            garbage.extend(new);
            self.conflict();
            failures += 1;
            py.check_signals()?;
        }
    }
}

/// What `update_slot`'s callers decide about the element they read.
pub(super) enum Decision<R> {
    Keep(R),
    Replace(Py<PyAny>, R),
}

impl<R> Decision<R> {
    fn apply(self, state: &mut ListState, i: usize, grave: &mut Graveyard<'_, Py<PyAny>>) -> R {
        match self {
            Decision::Keep(out) => out,
            Decision::Replace(new, out) => {
                grave.push(std::mem::replace(&mut state.items[i], new));
                state.changed();
                out
            }
        }
    }
}

/// `remove(x)`: the first element equal to `x`.
pub(super) struct RemoveFirst<'a, 'py> {
    pub x: &'a Bound<'py, PyAny>,
}

impl Scan for RemoveFirst<'_, '_> {
    /// Whether an element was removed.
    type Out = bool;

    fn quick(&mut self, item: &Bound<'_, PyAny>) -> Option<Step> {
        eq_nopy(item, self.x).map(stop_if)
    }

    fn slow(&mut self, item: &Bound<'_, PyAny>) -> PyResult<Step> {
        eq_py(item, self.x).map(stop_if)
    }

    fn restart(&mut self) {}

    fn commit(
        &mut self,
        _py: Python<'_>,
        state: &mut ListState,
        examined: usize,
        stopped: bool,
        grave: &mut Graveyard<'_, Refs>,
    ) -> bool {
        if stopped {
            let removed = state.items.remove(examined - 1);
            grave.push(Refs::from(Vec::from_iter(removed)));
            state.changed();
        }
        stopped
    }
}

fn stop_if(equal: bool) -> Step {
    if equal {
        Step::Stop
    } else {
        Step::Next
    }
}

/// `append_if_absent` / `extend_if_absent`: append each candidate equal to no element.
pub(super) struct AddAbsent {
    /// Distinct candidates (no two equal), in order.
    pub candidates: Refs,
    /// `present[k]`: candidate k equals an element examined so far.
    present: Vec<bool>,
}

impl AddAbsent {
    /// `cands` without those equal to an earlier one (`==` may run Python code: no lock is held,
    /// and it runs in `core`'s callback scope).
    pub fn new(py: Python<'_>, core: &ListCore, cands: Refs) -> PyResult<Self> {
        let mut candidates = Refs::default();
        sync::in_callback(core as *const ListCore, || -> PyResult<()> {
            'next: for c in cands.iter() {
                for u in candidates.iter() {
                    let equal = match eq_nopy(u.bind(py), c.bind(py)) {
                        Some(e) => e,
                        None => eq_py(u.bind(py), c.bind(py))?,
                    };
                    if equal {
                        continue 'next;
                    }
                }
                candidates.push(c.clone_ref(py));
            }
            Ok(())
        })?;
        let present = vec![false; candidates.len()];
        Ok(AddAbsent {
            candidates,
            present,
        })
    }
}

impl Scan for AddAbsent {
    /// How many candidates were appended.
    type Out = usize;

    fn quick(&mut self, item: &Bound<'_, PyAny>) -> Option<Step> {
        for (c, p) in self.candidates.iter().zip(self.present.iter_mut()) {
            if !*p {
                *p = eq_nopy(item, c.bind(item.py()))?;
            }
        }
        Some(Step::Next)
    }

    fn slow(&mut self, item: &Bound<'_, PyAny>) -> PyResult<Step> {
        for (c, p) in self.candidates.iter().zip(self.present.iter_mut()) {
            if !*p && eq_py(item, c.bind(item.py()))? {
                *p = true;
            }
        }
        Ok(Step::Next)
    }

    fn restart(&mut self) {
        self.present.iter_mut().for_each(|p| *p = false);
    }

    fn commit(
        &mut self,
        py: Python<'_>,
        state: &mut ListState,
        _examined: usize,
        _stopped: bool,
        _grave: &mut Graveyard<'_, Refs>,
    ) -> usize {
        let before = state.items.len();
        for (c, p) in self.candidates.iter().zip(&self.present) {
            if !*p {
                state.items.push_back(c.clone_ref(py));
            }
        }
        let added = state.items.len() - before;
        if added > 0 {
            state.changed();
        }
        added
    }
}

/// `remove_if(predicate)`: every element the predicate holds for.
pub(super) struct RemoveIf<'a, 'py> {
    pub predicate: &'a Bound<'py, PyAny>,
    /// `doomed[k]`: the predicate held for examined element k.
    pub doomed: Vec<bool>,
}

impl Scan for RemoveIf<'_, '_> {
    /// How many elements were removed.
    type Out = usize;

    fn quick(&mut self, _item: &Bound<'_, PyAny>) -> Option<Step> {
        None
    }

    fn slow(&mut self, item: &Bound<'_, PyAny>) -> PyResult<Step> {
        let verdict = pycall::call1(self.predicate, item)?;
        self.doomed.push(pycall::truthy(&verdict)?);
        Ok(Step::Next)
    }

    fn restart(&mut self) {
        self.doomed.clear();
    }

    fn commit(
        &mut self,
        _py: Python<'_>,
        state: &mut ListState,
        _examined: usize,
        _stopped: bool,
        grave: &mut Graveyard<'_, Refs>,
    ) -> usize {
        let n = self.doomed.iter().filter(|d| **d).count();
        if n > 0 {
            let old = std::mem::take(&mut state.items);
            let mut removed = Vec::with_capacity(n);
            state.items.reserve_exact(old.len() - n);
            for (item, doomed) in old.into_iter().zip(&self.doomed) {
                if *doomed {
                    removed.push(item);
                } else {
                    state.items.push_back(item);
                }
            }
            grave.push(Refs::from(removed));
            state.changed();
        }
        n
    }
}
