"""The one port helper and the one process helper for every loopback server (demo, tests, benches).

A server runs in its own session (its own process group), so the terminal's Ctrl-C reaches
only the caller, which stops the server by PID. A process started from a non-interactive shell
inherits SIG_IGN for INT/TERM and a plain ``kill`` would do nothing, so the default signal
dispositions are restored (``env --default-signal=INT,TERM``) before the server's command runs.
:meth:`ManagedProcess.stop` sends the server's graceful signal (SIGTERM, or SIGINT for Dagster)
to its PID or its whole group, waits, then SIGKILLs the group (children included) and reaps it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 20.0  # float-ok: seconds
_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A server process did not start, exited while starting, or did not become ready."""


class ProcessExited(ProcessError):
    """The server process exited before it was ready (``returncode`` says how)."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when ``port`` on 127.0.0.1 can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, timeout_s: float = 1.0) -> bool:  # float-ok: seconds
    """True when something accepts TCP connections on 127.0.0.1 ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        return probe.connect_ex((LOOPBACK, port)) == 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _can_tie_to_parent() -> bool:
    # PDEATHSIG fires when the forking *thread* exits: from a worker thread it would kill the
    # server as soon as that thread finished.
    return (
        sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
    )


class ManagedProcess:
    """One server process in its own session; output appended to ``log_path``.

    ``stop_signal`` is the graceful stop (SIGTERM; SIGINT for Dagster), sent to the whole
    process group when ``signal_group`` (servers with workers: sshd, gunicorn) else to the PID
    (a parent that stops its own children: Dagster, LNbits). ``die_with_parent`` arms
    ``PR_SET_PDEATHSIG`` (Linux, main thread only) so a killed caller cannot leak the server.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        log_path: Path | None,
        stop_signal: signal.Signals = signal.SIGTERM,
        signal_group: bool = False,
        stop_timeout_s: float = STOP_TIMEOUT_S,  # float-ok: seconds
        die_with_parent: bool = False,
    ) -> None:
        """``log_path=None``: the output goes to this process's terminal (the demo's UI)."""
        self.command = list(command)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.stop_timeout_s = stop_timeout_s
        argv = ["env", "--default-signal=INT,TERM", *self.command]
        options: dict[str, object] = {
            "cwd": cwd,
            "env": dict(env) if env is not None else None,
            "stdin": subprocess.DEVNULL,
            "start_new_session": True,
            # Only async-signal-safe work (one prctl call) runs between fork and exec.
            "preexec_fn": _die_with_parent if die_with_parent and _can_tie_to_parent() else None,
        }
        if log_path is None:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(argv, **options)  # type: ignore[call-overload]
            return
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                argv, stdout=log, stderr=subprocess.STDOUT, **options
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(output went to the terminal)"
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(
        self,
        ready: Callable[[], bool],
        *,
        timeout_s: float,  # float-ok: seconds
        interval_s: float = 0.1,  # float-ok: seconds
        what: str = "server",
    ) -> float:  # float-ok: seconds
        """Poll ``ready()`` until true; the seconds it took. :class:`ProcessExited` when the
        process exits first, :class:`ProcessError` after ``timeout_s`` (the process is stopped)."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            if not self.running:
                raise ProcessExited(
                    f"{what} exited with status {self.process.returncode} while starting; "
                    f"log tail:\n{self.log_tail()}",
                    self.process.returncode,
                )
            if ready():
                return time.monotonic() - started
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessError(
                    f"{what} not ready after {timeout_s:.0f} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(interval_s)

    def wait_for_port(
        self,
        port: int,
        *,
        timeout_s: float,  # float-ok: seconds
        what: str = "server",
    ) -> float:  # float-ok: seconds
        """Wait until the process accepts TCP connections on loopback ``port``."""
        return self.wait_ready(lambda: port_accepts(port), timeout_s=timeout_s, what=what)

    def _signal(self, signum: signal.Signals, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.process.pid, signum)
            else:
                os.kill(self.process.pid, signum)

    def stop(self, timeout_s: float | None = None) -> int | None:  # float-ok: seconds
        """Graceful signal, wait; then SIGKILL the process group. Returns the exit status."""
        if self.process.poll() is None:
            self._signal(self.stop_signal, self.signal_group)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
        # Children (workers, code servers, daemons) share the group of the session we created.
        self._signal(signal.SIGKILL, True)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
