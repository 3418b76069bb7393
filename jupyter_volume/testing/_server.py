"""What the test servers (SeaweedFS, JupyterLab) share: free ports, a log, a clean stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (held together while chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_running(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie not yet reaped does not), from
    ``/proc`` (Linux; False elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the command name is in parentheses and may contain spaces: the state follows it
    return stat[stat.rfind(b")") + 2 :].split()[:1] != [b"Z"]


def tied_to_this_process(args: list[str]) -> list[str]:
    """``args`` run so that the server is sent SIGTERM if the process that starts it dies
    without stopping it: a pytest worker killed outright (the OOM killer, SIGKILL) runs
    no teardown, and its servers used to run on. Linux only, through util-linux's
    ``setpriv --pdeathsig`` (always there on Debian); elsewhere ``args`` as they are.

    The kernel sends the signal when the *thread* that started the server ends: start
    servers from a thread that lives as long as they should (the main thread does)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return list(args)
    return [setpriv, "--pdeathsig", "TERM", "--", *args]


def ended(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``proc`` to end, without reaping it: until it is
    reaped its PID, which is also its process group's ID, is given to no other process,
    so the group can still be signalled safely (:func:`terminate_group`)."""
    if proc.returncode is not None:
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True  # reaped by someone else
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def terminate_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group of ``proc`` (its leader), wait up to ``timeout`` s for
    the leader to end, SIGKILL what is left of the group, then reap the leader.

    The group is signalled only while its leader is not reaped. Once it is, the
    group's ID, the leader's PID, is free: this machine hands PIDs out again from only
    32,768, and another test's server or kernel, started in a session of its own,
    leads a group of that ID before long. So a leader already reaped (by ``poll()``,
    as ``LocalServer.running`` does) gets no signal; the servers we start leave no
    process of their own in their group once the leader ended."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        ended(proc, timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group, if anything
    proc.wait()


class LocalServer:
    """A server process started by a test, in its own temp folder; a context manager.

    Subclasses set ``log_name`` and implement ``start()`` and ``stop()``; ``stop()`` ends
    with :meth:`_cleanup`.
    """

    log_name = "server.log"

    def __init__(self) -> None:
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        if self.tmpdir is None:
            return "(no log)"
        try:
            text = (self.tmpdir / self.log_name).read_text(errors="replace")
        except OSError as e:
            return f"(cannot read the log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def _start(self, name: str, launch: Callable[[], None]) -> Any:
        """Start the server: ``launch`` the process, then :meth:`_wait_ready`; up to three
        tries, since a port found free may be taken by someone else meanwhile (each
        failed try is stopped). Returns ``self``."""
        if self.proc is not None:
            raise RuntimeError(f"{name} already started")
        last_error: RuntimeError | None = None
        for _attempt in range(3):
            try:
                launch()
                self._wait_ready()
                return self
            except RuntimeError as e:
                last_error = e
                self.stop()
        assert last_error is not None
        raise last_error

    def _wait_ready(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _wait_until(
        self,
        answers: Callable[[], object],
        not_yet: tuple[type[BaseException], ...],
        name: str,
        where: str,
        timeout: float,
    ) -> None:
        """Poll ``answers`` (every 0.2 s) until it returns, for at most ``timeout`` s;
        ``not_yet``: the errors that mean "not listening yet". RuntimeError, with the
        log's tail, if the process ``name`` exits first or never answers at ``where``."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {self.proc.returncode} during start-up; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                answers()
                return
            except not_yet as e:
                last = e
                time.sleep(0.2)
        raise RuntimeError(
            f"{name} did not answer at {where} within {timeout:.0f}s (last error: {last}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _cleanup(self) -> None:
        """Close the log and remove the temp folder (safe to call twice)."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
