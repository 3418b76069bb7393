"""Object stores: bytes in, bytes out, by key.

``open_store(url)`` turns a URL into a :class:`Store`:

* ``file:///abs/path`` or a plain path: :class:`LocalStore`, a folder (the default).
* ``s3://bucket/prefix``: :class:`~jupyter_volume.store.s3.S3Store`; endpoint and
  credentials come the standard AWS ways (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_PROFILE``, ``~/.aws/config``), or from query parameters
  (``?endpoint_url=http://host:port&region=us-east-1&profile=name``).

With no URL, :func:`default_store_url` applies: ``$JUPYTER_VOLUME_STORE`` when set,
else ``<jupyter data dir>/volumes``. This package never imports the repository layer.

Environments are separate namespaces in one store (Modal's ``environment_name``):
:func:`resolve_environment` says which one applies and :func:`environment_store` gives
the store view for it. The default environment ("") is the store itself; environment
``dev`` keeps its keys under ``envs/dev/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ..errors import InvalidError
from .base import ObjectInfo, Store, check_key
from .local import LocalStore
from .prefixed import PrefixedStore

__all__ = [
    "ENV_ENVIRONMENT",
    "LocalStore",
    "ObjectInfo",
    "PrefixedStore",
    "Store",
    "check_environment_name",
    "check_store_exists",
    "check_key",
    "default_store_url",
    "environment_store",
    "open_store",
    "resolve_environment",
]

ENV_STORE = "JUPYTER_VOLUME_STORE"
ENV_ENVIRONMENT = "JUPYTER_VOLUME_ENV"

# The volume name rule (see names.py), applied to environment names too.
_ENV_RE = re.compile(r"(?!-)(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,64}")
ENVIRONMENT_RULE = (
    "environment names are 1-64 characters of letters, digits, '.', '_' and '-', "
    "not starting with '-' and not '.' or '..'"
)


def check_environment_name(name: object) -> str:
    """Return ``name`` if it is a valid environment name; else raise InvalidError with the rule."""
    if not isinstance(name, str) or not _ENV_RE.fullmatch(name):
        raise InvalidError(f"invalid environment name {name!r}: {ENVIRONMENT_RULE}")
    return name


def resolve_environment(name: str | None = None) -> str:
    """The environment to use: ``name`` when given, else ``$JUPYTER_VOLUME_ENV``, else
    ``c.VolumeConfig.environment`` from the config file, else "" (the default environment).

    Raises:
        InvalidError: the chosen name breaks the naming rule.
    """
    if name is None:
        name = os.environ.get(ENV_ENVIRONMENT, "").strip()
        if not name:
            from ..config import load_config  # lazily: config sits beside, not below, stores

            name = load_config().environment.strip()
    return check_environment_name(name) if name else ""


def environment_store(store: Store, environment: str | None) -> Store:
    """The view of ``store`` that environment ``environment`` lives in.

    None or "" is the default environment: ``store`` itself (the keys volumes always
    had). Any other name is a :class:`PrefixedStore` under ``envs/<name>/`` whose URL is
    distinct per environment. This does not consult ``$JUPYTER_VOLUME_ENV``: pass the
    result of :func:`resolve_environment` for that.

    Example::

        dev = environment_store(open_store(), "dev")
    """
    if not environment:
        return store
    check_environment_name(environment)
    if isinstance(store, PrefixedStore):
        raise InvalidError(f"store {store.url} is already the view of one environment")
    return PrefixedStore(store, f"envs/{environment}/")


def default_store_url() -> str:
    """Return the store URL to use when none is given.

    ``$JUPYTER_VOLUME_STORE`` wins; otherwise a ``volumes`` folder in the Jupyter data
    directory (``jupyter --data-dir``), so volumes work with no setup at all.
    """
    env = os.environ.get(ENV_STORE, "").strip()
    if env:
        return env
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir(), "volumes").as_uri()


def check_store_exists(
    url: str | os.PathLike[str], opener: Callable[[str], Store] | None = None
) -> None:
    """Raise NotFoundError unless the store at ``url`` exists.

    A folder store exists when its folder does; an S3 store when its bucket holds at
    least one object under the prefix (S3 has no folders to create). Used for stores
    named explicitly, so a typo is an error rather than a new empty store.

    ``opener``: how the caller opens (and keeps) the store at ``url`` (default
    :func:`open_store`). An S3 store is asked through it, so a caller that goes on to
    use the store makes one client, not two (a client costs a tenth of a second or
    more of CPU to make, on every CLI call). A folder store is never opened here:
    opening one makes its folder.
    """
    from ..errors import NotFoundError

    url = os.fspath(url)
    parsed = urlparse(url)
    hint = (
        "creating a volume, Dict or network file system there creates it (`jupyter volume "
        "create NAME --store URL`, `dict create`, `nfs create`, or create_if_missing=True "
        "in Python)"
    )
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        if not path or not Path(path).expanduser().is_dir():
            raise NotFoundError(f"store {url} does not exist: {hint}")
        return
    store = (opener or open_store)(url)
    if next(iter(store.list("")), None) is None:
        raise NotFoundError(f"store {url} does not exist (it holds no objects): {hint}")


def open_store(url: str | os.PathLike[str] | Store | None = None) -> Store:
    """Open the store at ``url`` (see the module docstring); None means the default.

    Raises:
        InvalidError: the URL's scheme is not ``file`` or ``s3``, or it is malformed.

    Example::

        store = open_store("s3://my-bucket/team-a")
    """
    if isinstance(url, Store):
        return url
    if url is None:
        url = default_store_url()
    url = os.fspath(url)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise InvalidError(f"file store URL must be file:///absolute/path, got {url!r}")
        if not path:
            raise InvalidError(f"empty store path in {url!r}")
        return LocalStore(path)
    if parsed.scheme == "s3":
        from .s3 import S3Store

        if not parsed.netloc:
            raise InvalidError(f"S3 store URL needs a bucket: s3://bucket/prefix, got {url!r}")
        if "@" in parsed.netloc:  # never echo the URL: it holds a secret
            raise InvalidError(
                "credentials in an s3:// URL are not supported (they would show in logs "
                "and error messages): give them as AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY, or an AWS profile (?profile=name)"
            )
        if ":" in parsed.netloc:
            raise InvalidError(
                f"S3 store URL {url!r} has a port where the bucket goes: write "
                "s3://bucket/prefix?endpoint_url=http://host:port"
            )
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return S3Store(parsed.netloc, unquote(parsed.path).strip("/"), **options)
    raise InvalidError(
        f"unsupported store URL {url!r}: use file:///path/to/folder or s3://bucket/prefix"
    )
