//! Waiters: the one design every blocking primitive (Lock, RLock, RWLock, Semaphore, Event,
//! CountDownLatch, Channel) uses to park threads and event-loop futures, and to hand them what
//! they waited for.
//!
//! # The contract
//!
//! A primitive keeps its state behind one `parking_lot::Mutex`, and inside that state one
//! `WaitList<T, W>` per kind of wait (a lock: acquirers; a channel: getters and putters):
//! - `T`, the *payload*, is what a grant hands over: `()` for "you hold the lock" or "the event is
//!   set", an item (`Py<PyAny>`) for a channel getter, an enum when a grant can mean two things.
//! - `W`, the *want*, is what the waiter asked for, kept with it for the primitive to read when
//!   deciding whom to grant (reader or writer, the identity the lock must record as its owner, an
//!   item a putter brings).
//!
//! A waiter is either a thread (`Waiter::thread`: waits detached on its own condvar through
//! `wait_thread`, which is `sync::wait_for`: deadline checked on every path, the main thread runs
//! signal handlers every 50 ms) or a future created on the caller's running event loop
//! (`Waiter::future`: completed with `loop.call_soon_threadsafe`, driven by the glue in
//! `python/nogilsafe/_waiting.py`). Each has a `Ticket`, unique in the process.
//!
//! Rules, all under the primitive's lock:
//! 1. FIFO: `push_back` queues at the end; `grant_front` serves the oldest. `push_front` (with the
//!    waiter's original `since`) re-queues a waiter that was woken to retry and lost the race.
//! 2. A grant moves the waiter out of the queue, keeps its payload in the list (never in a Python
//!    future, which could be cancelled with it) until the waiter *takes* it, and records the
//!    wakeup in a `Wakeups`.
//! 3. Wakeups are performed after the lock is released, by construction: critical sections run
//!    through `with_waiters`, which hands them a `Wakeups` and performs it after the guard
//!    (notifying condvars, `call_soon_threadsafe` — Python code — and releasing whatever Python
//!    objects the section buried).
//! 4. A waiter that stops waiting (deadline, `KeyboardInterrupt`, task cancellation) calls
//!    `withdraw`: `Removed` if it was still queued; `Granted(payload)` if a grant raced with its
//!    departure — the primitive must then hand that payload on (to the next waiter, or back to
//!    itself) so that nothing is ever lost: no item, no permit, no lock held by nobody.
//!    A timed-out waiter may instead keep a grant that arrived at its deadline, as `threading`'s
//!    waits do.
//! 5. `close` ends every queued waiter with `Outcome::Closed` (a channel's `close()`).
//! 6. If a future's loop is closed when its grant is delivered, the grant is taken back through the
//!    `Reclaim` the waiter was registered with (after the lock is released), so a lock is never
//!    left granted to a waiter that cannot run.
//!
//! The async protocol (statuses shared with `_waiting.py`): a primitive exposes three methods per
//! kind of wait — `begin(loop, future_or_None, retry, ...)` returning `(GRANTED, payload)`,
//! `(CLOSED, _)`, `(BUSY, _)` (no future given: it would have to wait) or `(WAITING, ticket)`
//! (queued); `finish(ticket)` after the future completed, returning `(GRANTED, payload)`,
//! `(CLOSED, _)`, `(TIMED_OUT, _)` (withdrawn: the glue's deadline completed the future) or
//! `(RETRY, token)` (woken to try again: `begin` is called again with `retry=token`); and
//! `abandon(ticket)` when the awaiting task is cancelled, which withdraws and hands on.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyList};
use pyo3::{PyTraverseError, PyVisit};

use crate::sync::{self, Buried};

/// Identifies one wait, unique in the process (the async glue passes it back as an int).
pub type Ticket = u64;

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

// Statuses of the async protocol, mirrored in `python/nogilsafe/_waiting.py`.
pub const GRANTED: u8 = 0;
pub const BUSY: u8 = 1;
pub const WAITING: u8 = 2;
pub const CLOSED: u8 = 3;
pub const RETRY: u8 = 4;
pub const TIMED_OUT: u8 = 5;

/// How a wait ended, as the waiter takes it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Granted(T),
    #[allow(dead_code)] // only `close` makes it (Channel)
    Closed,
}

/// What `withdraw` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Withdrawn<T> {
    /// Still queued: removed, nothing was granted.
    Removed,
    /// Granted before the waiter left: the caller keeps it or hands it on.
    Granted(T),
    Closed,
    /// Not in this list (already taken).
    Unknown,
}

/// Takes back a grant that could not be delivered (the waiter's event loop is closed) and hands
/// it on, exactly as if the waiter had withdrawn. Called with no lock held.
pub trait Reclaim: Send + Sync {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket);
}

enum Wake {
    Thread(Arc<Condvar>),
    Future {
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        reclaim: Arc<dyn Reclaim>,
    },
}

/// Someone about to wait: build with `Waiter::thread` or `Waiter::future`, queue with
/// `WaitList::push_back` / `push_front`.
pub struct Waiter {
    wake: Wake,
}

impl Waiter {
    /// A thread that will wait in `wait_thread`. Each wait has its own condvar, so a grant wakes
    /// exactly the thread it is for.
    pub fn thread() -> (Waiter, Arc<Condvar>) {
        let cv = Arc::new(Condvar::new());
        (
            Waiter {
                wake: Wake::Thread(Arc::clone(&cv)),
            },
            cv,
        )
    }

    /// A future of `event_loop` (created by the glue on its running loop), completed with
    /// `call_soon_threadsafe` on a grant or close. `reclaim` takes back a grant that cannot be
    /// delivered.
    pub fn future(event_loop: Py<PyAny>, future: Py<PyAny>, reclaim: Arc<dyn Reclaim>) -> Waiter {
        Waiter {
            wake: Wake::Future {
                event_loop,
                future,
                reclaim,
            },
        }
    }
}

struct Entry<W> {
    ticket: Ticket,
    since: Instant,
    want: W,
    wake: Wake,
}

/// The oldest queued waiter, as the primitive sees it when deciding a grant.
#[allow(dead_code)] // every field is part of the contract
pub struct Front<'a, W> {
    pub ticket: Ticket,
    pub since: Instant,
    pub want: &'a W,
    pub is_thread: bool,
}

/// A FIFO of waiters on one primitive, plus the grants they have not taken yet. Lives inside the
/// primitive's mutex-protected state; every method runs under that lock.
pub struct WaitList<T, W = ()> {
    queue: VecDeque<Entry<W>>,
    /// Granted or closed, not yet taken by their waiter.
    done: HashMap<Ticket, Outcome<T>>,
}

impl<T, W> Default for WaitList<T, W> {
    fn default() -> Self {
        WaitList {
            queue: VecDeque::new(),
            done: HashMap::new(),
        }
    }
}

impl<T, W> WaitList<T, W> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queued waiters (not counting grants waiting to be taken).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[allow(dead_code)] // part of the contract; Channel (issue 15) uses it
    /// Grants and closes not yet taken by their waiters.
    pub fn pending_grants(&self) -> usize {
        self.done.len()
    }

    /// Queue `waiter` at the end; returns its ticket.
    pub fn push_back(&mut self, want: W, waiter: Waiter) -> Ticket {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        self.queue.push_back(Entry {
            ticket,
            since: Instant::now(),
            want,
            wake: waiter.wake,
        });
        ticket
    }

    /// Queue `waiter` first, keeping the time it first started waiting: for a waiter that was
    /// woken to retry and lost the race (it keeps its place in line).
    pub fn push_front(&mut self, want: W, waiter: Waiter, since: Instant) -> Ticket {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        self.queue.push_front(Entry {
            ticket,
            since,
            want,
            wake: waiter.wake,
        });
        ticket
    }

    pub fn front(&self) -> Option<Front<'_, W>> {
        self.queue.front().map(|e| Front {
            ticket: e.ticket,
            since: e.since,
            want: &e.want,
            is_thread: matches!(e.wake, Wake::Thread(_)),
        })
    }

    #[allow(dead_code)] // part of the contract; Channel (issue 15) uses it
    /// The queued waiters' wants, oldest first.
    pub fn wants(&self) -> impl Iterator<Item = &W> {
        self.queue.iter().map(|e| &e.want)
    }

    #[allow(dead_code)] // part of the contract; Channel (issue 15) uses it
    /// When `ticket` (queued) started waiting.
    pub fn since(&self, ticket: Ticket) -> Option<Instant> {
        self.queue
            .iter()
            .find(|e| e.ticket == ticket)
            .map(|e| e.since)
    }

    /// Grant `payload` to the oldest queued waiter; returns its ticket and want, or the payload
    /// back if nobody waits.
    pub fn grant_front(&mut self, payload: T, wakes: &mut Wakeups) -> Result<(Ticket, W), T> {
        match self.queue.pop_front() {
            Some(e) => Ok(self.settle(e, Outcome::Granted(payload), wakes)),
            None => Err(payload),
        }
    }

    #[allow(dead_code)] // part of the contract; Channel (issue 15) uses it
    /// Grant `payload` to the queued waiter `ticket`; the payload back if it is not queued.
    pub fn grant(&mut self, ticket: Ticket, payload: T, wakes: &mut Wakeups) -> Result<W, T> {
        match self.queue.iter().position(|e| e.ticket == ticket) {
            Some(pos) => {
                let e = self.queue.remove(pos).expect("position is in range");
                Ok(self.settle(e, Outcome::Granted(payload), wakes).1)
            }
            None => Err(payload),
        }
    }

    /// Grant to queued waiters from the front for as long as `decide` returns a payload for the
    /// waiter's want (a batch of readers, permits for several waiters). Returns how many.
    pub fn grant_while(
        &mut self,
        mut decide: impl FnMut(&W) -> Option<T>,
        wakes: &mut Wakeups,
    ) -> usize {
        let mut n = 0;
        while let Some(e) = self.queue.front() {
            let Some(payload) = decide(&e.want) else {
                break;
            };
            let e = self.queue.pop_front().expect("front exists");
            self.settle(e, Outcome::Granted(payload), wakes);
            n += 1;
        }
        n
    }

    /// Grant every queued waiter (an event being set), in order.
    pub fn grant_all(&mut self, mut payload: impl FnMut(&W) -> T, wakes: &mut Wakeups) -> usize {
        self.grant_while(|w| Some(payload(w)), wakes)
    }

    #[allow(dead_code)] // part of the contract; Channel (issue 15) uses it
    /// End every queued waiter with `Outcome::Closed`. Returns how many.
    pub fn close(&mut self, wakes: &mut Wakeups) -> usize {
        let n = self.queue.len();
        while let Some(e) = self.queue.pop_front() {
            self.settle(e, Outcome::Closed, wakes);
        }
        n
    }

    fn settle(&mut self, e: Entry<W>, outcome: Outcome<T>, wakes: &mut Wakeups) -> (Ticket, W) {
        self.done.insert(e.ticket, outcome);
        wakes.wakes.push((e.ticket, e.wake));
        (e.ticket, e.want)
    }

    /// The outcome of `ticket` if it has one, removing it: what a woken waiter (or the
    /// `ready` test of a thread's wait) calls.
    pub fn take(&mut self, ticket: Ticket) -> Option<Outcome<T>> {
        self.done.remove(&ticket)
    }

    /// Stop waiting: see the module doc, rule 4. A removed future's Python references are
    /// buried in `wakes` (dropping them under the lock could run a future's `__del__`).
    pub fn withdraw(&mut self, ticket: Ticket, wakes: &mut Wakeups) -> Withdrawn<T> {
        if let Some(pos) = self.queue.iter().position(|e| e.ticket == ticket) {
            let e = self.queue.remove(pos).expect("position is in range");
            wakes.bury_wake(e.wake);
            return Withdrawn::Removed;
        }
        match self.done.remove(&ticket) {
            Some(Outcome::Granted(p)) => Withdrawn::Granted(p),
            Some(Outcome::Closed) => Withdrawn::Closed,
            None => Withdrawn::Unknown,
        }
    }

    /// Report the loops and futures of queued async waiters to the garbage collector (a waiting
    /// task's coroutine can refer back to the primitive).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for e in &self.queue {
            if let Wake::Future {
                event_loop, future, ..
            } = &e.wake
            {
                visit.call(event_loop)?;
                visit.call(future)?;
            }
        }
        Ok(())
    }

    /// Empty the queue and the pending grants into `wakes` without waking anyone (for
    /// `__clear__` and a core's drop): futures are released, threads cannot be waiting (they
    /// hold the core).
    pub fn clear_into(&mut self, wakes: &mut Wakeups) -> Vec<T> {
        for e in self.queue.drain(..) {
            wakes.bury_wake(e.wake);
        }
        self.done
            .drain()
            .filter_map(|(_, o)| match o {
                Outcome::Granted(p) => Some(p),
                Outcome::Closed => None,
            })
            .collect()
    }
}

/// What a critical section decided to do once its lock is released: wake waiters (notify
/// condvars, schedule futures on their loops) and release Python objects it removed.
#[derive(Default)]
#[must_use]
pub struct Wakeups {
    wakes: Vec<(Ticket, Wake)>,
    dead: Vec<Py<PyAny>>,
}

impl Wakeups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Release `obj` after the lock (dropping it may run `__del__`).
    pub fn bury(&mut self, obj: Py<PyAny>) {
        self.dead.push(obj);
    }

    fn bury_wake(&mut self, wake: Wake) {
        if let Wake::Future {
            event_loop, future, ..
        } = wake
        {
            self.dead.push(event_loop);
            self.dead.push(future);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.wakes.is_empty() && self.dead.is_empty()
    }

    /// Wake threads and futures, then release buried objects. Attached, no lock held. Futures
    /// are scheduled with one `call_soon_threadsafe` per loop; a loop that refuses (closed) has
    /// its waiters' grants reclaimed.
    pub fn perform(self, py: Python<'_>) {
        let mut by_loop: Vec<(Py<PyAny>, Vec<LoopWaiter>)> = Vec::new();
        // Second references to a loop already in `by_loop`.
        let mut extra: Vec<Py<PyAny>> = Vec::new();
        for (ticket, wake) in self.wakes {
            match wake {
                Wake::Thread(cv) => {
                    cv.notify_one();
                }
                Wake::Future {
                    event_loop,
                    future,
                    reclaim,
                } => match by_loop
                    .iter_mut()
                    .find(|(l, _)| l.as_ptr() == event_loop.as_ptr())
                {
                    Some((_, futs)) => {
                        futs.push((ticket, future, reclaim));
                        extra.push(event_loop);
                    }
                    None => by_loop.push((event_loop, vec![(ticket, future, reclaim)])),
                },
            }
        }
        for (event_loop, futs) in by_loop {
            let list = PyList::new(py, futs.iter().map(|(_, f, _)| f.bind(py)));
            let schedule = || {
                let list = list.as_ref().map_err(|e| e.clone_ref(py))?;
                let method = event_loop.bind(py).getattr("call_soon_threadsafe")?;
                crate::pycall::call(&method, (wake_function(py), list))
            };
            // A signal handler (Ctrl-C) may raise inside `call_soon_threadsafe`, which is Python
            // code: the wakeup is still owed, so try again, and re-deliver the interrupt after.
            let mut interrupted: Option<PyErr> = None;
            let mut scheduled = false;
            for _ in 0..SCHEDULE_TRIES {
                match schedule() {
                    Ok(handle) => {
                        drop(handle);
                        scheduled = true;
                        break;
                    }
                    // A closed loop: nobody is left to take these grants.
                    Err(e) if e.is_instance_of::<PyRuntimeError>(py) => break,
                    Err(e) if list.is_err() => {
                        e.write_unraisable(py, Some(event_loop.bind(py)));
                        break;
                    }
                    Err(e) => {
                        if interrupted.is_none() {
                            interrupted = Some(e);
                        }
                    }
                }
            }
            if !scheduled {
                for (ticket, _, reclaim) in &futs {
                    reclaim.reclaim(py, *ticket);
                }
            }
            if let Some(e) = interrupted {
                redeliver(py, e, event_loop.bind(py));
            }
            let refs = futs.into_iter().map(|(_, f, _)| f);
            crate::pycall::release_all(py, refs.chain(std::iter::once(event_loop)));
        }
        crate::pycall::release_all(py, self.dead.into_iter().chain(extra));
    }
}

/// How often `perform` tries to schedule a loop's wakeups when signal handlers keep raising.
const SCHEDULE_TRIES: usize = 100;

/// An exception a signal handler raised while a wakeup was being scheduled, where it cannot
/// propagate (wakeups run after a lock is released, in code that returns nothing): a
/// `KeyboardInterrupt` is raised again at the interpreter's next check, as if Ctrl-C had been
/// pressed a moment later; anything else is reported as unraisable.
fn redeliver(py: Python<'_>, e: PyErr, context: &Bound<'_, PyAny>) {
    if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        // SAFETY: callable from any thread, attached or not; it only flags SIGINT as tripped.
        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
    } else {
        e.write_unraisable(py, Some(context));
    }
}

/// A future to complete on a loop: its ticket, the future, who takes its grant back.
type LoopWaiter = (Ticket, Py<PyAny>, Arc<dyn Reclaim>);

impl Buried for Wakeups {
    fn release(self, py: Python<'_>) {
        self.perform(py);
    }
}

/// Run `f` on `m`'s contents with the lock held; the wakeups it records are performed after
/// the lock is released (and before `with_waiters` returns).
#[inline]
pub fn with_waiters<S: Send, R>(
    py: Python<'_>,
    m: &Mutex<S>,
    f: impl FnOnce(&mut S, &mut Wakeups) -> R,
) -> R {
    sync::with_lock(py, m, |state, grave| {
        let mut wakes = Wakeups::new();
        let r = f(state, &mut wakes);
        if !wakes.is_empty() {
            grave.push(wakes);
        }
        r
    })
}

/// Wait detached until `ticket` has an outcome in the list `list` selects from `m`'s state.
///
/// `Ok(Some(outcome))`: taken. `Ok(None)`: the deadline passed while still queued; `Err`: a
/// signal handler raised (Ctrl-C). In both of the latter cases the waiter is still in the list
/// (or holds an untaken grant): the caller must `withdraw` under the lock and hand on what it
/// finds (module doc, rule 4).
pub fn wait_thread<S: Send, T: Send, W: Send>(
    py: Python<'_>,
    m: &Mutex<S>,
    ticket: Ticket,
    cv: &Condvar,
    deadline: Option<Instant>,
    list: impl Fn(&mut S) -> &mut WaitList<T, W> + Send + Sync,
) -> PyResult<Option<Outcome<T>>> {
    sync::wait_for(py, m, cv, deadline, |s| list(s).take(ticket))
}

static WAKE_FUNCTION: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();

fn wake_function(py: Python<'_>) -> &Bound<'_, PyCFunction> {
    WAKE_FUNCTION
        .get_or_init(py, || {
            wrap_pyfunction!(wake_futures, py)
                .expect("a module-less function can always be created")
                .unbind()
        })
        .bind(py)
}

/// Runs on a waiter's own loop: complete each of its futures that is still pending (a future
/// already done was cancelled or timed out; its waiter withdraws and hands the grant on).
#[pyfunction]
fn wake_futures(futures: &Bound<'_, PyList>) {
    for fut in futures.iter() {
        if matches!(
            fut.call_method0("done").and_then(|d| d.is_truthy()),
            Ok(false)
        ) {
            let _ = fut.call_method1("set_result", (fut.py().None(),));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[derive(Default)]
    struct Core {
        state: Mutex<WaitList<u32, &'static str>>,
        reclaimed: AtomicUsize,
    }

    impl Reclaim for Core {
        fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
            let got = with_waiters(py, &self.state, |l, w| l.withdraw(ticket, w));
            assert_eq!(got, Withdrawn::Granted(7));
            self.reclaimed.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fifo_grants_withdraw_and_close() {
        Python::initialize();
        Python::attach(|py| {
            let core = Core::default();
            let (a, b, c) = with_waiters(py, &core.state, |l, _| {
                let a = l.push_back("a", Waiter::thread().0);
                let b = l.push_back("b", Waiter::thread().0);
                let c = l.push_back("c", Waiter::thread().0);
                (a, b, c)
            });
            with_waiters(py, &core.state, |l, w| {
                assert_eq!(l.front().map(|f| *f.want), Some("a"));
                assert_eq!(l.grant_front(1, w), Ok((a, "a")));
                // b leaves before anything is granted to it: removed, nothing to hand on.
                assert_eq!(l.withdraw(b, w), Withdrawn::Removed);
                assert_eq!(l.grant_front(2, w), Ok((c, "c")));
                assert_eq!(l.grant_front(3, w), Err(3));
                // c leaves after its grant arrived: the grant comes back to the caller.
                assert_eq!(l.withdraw(c, w), Withdrawn::Granted(2));
                assert_eq!(l.take(a), Some(Outcome::Granted(1)));
                assert_eq!(l.take(a), None);
                assert_eq!(l.withdraw(a, w), Withdrawn::Unknown);
                let d = l.push_back("d", Waiter::thread().0);
                let e = l.push_front("e", Waiter::thread().0, Instant::now());
                assert_eq!(l.wants().copied().collect::<Vec<_>>(), ["e", "d"]);
                assert_eq!(l.close(w), 2);
                assert_eq!(l.take(d), Some(Outcome::Closed));
                assert_eq!(l.withdraw(e, w), Withdrawn::Closed);
                assert!(l.is_empty() && l.pending_grants() == 0);
            });
        });
    }

    #[test]
    fn grant_while_stops_at_first_refusal() {
        Python::initialize();
        Python::attach(|py| {
            let m: Mutex<WaitList<(), bool>> = Mutex::new(WaitList::new());
            with_waiters(py, &m, |l, w| {
                for want in [true, true, false, true] {
                    l.push_back(want, Waiter::thread().0);
                }
                assert_eq!(l.grant_while(|&r| r.then_some(()), w), 2);
                assert_eq!(l.len(), 2);
                assert_eq!(l.grant_all(|_| (), w), 2);
                assert_eq!(l.pending_grants(), 4);
            });
        });
    }

    #[test]
    fn a_thread_wakes_on_its_grant_and_times_out_without_one() {
        Python::initialize();
        let core = Arc::new(Core::default());
        let (ticket, cv) = Python::attach(|py| {
            with_waiters(py, &core.state, |l, _| {
                let (waiter, cv) = Waiter::thread();
                (l.push_back("t", waiter), cv)
            })
        });
        let granter = {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                Python::attach(|py| {
                    with_waiters(py, &core.state, |l, w| l.grant_front(9, w).map(|_| ()))
                })
            })
        };
        let got = Python::attach(|py| wait_thread(py, &core.state, ticket, &cv, None, |l| l));
        assert_eq!(got.unwrap(), Some(Outcome::Granted(9)));
        granter.join().unwrap().unwrap();

        let deadline = Instant::now() + Duration::from_millis(30);
        let got = Python::attach(|py| {
            let (ticket, cv) = with_waiters(py, &core.state, |l, _| {
                let (waiter, cv) = Waiter::thread();
                (l.push_back("u", waiter), cv)
            });
            let got = wait_thread(py, &core.state, ticket, &cv, Some(deadline), |l| l);
            let left = with_waiters(py, &core.state, |l, w| l.withdraw(ticket, w));
            (got.unwrap(), left)
        });
        assert!(Instant::now() >= deadline);
        assert_eq!(got, (None, Withdrawn::Removed));
    }

    #[test]
    fn futures_are_woken_on_their_loop_and_closed_loops_give_grants_back() {
        Python::initialize();
        Python::attach(|py| {
            let asyncio = py.import("asyncio").unwrap();
            let core = Arc::new(Core::default());
            let lp = asyncio.call_method0("new_event_loop").unwrap();
            let fut = lp.call_method0("create_future").unwrap();
            let ticket = with_waiters(py, &core.state, |l, _| {
                let w = Waiter::future(
                    lp.clone().unbind(),
                    fut.clone().unbind(),
                    Arc::clone(&core) as Arc<dyn Reclaim>,
                );
                l.push_back("f", w)
            });
            with_waiters(py, &core.state, |l, w| l.grant_front(7, w).map(|_| ())).unwrap();
            lp.call_method1("run_until_complete", (&fut,)).unwrap();
            assert_eq!(
                core.state.lock().take(ticket),
                Some(Outcome::Granted(7)),
                "the grant waits in the list for its waiter"
            );

            // The same with a loop closed before the wakeup: the grant is reclaimed.
            let fut = lp.call_method0("create_future").unwrap();
            lp.call_method0("close").unwrap();
            with_waiters(py, &core.state, |l, _| {
                let w = Waiter::future(
                    lp.clone().unbind(),
                    fut.clone().unbind(),
                    Arc::clone(&core) as Arc<dyn Reclaim>,
                );
                l.push_back("g", w)
            });
            with_waiters(py, &core.state, |l, w| l.grant_front(7, w).map(|_| ())).unwrap();
            assert_eq!(core.reclaimed.load(Ordering::SeqCst), 1);
            assert_eq!(core.state.lock().pending_grants(), 0);
        });
    }
}
