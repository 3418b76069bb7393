"""Helpers for tests that run child Python processes: an isolated environment for the
child and reading the JSON a child prints; and, without a child, ``another_process()``.

Import it as ``test_integrity_cache.py`` imports ``faultproxy`` (tests/ is not a
package)::

    try:
        from .children import isolated_env
    except ImportError:
        from children import isolated_env
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def private_folders(base: Path) -> dict[str, str]:
    """The variables that put every folder jupyter-volume keeps on this machine below
    ``base``: mount state, chunk cache and the writers' line (whose default is shared
    by the whole machine, under the temporary directory). For a process started before
    the conftest gives each test its own (a module's server) or without our variables."""
    return {
        "JUPYTER_VOLUME_STATE_DIR": str(base / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(base / "cache"),
        "JUPYTER_VOLUME_LINE_DIR": str(base / "lines"),
    }


def isolated_env(root: Path, config_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a child process that uses only folders below ``root``: this
    process's variables without any ``JUPYTER_VOLUME_*`` one, then the store
    (``root/store``), the :func:`private_folders` and the Jupyter config folder, then
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_VOLUME_")}
    env.update(
        private_folders(root),
        JUPYTER_VOLUME_STORE=(root / "store").as_uri(),
        JUPYTER_CONFIG_DIR=str(config_dir),
        **extra,
    )
    return env


def run_python_json(
    argv: list[str], env: dict[str, str], *, cwd: Path | None = None, input: str | None = None
) -> Any:
    """Run ``python argv...`` in a child process and return the JSON its last stdout line
    holds (asserting it exited 0; its stderr is the failure message)."""
    p = subprocess.run(
        [sys.executable, *argv],
        input=input,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_pytest(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own in a child process (no cache folder written), run in
    ``cwd``; its output as text. A hang guard of 300 s. ``preexec_fn``: run in the child
    before pytest starts (as :class:`subprocess.Popen` takes it)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec_fn,
    )


def as_nobody(work: Callable[[], int]) -> int:
    """Exit status of ``work()`` run in a forked child as user and group 65534 (the
    caller must be root; in the child only what is imported already may be used)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = work()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def another_process() -> Iterator[None]:
    """Calls in the block use repositories of their own, as another process would: what
    they commit, this process's handles do not know of until they ask the store (the
    engine keeps one repository per store and volume in a process)."""
    import jupyter_volume.volume as volume_mod

    mine = volume_mod._repos
    volume_mod._repos = {}
    try:
        yield
    finally:
        volume_mod._repos = mine
