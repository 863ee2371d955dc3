"""Package-level promises: import keeps the GIL off, the error hierarchy, public surface."""

from __future__ import annotations

import subprocess
import sys
import sysconfig

import nogilsafe
import pytest

FREE_THREADED_BUILD = sysconfig.get_config_var("Py_GIL_DISABLED") == 1


@pytest.mark.skipif(not FREE_THREADED_BUILD, reason="needs a free-threaded build")
def test_import_does_not_reenable_the_gil() -> None:
    # A fresh interpreter, so nothing imported earlier by pytest can mask the module's flag.
    code = (
        "import sys; import nogilsafe, nogilsafe.testing, nogilsafe._core; "
        "print(sys._is_gil_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    assert sys._is_gil_enabled() is False


def test_error_hierarchy() -> None:
    assert issubclass(nogilsafe.LockTimeoutError, nogilsafe.NogilsafeError)
    assert issubclass(nogilsafe.LockTimeoutError, TimeoutError)
    assert issubclass(nogilsafe.ReentrancyError, nogilsafe.NogilsafeError)
    assert issubclass(nogilsafe.ReentrancyError, RuntimeError)
    assert issubclass(nogilsafe.ThreadSafeStateError, nogilsafe.NogilsafeError)
    assert issubclass(nogilsafe.StateKeyError, KeyError)
    assert issubclass(nogilsafe.StateKeyError, nogilsafe.ThreadSafeStateError)
    for name in ("StateVersionError", "StateRollbackError", "StateConflictError"):
        assert issubclass(getattr(nogilsafe, name), nogilsafe.ThreadSafeStateError)
    assert nogilsafe.NogilsafeError.__module__ == "nogilsafe"
    with pytest.raises(TimeoutError):
        raise nogilsafe.LockTimeoutError("x")


def test_all_names_exist() -> None:
    for name in nogilsafe.__all__:
        assert hasattr(nogilsafe, name), name


def test_stub_file_and_marker_are_installed() -> None:
    import pathlib

    pkg = pathlib.Path(nogilsafe.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()
