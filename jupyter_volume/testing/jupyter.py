"""A throwaway JupyterLab (or bare Jupyter server) and a headless Chromium, for tests.

::

    with JupyterLab(env={"JUPYTER_VOLUME_STORE": url}) as lab:
        lab.api("GET", "api/kernelspecs")
        write_notebook(lab.root_dir / "t.ipynb", ["print(1)"])
        with chromium() as browser:
            page = browser.new_page()
            open_lab(page, lab, "t.ipynb")

Everything is private to the instance: the server listens on 127.0.0.1 only, on a free
port picked at start, with a random token; its root, runtime, data and config folders
(and the kernels' IPython folder) live in a temporary folder that :meth:`JupyterLab.stop`
removes, so nothing of the user's own Jupyter setup leaks in or out. The server runs
from the current Python (this venv), in its own process group; stopping it also ends
the kernels it started (they run in sessions of their own).

:func:`chromium` drives the Debian ``chromium`` package through Playwright; it never
downloads a browser (no ``playwright install``). Nothing in the package imports this
module; it needs the test extras (``playwright``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._server import (
    LocalServer,
    ended,
    free_ports,
    pid_running,
    terminate_group,
    tied_to_this_process,
)

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_INSTALL_HINT",
    "CHROMIUM_PATH",
    "JupyterLab",
    "chromium",
    "open_lab",
    "run_cell",
    "run_cell_until",
    "write_notebook",
]

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_INSTALL_HINT = "apt-get install -y chromium"
#: Flags for a quiet, sandbox-free headless Chromium that makes no calls home.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Lab user settings written into the private config folder: no news or update
#: checks (they would call out to the internet and pop up notifications), and a
#: notebook starts its preferred kernel without asking in a dialog.
DEFAULT_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from ``/proc`` (Linux; empty elsewhere)."""
    out: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after it
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            out.setdefault(int(fields[1]), []).append(int(name))
        except (IndexError, ValueError):
            continue
    return out


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...)."""
    tree = _children()
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class _Held:
    """Processes held by pidfd (Linux 5.3+), so that a signal sent later reaches the
    very process that was found and never one that got its PID after it ended: the
    PIDs come from a ``/proc`` scan made before a shutdown that can take 15 s, and
    this machine hands out PIDs (threads included) from only 32,768. Where pidfds are
    missing, PIDs are used as they are."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # pid -> pidfd (-1: no pidfd here)

    def add(self, pids: Sequence[int]) -> None:
        """Hold each of ``pids`` that still runs (a scan's PID that already ended is
        dropped: between the scan and this call, microseconds, it cannot be reused)."""
        opener = getattr(os, "pidfd_open", None)
        for pid in pids:
            if pid in self._fds:
                continue
            if opener is None:
                self._fds[pid] = -1
                continue
            try:
                self._fds[pid] = opener(pid)
            except OSError:
                pass  # ended

    def running(self) -> list[int]:
        """The held PIDs whose processes have not ended."""
        out = []
        for pid, fd in self._fds.items():
            if fd < 0:
                if pid_running(pid):
                    out.append(pid)
            else:
                poll = select.poll()  # (not select(): no limit on the descriptor's number)
                poll.register(fd, select.POLLIN)
                if not poll.poll(0):  # a pidfd reads ready once its process ended
                    out.append(pid)
        return out

    def signal(self, pids: Sequence[int], sig: int) -> None:
        """Send ``sig`` to each of ``pids`` (held ones) that has not ended."""
        for pid in pids:
            fd = self._fds.get(pid, -1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if fd >= 0:
                    signal.pidfd_send_signal(fd, sig)
                elif pid in self._fds:
                    os.kill(pid, sig)

    def close(self) -> None:
        """Let go of every pidfd."""
        for fd in self._fds.values():
            if fd >= 0:
                os.close(fd)
        self._fds.clear()


class JupyterLab(LocalServer):
    """One ``jupyter lab`` (or ``jupyter server``) process; a context manager.

    Args:
        app: ``"lab"`` (JupyterLab UI and server) or ``"server"`` (REST API only).
        env: extra environment variables for the server and its kernels (e.g.
            ``JUPYTER_VOLUME_STORE``); merged over a copy of ``os.environ``.
        args: extra command-line arguments (``--ServerApp.x=y`` style).
        root_dir: the folder the server serves; default a fresh temporary one.
        lab_settings: JupyterLab user settings, ``{"plugin:id": {...}}``, merged over
            :data:`DEFAULT_LAB_SETTINGS`.
        start_timeout: seconds to wait for ``/api/status`` to answer.

    Attributes (valid after :meth:`start`): ``url`` (``http://127.0.0.1:PORT/``, with
    the trailing slash), ``token``, ``port``, ``root_dir`` (a :class:`~pathlib.Path`),
    ``tmpdir`` (holds config/, data/, runtime/, ipython/ and server.log) and ``proc``.
    """

    def __init__(
        self,
        *,
        app: str = "lab",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        root_dir: str | os.PathLike[str] | None = None,
        lab_settings: Mapping[str, Mapping[str, Any]] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if app not in ("lab", "server"):
            raise ValueError(f"app must be 'lab' or 'server', not {app!r}")
        super().__init__()
        self.app = app
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self._given_root = Path(root_dir) if root_dir is not None else None
        self.lab_settings = {**DEFAULT_LAB_SETTINGS, **(lab_settings or {})}
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(24)
        self.port = 0
        self.url = ""
        self.root_dir: Path = self._given_root or Path()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> JupyterLab:
        """Launch the server and wait until ``/api/status`` answers with our token.

        Raises:
            RuntimeError: the server exited or did not answer in time (the message
                carries the tail of its log).
        """
        return self._start("JupyterLab", self._launch)

    def environment(self) -> dict[str, str]:
        """The environment the server (and so its kernels) runs with."""
        assert self.tmpdir is not None
        env = dict(os.environ)
        for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PORT"):
            env.pop(var, None)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.tmpdir / "config"),
            JUPYTER_DATA_DIR=str(self.tmpdir / "data"),
            JUPYTER_RUNTIME_DIR=str(self.tmpdir / "runtime"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.tmpdir / "ipython"),
            PYTHONUNBUFFERED="1",
        )
        # kernels started by the server must run this Python, whatever PATH says
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(self.extra_env)
        return env

    def _launch(self) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="jv-jupyter-"))
        for sub in ("config", "data", "runtime", "ipython"):
            (self.tmpdir / sub).mkdir()
        if self._given_root is None:
            self.root_dir = self.tmpdir / "root"
            self.root_dir.mkdir()
        else:
            self.root_dir = self._given_root
        settings_dir = self.tmpdir / "config" / "lab" / "user-settings"
        for plugin, values in self.lab_settings.items():
            package, _, name = plugin.partition(":")
            path = settings_dir / package / f"{name or 'plugin'}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}/"
        module = "jupyterlab" if self.app == "lab" else "jupyter_server"
        args = [
            sys.executable,
            "-m",
            module,
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.shutdown_no_activity_timeout=0",
            "--ServerApp.log_level=INFO",
        ]
        if self.app == "lab":
            args += [
                f"--LabApp.user_settings_dir={settings_dir}",
                f"--LabApp.workspaces_dir={self.tmpdir / 'config' / 'lab' / 'workspaces'}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        args += self.extra_args
        self._log_file = open(self.tmpdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            tied_to_this_process(args),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.root_dir,
            env=self.environment(),
            start_new_session=True,  # its own process group, so stop() reaches everything
        )

    def _wait_ready(self) -> None:
        self._wait_until(
            lambda: self.api("GET", "api/status", timeout=2),
            (OSError, ValueError),  # not listening yet, or not answering
            f"jupyter {self.app}",
            f"{self.url}api/status",
            self.start_timeout,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (its kernels too) and remove the temporary folder.

        Asks politely first (``POST /api/shutdown`` stops kernels cleanly), then
        SIGTERM/SIGKILL to the process group, then SIGKILL to any process the server
        started that is still alive (kernels run in sessions of their own). Safe to call
        twice or after a failed start.
        """
        proc, self.proc = self.proc, None
        if proc is not None:
            below = _Held()
            try:
                below.add(_descendants(proc.pid))  # while the server, its parent, runs
                if not ended(proc, 0):
                    with contextlib.suppress(OSError, ValueError):
                        self.api("POST", "api/shutdown", timeout=5)
                    ended(proc, timeout)  # not reaped: its group can still be signalled
                terminate_group(proc, 5)  # the server, if it runs on, and its group
                # what those left started meanwhile (never a scan below the server's
                # own PID now: it ended, and the PID may be another process's)
                for pid in below.running():
                    below.add(_descendants(pid))
                leftover = below.running()
                if leftover:
                    below.signal(leftover, signal.SIGTERM)
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline and below.running():
                        time.sleep(0.05)
                    below.signal(below.running(), signal.SIGKILL)
            finally:
                below.close()
        self._cleanup()

    # -- talking to it ------------------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 30.0,
    ) -> Any:
        """Call the REST API with the token; return the decoded JSON (None if empty).

        ``path`` is relative to :attr:`url` (``"api/contents"``). Raises
        :class:`urllib.error.HTTPError` for an error status, OSError when unreachable.
        """
        if not self.url:
            raise OSError("the Jupyter server was not started")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def lab_url(self, path: str = "") -> str:
        """The browser URL of the Lab UI (opening ``path`` if given), token included."""
        from urllib.parse import quote

        doc = f"tree/{quote(path)}" if path else ""
        return f"{self.url}lab/{doc}?token={self.token}"


def write_notebook(
    path: str | os.PathLike[str], cells: Sequence[str], *, kernel: str = "python3"
) -> Path:
    """Write a notebook of code cells (nbformat 4, no outputs); return its path."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": secrets.token_hex(4),
                "metadata": {},
                "outputs": [],
                "source": src,
            }
            for src in cells
        ],
        "metadata": {
            "kernelspec": {"name": kernel, "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(nb, indent=1))
    return p


@contextlib.contextmanager
def chromium(*, args: Sequence[str] = (), **launch: Any) -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (sync API); yields the Browser.

    Uses :data:`CHROMIUM_PATH` and :data:`CHROMIUM_ARGS` (plus ``args``); other keyword
    arguments go to ``chromium.launch``. Never downloads a browser.

    Raises:
        RuntimeError: ``/usr/bin/chromium`` is missing (install it with
            ``apt-get install -y chromium``) or Playwright is not installed.
    """
    if not (os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)):
        raise RuntimeError(
            f"Chromium was not found at {CHROMIUM_PATH}; install it with: {CHROMIUM_INSTALL_HINT}"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError(
            f"Playwright is missing ({e}); install it with: pip install playwright"
        ) from None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM_PATH,
            headless=True,
            args=[*CHROMIUM_ARGS, *args],
            **launch,
        )
        try:
            yield browser
        finally:
            browser.close()


def open_lab(page: Any, lab: JupyterLab, path: str = "", *, timeout: float = 60.0) -> None:
    """Point a Playwright ``page`` at the Lab UI and wait until the app has started (the
    splash screen is gone and the main area is shown) and, with ``path``, until that
    document's tab is open (for a notebook: until its kernel is idle)."""
    page.goto(lab.lab_url(path), timeout=timeout * 1000)
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=timeout * 1000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=timeout * 1000)
    if path:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text=name).first.wait_for(
            timeout=timeout * 1000
        )
        if path.endswith(".ipynb"):
            # the kernel is up and idle: a cell run now is not lost to a start-up race
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                timeout=timeout * 1000
            )


def run_cell(page: Any, index: int = 0, *, timeout: float = 60.0) -> None:
    """Run code cell ``index`` of the open notebook (Ctrl+Enter: run, stay on the cell)
    and wait until the kernel has taken it (its prompt shows ``[*]`` or ``[n]``).

    Right after start-up JupyterLab may drop a run silently (the session has no kernel
    object yet, even though the indicator says idle); the prompt then stays ``[ ]``
    and the run is simply tried again. Raises TimeoutError after ``timeout`` seconds.
    """
    import re

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt").first
    taken = re.compile(r"\[(\*|\d+)\]")
    deadline = time.monotonic() + timeout
    while True:
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        tried = time.monotonic()
        while time.monotonic() - tried < 5:
            if taken.search(prompt.inner_text()):
                return
            time.sleep(0.1)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"cell {index} was not executed within {timeout:.0f}s "
                f"(prompt: {prompt.inner_text()!r})"
            )


#: Seconds :func:`run_cell_until` waits for what the cell shows before running it again.
RERUN_AFTER = 20.0


def run_cell_until(
    page: Any,
    lab: JupyterLab,
    notebook: str,
    target: Any,
    *,
    index: int = 0,
    timeout: float = 60.0,
) -> None:
    """Run code cell ``index`` of ``notebook`` (open in ``page`` through :func:`open_lab`)
    until Playwright locator ``target`` (what the cell displays) is visible.

    A cell whose output has not appeared after :data:`RERUN_AFTER` seconds is run again,
    or the page reloaded (saying which on stdout); TimeoutError after ``timeout``
    seconds in all. Seen in CI, under load: the kernel's first websocket got a 500
    from Jupyter Server while the kernel started (``kernel_ws_protocol`` of None), the
    page reconnected, and the run taken just then never came back (the prompt stays
    ``[*]``). Running the cell again is what a user would do. Seen once after that:
    every later run showed "Error displaying widget: model not found" (the page's
    widget manager had missed the widget's comm); a user reloads the page then, which
    connects to the kernel afresh."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout
    while True:
        run_cell(page, index, timeout=max(deadline - time.monotonic(), 10.0))
        wait = min(RERUN_AFTER, max(deadline - time.monotonic(), 1.0))
        try:
            target.wait_for(state="visible", timeout=wait * 1000)
            return
        except PlaywrightTimeout:
            cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
            seen = (
                f"prompt {cell.locator('.jp-InputPrompt').first.inner_text()!r}, "
                f"output {cell.locator('.jp-OutputArea').first.inner_text()[:500]!r}"
            )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"cell {index} of {notebook} showed nothing after {timeout:.0f}s ({seen})"
                ) from None
            if "model not found" in seen:
                print(f"cell {index} showed nothing after {wait:.0f}s ({seen}); reloading")
                open_lab(page, lab, notebook, timeout=max(deadline - time.monotonic(), 10.0))
            else:
                print(f"cell {index} showed nothing after {wait:.0f}s ({seen}); running it again")


def open_volume_browser(
    page: Any, lab: JupyterLab, volume: str, entry: str, *, timeout: float = 60.0
) -> Any:
    """Write a notebook whose cell runs ``%volume browse VOLUME``, open it in the Lab UI,
    run that cell, and wait until the widget shows the entry named ``entry`` (a file, or
    a folder as ``"name/"``). Returns the widget's Playwright locator (``.jv-browser``).
    The cell is run again if the widget does not show (:func:`run_cell_until`)."""
    notebook = f"browse-{volume}.ipynb"
    write_notebook(lab.root_dir / notebook, [f"%load_ext jupyter_volume\n%volume browse {volume}"])
    open_lab(page, lab, notebook, timeout=timeout)
    widget = page.locator(".jv-browser")
    run_cell_until(page, lab, notebook, widget, timeout=timeout)
    widget.get_by_role("button", name=entry).wait_for(timeout=timeout * 1000)
    return widget
