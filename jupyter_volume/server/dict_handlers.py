"""REST routes for Dicts under ``/jupyter-volume/api/dicts``; thin handlers around
:mod:`.dict_service`, authenticated and error-mapped by :class:`.handlers.VolumeAPIHandler`.

* ``GET dicts``: every named Dict.
* ``GET dicts/{dict}/entries?after=ID&limit=N``: one page of entries.
* ``DELETE dicts/{dict}/entries/{id}``: delete one entry.
* ``DELETE dicts/{dict}/entries``: clear the Dict.

Documented in ``docs/rest-api.md``. Layer: a front end; never imports below ``dicts``.
"""

from __future__ import annotations

from tornado import web

from . import dict_service
from .handlers import VolumeAPIHandler

__all__ = ["DICT_ROUTES"]


class DictsHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.run(dict_service.list_dicts, self.service.store))


class EntriesHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        after = self.get_query_argument("after", None) or None
        args = (self.service.store, name, after, self.int_arg("limit"))
        self.reply(await self.run(dict_service.entries, *args))

    @web.authenticated
    async def delete(self, name: str) -> None:
        await self.run(dict_service.clear, self.service.store, name)
        self.no_content()


class EntryHandler(VolumeAPIHandler):
    @web.authenticated
    async def delete(self, name: str, entry_id: str) -> None:
        await self.run(dict_service.delete_entry, self.service.store, name, entry_id)
        self.no_content()


_DICT = r"/dicts/(?P<name>[^/]+)"

#: (route under /jupyter-volume/api, handler); placed before the API's catch-all 404.
DICT_ROUTES: list[tuple[str, type[VolumeAPIHandler]]] = [
    (r"/dicts", DictsHandler),
    (_DICT + r"/entries", EntriesHandler),
    (_DICT + r"/entries/(?P<entry_id>[^/]+)", EntryHandler),
]
