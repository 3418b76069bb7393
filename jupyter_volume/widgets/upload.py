"""The widget's uploader: files of any size from the browser to the kernel in chunks,
over the widget's own comm, in any frontend that renders ipywidgets.

ipywidgets' ``FileUpload`` sends a whole file as one kernel message; one over about
10 MiB drops the kernel connection. :class:`ChunkedUpload` is an anywidget whose
JavaScript (``upload.js``) reads each file with ``slice()`` and sends it a chunk at a
time as a binary buffer, with at most ``window`` chunks waiting for the kernel's
acknowledgement (flow control), showing byte progress, speed and a Cancel button.

The protocol, one upload at a time per id (the frontend's messages, then the replies):

===============================================  =======================================
frontend sends                                   kernel answers
===============================================  =======================================
``begin`` id, files ``[{name, size}]``           ``ready`` (chunk_size, window) or ``error``
``chunk`` id, file, offset + one binary buffer   ``ack`` file, received (bytes so far)
``end`` id                                       ``done`` message, or ``error``
``cancel`` id                                    ``cancelled``
===============================================  =======================================

Names are checked at ``begin``, before a byte travels: a name the volume would refuse
(a NUL, not UTF-8, over 255 bytes) fails there, not after a long upload. So is an
upload bigger than the room left in the temporary folder. An interrupted kernel (the
notebook's Stop button while a chunk or the commit is handled) answers ``error``, so
the page never waits for a reply that will not come.

The kernel writes each file's chunks, in order, to a file in a private temporary
folder; at ``end`` the ``commit`` callback puts the files into the volume as one commit
and the folder is removed. A cancel, an error or the widget's close removes the folder
too: a failed or cancelled upload leaves nothing behind, and the folder of a kernel
killed mid-upload is removed by the next upload on the machine
(:mod:`jupyter_volume.scratch`).

Layer: part of the widget front end; imports ``errors``, ``names``, ``formatting``,
``scratch``, anywidget and ipywidgets.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anywidget
import traitlets

from .. import scratch
from ..errors import InvalidError, VolumeError
from ..formatting import human_size
from ..names import MAX_NAME_BYTES

__all__ = ["CHUNK_SIZE", "WINDOW", "ChunkedUpload"]

log = logging.getLogger("jupyter_volume.widgets")

#: Bytes per chunk: small enough for any kernel message limit, big enough that the
#: round trips do not dominate.
CHUNK_SIZE = 2 << 20
#: Chunks on their way before the frontend waits for an acknowledgement.
WINDOW = 3
#: Milliseconds the frontend waits for a reply before it says the kernel does not
#: answer (while the kernel commits, it only says the commit is still under way).
ACK_TIMEOUT_MS = 300_000

_ESM = (Path(__file__).with_name("upload.js")).read_text("utf-8")
_CSS = """
.jv-upload { display: flex; flex-direction: column; align-items: flex-start; gap: 2px; }
.jv-upload .jv-upload-group { display: flex; flex-direction: column; gap: 2px; }
.jv-upload .jv-uploads:empty { display: none; }
.jv-upload .jv-upload-row, .jv-upload .jv-upload-footer {
  display: flex; gap: 6px; align-items: center; white-space: nowrap;
  font-size: var(--jp-ui-font-size1, 13px);
}
.jv-upload .jv-upload-name { max-width: 240px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.jv-upload progress { width: 160px; }
.jv-upload .jv-upload-row[data-state='failed'] .jv-upload-state,
.jv-upload-group[data-state='error'] .jv-upload-summary { color: var(--jp-error-color1, #d32f2f); }
.jv-upload-group[data-state='done'] .jv-upload-summary { color: var(--jp-success-color1, #388e3c); }
"""


@dataclass
class _File:
    name: str
    size: int
    path: Path
    out: IO[bytes]
    received: int = 0


@dataclass
class _Session:
    room: scratch.Scratch  # the temporary folder the files wait in
    context: Any
    files: list[_File] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.room.path

    def drop(self) -> None:
        for f in self.files:
            with contextlib.suppress(OSError):
                f.out.close()
        self.room.remove()
        _OPEN.discard(self.room)


#: Every temporary folder of an upload under way, removed when the kernel exits (a
#: kernel shut down mid-upload leaves no chunks behind in the temp folder; one killed
#: outright leaves them to the next upload on the machine: see jupyter_volume.scratch).
_OPEN: set[scratch.Scratch] = set()
#: the names of the uploads' temporary folders
FOLDER_PREFIX = "jv-upload-"


@atexit.register
def _remove_open_uploads() -> None:
    for folder in list(_OPEN):
        folder.remove()


class _IdInUse(InvalidError):
    """A ``begin`` with the id of an upload under way (which must not be dropped)."""


def _check_name(name: str) -> None:
    """Refuse, before any byte is sent, a file name the volume would refuse at commit."""
    short = repr(name if len(name) <= 60 else name[:60] + "…")
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise InvalidError(f"cannot upload a file named {short}")
    if "\x00" in name:
        raise InvalidError(f"cannot upload {short}: its name holds a NUL character")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise InvalidError(f"cannot upload {short}: its name is not valid Unicode") from None
    if size > MAX_NAME_BYTES:
        raise InvalidError(
            f"cannot upload {short}: its name is {size} bytes long in UTF-8, and a "
            f"volume takes names of up to {MAX_NAME_BYTES} bytes: rename it first"
        )


class ChunkedUpload(anywidget.AnyWidget):
    """An Upload button that sends files of any size to the kernel in chunks.

    Args:
        prepare: called at the start with the files' names and sizes; raises to refuse
            the upload (the message is shown in the widget), else returns anything
            (say, the target folder), handed to ``commit``.
        commit: called once every byte arrived, with what ``prepare`` returned and the
            list of ``(local temporary path, name)``; puts them into the volume and
            returns the sentence the widget shows. The temporary files are removed after.
        tmp_dir: where the temporary folders go (default: the system's temp folder).
    """

    _esm = _ESM
    _css = _CSS
    #: the Upload button is off (e.g. while an old commit is browsed)
    disabled = traitlets.Bool(False).tag(sync=True)
    #: the Upload button's tooltip
    hint = traitlets.Unicode("upload files into this folder (one commit)").tag(sync=True)
    chunk_size = traitlets.Int(CHUNK_SIZE).tag(sync=True)
    window = traitlets.Int(WINDOW).tag(sync=True)
    ack_timeout = traitlets.Int(ACK_TIMEOUT_MS).tag(sync=True)

    def __init__(
        self,
        *,
        prepare: Callable[[list[str], list[int]], Any],
        commit: Callable[[Any, list[tuple[Path, str]]], str],
        tmp_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._prepare = prepare
        self._commit = commit
        self._tmp_dir = tmp_dir
        self._sessions: dict[str, _Session] = {}
        self.on_msg(self._on_msg)

    @property
    def active(self) -> int:
        """How many uploads are under way (their temporary files exist)."""
        return len(self._sessions)

    def close(self) -> None:
        """Drop every upload under way (their temporary files go), then close."""
        for uid in list(self._sessions):
            self._drop(uid)
        super().close()

    # -- messages from the frontend -----------------------------------------------------------
    def _on_msg(self, _widget: Any, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        uid = str(content.get("id", ""))
        op = content.get("op")
        try:
            if op == "begin":
                self._begin(uid, content.get("files"))
            elif op == "chunk":
                self._chunk(uid, content, buffers)
            elif op == "end":
                self._end(uid)
            elif op == "cancel":
                self._drop(uid)
                self.send({"op": "cancelled", "id": uid})
            else:
                raise InvalidError(f"unknown upload message {op!r}")
        except _IdInUse as e:
            # not this upload's: the one under way with that id goes on untouched
            self.send({"op": "error", "id": uid, "message": str(e)})
        except Exception as e:
            self._drop(uid)
            if not isinstance(e, (VolumeError, OSError)):
                log.exception("VolumeBrowser: upload message %r failed", op)
            text = str(e) or type(e).__name__
            # the page shows it beside the Upload button (and says what was not uploaded)
            self.send({"op": "error", "id": uid, "message": text})
        except KeyboardInterrupt:
            # the notebook's Stop button while a chunk or the commit was handled: the
            # page would wait for a reply that never comes; say so, then let it go on
            self._drop(uid)
            text = (
                "the kernel was interrupted while saving into the volume: "
                "refresh the listing to see whether the files are there"
                if op == "end"
                else "the kernel was interrupted: nothing was uploaded"
            )
            # after ``end`` the commit may have landed before the interrupt: the page
            # must not say "not uploaded"
            self.send({"op": "error", "id": uid, "message": text, "unsure": op == "end"})
            raise

    def _begin(self, uid: str, files: Any) -> None:
        if not uid:
            raise InvalidError("an upload needs an id")
        if uid in self._sessions:
            raise _IdInUse(f"upload id {uid!r} is in use by an upload under way")
        if not isinstance(files, list) or not files:
            raise InvalidError("an upload needs at least one file")
        names: list[str] = []
        sizes: list[int] = []
        for f in files:
            name, size = str(f.get("name", "")), f.get("size")
            _check_name(name)
            if not isinstance(size, int) or size < 0:
                raise InvalidError(f"bad size for {name!r}: {size!r}")
            if name in names:
                raise InvalidError(f"{name!r} is chosen twice")
            names.append(name)
            sizes.append(size)
        context = self._prepare(names, sizes)
        room = scratch.make(FOLDER_PREFIX, self._tmp_dir)
        _OPEN.add(room)
        session = _Session(room, context)
        folder = room.path
        self._sessions[uid] = session
        # the chunks wait here until the commit: refuse now rather than fill the disk
        need, free = sum(sizes), shutil.disk_usage(folder).free
        if need > free:
            raise InvalidError(
                f"no room for this upload: {human_size(need)} would wait in the kernel's "
                f"temporary folder {folder.parent} until it is saved, which has "
                f"{human_size(free)} free (set TMPDIR to a bigger disk for the kernel)"
            )
        for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
            path = folder / str(i)
            session.files.append(_File(name, size, path, open(path, "wb")))  # noqa: SIM115
        self.send({"op": "ready", "id": uid, "chunk_size": self.chunk_size, "window": self.window})

    def _session(self, uid: str) -> _Session:
        session = self._sessions.get(uid)
        if session is None:
            raise InvalidError("this upload is not under way (cancelled, or the kernel restarted)")
        return session

    def _chunk(self, uid: str, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        session = self._session(uid)
        index, offset = content.get("file"), content.get("offset")
        if not isinstance(index, int) or not 0 <= index < len(session.files):
            raise InvalidError(f"no file #{index!r} in this upload")
        f = session.files[index]
        if len(buffers) != 1:
            raise InvalidError("a chunk comes as one binary buffer")
        data = memoryview(buffers[0]).cast("B")
        # chunks arrive in order (one comm, one kernel thread): a gap or a repeat is a bug
        if offset != f.received:
            raise InvalidError(f"{f.name}: chunk at byte {offset}, expected {f.received}")
        if f.received + len(data) > f.size:
            raise InvalidError(f"{f.name}: more bytes than its size ({f.size})")
        f.out.write(data)
        f.received += len(data)
        self.send({"op": "ack", "id": uid, "file": index, "received": f.received})

    def _end(self, uid: str) -> None:
        session = self._session(uid)
        for f in session.files:
            if f.received != f.size:
                raise InvalidError(f"{f.name}: {f.received} of {f.size} bytes arrived")
            f.out.close()
        try:
            message = self._commit(session.context, [(f.path, f.name) for f in session.files])
        finally:
            self._drop(uid)
        self.send({"op": "done", "id": uid, "message": message})

    def _drop(self, uid: str) -> None:
        session = self._sessions.pop(uid, None)
        if session is not None:
            session.drop()
