//! `Channel`: a bounded (or unbounded) multi-producer multi-consumer FIFO for threads and for
//! any number of event loops at once. The data path is a crossbeam queue, lock-free; the waiter
//! lists are ours (`core`). Its async methods are coroutines of `python/nogilsafe/_channel.py`,
//! a few lines over `_waiting.wait`.
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyGenericAlias, PyList, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{CHANNEL_CLOSED, CHANNEL_EMPTY, CHANNEL_FULL};
use crate::locks::{refuse_pickle, since_token, token_since};
use crate::shared::{self, SharedCore};
use crate::sync;
use crate::waiters::{BUSY, CLOSED, GRANTED, RETRY, TIMED_OUT, WAITING};

mod core;

use self::core::{ChannelCore, Got, Kind, Owed, Put};

/// A multi-producer multi-consumer FIFO channel for threads and for any event loop. `maxsize`
/// 0 is unbounded; N bounds it (a put waits for space). `close()` ends it: later puts raise
/// `ChannelClosed`, gets drain what is left and then raise it.
#[pyclass(frozen, subclass, module = "nogilsafe", name = "Channel")]
pub struct Channel {
    core: Arc<ChannelCore>,
    /// `None` for the owner, else the owner this view shares its core with.
    owner: Option<Py<Self>>,
}

shared::shared_core!(Channel, ChannelCore);

fn closed_error(op: &str) -> PyErr {
    CHANNEL_CLOSED.err(match op {
        "put" => "put on a closed Channel".to_owned(),
        _ => format!("{op}: the Channel is closed and drained"),
    })
}

/// What a put attempt leaves: done, or the item back because the channel is closed.
type PutResult = Result<(), Py<PyAny>>;

/// A put attempt for `block_on`/`begin`: the item is kept in `pending` between attempts.
fn put_attempt(
    pending: &mut Option<Py<PyAny>>,
) -> impl FnMut(&ChannelCore, &mut Owed) -> Option<PutResult> + '_ {
    |core, owed| {
        // Always there: a failed attempt puts it back.
        let item = pending.take()?;
        match core.put_raw(item, owed) {
            Put::Done => Some(Ok(())),
            Put::Closed(item) => Some(Err(item)),
            Put::Full(item) => {
                *pending = Some(item);
                None
            }
        }
    }
}

fn get_attempt(core: &ChannelCore, owed: &mut Owed) -> Option<Option<Py<PyAny>>> {
    match core.get_raw(owed) {
        Got::Item(item) => Some(Some(item)),
        Got::Closed => Some(None),
        Got::Empty => None,
    }
}

fn join_attempt(core: &ChannelCore, _owed: &mut Owed) -> Option<()> {
    (core.unfinished() == 0).then_some(())
}

static GLUE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// `nogilsafe._channel.<name>(*args)`: the coroutine an async method returns.
fn glue<'py>(
    py: Python<'py>,
    name: &str,
    args: impl IntoPyObject<'py, Target = PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let module = GLUE.get_or_try_init(py, || py.import("nogilsafe._channel").map(Bound::unbind))?;
    crate::pycall::call(&module.bind(py).getattr(name)?, args)
}

impl Channel {
    /// Get one item, waiting (detached) if `block`, at most until `deadline`.
    fn get_one(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let deadline = sync::deadline(timeout)?;
        let core = &self.core;
        let mut owed = Owed::default();
        let got = get_attempt(core, &mut owed);
        core.settle(py, owed);
        let got = match got {
            Some(got) => Some(got),
            None if !block => return Err(CHANNEL_EMPTY.err("get from an empty Channel")),
            None => core.block_on(py, Kind::Get, deadline, get_attempt)?,
        };
        match got {
            Some(Some(item)) => Ok(item),
            Some(None) => Err(closed_error("get")),
            None => Err(sync::timeout_error("Channel.get", timeout)),
        }
    }

    fn put_one(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let deadline = sync::deadline(timeout)?;
        let core = &self.core;
        let mut pending = Some(item);
        let mut owed = Owed::default();
        let done = put_attempt(&mut pending)(core, &mut owed);
        core.settle(py, owed);
        let done = match done {
            Some(done) => Some(done),
            None if !block => return Err(CHANNEL_FULL.err("put to a full Channel")),
            None => core.block_on(py, Kind::Put, deadline, put_attempt(&mut pending))?,
        };
        match done {
            Some(Ok(())) => Ok(()),
            // The item comes back here, released once the error is raised (no lock held).
            Some(Err(_item)) => Err(closed_error("put")),
            None => Err(sync::timeout_error("Channel.put", timeout)),
        }
    }
}

#[pymethods]
impl Channel {
    #[new]
    #[pyo3(signature = (maxsize = 0))]
    fn new(maxsize: i64) -> PyResult<Self> {
        if let Some(view) = shared::adopted::<Self>() {
            return Ok(view);
        }
        let n = usize::try_from(maxsize).map_err(|_| {
            PyValueError::new_err(format!(
                "maxsize must be >= 0 (0 means unbounded), not {maxsize}"
            ))
        })?;
        Ok(Self::from_core(Arc::new(ChannelCore::new(n))))
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyGenericAlias>> {
        shared::class_getitem(cls, item)
    }

    /// A per-thread view sharing this channel.
    fn local<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        shared::local(slf)
    }

    /// The bound given at creation (0: unbounded).
    #[getter]
    fn maxsize(&self) -> usize {
        self.core.maxsize
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Items put and not yet marked done by `task_done()`, as `queue.Queue`'s attribute.
    #[getter]
    fn unfinished_tasks(&self) -> u64 {
        self.core.unfinished()
    }

    fn qsize(&self) -> usize {
        self.core.qsize()
    }

    fn empty(&self) -> bool {
        self.core.qsize() == 0
    }

    fn full(&self) -> bool {
        self.core.is_full()
    }

    /// Put `item` at the end, waiting for space (detached, at most `timeout` seconds:
    /// `LockTimeoutError`) if the channel is bounded and full and `block` is true
    /// (`ChannelFull` at once otherwise). `ChannelClosed` once the channel is closed.
    #[pyo3(signature = (item, block = true, timeout = None))]
    fn put(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.put_one(py, item, block, timeout)
    }

    fn put_nowait(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        self.put_one(py, item, false, None)
    }

    /// Take the oldest item, waiting for one (detached, at most `timeout` seconds:
    /// `LockTimeoutError`) if `block` is true (`ChannelEmpty` at once otherwise).
    /// `ChannelClosed` once the channel is closed and drained.
    #[pyo3(signature = (block = true, timeout = None))]
    fn get(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.get_one(py, block, timeout)
    }

    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get_one(py, false, None)
    }

    /// Wait (as `get`) for one item, then take whatever else is ready, up to `max_items` in all,
    /// oldest first.
    #[pyo3(signature = (max_items, timeout = None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        max_items: i64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max = usize::try_from(max_items)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                PyValueError::new_err(format!("max_items must be >= 1, not {max_items}"))
            })?;
        let first = self.get_one(py, true, timeout)?;
        let mut items = vec![first];
        let mut owed = Owed::default();
        self.core.drain_raw(max - 1, &mut items, &mut owed);
        self.core.settle(py, owed);
        PyList::new(py, items)
    }

    /// No more puts (`ChannelClosed`); gets drain what is left, then raise `ChannelClosed`.
    /// Every blocked producer and consumer wakes. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.core.close(py);
    }

    /// Mark one item taken by a get as processed (for `join`), as `queue.Queue.task_done`.
    fn task_done(&self, py: Python<'_>) -> PyResult<()> {
        let mut owed = Owed::default();
        let ok = self.core.task_done_raw(&mut owed);
        self.core.settle(py, owed);
        if ok {
            Ok(())
        } else {
            Err(PyValueError::new_err("task_done() called too many times"))
        }
    }

    /// Wait (detached, at most `timeout` seconds: `LockTimeoutError`) until every item put has
    /// been marked done with `task_done()`.
    #[pyo3(signature = (timeout = None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = sync::deadline(timeout)?;
        if self.core.unfinished() == 0 {
            return Ok(());
        }
        match self.core.block_on(py, Kind::Join, deadline, join_attempt)? {
            Some(()) => Ok(()),
            None => Err(sync::timeout_error("Channel.join", timeout)),
        }
    }

    /// `await ch.put_async(item, timeout=None)`, from any event loop.
    #[pyo3(signature = (item, timeout = None))]
    fn put_async<'py>(
        slf: &Bound<'py, Self>,
        item: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        glue(slf.py(), "put", (slf, item, timeout))
    }

    /// `await ch.get_async(timeout=None)`, from any event loop. A cancelled wait loses no item.
    #[pyo3(signature = (timeout = None))]
    fn get_async<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        glue(slf.py(), "get", (slf, timeout))
    }

    /// `await ch.join_async(timeout=None)`, from any event loop.
    #[pyo3(signature = (timeout = None))]
    fn join_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        glue(slf.py(), "join", (slf, timeout))
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next item, waiting for it; the iteration ends when the channel is closed and drained.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.get_one(py, true, None) {
            Ok(item) => Ok(Some(item)),
            Err(e) if e.is_instance(py, CHANNEL_CLOSED.type_object(py)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        glue(slf.py(), "anext", (slf,))
    }

    /// The async protocol's `begin` (see `src/waiters.rs`); `kind`: 0 get, 1 put, 2 join.
    #[pyo3(signature = (event_loop, future, retry, kind, item = None))]
    fn _begin<'py>(
        &self,
        py: Python<'py>,
        event_loop: &Bound<'py, PyAny>,
        future: Option<&Bound<'py, PyAny>>,
        retry: Option<u64>,
        kind: u8,
        item: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let kind =
            Kind::from_code(kind).ok_or_else(|| PyValueError::new_err("unknown wait kind"))?;
        let wait_with = future.map(|f| (event_loop.clone().unbind(), f.clone().unbind()));
        let since: Option<Instant> = retry.map(token_since);
        let core = &self.core;
        let none = || py.None();
        match kind {
            Kind::Get => match core.begin(py, kind, wait_with, since, get_attempt) {
                Err(Some(item)) => (GRANTED, item).into_pyobject(py),
                Err(None) => (CLOSED, none()).into_pyobject(py),
                Ok(None) => (BUSY, none()).into_pyobject(py),
                Ok(Some(ticket)) => (WAITING, ticket).into_pyobject(py),
            },
            Kind::Put => {
                let mut pending = item;
                match core.begin(py, kind, wait_with, since, put_attempt(&mut pending)) {
                    Err(Ok(())) => (GRANTED, none()).into_pyobject(py),
                    Err(Err(_item)) => (CLOSED, none()).into_pyobject(py),
                    Ok(None) => (BUSY, none()).into_pyobject(py),
                    Ok(Some(ticket)) => (WAITING, ticket).into_pyobject(py),
                }
            }
            Kind::Join => match core.begin(py, kind, wait_with, since, join_attempt) {
                Err(()) => (GRANTED, none()).into_pyobject(py),
                Ok(None) => (BUSY, none()).into_pyobject(py),
                Ok(Some(ticket)) => (WAITING, ticket).into_pyobject(py),
            },
        }
    }

    /// The async protocol's `finish`: a woken getter or putter retries (keeping its place); a
    /// woken joiner is done.
    fn _finish<'py>(&self, py: Python<'py>, ticket: u64) -> PyResult<Bound<'py, PyTuple>> {
        match self.core.finish(py, ticket) {
            Some((Kind::Join, _)) => (GRANTED, py.None()).into_pyobject(py),
            Some((_, since)) => (RETRY, since_token(since)).into_pyobject(py),
            None => (TIMED_OUT, py.None()).into_pyobject(py),
        }
    }

    fn _abandon(&self, py: Python<'_>, ticket: u64) {
        self.core.abandon(py, ticket);
    }

    fn __repr__(&self) -> String {
        let core = &self.core;
        let (getters, putters, _) = core.waiting();
        format!(
            "<nogilsafe.Channel maxsize={} qsize={}{}{}{}>",
            core.maxsize,
            core.qsize(),
            if core.is_closed() { " closed" } else { "" },
            if getters > 0 {
                format!(" getters_waiting={getters}")
            } else {
                String::new()
            },
            if putters > 0 {
                format!(" putters_waiting={putters}")
            } else {
                String::new()
            },
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(refuse_pickle("nogilsafe.Channel"))
    }

    /// Items are not reported: a crossbeam queue cannot be walked without taking them out. A
    /// cycle through an item left in a dropped channel is therefore not collected (close and
    /// drain a channel that holds objects referring back to it).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        self.core.traverse(&visit)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Channel>()
}
