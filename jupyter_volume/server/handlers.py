"""The REST API under ``/jupyter-volume/api/``: one route table, thin handlers.

Each handler authenticates (in :meth:`VolumeAPIHandler.prepare`, so nothing runs and no
upload byte is spooled for an unauthenticated request), parses its arguments, runs one
:class:`~jupyter_volume.server.engine.VolumeService` call in the service's thread pool
(storage work never runs on Tornado's event loop) and finishes with JSON. Errors become
HTTP codes in one place, :data:`ERROR_STATUS`, with a body ``{"error", "message"}``.

The API is documented in ``docs/rest-api.md``; keep the two in step.

Layer: a front end; imports ``engine`` and ``errors``, never the layers below ``volume``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import mimetypes
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, TypeVar
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from .. import errors
from ..errors import InvalidError, VolumeError
from .engine import (
    MAX_CHUNK_SIZE,
    ChunkTooLargeError,
    ChunkWriter,
    TooManyUploadsError,
    UploadSpaceError,
    VolumeService,
    check_commit,
)
from .nbdiff import NbdimeUnavailableError, NotebookDiffError, notebook_diff

__all__ = [
    "API_PREFIX",
    "ERROR_STATUS",
    "SETTINGS_KEY",
    "error_reply",
    "route_table",
    "setup_handlers",
]

API_PREFIX = "jupyter-volume/api"
SETTINGS_KEY = "jupyter_volume_service"
#: bytes of an upload chunk's body collected before each write to its temp file
WRITE_BLOCK = 1024 * 1024
#: An oversized chunk's body is read and dropped up to this size, so the client gets the
#: JSON error (a reply sent while it still sends is seen as a reset by most clients);
#: past it the connection is closed right after the error.
DISCARD_LIMIT = 16 * MAX_CHUNK_SIZE

T = TypeVar("T")

#: Exception class -> HTTP status. First match wins, so subclasses come first.
ERROR_STATUS: list[tuple[type[BaseException], int]] = [
    (TooManyUploadsError, 429),
    (ChunkTooLargeError, 413),
    (UploadSpaceError, 507),
    (NbdimeUnavailableError, 501),
    (NotebookDiffError, 422),
    (errors.NotFoundError, 404),
    (errors.AlreadyExistsError, 409),
    (errors.InvalidError, 400),
    (errors.VolumeBusyError, 409),
    (errors.ConflictError, 409),
    (errors.StoreAccessError, 403),
    (errors.StoreError, 502),
    (errors.CorruptionError, 500),
    (errors.VolumeError, 500),
]


def error_reply(exc: BaseException | None, status: int) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for ``exc`` (``status``: what Tornado chose)."""
    if isinstance(exc, VolumeError):
        for cls, code in ERROR_STATUS:
            if isinstance(exc, cls):
                return code, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, web.HTTPError):
        # HTTPError doubles a "%" when given no args; formatting with () undoes that.
        message = exc.log_message % exc.args if exc.log_message else None
        return exc.status_code, {
            "error": _reason_name(exc.status_code),
            "message": message or exc.reason or _reason_name(exc.status_code),
        }
    if exc is not None:
        return 500, {
            "error": "InternalError",
            "message": f"unexpected server error ({type(exc).__name__}: {exc}); see the Jupyter server log",
        }
    return status, {"error": _reason_name(status), "message": _reason_name(status)}


def _reason_name(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Error"


class VolumeAPIHandler(APIHandler):
    """Base of every route: authentication, the service, JSON in and out, errors."""

    @property
    def service(self) -> VolumeService:
        return self.settings[SETTINGS_KEY]

    @property
    def user_name(self) -> str:
        user = self.current_user
        return str(getattr(user, "username", user) or "")

    async def identity(self) -> str:
        """Who this request is for per-user limits: ``current_user``'s username, stable
        across requests whatever the authentication method.

        jupyter_server makes up a new random anonymous user for every request that has
        no login cookie and is authenticated by the server's token (Authorization
        header or ``?token=``), or arrives while authentication is off. Counted by that
        name, such a client would never reach a per-user cap; so the holder of the token
        is one identity (named by a hash of the token, never the token itself), and so
        are all clients of a server without authentication.
        """
        ip = self.identity_provider
        cookie_user = ip.get_user_cookie(self)
        if inspect.isawaitable(cookie_user):
            cookie_user = await cookie_user
        if cookie_user is not None:
            return self.user_name
        if ip.is_token_authenticated(self):
            token = ip.get_token(self) or ""
            return "token-sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        if not ip.auth_enabled:
            return "anonymous (authentication is off)"
        return self.user_name

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        # jupyter_server only enforces authentication when allow_unauthenticated_access
        # is off; enforce it here for every route whatever that setting says.
        if not self.current_user:
            raise web.HTTPError(
                403, "authentication required: open JupyterLab with its token or log in"
            )
        action = "read" if self.request.method in ("GET", "HEAD") else "write"
        allowed = self.authorizer.is_authorized(self, self.current_user, action, "contents")
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise web.HTTPError(403, f"user {self.user_name!r} may not {action} volumes (contents)")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn`` in the service's threads, off the event loop."""
        return await IOLoop.current().run_in_executor(
            self.service.executor, functools.partial(fn, *args, **kwargs)
        )

    def body(self) -> dict[str, Any]:
        """The JSON object in the request body ({} when empty)."""
        raw = self.request.body
        if not raw or not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidError("the request body is not valid JSON") from None
        except RecursionError:  # json's scanner recurses once per nested [ or {
            raise InvalidError("the request body is JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidError("the request body must be a JSON object")
        return data

    def raw_arg(self, name: str, default: str) -> str:
        """Query parameter ``name`` exactly as sent: Tornado's ``get_query_argument``
        strips white space around it and turns control characters (NUL included) into
        spaces, so a path ``" a.ipynb"`` would name another file, and a NUL would not be
        refused as every other route refuses it."""
        values = self.request.query_arguments.get(name)
        return self.decode_argument(values[-1], name=name) if values else default

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.get_query_argument(name, None)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidError(
                f"query parameter {name!r} must be an integer, got {value!r}"
            ) from None

    def bool_arg(self, name: str) -> bool:
        value = (self.get_query_argument(name, "") or "").lower()
        if value in ("", "0", "false", "no"):
            return False
        if value in ("1", "true", "yes"):
            return True
        raise InvalidError(f"query parameter {name!r} must be true or false, got {value!r}")

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    # -- errors: one place ---------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = error_reply(exc, status_code)
        if status == 405:
            # what the route does take: in the message, and in Allow (HTTP requires it)
            allowed = self.allowed_methods()
            self.set_header("Allow", ", ".join(allowed))
            body["message"] = (
                f"{self.request.method} is not supported on {self.request.path}"
                f" (it takes {', '.join(allowed)})"
            )
        self.set_status(status)
        self.finish(json.dumps(body))

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this route's handler implements."""
        base = web.RequestHandler
        return [
            m
            for m in self.SUPPORTED_METHODS
            if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)
        ]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, VolumeError):
            status, _ = error_reply(value, 500)
            log = self.log.error if status >= 500 else self.log.info
            log(
                "jupyter-volume %s %s -> %d %s: %s",
                self.request.method,
                self.request.path,
                status,
                type(value).__name__,
                value,
            )
            return
        super().log_exception(typ, value, tb)


# -- routes ------------------------------------------------------------------------------------------
class VersionHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.run(self.service.version))


class VolumesHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.run(self.service.list_volumes))

    @web.authenticated
    async def post(self) -> None:
        name = self.body().get("name")
        self.reply(await self.run(self.service.create_volume, name), 201)


class VolumeHandler(VolumeAPIHandler):
    @web.authenticated
    async def patch(self, volume: str) -> None:
        new = self.body().get("name")
        self.reply(await self.run(self.service.rename_volume, volume, new))

    @web.authenticated
    async def delete(self, volume: str) -> None:
        await self.run(self.service.delete_volume, volume)
        self.no_content()


class TreeHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self, volume: str, path: str | None) -> None:
        args = (
            volume,
            path or "",
            self.int_arg("at"),
            self.int_arg("offset", 0),
            self.int_arg("limit", 500),
            self.get_query_argument("sort", "name"),
            self.get_query_argument("order", "asc"),
        )
        self.reply(await self.run(self.service.list_folder, *args))


_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """``bytes=a-b`` -> ``(start, end_exclusive)``; None: unsatisfiable; False: ignore.

    Only a single range is served; anything else is answered with the whole file, as
    RFC 9110 allows.
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return False
    first, last = m.group(1), m.group(2)
    if len(first) > 30 or len(last) > 30:
        return False  # int() refuses thousands of digits; no file has that many bytes
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return None
        return max(size - n, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return False
    if start >= size:
        return None
    return start, end


class FilesHandler(VolumeAPIHandler):
    """GET/HEAD: download (streamed, Content-Length, single-range Range); DELETE: remove."""

    def compute_etag(self) -> str | None:
        return None  # streamed: Tornado's body hash would be wrong

    @web.authenticated
    async def head(self, volume: str, path: str) -> None:
        await self._download(volume, path, body=False)

    @web.authenticated
    async def get(self, volume: str, path: str) -> None:
        await self._download(volume, path, body=True)

    async def _download(self, volume: str, path: str, *, body: bool) -> None:
        at = self.int_arg("at")
        entry, seq = await self.run(self.service.stat_file, volume, path, at)
        size = entry.size
        start, end = 0, size
        status = 200
        header = self.request.headers.get("Range")
        if header:
            rng = parse_range(header, size)
            if rng is None:
                self.set_header("Content-Range", f"bytes */{size}")
                self.reply(
                    {
                        "error": "RangeNotSatisfiable",
                        "message": f"{header!r} is outside the file's {size} bytes",
                    },
                    416,
                )
                return
            if rng:
                start, end = rng  # type: ignore[misc]
                status = 206
                self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        name = entry.path.rsplit("/", 1)[-1]
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_status(status)
        self.set_header("Content-Type", ctype)
        self.set_header("Content-Length", str(end - start))
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Last-Modified", formatdate(entry.mtime, usegmt=True))
        # Always an attachment: never render volume content (HTML, SVG) in Jupyter's origin.
        # The plain filename is an ASCII stand-in (control characters, quotes and
        # backslashes, which no header may carry raw, become "_"); filename* has the
        # real name, percent-encoded (RFC 6266, RFC 8187).
        ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\?' else "_" for c in name)
        self.set_header(
            "Content-Disposition",
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        # the commit these bytes are from: a client that checked a file with HEAD can ask
        # for exactly that version (?at=) even if a writer commits in between
        self.set_header("X-Volume-Commit", str(seq))
        if not body or end <= start:
            await self.finish(set_content_type=ctype)
            return
        pieces = await self.run(self.service.read_range, volume, path, seq, start, end)
        try:
            while True:
                piece = await self.run(next, pieces, None)
                if piece is None:
                    break
                self.write(piece)
                await self.flush()
        except StreamClosedError:
            return  # the client went away
        finally:
            await self.run(pieces.close)  # type: ignore[attr-defined]
        try:
            await self.finish(set_content_type=ctype)
        except StreamClosedError:
            # A client that closes right after the last byte (curl does) is normal.
            return

    @web.authenticated
    async def delete(self, volume: str, path: str) -> None:
        self.reply(await self.run(self.service.remove, volume, path, self.bool_arg("recursive")))


class RemoveHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str) -> None:
        self.reply(await self.run(self.service.remove_many, volume, self.body().get("paths")))


class FoldersHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str) -> None:
        self.reply(await self.run(self.service.make_folder, volume, self.body().get("path")), 201)


class MoveHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str) -> None:
        b = self.body()
        self.reply(await self.run(self.service.move, volume, b.get("src"), b.get("dst")))


class HistoryHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self, volume: str) -> None:
        args = (volume, self.int_arg("limit", 100), self.int_arg("offset", 0))
        self.reply(await self.run(self.service.history, *args, self.int_arg("before")))


class DiffHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self, volume: str) -> None:
        a = self.int_arg("a")
        if a is None:
            raise InvalidError(
                "diff needs query parameter 'a' (a commit number); 'b' defaults to the newest"
            )
        self.reply(await self.run(self.service.diff, volume, a, self.int_arg("b")))


class NotebookDiffHandler(VolumeAPIHandler):
    @web.authenticated
    async def get(self, volume: str) -> None:
        path = self.raw_arg("path", "")
        a, b = self.int_arg("a"), self.int_arg("b")
        if not path or a is None or b is None:
            raise InvalidError("nbdiff needs query parameters 'path', 'a' and 'b' (commit numbers)")
        service = self.service

        def diff(name: str) -> dict[str, Any]:
            vol = service._vol(name)
            # a commit that does not exist or was expired is a 404 of its own, not a
            # notebook "absent at that commit" (which diffs as an empty notebook)
            check_commit(vol, a)
            check_commit(vol, b)
            return notebook_diff(vol, path, a, b)

        # nbdime's parsing and diffing is CPU work: off the event loop like storage work.
        # The service's own handle, so the nfs/ copy of this route reads the file system
        # (and, given the name, words its errors for one).
        self.reply(await self.run(diff, volume))


class RestoreHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str) -> None:
        b = self.body()
        self.reply(await self.run(self.service.restore, volume, b.get("commit"), b.get("path")))


class UploadsHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str) -> None:
        b = self.body()
        owner = await self.identity()
        args = (volume, b.get("path"), b.get("size"), b.get("force", False), owner)
        self.reply(await self.run(self.service.start_upload, *args), 201)


@web.stream_request_body
class UploadHandler(VolumeAPIHandler):
    """GET: status; PUT: one chunk (streamed to the temp file); DELETE: cancel."""

    _chunk: ChunkWriter | None = None
    _chunk_error: BaseException | None = None

    async def prepare(self) -> None:  # type: ignore[override]
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._body_len = 0
        await super().prepare()  # authenticated before a single body byte is read
        if self.request.method != "PUT":
            return
        # A refused chunk is answered after its body was read (and dropped): replying
        # while the client still sends makes many clients report a reset, not the error.
        # So Tornado's own size limit (a bare 400 with no body) is set above ours, and
        # ours is checked here and in data_received.
        declared = self.request.headers.get("Content-Length")
        too_big = declared is not None and declared.isdigit() and int(declared) > MAX_CHUNK_SIZE
        if too_big and int(declared or 0) > DISCARD_LIMIT:
            raise self._oversized()
        self.request.connection.set_max_body_size(DISCARD_LIMIT)  # type: ignore[union-attr]
        if too_big:
            self._chunk_error = self._oversized()
            return
        try:
            offset = self.int_arg("offset")
            if offset is None:
                raise InvalidError(
                    "a chunk needs query parameter 'offset' (its byte offset in the file)"
                )
            digest = self.request.headers.get("X-Content-SHA256")
            kw = self.path_kwargs
            self._chunk = await self.run(
                self.service.begin_chunk,
                kw["volume"],
                kw["upload_id"],
                offset,
                digest,
            )
        except VolumeError as exc:
            self._chunk_error = exc

    def _oversized(self) -> ChunkTooLargeError:
        return ChunkTooLargeError(
            f"an upload chunk may be at most {MAX_CHUNK_SIZE} bytes (max_chunk_size); "
            "send the file in smaller chunks"
        )

    async def data_received(self, chunk: bytes) -> None:
        self._body_len += len(chunk)
        if self._body_len > MAX_CHUNK_SIZE and self._chunk_error is None:
            # a chunked-encoding body has no Content-Length to check up front
            self._chunk_error = self._oversized()
            self._release_chunk()
        if self._chunk is None or self._chunk_error is not None:
            return
        self._pending.append(chunk)
        self._pending_len += len(chunk)
        if self._pending_len >= WRITE_BLOCK:
            await self._write_pending()

    async def _write_pending(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        if data and self._chunk is not None and self._chunk_error is None:
            try:
                await self.run(self._chunk.write, data)
            except Exception as exc:  # reported by put(), once the body has been read
                self._chunk_error = exc

    @web.authenticated
    async def get(self, volume: str, upload_id: str) -> None:
        self.reply(await self.run(self.service.upload_status, volume, upload_id))

    @web.authenticated
    async def put(self, volume: str, upload_id: str) -> None:
        await self._write_pending()
        if self._chunk_error is not None:
            raise self._chunk_error
        assert self._chunk is not None
        self.reply(await self.run(self._chunk.commit))

    @web.authenticated
    async def delete(self, volume: str, upload_id: str) -> None:
        await self.run(self.service.abort_upload, volume, upload_id)
        self.no_content()

    def on_connection_close(self) -> None:
        self._release_chunk()
        self._pending.clear()
        # Tornado's own handler fails the request's body future: without it a chunk
        # whose connection dropped mid-body waits for the rest forever, holding this
        # handler and what it had buffered (up to WRITE_BLOCK) for the server's life.
        super().on_connection_close()

    def on_finish(self) -> None:
        self._release_chunk()

    def _release_chunk(self) -> None:
        chunk, self._chunk = self._chunk, None
        if chunk is not None:  # abort() is a no-op after a successful commit()
            self.service.executor.submit(chunk.abort)


class UploadFinishHandler(VolumeAPIHandler):
    @web.authenticated
    async def post(self, volume: str, upload_id: str) -> None:
        b = self.body()
        args = (volume, upload_id, b.get("size"), b.get("sha256"), b.get("force"))
        self.reply(await self.run(self.service.finish_upload, *args))


class NotFoundHandler(VolumeAPIHandler):
    """Anything else under the API prefix: a JSON 404 (after authentication)."""

    async def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise web.HTTPError(
            404, f"no such jupyter-volume API route: {self.request.method} {self.request.path}"
        )

    get = post = put = patch = delete = head = web.authenticated(_not_found)


_VOL = r"/volumes/(?P<volume>[^/]+)"
_UPLOAD = _VOL + r"/uploads/(?P<upload_id>[A-Za-z0-9_-]+)"

#: The API: (route under /jupyter-volume/api, handler). docs/rest-api.md documents each.
ROUTES: list[tuple[str, type[VolumeAPIHandler]]] = [
    (r"/version", VersionHandler),
    (r"/volumes", VolumesHandler),
    (_VOL, VolumeHandler),
    (_VOL + r"/tree(?:/(?P<path>.*))?", TreeHandler),
    (_VOL + r"/files/(?P<path>.*)", FilesHandler),
    (_VOL + r"/folders", FoldersHandler),
    (_VOL + r"/move", MoveHandler),
    (_VOL + r"/remove", RemoveHandler),
    (_VOL + r"/history", HistoryHandler),
    (_VOL + r"/diff", DiffHandler),
    (_VOL + r"/nbdiff", NotebookDiffHandler),
    (_VOL + r"/restore", RestoreHandler),
    (_VOL + r"/uploads", UploadsHandler),
    (_UPLOAD, UploadHandler),
    (_UPLOAD + r"/finish", UploadFinishHandler),
    (r"(?:/.*)?", NotFoundHandler),
]


def route_table(base_url: str) -> list[tuple[str, type[VolumeAPIHandler]]]:
    """The routes with their full URL patterns under ``base_url``."""
    from .dict_handlers import DICT_ROUTES  # here: that module builds on this one
    from .nfs_handlers import NFS_ROUTES  # likewise

    prefix = url_path_join(base_url, API_PREFIX)
    routes = [*ROUTES[:-1], *DICT_ROUTES, *NFS_ROUTES, ROUTES[-1]]  # the 404 stays last
    return [(prefix + pattern, h) for pattern, h in routes]


def setup_handlers(web_app: web.Application, service: VolumeService) -> None:
    """Install ``service`` and the API routes into the Jupyter server's Tornado app."""
    web_app.settings[SETTINGS_KEY] = service
    web_app.add_handlers(".*$", route_table(web_app.settings["base_url"]))
