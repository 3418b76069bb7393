"""The listing part of the :class:`~jupyter_volume.widgets.VolumeBrowser`: the breadcrumb,
the sortable, filterable, paginated rows of the folder shown, and the selection.

Order: the JupyterLab sidebar's (the server sorts its listing with ``sort_entries`` in
``jupyter_volume.server.engine``): folders first in either direction; names in natural
order, case ignored (:func:`name_order`), reversed when descending; by size or time in
the chosen direction with ties by name ascending. The whole folder is sorted, then paged.

Large folders: the listing of the current folder is read once per refresh or
navigation (a folder of 100,000 entries takes well under a second to list) and only one
page of rows exists as widgets; the row widgets are reused from page to page.

Layer: part of the widget front end; imports ``volume``, ``names``, ``errors`` and
ipywidgets.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ipywidgets as W

from ..errors import InvalidError, NotFoundError
from ..formatting import human_size, local_time
from ..names import normalize_path
from ..volume import FileEntry, FileEntryType
from .base import TYPE_NAMES, BrowserPart, handler, parent

__all__ = ["ListingPart", "name_order"]

_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=1 << 17)
def name_order(name: str) -> str:
    """The sort key of a name, in the JupyterLab sidebar's order.

    The sidebar's listing is sorted by the server (``natural_key`` in
    ``jupyter_volume.server.engine``): case does not count (``a.txt`` = ``A.txt``, by
    ``casefold``) and runs of digits compare as numbers (``file2`` before ``file10``),
    other characters by code point. This is the same order as one string (compared
    as strings, fast for 100,000 names; the widget does not import the server's
    modules): each text part ends in ``\x00``, so a shorter part sorts first as in a
    list comparison, and a number is its digit count (one character) then its digits
    without leading zeros, so longer numbers are larger.
    """
    key: list[str] = []
    for i, part in enumerate(_DIGITS.split(name.casefold())):
        if i % 2:
            digits = str(int(part))
            key.append(chr(0x100 + len(digits)) + digits)
        else:
            key.append(part + "\x00")
    return "".join(key)


def _name(e: FileEntry) -> str:
    return e.path.rsplit("/", 1)[-1]


class _Row:
    """The widgets of one listing row; reused for whatever entry that row shows."""

    def __init__(self, browser: ListingPart) -> None:
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


class ListingPart(BrowserPart):
    """The folder shown: navigation, sorting, filtering, pages and the selection."""

    page_size: int
    page: int
    sort_key: str
    sort_reverse: bool
    shown: list[FileEntry]
    _rows: list[_Row]
    _crumbs: list[W.Button]
    _crumb_seps: list[W.HTML]
    _crumb_targets: list[str]

    def _build_listing(self) -> None:
        """Make the navigation and listing widgets."""
        w = self._w
        # navigation
        self.up_button = self._button("Up", self.go_up, icon="arrow-up", tooltip="parent folder")
        self.refresh_button = self._button(
            "Refresh", self.refresh, icon="refresh", tooltip="show the newest commit"
        )
        self.breadcrumb = w(W.HBox, layout=W.Layout(flex_flow="row wrap", align_items="center"))
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
        # The sidebar's rules (the server's sort_entries): folders first whatever the
        # direction; by name: the natural order, reversed when descending; by size or
        # time: that value in the chosen direction, ties by name ascending either way
        # (as JupyterLab's file browser); the exact path breaks the last ties.
        key, desc = self.sort_key, self.sort_reverse
        sign = -1 if desc else 1
        if key == "name":
            keyf: Callable[[FileEntry], Any] = lambda e: (name_order(_name(e)), e.path)  # noqa: E731
        elif key == "type":  # the widget's own column: links after files
            keyf = lambda e: (TYPE_NAMES[e.type], name_order(_name(e)), e.path)  # noqa: E731
        elif key == "size":
            keyf = lambda e: (sign * e.size, name_order(_name(e)), e.path)  # noqa: E731
        else:
            keyf = lambda e: (sign * e.mtime, name_order(_name(e)), e.path)  # noqa: E731
        flip = desc and key in ("name", "type")
        folders = [e for e in entries if e.type == FileEntryType.DIRECTORY]
        files = [e for e in entries if e.type != FileEntryType.DIRECTORY]
        entries = sorted(folders, key=keyf, reverse=flip) + sorted(files, key=keyf, reverse=flip)
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
                row.kind.value = TYPE_NAMES[e.type]
                row.size.value = human_size(e.size)
                row.mtime.value = local_time(e.mtime, seconds=False) if e.mtime else ""
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
            self._show_mode()
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

    @handler
    def _on_crumb(self, index: int, _b: Any) -> None:
        self.open_folder(self._crumb_targets[index])

    @handler
    def open_folder(self, path: str) -> None:
        """Show folder ``path`` (relative to the volume root)."""
        p = normalize_path(path)
        with self._view_change():
            self.path = p
            self.page = 0
            self.selected.clear()
            self._load_listing()
        # a form opened for an entry of the folder left would act on the wrong thing
        self.hide_form()

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
        self.open_folder(parent(self.path))

    @handler
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

    @handler
    def _on_filter(self, _change: Any) -> None:
        self.page = 0
        self._sort_and_filter()
        self._render()

    @handler
    def next_page(self) -> None:
        """Show the next page of a large folder."""
        if (self.page + 1) * self.page_size < len(self.shown):
            self.page += 1
            self._render()

    @handler
    def prev_page(self) -> None:
        """Show the previous page of a large folder."""
        if self.page > 0:
            self.page -= 1
            self._render()

    # -- selection ----------------------------------------------------------------------------------------
    @handler
    def _on_row_check(self, row: _Row, change: Any) -> None:
        if self._rendering or row.entry is None:
            return
        if change["new"]:
            self.selected.add(row.entry.path)
        else:
            self.selected.discard(row.entry.path)
        self._after_selection()

    @handler
    def _on_row_click(self, row: _Row, _b: Any) -> None:
        e = row.entry
        if e is None:
            return
        if e.type == FileEntryType.DIRECTORY:
            self.open_folder(e.path)
        else:
            self.select([e.path])

    @handler
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
        # a form about the selected entries (move, download, delete, restore a path)
        # would act on the old selection: close it
        about_selection = (
            self.move_button,
            self.download_button,
            self.delete_button,
            self.restore_path_button,
        )
        if any(self.form is self.form_beside(b) for b in about_selection):
            self.hide_form()
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
