"""``VolumeBrowser``: an ipywidgets file and history browser for one volume.

Shown by ``%volume browse NAME`` or directly::

    from jupyter_volume.widgets import VolumeBrowser
    VolumeBrowser("my-data")

What it offers: a breadcrumb path and a sortable, filterable, paginated listing (name,
type, size, modified time); entering folders, going up, refreshing; uploading files
into the current folder (with progress), downloading a file (to a path on the kernel's
disk, or as a browser download link for small files), deleting (after confirmation),
new folder, rename/move; and a history pane: commits newest first, browsing the tree as
it was at one of them (read only), its diff against the head, and restoring one path
or the whole tree (after confirmation). Every write is one commit with a message that
says what it did. Errors show up in the widget as a readable message; a handler never
raises into the kernel.

A front end: it calls the :class:`~jupyter_volume.volume.Volume` API and renders, and
keeps no storage logic. Three operations the public API lacks (:func:`mkdir`,
:func:`move`, :func:`remove_paths`) are small functions here built on the Volume's
commit hook, meant to move into ``volume.py`` as methods.

Large folders: the listing of the current folder is read once per refresh or
navigation (a folder of 100,000 entries takes well under a second to list) and only
one page of rows exists as widgets; the row widgets are reused from page to page.

Layer: imports ``volume``, ``mount``, ``names``, ``errors`` and ipywidgets; never the
repository or store layers directly, and never IPython's magics.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import logging
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from .errors import InvalidError, NotFoundError, VolumeError
from .names import normalize_path
from .volume import CommitInfo, DiffEntry, FileEntry, FileEntryType, Volume

if TYPE_CHECKING:
    from .mount import Mount
    from .store import Store

__all__ = [
    "DOWNLOAD_LINK_MAX",
    "VolumeBrowser",
    "human_size",
]

log = logging.getLogger(__name__)

#: Largest file offered as a browser download link: its bytes travel base64-encoded
#: through the widget's state, so bigger files go to a local path instead.
DOWNLOAD_LINK_MAX = 10 << 20
#: Rows of the diff shown for one commit (the rest is counted, not listed).
DIFF_ROWS_MAX = 200


# -- operations the Volume API lacks (to become Volume.mkdir / move / remove_paths) -----------
def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


# -- formatting ------------------------------------------------------------------------------------
def human_size(n: int | None) -> str:
    """Bytes as a short human-readable size: ``0 B``, ``512 B``, ``1.5 KiB``, ``12 MiB``."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if size < 10 else f"{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _local_time(ts: int | float | datetime) -> str:
    if isinstance(ts, datetime):
        return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return datetime.fromtimestamp(ts, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


_TYPE_NAMES = {
    FileEntryType.FILE: "file",
    FileEntryType.DIRECTORY: "folder",
    FileEntryType.SYMLINK: "link",
    FileEntryType.UNSPECIFIED: "?",
}

_CSS = """
<style>
.jv-browser .jv-name button, .jv-browser button.jv-name { text-align: left; justify-content: flex-start; }
.jv-browser .jv-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.jv-browser .jv-mono select, .jv-browser .jv-mono { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.jv-browser .jv-error { color: var(--jp-error-color1, #d32f2f); }
.jv-browser .jv-info { color: var(--jp-success-color1, #388e3c); }
.jv-browser .jv-warn { color: var(--jp-warn-color1, #f57c00); }
.jv-browser table.jv-diff td, .jv-browser table.jv-diff th { padding: 1px 8px; text-align: left; }
</style>
"""


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


class _Row:
    """The widgets of one listing row; reused for whatever entry that row shows."""

    def __init__(self, browser: VolumeBrowser) -> None:
        self.entry: FileEntry | None = None
        self.check = W.Checkbox(value=False, indent=False, layout=W.Layout(width="28px"))
        self.name = W.Button(description="", layout=W.Layout(width="auto", min_width="120px"))
        self.name.add_class("jv-name")
        self.kind = W.Label()
        self.size = W.Label(layout=W.Layout(justify_content="flex-end"))
        self.mtime = W.Label()
        self.check.observe(functools.partial(browser._on_row_check, self), names="value")
        self.name.on_click(functools.partial(browser._on_row_click, self))

    @property
    def widgets(self) -> list[W.Widget]:
        return [self.check, self.name, self.kind, self.size, self.mtime]


def _handler(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a widget handler: errors become a message in the widget, never a traceback."""

    @functools.wraps(fn)
    def run(self: VolumeBrowser, *args: Any, **kwargs: Any) -> Any:
        if self._busy_depth == 0:
            self._clear_message()
            self._had_error = False
        self._busy_depth += 1
        try:
            return fn(self, *args, **kwargs)
        except (VolumeError, OSError) as e:
            self._show_error(str(e) or type(e).__name__)
        except Exception as e:  # a bug: still keep the widget alive, and log it
            log.exception("VolumeBrowser: %s failed", fn.__name__)
            self._show_error(f"unexpected error ({type(e).__name__}): {e}")
        finally:
            self._busy_depth -= 1
            if self._busy_depth == 0:
                self.status.value = ""
        return None

    return run


class VolumeBrowser(W.VBox):
    """A widget to browse, upload, download, delete, move and restore a volume's files.

    Args:
        volume_or_name: a :class:`~jupyter_volume.volume.Volume` or a volume name.
        store: the store URL or object, when a name is given (default: the configured
            store, ``$JUPYTER_VOLUME_STORE``).
        page_size: rows shown per page of a folder's listing.
        history_size: commits listed in the history pane at first ("more" adds more).

    Raises:
        InvalidError: ``volume_or_name`` is not a valid volume name. A missing volume
            or an unreachable store is shown inside the widget instead.

    Example::

        VolumeBrowser("my-data")          # in a notebook cell; or: %volume browse my-data
    """

    def __init__(
        self,
        volume_or_name: Volume | str,
        *,
        store: Store | str | None = None,
        page_size: int = 50,
        history_size: int = 30,
    ) -> None:
        if isinstance(volume_or_name, Volume):
            self.volume = volume_or_name
        else:
            self.volume = Volume.from_name(volume_or_name, store=store)
        if page_size < 1:
            raise InvalidError("page_size must be at least 1")
        self.page_size = int(page_size)
        self.history_size = int(history_size)
        #: the folder shown ("" is the root)
        self.path = ""
        #: the commit browsed from the history pane (read only), or None for the head
        self.at: int | None = None
        #: the newest commit seen at the last refresh
        self.head_seq: int | None = None
        self.page = 0
        self.sort_key = "name"
        self.sort_reverse = False
        self.selected: set[str] = set()
        self.entries: list[FileEntry] = []
        self.shown: list[FileEntry] = []
        self.commits: list[CommitInfo] = []
        self.diff_entries: list[DiffEntry] = []
        self._busy_depth = 0
        self._had_error = False
        self._rendering = False
        self._pending: Callable[[], None] | None = None
        self._rows: list[_Row] = []
        self._crumbs: list[W.Button] = []
        self._crumb_seps: list[W.HTML] = []
        self._crumb_targets: list[str] = []
        self._own: list[W.Widget] = []
        self._build()
        super().__init__(children=self._layout_children())
        self.add_class("jv-browser")
        self.refresh()

    # -- construction ----------------------------------------------------------------------------
    def _w(self, cls: type[W.Widget], **kw: Any) -> Any:
        w = cls(**kw)
        self._own.append(w)
        return w

    def _button(
        self,
        description: str,
        handler: Callable[..., Any],
        *,
        icon: str = "",
        tooltip: str = "",
        style: str = "",
        width: str = "auto",
    ) -> W.Button:
        b = self._w(
            W.Button,
            description=description,
            icon=icon,
            tooltip=tooltip or description,
            button_style=style,
            layout=W.Layout(width=width),
        )
        b.on_click(lambda _b: handler())
        return b

    def _build(self) -> None:
        w = self._w
        self.css = w(W.HTML, value=_CSS)
        self.title = w(W.HTML, value=f"<b>Volume {html.escape(self.volume.name)}</b>")
        self.mount_info = w(W.HTML, value="")
        self.reload_mount_button = self._button(
            "Reload mount",
            self.reload_mount,
            icon="download",
            tooltip="bring the mounted folder to the newest commit",
        )
        self.reload_mount_button.layout.display = "none"

        # navigation
        self.up_button = self._button("Up", self.go_up, icon="arrow-up", tooltip="parent folder")
        self.refresh_button = self._button(
            "Refresh", self.refresh, icon="refresh", tooltip="show the newest commit"
        )
        self.breadcrumb = w(W.HBox, layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self.view_info = w(W.HTML, value="")
        self.back_to_head_button = self._button(
            "Back to head",
            self.browse_head,
            icon="undo",
            tooltip="leave the old commit and show the newest one",
        )
        self.filter = w(
            W.Text,
            placeholder="filter names",
            continuous_update=False,
            layout=W.Layout(width="200px"),
        )
        self.filter.observe(self._on_filter, names="value")

        # listing
        self.sort_buttons = {
            key: self._button(
                label, functools.partial(self.sort_by, key), tooltip=f"sort by {label.lower()}"
            )
            for key, label in (
                ("name", "Name"),
                ("type", "Type"),
                ("size", "Size"),
                ("mtime", "Modified"),
            )
        }
        self.select_all = w(
            W.Checkbox,
            value=False,
            indent=False,
            tooltip="select all on this page",
            layout=W.Layout(width="28px"),
        )
        self.select_all.observe(self._on_select_all, names="value")
        self.listing = w(
            W.GridBox,
            layout=W.Layout(
                grid_template_columns="30px minmax(160px, 3fr) 70px 90px 150px",
                grid_gap="0px 6px",
                align_items="center",
                width="100%",
            ),
        )
        self.empty_info = w(W.HTML, value="")
        self.prev_button = self._button(
            "", self.prev_page, icon="chevron-left", tooltip="previous page", width="40px"
        )
        self.next_button = self._button(
            "", self.next_page, icon="chevron-right", tooltip="next page", width="40px"
        )
        self.page_info = w(W.Label, value="")

        # actions
        self.upload = w(
            W.FileUpload,
            multiple=True,
            description="Upload",
            tooltip="upload files into this folder (one commit)",
        )
        self.upload.observe(self._on_upload, names="value")
        self.overwrite = w(
            W.Checkbox,
            value=False,
            description="overwrite",
            indent=False,
            tooltip="let uploads, moves and downloads replace an existing file",
            layout=W.Layout(width="100px"),
        )
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
        self.status = w(W.Label, value="")
        self.message = w(W.HTML, value="")

        # forms (one is shown at a time in self.form)
        self.form = w(W.HBox, layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self.cancel_button = self._button("Cancel", self.hide_form)
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
        self.download_link = w(W.HTML, value="")
        self.confirm_text = w(W.HTML, value="")
        self.confirm_button = self._button("Confirm", self.confirm, style="danger")

        # history
        self.history_select = w(W.Select, options=[], rows=8, layout=W.Layout(width="100%"))
        self.history_select.add_class("jv-mono")
        self.history_select.observe(self._on_history_select, names="value")
        self.more_history_button = self._button(
            "More", self.more_history, tooltip="list older commits too"
        )
        self.commit_info = w(W.HTML, value="")
        self.diff_view = w(W.HTML, value="")
        self.restore_path = w(
            W.Text,
            placeholder="path to restore (select one in the listing)",
            layout=W.Layout(width="320px"),
        )
        self.restore_path_button = self._button(
            "Restore path…", self.ask_restore_path, icon="history"
        )
        self.restore_tree_button = self._button(
            "Restore whole tree…", self.ask_restore_tree, icon="history", style="warning"
        )
        self.restore_row = w(
            W.HBox,
            children=[self.restore_path, self.restore_path_button, self.restore_tree_button],
            layout=W.Layout(flex_flow="row wrap", display="none"),
        )
        self.history_box = w(
            W.VBox,
            children=[
                w(
                    W.HTML,
                    value="<b>History</b> (newest first; select a commit to browse it read-only)",
                ),
                self.history_select,
                self.more_history_button,
                self.commit_info,
                self.restore_row,
                self.diff_view,
            ],
        )

    def _layout_children(self) -> list[W.Widget]:
        w = self._w
        return [
            self.css,
            w(
                W.HBox,
                children=[self.title, self.mount_info, self.reload_mount_button],
                layout=W.Layout(align_items="center", flex_flow="row wrap"),
            ),
            w(
                W.HBox,
                children=[self.up_button, self.refresh_button, self.breadcrumb],
                layout=W.Layout(align_items="center", flex_flow="row wrap"),
            ),
            w(
                W.HBox,
                children=[self.view_info, self.back_to_head_button],
                layout=W.Layout(align_items="center"),
            ),
            w(
                W.HBox,
                children=[
                    self.upload,
                    self.overwrite,
                    self.new_folder_button,
                    self.move_button,
                    self.download_button,
                    self.delete_button,
                    self.filter,
                ],
                layout=W.Layout(flex_flow="row wrap", align_items="center"),
            ),
            w(W.HBox, children=[self.progress, self.status], layout=W.Layout(align_items="center")),
            self.message,
            self.form,
            self.listing,
            self.empty_info,
            w(
                W.HBox,
                children=[self.prev_button, self.page_info, self.next_button],
                layout=W.Layout(align_items="center"),
            ),
            self.history_box,
        ]

    def close(self) -> None:
        """Close the widget and every widget it made (their comms are released)."""
        for row in self._rows:
            for x in row.widgets:
                x.close()
        for x in [*self._crumbs, *self._crumb_seps]:
            x.close()
        for x in self._own:
            x.close()
        super().close()

    # -- messages ------------------------------------------------------------------------------------
    def _clear_message(self) -> None:
        self.message.value = ""

    def _show_error(self, text: str) -> None:
        self._had_error = True
        self.message.value = f'<span class="jv-error">⚠ {html.escape(text)}</span>'

    def _show_info(self, text: str) -> None:
        info = f'<span class="jv-info">✔ {html.escape(text)}</span>'
        # an error from a step of the same action (say, the refresh after a commit) stays
        self.message.value = f"{self.message.value}<br>{info}" if self._had_error else info

    def _committed(self, info: CommitInfo | None, fallback: str) -> None:
        if info is None:
            self._show_info(f"{fallback}: nothing changed, no commit")
        else:
            self._show_info(f"commit #{info.seq}: {info.message}")

    def _newest_commit(self) -> CommitInfo | None:
        commits = self.volume.history(limit=1)
        return commits[0] if commits else None

    @property
    def read_only(self) -> bool:
        """True while an old commit is browsed: every write action is off."""
        return self.at is not None

    # -- refresh and navigation -----------------------------------------------------------------------
    def _mount(self) -> Mount | None:
        from .mount import mounts

        mine = self.volume.info().id
        for m in mounts():
            with contextlib.suppress(VolumeError):
                if m.volume.store.url == self.volume.store.url and m.volume.info().id == mine:
                    return m
        return None

    @_handler
    def refresh(self) -> None:
        """Read the newest commit, then re-list the folder, the history and the mount state.

        A volume mounted in this kernel is not reloaded (that would rewrite the mounted
        folder): the widget shows how far the mount is behind and offers "Reload mount".
        """
        self.status.value = "refreshing…"
        mount = self._mount()
        if mount is None:
            self.volume.reload()
        else:
            # a fresh handle sees the newest commit without touching the mounted folder
            self.volume = Volume.from_name(self.volume.name, store=self.volume.store)
        newest = self._newest_commit()
        self.head_seq = newest.seq if newest else None
        self._show_mount(mount)
        self._load_history()
        self._load_listing()
        if self.at is not None:
            self._show_diff()

    def _show_mount(self, mount: Mount | None) -> None:
        if mount is None:
            self.mount_info.value = ""
            self.reload_mount_button.layout.display = "none"
            return
        behind = 0
        if self.head_seq is not None and self.head_seq > mount.base_seq:
            behind = mount.status().behind  # a folder scan: only when it may be behind
        where = html.escape(str(mount.path))
        if behind:
            s = "s" if behind != 1 else ""
            self.mount_info.value = (
                f'<span class="jv-warn">mounted at {where}: the volume is {behind} commit{s} ahead '
                f"of the mounted folder (reload it to see them)</span>"
            )
            self.reload_mount_button.layout.display = ""
        else:
            self.mount_info.value = f"mounted at {where} (up to date)"
            self.reload_mount_button.layout.display = "none"

    @_handler
    def reload_mount(self) -> None:
        """Reload the mount of this volume in this kernel, so its folder shows the head."""
        mount = self._mount()
        if mount is None:
            raise NotFoundError(f"volume {self.volume.name!r} is not mounted in this kernel")
        self.status.value = "reloading the mount…"
        mount.reload()
        self.refresh()
        self._show_info(f"reloaded {mount.path} to commit #{mount.base_seq}")

    def _load_listing(self) -> None:
        try:
            self.entries = self.volume.listdir(self.path or "/", at=self.at)
        except NotFoundError:
            if not self.path:
                raise
            missing, self.path = self.path, ""
            self.entries = self.volume.listdir("/", at=self.at)
            when = f"at commit #{self.at}" if self.at is not None else "any more"
            self._show_error(f"folder {missing} does not exist {when}: showing the root")
        listed = {e.path for e in self.entries}
        self.selected &= listed
        self._sort_and_filter()
        self._render()

    def _sort_and_filter(self) -> None:
        text = self.filter.value.strip().lower()
        entries = (
            [e for e in self.entries if text in e.path.rsplit("/", 1)[-1].lower()]
            if text
            else list(self.entries)
        )
        key = self.sort_key
        if key == "name":
            keyf: Callable[[FileEntry], Any] = lambda e: e.path.rsplit("/", 1)[-1].lower()  # noqa: E731
        elif key == "type":
            keyf = lambda e: (_TYPE_NAMES[e.type], e.path.lower())  # noqa: E731
        elif key == "size":
            keyf = lambda e: (e.size, e.path.lower())  # noqa: E731
        else:
            keyf = lambda e: (e.mtime, e.path.lower())  # noqa: E731
        entries.sort(key=keyf, reverse=self.sort_reverse)
        # folders first, whatever the order within each group
        entries.sort(key=lambda e: e.type != FileEntryType.DIRECTORY)
        self.shown = entries
        pages = max((len(entries) - 1) // self.page_size + 1, 1)
        self.page = min(self.page, pages - 1)

    def _render(self) -> None:
        self._rendering = True
        try:
            self._render_breadcrumb()
            start = self.page * self.page_size
            page = self.shown[start : start + self.page_size]
            while len(self._rows) < len(page):
                self._rows.append(_Row(self))
            for row, e in zip(self._rows, page, strict=False):
                row.entry = e
                name = e.path.rsplit("/", 1)[-1]
                is_dir = e.type == FileEntryType.DIRECTORY
                row.name.description = name + "/" if is_dir else name
                row.name.icon = (
                    "folder" if is_dir else "link" if e.type == FileEntryType.SYMLINK else "file-o"
                )
                row.name.tooltip = f"open {name}" if is_dir else f"select {name}"
                row.check.value = e.path in self.selected
                row.kind.value = _TYPE_NAMES[e.type]
                row.size.value = human_size(e.size)
                row.mtime.value = _local_time(e.mtime) if e.mtime else ""
            for row in self._rows[len(page) :]:
                row.entry = None
            arrow = " ▼" if self.sort_reverse else " ▲"
            labels = {"name": "Name", "type": "Type", "size": "Size", "mtime": "Modified"}
            for key, b in self.sort_buttons.items():
                b.description = labels[key] + (arrow if key == self.sort_key else "")
            self.select_all.value = bool(page) and all(e.path in self.selected for e in page)
            header = [self.select_all, *self.sort_buttons.values()]
            self.listing.children = header + [
                x for row in self._rows[: len(page)] for x in row.widgets
            ]
            total = len(self.shown)
            if total == 0:
                self.empty_info.value = (
                    "<i>no entries match the filter</i>"
                    if self.entries
                    else "<i>this folder is empty</i>"
                )
                self.page_info.value = ""
            else:
                self.empty_info.value = ""
                filtered = (
                    f" (filtered from {len(self.entries):,})" if total != len(self.entries) else ""
                )
                self.page_info.value = f"{start + 1:,}–{start + len(page):,} of {total:,}{filtered}"
            self.prev_button.disabled = self.page == 0
            self.next_button.disabled = start + self.page_size >= total
            self.up_button.disabled = not self.path
            ro = self.read_only
            for b in (self.new_folder_button, self.move_button, self.delete_button):
                b.disabled = ro
            self.upload.disabled = ro
            self.restore_path_button.disabled = self.at is None
            self.restore_tree_button.disabled = self.at is None
            self.restore_row.layout.display = "none" if self.at is None else ""
            if self.at is None:
                self.view_info.value = (
                    f"at the head, commit #{self.head_seq}" if self.head_seq is not None else ""
                )
                self.back_to_head_button.layout.display = "none"
            else:
                self.view_info.value = (
                    f'<span class="jv-warn">browsing commit #{self.at} (read only)</span>'
                )
                self.back_to_head_button.layout.display = ""
        finally:
            self._rendering = False

    def _render_breadcrumb(self) -> None:
        parts = self.path.split("/") if self.path else []
        targets = [("", self.volume.name)] + [
            ("/".join(parts[: i + 1]), p) for i, p in enumerate(parts)
        ]
        while len(self._crumbs) < len(targets):
            b = W.Button(layout=W.Layout(width="auto"))
            b.on_click(functools.partial(self._on_crumb, len(self._crumbs)))
            self._crumbs.append(b)
            self._crumb_seps.append(W.HTML(value="&nbsp;/&nbsp;"))
        kids: list[W.Widget] = []
        self._crumb_targets = [t for t, _ in targets]
        for i, (target, label) in enumerate(targets):
            b = self._crumbs[i]
            b.description = label
            b.tooltip = f"/{target}"
            b.button_style = "info" if i == len(targets) - 1 else ""
            if i:
                kids.append(self._crumb_seps[i])
            kids.append(b)
        self.breadcrumb.children = kids

    @_handler
    def _on_crumb(self, index: int, _b: Any) -> None:
        self.open_folder(self._crumb_targets[index])

    @_handler
    def open_folder(self, path: str) -> None:
        """Show folder ``path`` (relative to the volume root)."""
        p = normalize_path(path)
        with self._view_change():
            self.path = p
            self.page = 0
            self.selected.clear()
            self.download_link.value = ""
            self._load_listing()

    @contextlib.contextmanager
    def _view_change(self) -> Iterator[None]:
        """On failure, go back to what was shown before, so the widget stays consistent."""
        before = (self.path, self.at, self.page, set(self.selected), list(self.entries))
        try:
            yield
        except BaseException:
            self.path, self.at, self.page, self.selected, self.entries = before
            self._rendering = True
            try:
                self.history_select.value = self.at
            finally:
                self._rendering = False
            self._sort_and_filter()
            self._render()
            raise

    def go_up(self) -> None:
        """Show the parent folder."""
        self.open_folder(_parent(self.path))

    @_handler
    def sort_by(self, key: str) -> None:
        """Sort by ``name``, ``type``, ``size`` or ``mtime``; again on the same key reverses."""
        if key not in ("name", "type", "size", "mtime"):
            raise InvalidError(f"cannot sort by {key!r}")
        if self.sort_key == key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self._sort_and_filter()
        self._render()

    @_handler
    def _on_filter(self, _change: Any) -> None:
        self.page = 0
        self._sort_and_filter()
        self._render()

    @_handler
    def next_page(self) -> None:
        """Show the next page of a large folder."""
        if (self.page + 1) * self.page_size < len(self.shown):
            self.page += 1
            self._render()

    @_handler
    def prev_page(self) -> None:
        """Show the previous page of a large folder."""
        if self.page > 0:
            self.page -= 1
            self._render()

    # -- selection ----------------------------------------------------------------------------------------
    @_handler
    def _on_row_check(self, row: _Row, change: Any) -> None:
        if self._rendering or row.entry is None:
            return
        if change["new"]:
            self.selected.add(row.entry.path)
        else:
            self.selected.discard(row.entry.path)
        self._after_selection()

    @_handler
    def _on_row_click(self, row: _Row, _b: Any) -> None:
        e = row.entry
        if e is None:
            return
        if e.type == FileEntryType.DIRECTORY:
            self.open_folder(e.path)
        else:
            self.select([e.path])

    @_handler
    def _on_select_all(self, change: Any) -> None:
        if self._rendering:
            return
        start = self.page * self.page_size
        for e in self.shown[start : start + self.page_size]:
            if change["new"]:
                self.selected.add(e.path)
            else:
                self.selected.discard(e.path)
        self._render()
        self._after_selection()

    def select(self, paths: Sequence[str]) -> None:
        """Select exactly ``paths`` (volume paths of entries in the current folder)."""
        self.selected = {normalize_path(p) for p in paths}
        self._render()
        self._after_selection()

    def _after_selection(self) -> None:
        if len(self.selected) == 1:
            (p,) = self.selected
            if self.at is not None:
                self.restore_path.value = p
        self.download_link.value = ""

    def _selected_entries(self) -> list[FileEntry]:
        return [e for e in self.entries if e.path in self.selected]

    def _one_selected(self, what: str) -> FileEntry:
        chosen = self._selected_entries()
        if len(chosen) != 1:
            raise InvalidError(
                f"select exactly one file or folder to {what} (tick its box, or click a file's name)"
            )
        return chosen[0]

    # -- forms ---------------------------------------------------------------------------------------------
    def _show_form(self, *children: W.Widget) -> None:
        self.form.children = [*children, self.cancel_button]

    def hide_form(self) -> None:
        """Close the open form (new folder, move, download or confirmation)."""
        self._pending = None
        self.form.children = []
        self.download_link.value = ""

    def _ask(self, question: str, action: str, run: Callable[[], None]) -> None:
        """Show a confirmation step: ``run`` happens only when Confirm is clicked."""
        self._pending = run
        self.confirm_text.value = question
        self.confirm_button.description = action
        self._show_form(self.confirm_text, self.confirm_button)

    @_handler
    def confirm(self) -> None:
        """Carry out the action waiting for confirmation (delete or restore)."""
        run, self._pending = self._pending, None
        self.form.children = []
        if run is None:
            raise InvalidError("nothing is waiting for confirmation")
        run()

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise InvalidError(
                f"cannot {what} while browsing old commit #{self.at}: click 'Back to head' first"
            )

    # -- upload ---------------------------------------------------------------------------------------------
    @_handler
    def _on_upload(self, change: Any) -> None:
        files = list(change["new"] or ())
        if not files:
            return
        try:
            self.upload_files(files)
        finally:
            with contextlib.suppress(Exception):
                self.upload.value = ()  # releases the bytes held by the widget

    @_handler
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
                    target = _join(self.path, name)
                    if "/" in name or name in ("", ".", ".."):
                        raise InvalidError(f"cannot upload a file named {name!r}")
                    content = f["content"]
                    mv = content if isinstance(content, memoryview) else memoryview(bytes(content))
                    batch.put_file(io.BufferedReader(_ProgressReader(mv, report), 1 << 20), target)
        finally:
            self.progress.layout.display = "none"
        self.refresh()
        self._committed(batch.commit_info, "upload")

    # -- new folder, move, delete ------------------------------------------------------------------------
    def _resolve_input(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise InvalidError("type a name first")
        return (
            normalize_path(text) if text.startswith("/") else normalize_path(_join(self.path, text))
        )

    @_handler
    def show_new_folder(self) -> None:
        """Open the new-folder form."""
        self._writable("create a folder")
        self.folder_name.value = ""
        self._show_form(self.folder_name, self.create_folder_button)

    @_handler
    def create_folder(self) -> None:
        """Create the folder named in the form, in the current folder, as one commit."""
        self._writable("create a folder")
        target = self._resolve_input(self.folder_name.value)
        info = self.volume.mkdir(target)
        self.hide_form()
        self.refresh()
        self._committed(info, "new folder")

    @_handler
    def show_move(self) -> None:
        """Open the rename/move form for the one selected entry."""
        self._writable("move")
        e = self._one_selected("rename or move")
        self.move_target.value = e.path.rsplit("/", 1)[-1]
        self.move_source.value = f"move {e.path} to"
        self._show_form(self.move_source, self.move_target, self.do_move_button)

    @_handler
    def do_move(self) -> None:
        """Move the selected entry to the name or path in the form, as one commit.

        A bare name renames within the current folder; ``/a/b`` is a path from the
        volume root; an existing folder as target moves the entry into it."""
        self._writable("move")
        e = self._one_selected("rename or move")
        target = self._resolve_input(self.move_target.value)
        info = self.volume.move(e.path, target, overwrite=self.overwrite.value)
        self.hide_form()
        self.selected.clear()
        self.refresh()
        self._committed(info, "move")

    @_handler
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
            f"Delete <b>{html.escape(listed)}</b>{extra}? One commit; older commits keep them.",
            "Delete",
            functools.partial(self._delete, paths),
        )

    def _delete(self, paths: list[str]) -> None:
        self._writable("delete")
        self.status.value = f"deleting {len(paths)} path{'s' if len(paths) != 1 else ''}…"
        info = self.volume.remove_paths(paths)
        self.selected.clear()
        self.refresh()
        self._committed(info, "delete")

    # -- download ----------------------------------------------------------------------------------------
    @_handler
    def show_download(self) -> None:
        """Open the download form for the one selected file: a local path to save to,
        and a browser download link when the file is small enough."""
        e = self._one_selected("download")
        if e.type != FileEntryType.FILE:
            raise InvalidError(f"{e.path} is a {_TYPE_NAMES[e.type]}: only files can be downloaded")
        name = e.path.rsplit("/", 1)[-1]
        self.download_path.value = name
        self.download_link.value = ""
        if e.size <= DOWNLOAD_LINK_MAX:
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
        self._show_form(self.download_path, self.save_button, self.download_link)

    @_handler
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

    # -- history -------------------------------------------------------------------------------------------
    def _load_history(self) -> None:
        self.commits = self.volume.history(limit=self.history_size)
        options = [(self._commit_label(c), c.seq) for c in self.commits]
        self._rendering = True
        try:
            keep = (
                self.at
                if self.at is not None and any(c.seq == self.at for c in self.commits)
                else None
            )
            self.history_select.options = options
            self.history_select.value = keep
        finally:
            self._rendering = False
        oldest = self.commits[-1].seq if self.commits else 0
        self.more_history_button.disabled = oldest <= 0

    @staticmethod
    def _commit_label(c: CommitInfo) -> str:
        counts = f"+{c.added} ~{c.modified} -{c.deleted}"
        return f"#{c.seq:<4} {_local_time(c.time)}  {c.author[:14]:<14} {counts:<14} {c.message}"

    @_handler
    def more_history(self) -> None:
        """List more (older) commits in the history pane."""
        self.history_size += 30
        self._load_history()

    @_handler
    def _on_history_select(self, change: Any) -> None:
        if self._rendering:
            return
        seq = change["new"]
        if seq is None:
            self.browse_head()
        else:
            self.browse_commit(seq)

    @_handler
    def browse_commit(self, seq: int) -> None:
        """Browse the tree as it was at commit ``seq`` (read only) and show what changed
        from it to the head."""
        info = next((c for c in self.commits if c.seq == seq), None)
        self.hide_form()
        with self._view_change():
            self.at = int(seq)
            self.selected.clear()
            self.restore_path.value = ""
            self._load_listing()
            self._show_diff()
        self.commit_info.value = ""
        if info is not None:
            self.commit_info.value = (
                f"<b>commit #{info.seq}</b> {html.escape(_local_time(info.time))} by "
                f"{html.escape(info.author)}@{html.escape(info.host)} ({html.escape(info.kind)}): "
                f"{html.escape(info.message)} — added {info.added}, modified {info.modified}, "
                f"deleted {info.deleted}, {human_size(info.bytes_new)} new"
            )

    def _show_diff(self) -> None:
        assert self.at is not None
        self.diff_entries = self.volume.diff(self.at, self.head_seq)
        if not self.diff_entries:
            self.diff_view.value = (
                f"<i>no differences between commit #{self.at} and the head #{self.head_seq}</i>"
            )
            return
        rows = []
        for d in self.diff_entries[:DIFF_ROWS_MAX]:
            rows.append(
                f"<tr><td>{html.escape(d.change)}</td><td>{html.escape(d.path)}</td>"
                f"<td>{_TYPE_NAMES[d.type]}</td><td>{human_size(d.old_size)}</td><td>{human_size(d.new_size)}</td></tr>"
            )
        more = len(self.diff_entries) - DIFF_ROWS_MAX
        tail = f"<p><i>and {more:,} more</i></p>" if more > 0 else ""
        self.diff_view.value = (
            f"<b>From commit #{self.at} to the head #{self.head_seq}</b> ({len(self.diff_entries):,} paths)"
            '<table class="jv-diff"><tr><th>change</th><th>path</th><th>type</th><th>then</th><th>now</th></tr>'
            + "".join(rows)
            + "</table>"
            + tail
        )

    @_handler
    def browse_head(self) -> None:
        """Leave the old commit and show the newest one (writable again)."""
        self.at = None
        self.commit_info.value = ""
        self.diff_view.value = ""
        self.restore_path.value = ""
        self.diff_entries = []
        self.hide_form()
        self._rendering = True
        try:
            self.history_select.value = None
        finally:
            self._rendering = False
        self.refresh()

    @_handler
    def ask_restore_tree(self) -> None:
        """Ask for confirmation to restore the whole tree to the browsed commit."""
        if self.at is None:
            raise InvalidError("select a commit in the history first")
        seq = self.at
        self._ask(
            f"Restore the <b>whole volume</b> to commit #{seq}? This is a new commit; nothing in between is lost.",
            "Restore tree",
            functools.partial(self._restore, seq, None),
        )

    @_handler
    def ask_restore_path(self) -> None:
        """Ask for confirmation to restore one path (from the form) to the browsed commit."""
        if self.at is None:
            raise InvalidError("select a commit in the history first")
        text = self.restore_path.value.strip()
        if not text:
            raise InvalidError(
                "select the file or folder to restore in the listing (or type its path)"
            )
        p = normalize_path(text)
        if not p:
            raise InvalidError("to restore everything, use 'Restore whole tree…'")
        seq = self.at
        self._ask(
            f"Restore <b>{html.escape(p)}</b> as it was at commit #{seq}? A new commit; nothing in between is lost.",
            "Restore",
            functools.partial(self._restore, seq, p),
        )

    def _restore(self, seq: int, path: str | None) -> None:
        self.status.value = f"restoring {path or 'the whole tree'} from commit #{seq}…"
        info = self.volume.restore(seq, path)
        self.browse_head()
        self._committed(info, "restore")
