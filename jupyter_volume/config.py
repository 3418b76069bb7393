"""Configuration shared by every front end: the kernel, the CLI and the Jupyter server.

One place, read the same way everywhere:

1. ``$JUPYTER_VOLUME_STORE`` (the store URL; wins over any config file), then
2. ``jupyter_volume_config.py`` / ``jupyter_volume_config.json`` in the Jupyter config
   path (``jupyter --paths``: ``$JUPYTER_CONFIG_DIR``, ``~/.jupyter``,
   ``<sys.prefix>/etc/jupyter``, ...; the first folder on the path wins), then
3. the defaults below.

Example ``~/.jupyter/jupyter_volume_config.py``::

    c.VolumeConfig.store_url = "s3://my-bucket/team-a?endpoint_url=http://seaweed:8333"
    c.VolumeConfig.commit_interval = 10.0
    c.VolumeConfig.ignore_patterns = [".ipynb_checkpoints/", "__pycache__/", "*.tmp"]

The same ``c.VolumeConfig`` section may also sit in an IPython or Jupyter server config
file: front ends that have one pass it to :func:`load_config` as ``extra``.

Layer: imports ``store`` (lazily), ``errors`` and ``quiet`` (leaves) and nothing above
it; never IPython.
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING, Any

from traitlets import Float, Int, List, TraitError, Unicode, validate
from traitlets.config import Config, Configurable

from .errors import InvalidError
from .quiet import DEFAULT_GROUP_PATTERNS, Groups

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "CONFIG_FILE_NAME",
    "ConfigFileError",
    "DEFAULT_IGNORE_PATTERNS",
    "VolumeConfig",
    "get_store",
    "load_config",
    "resolve_store_url",
]

CONFIG_FILE_NAME = "jupyter_volume_config"
ENV_STORE = "JUPYTER_VOLUME_STORE"
#: Overrides ``settle_interval`` for one process tree (a script, a CI job, a test run).
ENV_SETTLE = "JUPYTER_VOLUME_SETTLE_INTERVAL"

# ".~*" (LibreOffice lock files) is in the mount's own fallback list too, so a mount
# ignores the same paths whether or not a config file loads.
DEFAULT_IGNORE_PATTERNS = [
    ".ipynb_checkpoints/",
    "__pycache__/",
    "*.swp",
    "*.swo",
    "*~",
    ".#*",
    ".~*",
]


class VolumeConfig(Configurable):
    """Settings of jupyter-volume (``c.VolumeConfig.<name>`` in a config file)."""

    store_url = Unicode(
        "",
        help=(
            "URL of the object store holding the volumes: file:///path/to/folder or "
            "s3://bucket/prefix (endpoint and credentials the usual AWS ways, or "
            "?endpoint_url=...). Empty: a 'volumes' folder in the Jupyter data dir. "
            "The JUPYTER_VOLUME_STORE environment variable overrides this."
        ),
    ).tag(config=True)

    environment = Unicode(
        "",
        help=(
            "The environment (a separate namespace of volumes in the store) used when "
            "none is named; empty: the default environment. The JUPYTER_VOLUME_ENV "
            "environment variable overrides this."
        ),
    ).tag(config=True)

    commit_interval = Float(
        5.0,
        help="Seconds between background commit checks of a mounted volume.",
    ).tag(config=True)

    ignore_patterns = List(
        Unicode(),
        default_value=list(DEFAULT_IGNORE_PATTERNS),
        help=(
            "Paths in a mounted folder that are never committed: glob patterns matched "
            "against each name (a trailing '/' matches folders only)."
        ),
    ).tag(config=True)

    progress_threshold_bytes = Int(
        50 * 1024 * 1024,
        help="Show a progress bar for transfers larger than this many bytes.",
    ).tag(config=True)

    progress_threshold_files = Int(
        1000,
        help="Show a progress bar for transfers of more than this many files.",
    ).tag(config=True)

    chunk_cache_bytes = Int(
        2 << 30,
        help=(
            "Size bound of the local chunk cache (under the cache dir) that makes remounts "
            "and reloads cheaper; 0 turns it off."
        ),
    ).tag(config=True)

    settle_interval = Float(
        1.0,
        help=(
            "Seconds a changed file in a mounted folder must stay unchanged (and closed by "
            "every writer) before a commit takes it; files still changing are deferred. "
            "0 turns the wait off (files open for writing are deferred still). The "
            "JUPYTER_VOLUME_SETTLE_INTERVAL environment variable overrides this."
        ),
    ).tag(config=True)

    settle_max_wait = Float(
        5.0,
        help=(
            "Seconds an explicit commit (commit, reload, unmount) waits for changing files "
            "to settle before it commits the rest and reports what it deferred. Background "
            "commits never wait: they defer and try again."
        ),
    ).tag(config=True)

    snapshot_groups = List(
        Unicode(),
        default_value=list(DEFAULT_GROUP_PATTERNS),
        help=(
            "Sibling patterns of files that are committed together or not at all: '*' is "
            "the main file's name, so '*-wal' puts 'db-wal' with 'db'."
        ),
    ).tag(config=True)

    @validate("commit_interval")
    def _check_interval(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not (value > 0 and math.isfinite(value)):
            raise TraitError(
                "VolumeConfig.commit_interval must be a positive, finite number of seconds, "
                f"not {value!r}"
            )
        return value

    @validate("settle_interval", "settle_max_wait")
    def _check_settle(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not (value >= 0 and math.isfinite(value)):
            raise TraitError(
                f"VolumeConfig.{proposal['trait'].name} must be 0 or more seconds (finite), "
                f"not {value!r}"
            )
        return value

    @validate("snapshot_groups")
    def _check_groups(self, proposal: dict[str, Any]) -> list[str]:
        try:
            Groups(proposal["value"])
        except InvalidError as e:
            raise TraitError(f"VolumeConfig.snapshot_groups: {e}") from None
        return list(proposal["value"])

    @validate("progress_threshold_bytes", "progress_threshold_files")
    def _check_threshold(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 0:
            raise TraitError(f"VolumeConfig.{proposal['trait'].name} must not be negative")
        return value

    def effective_store_url(self, explicit: str | None = None) -> str:
        """The store URL to use: ``explicit`` (a ``--store`` option), else
        ``$JUPYTER_VOLUME_STORE``, else :attr:`store_url`, else the default folder."""
        return resolve_store_url(explicit, self)


class ConfigFileError(InvalidError):
    """A config file failed to load (a syntax error, or an exception its code raised):
    the user's file to fix, so a user error (the CLI's exit code 2, a one-line
    ``UsageError`` in ``%volume``), not a bug. ``path`` and ``line`` say where (``line``
    None when no line of the file is to blame)."""

    def __init__(self, message: str, path: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line

    @classmethod
    def from_exception(cls, path: str, exc: BaseException) -> ConfigFileError:
        """The error for ``exc``, raised while loading config file ``path``: names the
        file, the line (when one is to blame) and ``exc``, and says what to do."""
        path = os.path.abspath(path)
        line = _failing_line(path, exc)
        where = f" at line {line}" if line is not None else ""
        # SyntaxError and JSONDecodeError keep the bare message in .msg (str() adds the
        # file and position again)
        detail = str(getattr(exc, "msg", "") or exc).strip().splitlines()
        what = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        message = (
            f"the config file {path} failed to load{where}: {what}; fix the file, or move it"
            " away to use the defaults"
        )
        return cls(message, path, line)


def _failing_line(path: str, exc: BaseException) -> int | None:
    """The line of config file ``path`` (absolute) that ``exc``, raised while loading it,
    comes from."""
    import json
    import traceback

    def here(filename: str | None) -> bool:
        return filename is not None and os.path.abspath(filename) == path

    if isinstance(exc, SyntaxError) and here(exc.filename) and exc.lineno:
        return exc.lineno  # the file itself does not compile
    if isinstance(exc, json.JSONDecodeError):
        return exc.lineno
    # an exception its code raised (an import of a missing module, say): its last frame
    # in the file, wherever it was raised below that
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if here(f.filename)]
    return lines[-1] if lines else None


def config_files() -> list[str]:
    """The config files :func:`load_config` reads, lowest priority first."""
    from jupyter_core.paths import jupyter_config_path

    found = []
    for folder in reversed(jupyter_config_path()):
        for ext in (".py", ".json"):  # as traitlets does: .json wins within a folder
            path = os.path.join(folder, CONFIG_FILE_NAME + ext)
            if os.path.isfile(path):
                found.append(path)
    return found


def load_config(extra: Config | None = None, **kwargs: Any) -> VolumeConfig:
    """Read ``jupyter_volume_config.{json,py}`` from the Jupyter config path.

    Args:
        extra: a traitlets :class:`Config` merged on top (e.g. an IPython shell's or a
            Jupyter server's config, so ``c.VolumeConfig`` works there too).
        kwargs: passed to :class:`VolumeConfig` (e.g. ``parent=``).

    Raises:
        traitlets.TraitError: a config file sets a bad value.
        ConfigFileError: a config file fails to load (a syntax error, or an exception
            raised by its code); the message names the file and the line.

    Example::

        cfg = load_config()
        cfg.commit_interval  # 5.0 unless configured
    """
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    merged = Config()
    for path in config_files():
        folder, fname = os.path.split(path)
        loader_cls = PyFileConfigLoader if fname.endswith(".py") else JSONFileConfigLoader
        try:
            loaded = loader_cls(fname, path=folder).load_config()
        except Exception as e:  # the user's file: whatever it raised is theirs to fix
            raise ConfigFileError.from_exception(path, e) from e
        merged.merge(loaded)
    if extra is not None and "VolumeConfig" in extra:
        merged.merge(Config({"VolumeConfig": extra["VolumeConfig"]}))
    settle = os.environ.get(ENV_SETTLE, "").strip()
    if settle:
        try:
            merged.merge(Config({"VolumeConfig": {"settle_interval": float(settle)}}))
        except ValueError:
            raise InvalidError(
                f"${ENV_SETTLE} must be a number of seconds, got {settle!r}"
            ) from None
    return VolumeConfig(config=merged, **kwargs)


def resolve_store_url(explicit: str | None = None, config: VolumeConfig | None = None) -> str:
    """``explicit`` > ``$JUPYTER_VOLUME_STORE`` > ``config.store_url`` > the default folder."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_STORE, "").strip()
    if env:
        return env
    if config is None:
        config = load_config()
    if config.store_url.strip():
        return os.path.expanduser(config.store_url.strip())
    from .store import default_store_url

    return default_store_url()


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(url: str | None = None, config: VolumeConfig | None = None) -> Store:
    """Open (once per process and URL) the store that :func:`resolve_store_url` names.

    Raises:
        InvalidError: the URL is not a ``file://`` or ``s3://`` URL.
    """
    return opened_store(resolve_store_url(url, config))


def opened_store(url: str) -> Store:
    """The store at ``url``, opened once per process: the one cache every surface
    shares (the CLI, the Python API, the magics, the server), so a process makes one
    client per S3 store however it reaches it.

    Raises:
        InvalidError: the URL is not a ``file://`` or ``s3://`` URL.
    """
    from .store import open_store

    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = open_store(url)
        return store
