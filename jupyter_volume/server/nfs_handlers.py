"""REST routes for network file systems under ``/jupyter-volume/api/nfs``: the volume
routes themselves, served on network file systems.

Every route of ``volumes/{volume}...`` (tree, files, folders, move, remove, history,
diff, nbdiff, restore, chunked uploads) exists as ``nfs/{name}...`` with the same arguments, answers
and errors, by the very same handler classes: only the service they call differs
(:class:`NfsService` resolves names among network file systems). ``GET nfs`` lists them
(``{"nfs": [...]}``), ``POST nfs`` creates one, ``DELETE nfs/{name}`` deletes one;
renaming is refused (Modal has no rename for them either). A file uploaded here is one
commit, so every live folder of the network file system shows it within a second.

Documented in ``docs/rest-api.md``. Layer: a front end; imports ``nfs`` and ``engine``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InvalidError
from ..nfs import NetworkFileSystem, _check_nfs_name, _worded
from ..volume import Volume
from . import handlers as H
from .engine import VolumeService, volume_json

__all__ = ["NFS_ROUTES", "NFS_SETTINGS_KEY", "NfsService"]

NFS_SETTINGS_KEY = "jupyter_volume_nfs_service"

T = TypeVar("T")


class NfsService(VolumeService):
    """:class:`VolumeService` on network file systems: the same store, worker threads and
    upload folder as ``base``, its own upload sessions."""

    def __init__(self, base: VolumeService) -> None:  # noqa: D107 - see the class
        self.__dict__.update(base.__dict__)
        self._base = base
        self._uploads = {}  # an upload session belongs to one namespace ...
        base._registries.append(self._uploads)  # ... the caps count every namespace

    @property
    def store(self) -> Any:
        """The base service's store (opened on first use)."""
        return self._base.store

    def _vol(self, name: str) -> Volume:
        # a fresh lookup per request, as for volumes: a delete is seen at once
        return NetworkFileSystem.from_name(_check_nfs_name(name), store=self.store).hydrate()._vol

    def list_volumes(self) -> dict[str, Any]:
        """Every network file system of the store, sorted by name."""
        return {
            "nfs": [volume_json(n._vol) for n in NetworkFileSystem.objects.list(store=self.store)]
        }

    def create_volume(self, name: Any) -> dict[str, Any]:
        """Create a network file system; AlreadyExistsError if the name is taken."""
        _check_nfs_name(name)
        NetworkFileSystem.objects.create(name, store=self.store)
        return volume_json(self._vol(name))

    def delete_volume(self, name: str) -> None:
        """Delete a network file system and its whole history."""
        NetworkFileSystem.delete(_check_nfs_name(name), store=self.store)

    def rename_volume(self, name: str, new_name: Any) -> dict[str, Any]:
        """Refused: network file systems keep their names."""
        raise InvalidError(
            "network file systems cannot be renamed: create a new one and copy the files"
        )


class _OnNfs(H.VolumeAPIHandler):
    """Makes a volume handler act on network file systems (put first among the bases)."""

    @property
    def service(self) -> NfsService:  # type: ignore[override]
        svc = self.settings.get(NFS_SETTINGS_KEY)
        if svc is None:
            svc = self.settings[NFS_SETTINGS_KEY] = NfsService(self.settings[H.SETTINGS_KEY])
        return svc

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As for volumes, with messages that say "network file system", not "volume"."""
        name = args[0] if args and isinstance(args[0], str) else None

        def call() -> T:
            with _worded(name):
                return fn(*args, **kwargs)

        return await super().run(call)


def _on_nfs(handler: type[H.VolumeAPIHandler]) -> type[H.VolumeAPIHandler]:
    return type(f"Nfs{handler.__name__}", (_OnNfs, handler), {})


#: (route under /jupyter-volume/api, handler): each volume route under ``nfs/``;
#: placed before the API's catch-all 404.
NFS_ROUTES: list[tuple[str, type[H.VolumeAPIHandler]]] = [
    ("/nfs" + pattern[len("/volumes") :], _on_nfs(handler))
    for pattern, handler in H.ROUTES
    if pattern.startswith("/volumes")
]
