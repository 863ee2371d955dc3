//! `Channel`: a bounded (or unbounded) multi-producer multi-consumer FIFO for threads and for
//! any number of event loops at once. The data path is a crossbeam queue, lock-free; the waiter
//! lists are ours (`core`). Its async methods are coroutines of `python/nogilsafe/_channel.py`,
//! a few lines over `_waiting.wait`.
use std::sync::Arc;
use std::time::Instant;

use pyo3::conversion::FromPyObject;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyGenericAlias, PyInt, PyList, PyTuple, PyType};
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

/// `maxsize`: an int, 0 (unbounded) or more. Negative: `ValueError`, however large; beyond what
/// a machine could hold: `OverflowError`, as for other sizes.
struct MaxSize(usize);

impl<'a, 'py> FromPyObject<'a, 'py> for MaxSize {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let n = obj.cast::<PyInt>().map_err(|_| {
            PyTypeError::new_err(format!(
                "maxsize must be an int, not {}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        if n.lt(0)? {
            return Err(PyValueError::new_err(format!(
                "maxsize must be >= 0 (0 means unbounded), not {}",
                n.to_owned()
            )));
        }
        Ok(MaxSize(n.extract()?))
    }
}

/// `block=`: any object, by its truth value, as `queue.Queue` takes it (`get(0)` does not wait).
struct Truthy(bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Truthy {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Truthy)
    }
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

/// `nogilsafe._channel.<name>(*args)`: the coroutine an async method returns.
static GLUE: crate::pycall::Glue = crate::pycall::Glue::new("nogilsafe._channel");

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
    /// Like `dict`'s, ignores its arguments: `__init__` gives the channel its bound, so a
    /// subclass's `__init__` may take its own and call `super().__init__(maxsize)`.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        shared::adopted::<Self>().unwrap_or_else(|| Self::from_core(Arc::new(ChannelCore::new())))
    }

    #[pyo3(signature = (maxsize = MaxSize(0)))]
    fn __init__(&self, maxsize: MaxSize) -> PyResult<()> {
        if self.core.configure(maxsize.0) {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!(
                "this Channel's maxsize is already {}; __init__ cannot change it",
                self.core.maxsize()
            )))
        }
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
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
        self.core.maxsize()
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

    /// Threads and tasks waiting in `get`, `get_many`, `get_async` or iteration right now.
    #[getter]
    fn getters_waiting(&self) -> usize {
        self.core.waiting().0
    }

    /// Threads and tasks waiting for room in `put` or `put_async` right now.
    #[getter]
    fn putters_waiting(&self) -> usize {
        self.core.waiting().1
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
    #[pyo3(
        signature = (item, block = Truthy(true), timeout = None),
        text_signature = "($self, item, block=True, timeout=None)"
    )]
    fn put(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.put_one(py, item, block.0, timeout)
    }

    fn put_nowait(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        self.put_one(py, item, false, None)
    }

    /// Take the oldest item, waiting for one (detached, at most `timeout` seconds:
    /// `LockTimeoutError`) if `block` is true (`ChannelEmpty` at once otherwise).
    /// `ChannelClosed` once the channel is closed and drained.
    #[pyo3(
        signature = (block = Truthy(true), timeout = None),
        text_signature = "($self, block=True, timeout=None)"
    )]
    fn get(&self, py: Python<'_>, block: Truthy, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.get_one(py, block.0, timeout)
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
        max_items: &Bound<'py, PyInt>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if max_items.lt(1)? {
            return Err(PyValueError::new_err(format!(
                "max_items must be >= 1, not {max_items}"
            )));
        }
        // A bound, not a size to reserve: any larger count means "everything ready".
        let max = max_items.extract::<usize>().unwrap_or(usize::MAX);
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
        GLUE.call(slf.py(), "put", (slf, item, timeout))
    }

    /// `await ch.get_async(timeout=None)`, from any event loop. A cancelled wait loses no item.
    #[pyo3(signature = (timeout = None))]
    fn get_async<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        GLUE.call(slf.py(), "get", (slf, timeout))
    }

    /// `await ch.join_async(timeout=None)`, from any event loop.
    #[pyo3(signature = (timeout = None))]
    fn join_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sync::deadline(timeout)?;
        GLUE.call(slf.py(), "join", (slf, timeout))
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
        GLUE.call(slf.py(), "anext", (slf,))
    }

    /// The async protocol's `begin` (see `src/waiters.rs`); `kind`: 0 get, 1 put, 2 join.
    #[pyo3(signature = (event_loop, future, retry, kind, item))]
    fn _begin<'py>(
        &self,
        py: Python<'py>,
        event_loop: &Bound<'py, PyAny>,
        future: Option<&Bound<'py, PyAny>>,
        retry: Option<u64>,
        kind: u8,
        item: Py<PyAny>,
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
                let mut pending = Some(item);
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

    /// The async protocol's `finish`. A woken getter tries its get here (saving the glue a
    /// second `begin`) and a woken putter retries through `begin` (it has the item), both keeping
    /// their place in line if they must wait again; a woken joiner is done. A waiter whose
    /// deadline passed gets one last try, as a thread does (a putter's is its last `begin`).
    fn _finish<'py>(&self, py: Python<'py>, ticket: u64) -> PyResult<Bound<'py, PyTuple>> {
        let core = &self.core;
        let none = || py.None();
        match core.finish(py, ticket) {
            Some((Kind::Get, since)) => {
                let mut owed = Owed::default();
                let got = get_attempt(core, &mut owed);
                core.settle(py, owed);
                match (got, since) {
                    (Some(Some(item)), _) => (GRANTED, item).into_pyobject(py),
                    (Some(None), _) => (CLOSED, none()).into_pyobject(py),
                    (None, Some(since)) => (RETRY, since_token(since)).into_pyobject(py),
                    (None, None) => (TIMED_OUT, none()).into_pyobject(py),
                }
            }
            Some((Kind::Put, Some(since))) => (RETRY, since_token(since)).into_pyobject(py),
            Some((Kind::Join, since)) => {
                let done = since.is_some() || core.unfinished() == 0;
                (if done { GRANTED } else { TIMED_OUT }, none()).into_pyobject(py)
            }
            Some((Kind::Put, None)) | None => (TIMED_OUT, none()).into_pyobject(py),
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
            core.maxsize(),
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

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.visit_owner(&visit)? {
            return Ok(());
        }
        self.core.traverse(&visit)
    }

    fn __clear__(&self) {
        // Views are never cleared: their owner breaks the cycle by releasing the items.
        if self.owner.is_none() {
            let items = self.core.take_all();
            Python::attach(|py| crate::pycall::release_all(py, items));
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Channel>()
}
