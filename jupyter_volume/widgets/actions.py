"""The actions part of the :class:`~jupyter_volume.widgets.VolumeBrowser`: upload into
the folder shown, new folder, rename/move, delete, and download (to a path on the
kernel's disk, or as a browser link: the Jupyter server's REST download route when the
kernel's server serves this volume's store, else a ``data:`` URL for small files).
Every write is one commit with a message that says what it did, and leaves no
selection or open form behind; each is refused while an old commit is browsed.

Layer: part of the widget front end; imports ``volume``, ``names``, ``errors``,
``config`` and ipywidgets.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import ipywidgets as W

from ..errors import AlreadyExistsError, InvalidError, NotFoundError, VolumeError
from ..formatting import human_size
from ..names import normalize_path
from ..volume import FileEntryType
from .base import DOWNLOAD_LINK_MAX, TYPE_NAMES, BrowserPart, handler, join, widget_words
from .upload import ChunkedUpload

__all__ = ["ActionsPart"]

#: Where the server extension's REST API lives under the server's base URL (see
#: docs/rest-api.md; the same as ``jupyter_volume.server.handlers.API_PREFIX``, not
#: imported so the widget does not load the server's modules).
_API_PREFIX = "jupyter-volume/api"


class _ProgressReader(io.RawIOBase):
    """Reads a memoryview and reports how many bytes were read (for upload progress)."""

    def __init__(self, data: memoryview, report: Callable[[int], None]) -> None:
        super().__init__()
        self._data = data.cast("B") if data.format != "B" else data
        self._pos = 0
        self._report = report

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        if n:
            self._report(n)
        return n


class ActionsPart(BrowserPart):
    """The write actions and the download of the selected entries."""

    def _build_actions(self) -> None:
        """Make the action buttons, the progress bar and the actions' forms."""
        w = self._w
        # Files of any size, in any frontend: the uploader sends them over its comm in
        # chunks, with flow control (ipywidgets' FileUpload sends a file as one kernel
        # message, and one over about 10 MiB drops the kernel connection).
        self.upload = w(
            ChunkedUpload,
            prepare=self._upload_prepare,
            commit=self._upload_commit,
        )
        # Its class lets the jupyter-volume labextension find it: where the page has
        # that labextension and the kernel's Jupyter server serves this volume's store
        # (then the marker below is filled in), the labextension hides it and puts its
        # own Upload button in its place, which sends the files through the server's
        # chunked REST upload instead, never through the kernel.
        self.upload.add_class("widget-upload")
        self.web_upload = w(W.HTML, value="")
        self.web_upload_report = w(W.Text, value="", layout=W.Layout(display="none"))
        self.web_upload_report.add_class("jv-web-upload-report")
        self.web_upload_report.observe(self._on_web_upload_report, names="value")
        self.overwrite = w(
            W.Checkbox,
            value=False,
            description="overwrite",
            indent=False,
            tooltip="let uploads, moves and downloads replace an existing file",
            layout=W.Layout(width="100px"),
        )
        self.overwrite.observe(lambda _change: self._show_web_upload(), names="value")
        self.new_folder_button = self._button("New folder", self.show_new_folder, icon="folder")
        self.move_button = self._button("Rename/move", self.show_move, icon="i-cursor")
        self.download_button = self._button("Download", self.show_download, icon="download")
        self.delete_button = self._button("Delete", self.show_delete, icon="trash", style="danger")
        self.progress = w(
            W.FloatProgress,
            value=0.0,
            min=0.0,
            max=1.0,
            description="",
            layout=W.Layout(width="200px", display="none"),
        )
        self.folder_name = w(
            W.Text, placeholder="new folder name (or path)", layout=W.Layout(width="260px")
        )
        self.create_folder_button = self._button(
            "Create folder", self.create_folder, style="primary"
        )
        self.move_source = w(W.Label)
        self.move_target = w(
            W.Text, placeholder="new name, or /path/in/volume", layout=W.Layout(width="320px")
        )
        self.do_move_button = self._button("Move", self.do_move, style="primary")
        self.download_path = w(
            W.Text, placeholder="local path (file or folder)", layout=W.Layout(width="320px")
        )
        self.save_button = self._button(
            "Save to local path", self.save_download, style="primary", icon="save"
        )

    def _show_write_state(self) -> None:
        """Turn the write actions off while an old commit is browsed."""
        ro = self.read_only
        for b in (self.new_folder_button, self.move_button, self.delete_button):
            b.disabled = ro
        self.upload.disabled = ro
        self._show_web_upload()

    def _show_web_upload(self) -> None:
        """Tell the page's uploader where files go: volume (name and id, so a volume
        re-created under the name is not written), store, folder, overwrite, read-only.

        Only when the kernel's Jupyter server serves this volume's store: else the
        page's REST uploader could not write it, and the comm uploader stays."""
        try:
            info = self.volume.info()
            store = self.volume.store.url
            served = self._server_base_url() is not None
        except Exception:  # a missing volume or store is reported by the listing
            served = False
        if not served:
            self.web_upload.value = ""
            return
        attrs = {
            "volume": info.name or "",
            "volume-id": info.id,
            "store": store,
            "path": self.path,
            "force": "1" if self.overwrite.value else "0",
            "read-only": "1" if self.read_only else "0",
        }
        data = " ".join(f'data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
        self.web_upload.value = f'<div class="jv-web-upload" hidden {data}></div>'

    @handler(near="upload")
    def _on_web_upload_report(self, change: Any) -> None:
        """The page's uploader finished: show what happened and list the new files."""
        import json

        raw = change["new"]
        if not raw:
            return
        report = json.loads(raw)
        self.web_upload_report.value = ""
        if report.get("uploaded"):
            self._reset_after_write()
        self.refresh()
        done = report.get("uploaded", [])
        failed = report.get("failed", [])
        skipped = report.get("skipped", [])
        if failed:
            self._show_error(
                "upload failed: " + "; ".join(f"{path}: {why}" for path, why in failed)
            )
        if skipped:
            self._show_error(
                f"not uploaded, already there: {', '.join(skipped)} (tick overwrite to replace)"
            )
        if done:
            self._show_info(f"uploaded {len(done)} file{'s' if len(done) != 1 else ''}")

    # -- upload ---------------------------------------------------------------------------------------------
    def _upload_prepare(self, names: list[str], _sizes: list[int]) -> tuple[str, bool]:
        """Before the bytes of an upload come: may it go into the folder shown? The
        folder and overwrite are taken now: a later click elsewhere does not move it."""
        with self._action("upload"):
            self._writable("upload")
            force = bool(self.overwrite.value)
            if not force:
                there = []
                for name in names:
                    with contextlib.suppress(NotFoundError):
                        self.volume.stat(join(self.path, name))
                        there.append(name)
                if there:
                    raise FileExistsError(
                        f"already there: {', '.join(there)} (tick overwrite to replace)"
                    )
            return self.path, force

    def _upload_commit(self, target: tuple[str, bool], files: list[tuple[Path, str]]) -> str:
        """Every byte arrived: put the files into the folder as one commit."""
        folder, force = target
        # Not self._writable(): the folder was taken when the upload began (see
        # _upload_prepare); browsing an old commit meanwhile must not throw it away.
        with self._action("upload"):
            self.status.value = "saving the upload…"
            try:
                with self.volume.batch_upload(force=force) as batch:
                    for local, name in files:
                        batch.put_file(str(local), join(folder, name))
            except AlreadyExistsError as e:  # added since the upload began: the page says it
                raise AlreadyExistsError(widget_words(str(e))) from None
            self._reset_after_write()
            self.refresh()
            self._committed(batch.commit_info, "upload")
        info = batch.commit_info
        s = "s" if len(files) != 1 else ""
        return f"commit #{info.seq}: {len(files)} file{s}" if info else "nothing changed"

    @handler(near="upload")
    def upload_files(self, files: Sequence[Any]) -> None:
        """Upload FileUpload values (dicts with ``name`` and ``content``) into the current
        folder as one commit; an existing file is replaced only if overwrite is ticked."""
        self._writable("upload")
        total = sum(len(f["content"]) for f in files) or 1
        done = 0
        last = 0.0
        self.progress.value = 0.0
        self.progress.layout.display = ""

        def report(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if now - last > 0.1 or done >= total:
                last = now
                self.progress.value = min(done / total, 1.0)

        names = [str(f["name"]) for f in files]
        self.status.value = (
            f"uploading {len(files)} file{'s' if len(files) != 1 else ''} ({human_size(total)})…"
        )
        try:
            with self.volume.batch_upload(force=self.overwrite.value) as batch:
                for f, name in zip(files, names, strict=True):
                    target = join(self.path, name)
                    if "/" in name or name in ("", ".", ".."):
                        raise InvalidError(f"cannot upload a file named {name!r}")
                    content = f["content"]
                    mv = content if isinstance(content, memoryview) else memoryview(bytes(content))
                    batch.put_file(io.BufferedReader(_ProgressReader(mv, report), 1 << 20), target)
        finally:
            self.progress.layout.display = "none"
        self._reset_after_write()
        self.refresh()
        self._committed(batch.commit_info, "upload")

    # -- new folder, move, delete ------------------------------------------------------------------------
    def _resolve_input(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise InvalidError("type a name first")
        return (
            normalize_path(text) if text.startswith("/") else normalize_path(join(self.path, text))
        )

    @handler(near="new_folder_button")
    def show_new_folder(self) -> None:
        """Open the new-folder form."""
        self._writable("create a folder")
        self.folder_name.value = ""
        self._show_form(self.new_folder_button, self.folder_name, self.create_folder_button)

    @handler(near="new_folder_button")
    def create_folder(self) -> None:
        """Create the folder named in the form, in the current folder, as one commit."""
        self._writable("create a folder")
        target = self._resolve_input(self.folder_name.value)
        info = self.volume.mkdir(target)
        self._reset_after_write()
        self.refresh()
        self._committed(info, "new folder")

    @handler(near="move_button")
    def show_move(self) -> None:
        """Open the rename/move form for the one selected entry."""
        self._writable("move")
        e = self._one_selected("rename or move")
        self.move_target.value = e.path.rsplit("/", 1)[-1]
        self.move_source.value = f"move {e.path} to"
        self._show_form(self.move_button, self.move_source, self.move_target, self.do_move_button)

    @handler(near="move_button")
    def do_move(self) -> None:
        """Move the selected entry to the name or path in the form, as one commit.

        A bare name renames within the current folder; ``/a/b`` is a path from the
        volume root; an existing folder as target moves the entry into it."""
        self._writable("move")
        e = self._one_selected("rename or move")
        target = self._resolve_input(self.move_target.value)
        info = self.volume.move(e.path, target, overwrite=self.overwrite.value)
        self._reset_after_write()
        self.refresh()
        self._committed(info, "move")

    @handler(near="delete_button")
    def show_delete(self) -> None:
        """Ask for confirmation to delete the selected entries."""
        self._writable("delete")
        chosen = self._selected_entries()
        if not chosen:
            raise InvalidError("select the files or folders to delete first (tick their boxes)")
        names = [
            e.path.rsplit("/", 1)[-1] + ("/" if e.type == FileEntryType.DIRECTORY else "")
            for e in chosen
        ]
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        folders = sum(e.type == FileEntryType.DIRECTORY for e in chosen)
        extra = " (folders with everything in them)" if folders else ""
        paths = [e.path for e in chosen]
        self._ask(
            self.delete_button,
            f"Delete <b>{html.escape(listed)}</b>{extra}? One commit; older commits keep them.",
            "Delete",
            functools.partial(self._delete, paths),
        )

    def _delete(self, paths: list[str]) -> None:
        self._writable("delete")
        self.status.value = f"deleting {len(paths)} path{'s' if len(paths) != 1 else ''}…"
        info = self.volume.remove_paths(paths)
        self._reset_after_write()
        self.refresh()
        self._committed(info, "delete")

    # -- download ----------------------------------------------------------------------------------------
    @handler(near="download_button")
    def show_download(self) -> None:
        """Open the download form for the one selected file: a local path to save to,
        and a browser download link (through the Jupyter server, or a ``data:`` URL
        when the file is small enough)."""
        e = self._one_selected("download")
        if e.type != FileEntryType.FILE:
            raise InvalidError(f"{e.path} is a {TYPE_NAMES[e.type]}: only files can be downloaded")
        name = e.path.rsplit("/", 1)[-1]
        self.download_path.value = name
        self.download_link.value = ""
        url = self._server_download_url(e.path)
        if url is not None:
            # the browser fetches it from the Jupyter server, streamed, whatever the size
            self.download_link.value = (
                f'<a download="{html.escape(name)}" href="{html.escape(url, quote=True)}" '
                f'class="jv-download">⬇ {html.escape(name)} '
                f"({human_size(e.size)}) in the browser</a>"
            )
        elif e.size <= DOWNLOAD_LINK_MAX:
            data = b"".join(self.volume.read_file(e.path, at=self.at))
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            b64 = base64.b64encode(data).decode()
            self.download_link.value = (
                f'<a download="{html.escape(name)}" href="data:{mime};base64,{b64}" '
                f'class="jv-download">⬇ {html.escape(name)} ({human_size(len(data))}) in the browser</a>'
            )
        else:
            self.download_link.value = (
                f"<i>over {human_size(DOWNLOAD_LINK_MAX)}: save it to a local path instead</i>"
            )
        self._show_form(
            self.download_button, self.download_path, self.save_button, self.download_link
        )

    def _server_base_url(self) -> str | None:
        """The ``base_url`` of the Jupyter server running this kernel, when it serves
        this volume's store; else None.

        The kernel's parent process is that server (``$JPY_PARENT_PID``, set by
        jupyter_client); its runtime file gives its ``base_url``. The server's routes
        use the server's configured store, which the kernel inherits: they are used
        only when that store is the volume's (else they would reach another volume).
        """
        store = self.volume.store.url
        cached = getattr(self, "_server_base", None)
        if cached is not None and cached[0] == store:
            return cached[1]  # read once: the widget renders it on every page
        pid = os.environ.get("JPY_PARENT_PID", "").strip()
        base = self._read_server_base_url(pid) if pid.isdigit() else None
        self._server_base = (store, base)
        return base

    def _read_server_base_url(self, pid: str) -> str | None:
        try:
            from jupyter_core.paths import jupyter_runtime_dir

            from ..config import get_store

            info = json.loads(
                (Path(jupyter_runtime_dir()) / f"jpserver-{pid}.json").read_text("utf-8")
            )
            base_url = str(info["base_url"])
            if get_store().url != self.volume.store.url:
                return None
        except (OSError, ValueError, KeyError, VolumeError):
            return None  # no such server, or its store cannot be told
        return base_url

    def _server_download_url(self, path: str) -> str | None:
        """The URL (from the page's origin) of ``path``'s download route in the Jupyter
        server running this kernel, or None when there is none serving this volume
        (see :meth:`_server_base_url`)."""
        base_url = self._server_base_url()
        if base_url is None:
            return None
        try:
            name = self.volume.info().name or self.volume.name
        except VolumeError:
            return None
        route = f"{_API_PREFIX}/volumes/{quote(name, safe='')}/files/" + "/".join(
            quote(part, safe="") for part in path.split("/")
        )
        query = f"?at={self.at}" if self.at is not None else ""
        prefix = base_url.strip("/")
        return f"/{prefix}/{route}{query}" if prefix else f"/{route}{query}"

    @handler(near="download_button")
    def save_download(self) -> None:
        """Save the selected file to the local path in the form (on the kernel's disk).

        A folder as target gets the file under its own name; an existing file is
        replaced only if overwrite is ticked. The file appears complete or not at all."""
        e = self._one_selected("download")
        if e.type != FileEntryType.FILE:
            raise InvalidError(f"{e.path} is not a file")
        text = self.download_path.value.strip()
        if not text:
            raise InvalidError("type a local path to save to")
        target = Path(os.path.expanduser(text)).absolute()
        if target.is_dir():
            target = target / e.path.rsplit("/", 1)[-1]
        if target.exists() and not self.overwrite.value:
            raise FileExistsError(f"{target} exists already: tick overwrite to replace it")
        if not target.parent.is_dir():
            raise FileNotFoundError(f"folder {target.parent} does not exist")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        self.status.value = f"downloading {e.path}…"
        try:
            with open(tmp, "wb") as f:
                n = self.volume.read_file_into_fileobj(e.path, f, at=self.at)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._show_info(f"saved {e.path} ({human_size(n)}) to {target}")
