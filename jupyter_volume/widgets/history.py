"""The history part of the :class:`~jupyter_volume.widgets.VolumeBrowser`: the commits,
newest first; browsing the tree as it was at one of them (read only) with its diff
against the head; and restoring one path or the whole tree (after confirmation), as a
new commit.

Layer: part of the widget front end; imports ``volume``, ``names``, ``errors`` and
ipywidgets.
"""

from __future__ import annotations

import functools
import html
from typing import Any

import ipywidgets as W

from ..errors import InvalidError
from ..formatting import human_size, local_time
from ..names import normalize_path
from ..volume import CommitInfo
from .base import DIFF_ROWS_MAX, TYPE_NAMES, BrowserPart, handler

__all__ = ["HistoryPart"]


class HistoryPart(BrowserPart):
    """The history pane and what it drives: the browsed commit, its diff, restores."""

    history_size: int

    def _build_history(self) -> None:
        """Make the history pane, and the line saying which commit is shown."""
        w = self._w
        self.view_info = w(W.HTML, value="")
        self.back_to_head_button = self._button(
            "Back to head",
            self.browse_head,
            icon="undo",
            tooltip="leave the old commit and show the newest one",
        )

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
            children=[
                self.restore_path,
                self._near(self.restore_path_button),
                self._near(self.restore_tree_button),
            ],
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

    def _show_commit_state(self) -> None:
        """Say which commit is shown, and offer the restores only for an old one."""
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
        return f"#{c.seq:<4} {local_time(c.time)}  {c.author[:14]:<14} {counts:<14} {c.message}"

    @handler
    def more_history(self) -> None:
        """List more (older) commits in the history pane."""
        self.history_size += 30
        self._load_history()

    @handler
    def _on_history_select(self, change: Any) -> None:
        if self._rendering:
            return
        seq = change["new"]
        if seq is None:
            self.browse_head()
        else:
            self.browse_commit(seq)

    @handler
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
                f"<b>commit #{info.seq}</b> {html.escape(local_time(info.time))} by "
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
                f"<td>{TYPE_NAMES[d.type]}</td><td>{human_size(d.old_size)}</td><td>{human_size(d.new_size)}</td></tr>"
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

    @handler
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

    @handler(near="restore_tree_button")
    def ask_restore_tree(self) -> None:
        """Ask for confirmation to restore the whole tree to the browsed commit."""
        self._ask_restore(None)

    @handler(near="restore_path_button")
    def ask_restore_path(self) -> None:
        """Ask for confirmation to restore one path (from the form) to the browsed commit."""
        self._browsed_commit()
        text = self.restore_path.value.strip()
        if not text:
            raise InvalidError(
                "select the file or folder to restore in the listing (or type its path)"
            )
        p = normalize_path(text)
        if not p:
            raise InvalidError("to restore everything, use 'Restore whole tree…'")
        self._ask_restore(p)

    def _browsed_commit(self) -> int:
        if self.at is None:
            raise InvalidError("select a commit in the history first")
        return self.at

    def _ask_restore(self, path: str | None) -> None:
        """Ask to restore ``path`` (None: the whole tree) as it was at the browsed commit."""
        seq = self._browsed_commit()
        if path is None:
            what, action = "the <b>whole volume</b> to commit", "Restore tree"
            tail = "This is a new commit"
        else:
            what, action = f"<b>{html.escape(path)}</b> as it was at commit", "Restore"
            tail = "A new commit"
        self._ask(
            self.restore_tree_button if path is None else self.restore_path_button,
            f"Restore {what} #{seq}? {tail}; nothing in between is lost.",
            action,
            functools.partial(self._restore, seq, path),
        )

    def _restore(self, seq: int, path: str | None) -> None:
        self.status.value = f"restoring {path or 'the whole tree'} from commit #{seq}…"
        info = self.volume.restore(seq, path)
        self._reset_after_write()
        self.browse_head()
        self._committed(info, "restore")
