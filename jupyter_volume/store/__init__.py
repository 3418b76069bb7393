"""Object stores: bytes in, bytes out, by key.

``open_store(url)`` turns a URL into a :class:`Store`:

* ``file:///abs/path`` or a plain path: :class:`LocalStore`, a folder (the default).
* ``s3://bucket/prefix``: :class:`~jupyter_volume.store.s3.S3Store`; endpoint and
  credentials come the standard AWS ways (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_PROFILE``, ``~/.aws/config``), or from query parameters
  (``?endpoint_url=http://host:port&region=us-east-1&profile=name``).

With no URL, :func:`default_store_url` applies: ``$JUPYTER_VOLUME_STORE`` when set,
else ``<jupyter data dir>/volumes``. This package never imports the repository layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ..errors import InvalidError
from .base import ObjectInfo, Store, check_key
from .local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "Store", "check_key", "default_store_url", "open_store"]

ENV_STORE = "JUPYTER_VOLUME_STORE"


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
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return S3Store(parsed.netloc, parsed.path.strip("/"), **options)
    raise InvalidError(
        f"unsupported store URL {url!r}: use file:///path/to/folder or s3://bucket/prefix"
    )
