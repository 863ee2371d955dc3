//! The exception hierarchy, created once per interpreter and exported to Python.
//!
//! `create_exception!` allows one base class only; `LockTimeoutError` must be both a
//! `NogilsafeError` and a builtin `TimeoutError` (so `except TimeoutError` keeps working), so the
//! types are made with `PyErr_NewExceptionWithDoc`, which accepts a tuple of bases.
use std::ffi::CStr;

use pyo3::exceptions::{PyException, PyKeyError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

/// One exception type: its qualified name, docstring and bases (parents are listed first in
/// `ALL`, so they exist by the time a child is created).
pub struct ExcSpec {
    name: &'static CStr,
    doc: &'static CStr,
    bases: fn(Python<'_>) -> PyResult<Vec<Bound<'_, PyType>>>,
    cell: PyOnceLock<Py<PyType>>,
}

impl ExcSpec {
    pub fn type_object<'py>(&'static self, py: Python<'py>) -> &'py Bound<'py, PyType> {
        self.cell
            .get_or_init(py, || {
                let bases = (self.bases)(py).expect("base exception types exist");
                let bases = PyTuple::new(py, bases).expect("tuple of bases");
                // SAFETY: name and doc are NUL-terminated statics; bases is a valid tuple.
                unsafe {
                    let ptr = pyo3::ffi::PyErr_NewExceptionWithDoc(
                        self.name.as_ptr(),
                        self.doc.as_ptr(),
                        bases.as_ptr(),
                        std::ptr::null_mut(),
                    );
                    Bound::from_owned_ptr(py, ptr)
                        .cast_into::<PyType>()
                        .expect("PyErr_NewExceptionWithDoc returns a type")
                        .unbind()
                }
            })
            .bind(py)
    }

    /// A new error of this type with `msg` as its argument.
    pub fn err(&'static self, msg: impl Into<String>) -> PyErr {
        let msg = msg.into();
        Python::attach(|py| PyErr::from_type(self.type_object(py).clone(), msg))
    }

    fn short_name(&self) -> &'static str {
        let full = self.name.to_str().expect("ascii name");
        full.rsplit('.').next().unwrap_or(full)
    }
}

macro_rules! exc {
    ($ident:ident, $name:literal, $doc:literal, [$($base:expr),*]) => {
        pub static $ident: ExcSpec = ExcSpec {
            name: $name,
            doc: $doc,
            bases: |py| Ok(vec![$($base(py)?),*]),
            cell: PyOnceLock::new(),
        };
    };
}

fn builtin<T: pyo3::type_object::PyTypeInfo>(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.get_type::<T>())
}
fn queue_empty(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py
        .import("queue")?
        .getattr("Empty")?
        .cast_into::<PyType>()?)
}
fn queue_full(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.import("queue")?.getattr("Full")?.cast_into::<PyType>()?)
}
fn ours(spec: &'static ExcSpec) -> impl Fn(Python<'_>) -> PyResult<Bound<'_, PyType>> {
    move |py| Ok(spec.type_object(py).clone())
}

exc!(
    NOGILSAFE_ERROR,
    c"nogilsafe.NogilsafeError",
    c"Base class of every error nogilsafe raises itself.",
    [builtin::<PyException>]
);
exc!(
    LOCK_TIMEOUT_ERROR,
    c"nogilsafe.LockTimeoutError",
    c"A blocking call's timeout expired before it could proceed. Also a builtin TimeoutError.",
    [ours(&NOGILSAFE_ERROR), builtin::<PyTimeoutError>]
);
exc!(REENTRANCY_ERROR, c"nogilsafe.ReentrancyError",
    c"Python code run on behalf of an operation (a callback, __eq__, __hash__, __del__, a factory) \
tried to re-enter the same object in a way that would deadlock or never finish.",
    [ours(&NOGILSAFE_ERROR), builtin::<PyRuntimeError>]);
exc!(
    THREAD_SAFE_STATE_ERROR,
    c"nogilsafe.ThreadSafeStateError",
    c"Base class of ThreadSafeState's errors.",
    [ours(&NOGILSAFE_ERROR)]
);
exc!(
    STATE_KEY_ERROR,
    c"nogilsafe.StateKeyError",
    c"A required key is missing from a ThreadSafeState. Also a builtin KeyError.",
    [ours(&THREAD_SAFE_STATE_ERROR), builtin::<PyKeyError>]
);
exc!(
    STATE_VERSION_ERROR,
    c"nogilsafe.StateVersionError",
    c"A version that does not exist (yet) was named.",
    [ours(&THREAD_SAFE_STATE_ERROR), builtin::<PyValueError>]
);
exc!(
    STATE_ROLLBACK_ERROR,
    c"nogilsafe.StateRollbackError",
    c"A rollback target is no longer retained in the history.",
    [ours(&THREAD_SAFE_STATE_ERROR)]
);
exc!(
    STATE_CONFLICT_ERROR,
    c"nogilsafe.StateConflictError",
    c"An optimistic transaction kept conflicting with other writers and gave up.",
    [ours(&THREAD_SAFE_STATE_ERROR)]
);

exc!(
    CHANNEL_CLOSED,
    c"nogilsafe.ChannelClosed",
    c"The Channel is closed: a put after close(), or a get once it is closed and drained.",
    [ours(&NOGILSAFE_ERROR)]
);
exc!(
    CHANNEL_EMPTY,
    c"nogilsafe.ChannelEmpty",
    c"A non-blocking get found the Channel empty. Also a queue.Empty.",
    [ours(&NOGILSAFE_ERROR), queue_empty]
);
exc!(
    CHANNEL_FULL,
    c"nogilsafe.ChannelFull",
    c"A non-blocking put found the Channel full. Also a queue.Full.",
    [ours(&NOGILSAFE_ERROR), queue_full]
);

/// Every exception, parents before children.
pub static ALL: [&ExcSpec; 11] = [
    &NOGILSAFE_ERROR,
    &LOCK_TIMEOUT_ERROR,
    &REENTRANCY_ERROR,
    &THREAD_SAFE_STATE_ERROR,
    &STATE_KEY_ERROR,
    &STATE_VERSION_ERROR,
    &STATE_ROLLBACK_ERROR,
    &STATE_CONFLICT_ERROR,
    &CHANNEL_CLOSED,
    &CHANNEL_EMPTY,
    &CHANNEL_FULL,
];

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for spec in ALL {
        m.add(spec.short_name(), spec.type_object(py))?;
    }
    Ok(())
}
