"""Run a scenario in a child interpreter, so a crash or a hang fails the test instead of CI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        how = (
            f"killed by {signal.Signals(-self.returncode).name}"
            if self.returncode < 0
            else f"exit status {self.returncode}"
        )
        return f"{how}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr[-3000:]}"


def run_child(
    code: str, *args: str, timeout: float = 60.0, flags: Sequence[str] = ()
) -> ChildResult:
    """Run ``code`` with this interpreter (and interpreter ``flags`` such as ``-b``); a child
    still running after ``timeout`` is killed and reported as hung (``returncode`` -9)."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        p = subprocess.run(
            [sys.executable, *flags, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return ChildResult(-signal.SIGKILL, out, err + f"\n[hung: killed after {timeout}s]")
    return ChildResult(p.returncode, p.stdout, p.stderr)
