"""The :class:`VolumeBrowser` widget: its parts put together, and what belongs to no
single part (the title, the mount state, refresh, the layout).

Layer: part of the widget front end; imports ``volume``, ``mount``, ``errors`` and
ipywidgets.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as W

from ..errors import InvalidError, NotFoundError, VolumeError
from ..volume import CommitInfo, DiffEntry, FileEntry, Volume
from .actions import ActionsPart
from .base import CSS, handler
from .history import HistoryPart
from .listing import ListingPart, _Row

if TYPE_CHECKING:
    from ..mount import Mount
    from ..store import Store

__all__ = ["VolumeBrowser"]


class VolumeBrowser(ListingPart, ActionsPart, HistoryPart, W.VBox):
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
    def _build(self) -> None:
        w = self._w
        self.css = w(W.HTML, value=CSS)
        self.title = w(W.HTML, value=f"<b>Volume {html.escape(self.volume.name)}</b>")
        self.mount_info = w(W.HTML, value="")
        self.reload_mount_button = self._button(
            "Reload mount",
            self.reload_mount,
            icon="download",
            tooltip="bring the mounted folder to the newest commit",
        )
        self.reload_mount_button.layout.display = "none"
        self._build_common()
        self._build_listing()
        self._build_actions()
        self._build_history()

    def _layout_children(self) -> list[W.Widget]:
        w = self._w
        return [
            self.css,
            w(
                W.HBox,
                children=[self.title, self.mount_info, self._near(self.reload_mount_button)],
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
            # the uploader on a line of its own: its progress rows need the width
            w(W.VBox, children=[self._near(self.upload), self.web_upload, self.web_upload_report]),
            w(
                W.HBox,
                children=[
                    self.overwrite,
                    self._near(self.new_folder_button),
                    self._near(self.move_button),
                    self._near(self.download_button),
                    self._near(self.delete_button),
                    self.filter,
                ],
                layout=W.Layout(flex_flow="row wrap", align_items="center"),
            ),
            w(W.HBox, children=[self.progress, self.status], layout=W.Layout(align_items="center")),
            self.message,
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

    def _show_mode(self) -> None:
        self._show_write_state()
        self._show_commit_state()

    def _newest_commit(self) -> CommitInfo | None:
        commits = self.volume.history(limit=1)
        return commits[0] if commits else None

    # -- refresh and navigation -----------------------------------------------------------------------
    def _mount(self) -> Mount | None:
        from ..mount import mounts

        mine = self.volume.info().id
        for m in mounts():
            with contextlib.suppress(VolumeError):
                if m.volume.store.url == self.volume.store.url and m.volume.info().id == mine:
                    return m
        return None

    @handler
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

    @handler(near="reload_mount_button")
    def reload_mount(self) -> None:
        """Reload the mount of this volume in this kernel, so its folder shows the head."""
        mount = self._mount()
        if mount is None:
            raise NotFoundError(f"volume {self.volume.name!r} is not mounted in this kernel")
        self.status.value = "reloading the mount…"
        mount.reload()
        self.refresh()
        self._show_info(f"reloaded {mount.path} to commit #{mount.base_seq}")
