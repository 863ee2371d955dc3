//! The channel's core: items in a crossbeam queue, whoever must wait in our waiter lists.
//!
//! # Invariants
//!
//! Items never pass through a lock. A put pushes onto the queue and a get pops from it, both
//! lock-free; the mutex guards only the three waiter lists (getters, putters, joiners), and is
//! taken only by a caller that must wait or that has someone to wake. Nobody is ever handed an
//! item: a woken waiter *retries* its pop or push, so an item can only be in the queue or in the
//! hands of the caller that popped it. That is what makes cancellation, timeouts and Ctrl-C
//! lose nothing: a waiter that leaves holds no item, only (perhaps) a wakeup, which it passes on
//! to the next waiter while the reason for it still holds.
//!
//! No wakeup is lost. Each kind of waiter has an atomic mirror of its list's length
//! (`*_waiting`), published under the mutex. A waiter publishes itself, then (after a SeqCst
//! fence) retries; the other side acts, then (after a SeqCst fence) reads the mirror. One of the
//! two sees the other (store-buffering with fences on both sides): either the retry succeeds or
//! the actor takes the mutex and wakes the waiter.
//!
//! Close is exact. `puts` holds the `CLOSED` bit and the number of puts in flight; a put
//! registers in it before checking `CLOSED` and leaves after pushing. So once a getter reads
//! `puts == CLOSED` (closed, none in flight), every item that will ever be in the queue is in it:
//! one more pop finds it or the channel is drained for good. A getter that finds the channel
//! closed with puts still in flight waits; the last of those puts wakes every getter.
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_queue::{ArrayQueue, SegQueue};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::locks::{register_wait, Holder, WaitTarget};
use crate::pycall;
use crate::waiters::{self, with_waiters, Reclaim, Ticket, WaitList, Waiter, Wakeups, Withdrawn};

/// `puts`' high bit: the channel is closed.
const CLOSED: u64 = 1 << 63;

/// A bound up to this many items is allocated up front (an `ArrayQueue`: 16 bytes a slot); a
/// larger one, or none, uses a `SegQueue`, which grows and shrinks with its contents.
const ARRAY_MAX: usize = 1 << 16;

enum Queue {
    Array(ArrayQueue<Py<PyAny>>),
    Segments(SegQueue<Py<PyAny>>),
}

impl Queue {
    /// Push where there is room (a reserved slot, or one a walk just emptied).
    fn push(&self, item: Py<PyAny>) {
        match self {
            Queue::Segments(q) => q.push(item),
            Queue::Array(q) => {
                // There is room (`Items`' doc): `force_push` never has to evict.
                let evicted = q.force_push(item);
                debug_assert!(evicted.is_none(), "a reserved slot was taken");
            }
        }
    }

    fn pop(&self) -> Option<Py<PyAny>> {
        match self {
            Queue::Array(q) => q.pop(),
            Queue::Segments(q) => q.pop(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Queue::Array(q) => q.len(),
            Queue::Segments(q) => q.len(),
        }
    }
}

/// The items. A bounded channel *reserves* a slot before pushing: `reserved` counts the items
/// in the queue and those being pushed, and a pop frees its slot after taking the item. So a push
/// after a reservation always finds room, and a put that fails for want of space has changed
/// nothing (not even `unfinished`, which a racing `task_done` could otherwise see).
///
/// The collector must see the items (a cycle through a channel is collected), but a crossbeam
/// queue cannot be walked: `traverse` takes the items out and puts them back in order. It may
/// do so only while no push or pop is under way, which `busy` tracks: pushes and pops in flight,
/// and `TRAVERSING` while the walk lasts. During a collection that is always the case (the
/// interpreter stops every other thread, or they wait for the GIL, and a push or pop never
/// detaches); a walk that finds one under way (`gc.get_referents` racing with a put) reports no
/// items, which can only delay a collection, and a push or pop that meets a walk yields until it
/// ends.
struct Items {
    queue: Queue,
    limit: Option<usize>,
    reserved: CachePadded<AtomicUsize>,
    busy: CachePadded<AtomicUsize>,
}

const TRAVERSING: usize = 1 << (usize::BITS - 1);

impl Items {
    fn new(maxsize: usize) -> Items {
        Items {
            queue: match maxsize {
                1..=ARRAY_MAX => Queue::Array(ArrayQueue::new(maxsize)),
                _ => Queue::Segments(SegQueue::new()),
            },
            limit: (maxsize > 0).then_some(maxsize),
            reserved: CachePadded::new(AtomicUsize::new(0)),
            busy: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Take a slot for one push: false if the channel is full.
    fn reserve(&self) -> bool {
        match self.limit {
            None => true,
            Some(limit) => self
                .reserved
                .fetch_update(SeqCst, SeqCst, |n| (n < limit).then_some(n + 1))
                .is_ok(),
        }
    }

    /// Run a push or pop, never during a walk (see the type's doc).
    #[inline]
    fn busy<R>(&self, f: impl FnOnce(&Queue) -> R) -> R {
        while self.busy.fetch_add(1, SeqCst) & TRAVERSING != 0 {
            self.busy.fetch_sub(1, SeqCst);
            while self.busy.load(SeqCst) & TRAVERSING != 0 {
                std::thread::yield_now();
            }
        }
        let r = f(&self.queue);
        self.busy.fetch_sub(1, SeqCst);
        r
    }

    /// Push into a reserved slot.
    fn push(&self, item: Py<PyAny>) {
        self.busy(|q| q.push(item));
    }

    fn pop(&self) -> Option<Py<PyAny>> {
        let item = self.busy(Queue::pop)?;
        if self.limit.is_some() {
            self.reserved.fetch_sub(1, SeqCst);
        }
        Some(item)
    }

    /// Report every item to the collector, in place (see the type's doc).
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self
            .busy
            .compare_exchange(0, TRAVERSING, SeqCst, SeqCst)
            .is_err()
        {
            return Ok(());
        }
        let mut items = Vec::with_capacity(self.queue.len());
        while let Some(item) = self.queue.pop() {
            items.push(item);
        }
        let visited = items.iter().try_for_each(|item| visit.call(item));
        for item in items {
            self.queue.push(item);
        }
        self.busy.fetch_and(!TRAVERSING, SeqCst);
        visited
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_full(&self) -> bool {
        self.limit.is_some_and(|l| self.reserved.load(SeqCst) >= l)
    }
}

/// The waiter lists. A grant carries the waiter's original `since` back to it, so that a waiter
/// woken to retry that loses the race re-queues at the front, in its old place.
#[derive(Default)]
pub struct Waits {
    getters: WaitList<Instant, ()>,
    putters: WaitList<Instant, ()>,
    joiners: WaitList<Instant, ()>,
}

/// The kind of wait; also the async protocol's `kind` argument (`_channel.py` mirrors it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Get = 0,
    Put = 1,
    Join = 2,
}

impl Kind {
    pub fn from_code(code: u8) -> Option<Kind> {
        [Kind::Get, Kind::Put, Kind::Join]
            .into_iter()
            .find(|k| *k as u8 == code)
    }

    pub fn list(self) -> fn(&mut Waits) -> &mut WaitList<Instant, ()> {
        match self {
            Kind::Get => |w| &mut w.getters,
            Kind::Put => |w| &mut w.putters,
            Kind::Join => |w| &mut w.joiners,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Put => "put",
            Kind::Join => "join",
        }
    }
}

/// Wakeups an operation owes, decided without the lock and given under it (`settle`).
#[derive(Default)]
pub struct Owed {
    getter: bool,
    all_getters: bool,
    putters: usize,
    joiners: bool,
}

impl Owed {
    fn any(&self) -> bool {
        self.getter || self.all_getters || self.putters > 0 || self.joiners
    }
}

pub enum Got {
    Item(Py<PyAny>),
    Empty,
    Closed,
}

pub enum Put {
    Done,
    Full(Py<PyAny>),
    Closed(Py<PyAny>),
}

pub struct ChannelCore {
    /// Set by the first `configure` (`Channel.__init__`), or unbounded at first use by a
    /// subclass whose `__init__` never called ours.
    items: OnceLock<Items>,
    /// `CLOSED` | the number of puts in flight (see the module doc).
    puts: CachePadded<AtomicU64>,
    /// Items put and not yet marked done with `task_done` (`queue.Queue.unfinished_tasks`).
    unfinished: CachePadded<AtomicU64>,
    getters_waiting: CachePadded<AtomicUsize>,
    putters_waiting: AtomicUsize,
    joiners_waiting: AtomicUsize,
    waits: Mutex<Waits>,
}

impl ChannelCore {
    pub fn new() -> ChannelCore {
        ChannelCore {
            items: OnceLock::new(),
            puts: CachePadded::new(AtomicU64::new(0)),
            unfinished: CachePadded::new(AtomicU64::new(0)),
            getters_waiting: CachePadded::new(AtomicUsize::new(0)),
            putters_waiting: AtomicUsize::new(0),
            joiners_waiting: AtomicUsize::new(0),
            waits: Mutex::new(Waits::default()),
        }
    }

    #[inline]
    fn items(&self) -> &Items {
        self.items.get_or_init(|| Items::new(0))
    }

    /// Give the channel its bound: false if it already has another one.
    pub fn configure(&self, maxsize: usize) -> bool {
        self.items
            .get_or_init(|| Items::new(maxsize))
            .limit
            .unwrap_or(0)
            == maxsize
    }

    pub fn maxsize(&self) -> usize {
        self.items().limit.unwrap_or(0)
    }

    pub fn qsize(&self) -> usize {
        self.items().len()
    }

    pub fn is_full(&self) -> bool {
        self.items().is_full()
    }

    pub fn is_closed(&self) -> bool {
        self.puts.load(SeqCst) & CLOSED != 0
    }

    pub fn unfinished(&self) -> u64 {
        self.unfinished.load(SeqCst)
    }

    /// Threads and tasks waiting to get, to put, to join.
    pub fn waiting(&self) -> (usize, usize, usize) {
        (
            self.getters_waiting.load(SeqCst),
            self.putters_waiting.load(SeqCst),
            self.joiners_waiting.load(SeqCst),
        )
    }

    // ---- the lock-free operations: no lock taken, no Python run ----

    /// Push `item` unless the channel is closed or full (then it comes back).
    pub fn put_raw(&self, item: Py<PyAny>, owed: &mut Owed) -> Put {
        let before = self.puts.fetch_add(1, SeqCst);
        if before & CLOSED != 0 {
            self.end_put(owed);
            return Put::Closed(item);
        }
        if !self.items().reserve() {
            self.end_put(owed);
            return Put::Full(item);
        }
        // Counted before the push: a getter may `task_done` the item before we return.
        self.unfinished.fetch_add(1, SeqCst);
        self.items().push(item);
        self.end_put(owed);
        // The fence in `end_put` orders the push before this read (module doc).
        if self.getters_waiting.load(SeqCst) > 0 {
            owed.getter = true;
        }
        Put::Done
    }

    /// A put leaves `puts`; the last one out of a closed channel wakes every getter, which may be
    /// waiting to learn that it is drained.
    fn end_put(&self, owed: &mut Owed) {
        let after = self.puts.fetch_sub(1, SeqCst) - 1;
        fence(SeqCst);
        if after == CLOSED && self.getters_waiting.load(SeqCst) > 0 {
            owed.all_getters = true;
        }
    }

    /// Pop one item; `Closed` only when closed and drained (module doc).
    pub fn get_raw(&self, owed: &mut Owed) -> Got {
        if let Some(item) = self.items().pop() {
            self.after_pops(1, owed);
            return Got::Item(item);
        }
        if self.puts.load(SeqCst) != CLOSED {
            return Got::Empty;
        }
        match self.items().pop() {
            Some(item) => {
                self.after_pops(1, owed);
                Got::Item(item)
            }
            None => Got::Closed,
        }
    }

    /// Pop up to `max` more items, without waiting (`get_many` after its first).
    pub fn drain_raw(&self, max: usize, out: &mut Vec<Py<PyAny>>, owed: &mut Owed) {
        let mut n = 0;
        while n < max {
            let Some(item) = self.items().pop() else {
                break;
            };
            out.push(item);
            n += 1;
        }
        if n > 0 {
            self.after_pops(n, owed);
        }
    }

    fn after_pops(&self, n: usize, owed: &mut Owed) {
        if self.items().limit.is_some() {
            fence(SeqCst);
            if self.putters_waiting.load(SeqCst) > 0 {
                owed.putters += n;
            }
        }
    }

    /// `task_done`: false if no task is unfinished (nothing changes then).
    pub fn task_done_raw(&self, owed: &mut Owed) -> bool {
        match self
            .unfinished
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        {
            Ok(before) => {
                if before == 1 {
                    self.joiners_due(owed);
                }
                true
            }
            Err(_) => false,
        }
    }

    fn joiners_due(&self, owed: &mut Owed) {
        fence(SeqCst);
        if self.joiners_waiting.load(SeqCst) > 0 {
            owed.joiners = true;
        }
    }

    // ---- under the lock ----

    /// Publish the lists' lengths for the lock-free side (module doc).
    fn publish(&self, w: &Waits) {
        self.getters_waiting.store(w.getters.len(), SeqCst);
        self.putters_waiting.store(w.putters.len(), SeqCst);
        self.joiners_waiting.store(w.joiners.len(), SeqCst);
    }

    /// Give the wakeups `owed`, then publish.
    fn settle_locked(&self, w: &mut Waits, wakes: &mut Wakeups, owed: Owed) {
        if owed.all_getters {
            while wake_front(&mut w.getters, wakes) {}
        } else if owed.getter {
            wake_front(&mut w.getters, wakes);
        }
        for _ in 0..owed.putters {
            if !wake_front(&mut w.putters, wakes) {
                break;
            }
        }
        if owed.joiners && self.unfinished.load(SeqCst) == 0 {
            while wake_front(&mut w.joiners, wakes) {}
        }
        self.publish(w);
    }

    /// Give the wakeups `owed`, taking the lock only if there are any.
    pub fn settle(&self, py: Python<'_>, owed: Owed) {
        if owed.any() {
            with_waiters(py, &self.waits, |w, wakes| {
                self.settle_locked(w, wakes, owed)
            });
        }
    }

    /// A waiter of `kind` left holding a wakeup it will not use: the next one gets it while
    /// there is still something to retry for.
    fn pass_on_locked(&self, kind: Kind, w: &mut Waits, wakes: &mut Wakeups) {
        let due = match kind {
            Kind::Get => self.items().len() > 0 || self.is_closed(),
            Kind::Put => !self.items().is_full() || self.is_closed(),
            Kind::Join => false, // joiners are woken all at once
        };
        if due {
            wake_front(kind.list()(w), wakes);
        }
    }

    pub fn close(&self, py: Python<'_>) {
        with_waiters(py, &self.waits, |w, wakes| {
            if self.puts.fetch_or(CLOSED, SeqCst) & CLOSED == 0 {
                // Each retries and learns its fate: putters that the channel is closed, getters
                // that it is drained, or (with puts in flight) to wait for the last of them.
                while wake_front(&mut w.getters, wakes) {}
                while wake_front(&mut w.putters, wakes) {}
                self.publish(w);
            }
        });
    }

    /// Queue a waiter of `kind` (at the front, keeping its place, when it retries after a
    /// wakeup), then retry `attempt` once: `Ok(ticket)` if it must wait, `Err(result)` if the
    /// retry succeeded (the waiter is withdrawn again).
    fn enqueue<R>(
        &self,
        py: Python<'_>,
        kind: Kind,
        waiter: Waiter,
        since: Option<Instant>,
        attempt: &mut impl FnMut(&Self, &mut Owed) -> Option<R>,
    ) -> Result<Ticket, R> {
        with_waiters(py, &self.waits, |w, wakes| {
            let list = kind.list()(w);
            let ticket = match since {
                None => list.push_back((), waiter),
                Some(s) => list.push_front((), waiter, s),
            };
            self.publish(w);
            fence(SeqCst);
            let mut owed = Owed::default();
            let done = attempt(self, &mut owed);
            if done.is_some() {
                let _removed = kind.list()(w).withdraw(ticket, wakes);
            }
            self.settle_locked(w, wakes, owed);
            done.map_or(Ok(ticket), Err)
        })
    }

    /// Stop waiting: whether a wakeup had been granted (see `pass_on_locked`).
    fn withdraw(&self, py: Python<'_>, kind: Kind, ticket: Ticket, pass_on: bool) -> bool {
        with_waiters(py, &self.waits, |w, wakes| {
            let granted = matches!(
                kind.list()(w).withdraw(ticket, wakes),
                Withdrawn::Granted(_)
            );
            if granted && pass_on {
                self.pass_on_locked(kind, w, wakes);
            }
            self.publish(w);
            granted
        })
    }

    /// A thread's blocking operation. `attempt` (lock-free, no Python) returns `Some` when done;
    /// otherwise the thread queues, waits detached until woken or `deadline`, and retries.
    /// `Ok(None)`: the deadline passed. `Err`: a signal handler raised (Ctrl-C); any wakeup the
    /// thread held is passed on.
    pub fn block_on<R>(
        self: &Arc<Self>,
        py: Python<'_>,
        kind: Kind,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&Self, &mut Owed) -> Option<R>,
    ) -> PyResult<Option<R>> {
        let mut since = None;
        loop {
            let (waiter, cv) = Waiter::thread();
            let ticket = match self.enqueue(py, kind, waiter, since, &mut attempt) {
                Ok(t) => t,
                Err(done) => return Ok(Some(done)),
            };
            let first = *since.get_or_insert_with(Instant::now);
            let waited = if deadline.is_some_and(|d| d <= Instant::now()) {
                Ok(None)
            } else {
                let registration = register_wait(Arc::clone(self) as _, kind.verb());
                let waited =
                    waiters::wait_thread(py, &self.waits, ticket, &cv, deadline, kind.list());
                drop(registration);
                waited
            };
            match waited {
                Ok(Some(_woken)) => {
                    let mut owed = Owed::default();
                    let done = attempt(self, &mut owed);
                    self.settle(py, owed);
                    if let Some(done) = done {
                        return Ok(Some(done));
                    }
                    since = Some(first);
                }
                Ok(None) => {
                    // The deadline is a lower bound, as for `threading`'s waits: one last try.
                    let granted = self.withdraw(py, kind, ticket, false);
                    let mut owed = Owed::default();
                    let done = attempt(self, &mut owed);
                    self.settle(py, owed);
                    if done.is_none() && granted {
                        with_waiters(py, &self.waits, |w, wakes| {
                            self.pass_on_locked(kind, w, wakes);
                            self.publish(w);
                        });
                    }
                    return Ok(done);
                }
                Err(e) => {
                    self.withdraw(py, kind, ticket, true);
                    return Err(e);
                }
            }
        }
    }

    /// The async protocol's `begin` (see `waiters`): `Err(result)` if done now, `Ok(None)` if
    /// it would have to wait and no future was given, `Ok(Some(ticket))` once queued.
    pub fn begin<R>(
        self: &Arc<Self>,
        py: Python<'_>,
        kind: Kind,
        wait_with: Option<(Py<PyAny>, Py<PyAny>)>,
        since: Option<Instant>,
        mut attempt: impl FnMut(&Self, &mut Owed) -> Option<R>,
    ) -> Result<Option<Ticket>, R> {
        let Some((event_loop, future)) = wait_with else {
            let mut owed = Owed::default();
            let done = attempt(self, &mut owed);
            self.settle(py, owed);
            return done.map_or(Ok(None), Err);
        };
        let waiter = Waiter::future(event_loop, future, Arc::clone(self) as Arc<dyn Reclaim>);
        self.enqueue(py, kind, waiter, since, &mut attempt)
            .map(Some)
    }

    /// The async protocol's `finish`: which list `ticket` was in and, if it was woken, the
    /// `since` it re-queues with (`None`: withdrawn unwoken, its deadline passed).
    pub fn finish(&self, py: Python<'_>, ticket: Ticket) -> Option<(Kind, Option<Instant>)> {
        with_waiters(py, &self.waits, |w, wakes| {
            let mut found = None;
            for kind in [Kind::Get, Kind::Put, Kind::Join] {
                found = match kind.list()(w).withdraw(ticket, wakes) {
                    Withdrawn::Unknown => continue,
                    Withdrawn::Granted(since) => Some((kind, Some(since))),
                    Withdrawn::Removed | Withdrawn::Closed => Some((kind, None)),
                };
                break;
            }
            self.publish(w);
            found
        })
    }

    /// The async protocol's `abandon` (the awaiting task was cancelled): withdraw, passing on a
    /// wakeup it held.
    pub fn abandon(&self, py: Python<'_>, ticket: Ticket) {
        with_waiters(py, &self.waits, |w, wakes| {
            for kind in [Kind::Get, Kind::Put, Kind::Join] {
                match kind.list()(w).withdraw(ticket, wakes) {
                    Withdrawn::Unknown => continue,
                    Withdrawn::Granted(_) => self.pass_on_locked(kind, w, wakes),
                    Withdrawn::Removed | Withdrawn::Closed => {}
                }
                break;
            }
            self.publish(w);
        });
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(items) = self.items.get() {
            items.traverse(visit)?;
        }
        if let Some(w) = self.waits.try_lock() {
            w.getters.traverse(visit)?;
            w.putters.traverse(visit)?;
            w.joiners.traverse(visit)?;
        }
        Ok(())
    }
}

/// Wake the oldest waiter of `list`, if any, handing it its own `since`.
fn wake_front(list: &mut WaitList<Instant, ()>, wakes: &mut Wakeups) -> bool {
    let Some(since) = list.front().map(|f| f.since) else {
        return false;
    };
    list.grant_front(since, wakes).is_ok()
}

impl ChannelCore {
    /// `__clear__`: take every item out, for the caller to release (the collector found the
    /// channel in a dead cycle).
    pub fn take_all(&self) -> Vec<Py<PyAny>> {
        let mut items = Vec::new();
        while let Some(item) = self.items.get().and_then(Items::pop) {
            items.push(item);
        }
        items
    }
}

impl Reclaim for ChannelCore {
    fn reclaim(&self, py: Python<'_>, ticket: Ticket) {
        self.abandon(py, ticket);
    }
}

impl WaitTarget for ChannelCore {
    fn label(&self) -> String {
        "Channel".to_owned()
    }

    fn holders(&self, _py: Python<'_>) -> Vec<Holder> {
        Vec::new()
    }
}

impl Drop for ChannelCore {
    fn drop(&mut self) {
        let mut wakes = Wakeups::new();
        let w = self.waits.get_mut();
        for list in [&mut w.getters, &mut w.putters, &mut w.joiners] {
            drop(list.clear_into(&mut wakes));
        }
        let items = self.take_all();
        if !items.is_empty() || !wakes.is_empty() {
            Python::attach(|py| {
                wakes.perform(py);
                pycall::release_all(py, items);
            });
        }
    }
}
