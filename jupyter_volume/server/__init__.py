"""The Jupyter server extension: the REST API behind the JupyterLab sidebar.

Installed packages enable it through
``jupyter-config/jupyter_server_config.d/jupyter_volume.json``
(``ServerApp.jpserver_extensions["jupyter_volume.server"] = true``); check with
``jupyter server extension list``. Routes live in :mod:`.handlers` (volumes),
:mod:`.dict_handlers` and :mod:`.nfs_handlers`; the work they do in :mod:`.engine`,
:mod:`.dict_service` and ``nfs_handlers.NfsService``; the API is documented in
``docs/rest-api.md``.

The store is the one every other front end uses (:mod:`jupyter_volume.config`):
``$JUPYTER_VOLUME_STORE``, else ``c.VolumeConfig.store_url`` from
``jupyter_volume_config.py`` or the server's own config, else the local default.

Layer: a front end; imports ``config`` and ``volume`` (through ``engine``).
"""

from __future__ import annotations

from typing import Any

from .. import __version__

__all__ = ["__version__", "_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_volume.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Create the :class:`~.engine.VolumeService` and add the routes to the server."""
    from ..config import get_store, load_config
    from .engine import VolumeService
    from .handlers import API_PREFIX, setup_handlers

    def open_store() -> Any:
        # Read when first needed, so a broken config is reported by each request (and by
        # the version endpoint) instead of keeping the whole server from starting.
        config = load_config(extra=serverapp.config)
        return get_store(config=config)

    service = VolumeService(open_store)
    setup_handlers(serverapp.web_app, service)
    serverapp.log.info(
        "jupyter-volume: REST API at %s%s/ (uploads spooled in %s)",
        serverapp.base_url,
        API_PREFIX,
        service.upload_dir,
    )


# jupyter_server < 2 looked for the name without the leading underscore.
load_jupyter_server_extension = _load_jupyter_server_extension
