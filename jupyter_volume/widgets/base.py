"""What every part of the :class:`~jupyter_volume.widgets.VolumeBrowser` shares: the
state the parts read and write, the widget factory, the message line, the form area and
the :func:`handler` decorator that keeps errors inside the widget.

Layer: part of the widget front end; imports ``volume``, ``errors`` and ipywidgets.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ..errors import InvalidError, VolumeError
from ..volume import CommitInfo, DiffEntry, FileEntry, FileEntryType, Volume

__all__ = ["DIFF_ROWS_MAX", "DOWNLOAD_LINK_MAX", "BrowserPart", "handler"]

log = logging.getLogger("jupyter_volume.widgets")

#: Largest file offered as a browser download link: its bytes travel base64-encoded
#: through the widget's state, so bigger files go to a local path instead.
DOWNLOAD_LINK_MAX = 10 << 20
#: Rows of the diff shown for one commit (the rest is counted, not listed).
DIFF_ROWS_MAX = 200


def parent(path: str) -> str:
    """The folder holding ``path`` ("" for the root)."""
    return path.rsplit("/", 1)[0] if "/" in path else ""


def join(folder: str, name: str) -> str:
    """``name`` inside ``folder`` ("" is the root)."""
    return f"{folder}/{name}" if folder else name


#: How the widget names an entry's type (the listing's Type column, messages).
TYPE_NAMES = {
    FileEntryType.FILE: "file",
    FileEntryType.DIRECTORY: "folder",
    FileEntryType.SYMLINK: "link",
    FileEntryType.UNSPECIFIED: "?",
}

#: The widget's own styles (sent once, as the first child).
CSS = """
<style>
.jv-browser .jv-name button, .jv-browser button.jv-name { text-align: left; justify-content: flex-start; }
.jv-browser .jv-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.jv-browser .jv-mono select, .jv-browser .jv-mono { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.jv-browser .jv-error { color: var(--jp-error-color1, #d32f2f); }
.jv-browser .jv-info { color: var(--jp-success-color1, #388e3c); }
.jv-browser .jv-warn { color: var(--jp-warn-color1, #f57c00); }
.jv-browser a.jv-download { color: var(--jp-content-link-color, #1976d2); text-decoration: underline; }
.jv-browser table.jv-diff td, .jv-browser table.jv-diff th { padding: 1px 8px; text-align: left; }
</style>
"""


def widget_words(text: str) -> str:
    """An engine message as the browser says it: where it tells to pass ``force=True`` (an
    argument of the Python API), the widget's way is its overwrite box."""
    return text.replace("pass force=True to overwrite it", "tick overwrite to replace it")


def handler(fn: Callable[..., Any] | None = None, *, near: str | None = None) -> Callable[..., Any]:
    """Wrap a widget handler: errors become a message in the widget, never a traceback.

    ``near`` names the attribute holding the button (or widget) the action belongs to:
    its confirmation or error shows beside that button. Without it, an action started
    by the user shows its messages on the widget's message line (navigation, refresh),
    and one called from another action shows them where that action does.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(self: BrowserPart, *args: Any, **kwargs: Any) -> Any:
            with self._action(near):
                try:
                    return fn(self, *args, **kwargs)
                except (VolumeError, OSError) as e:
                    self._show_error(widget_words(str(e)) or type(e).__name__)
                except Exception as e:  # a bug: still keep the widget alive, and log it
                    log.exception("VolumeBrowser: %s failed", fn.__name__)
                    self._show_error(f"unexpected error ({type(e).__name__}): {e}")
            return None

        return run

    return wrap(fn) if fn is not None else wrap


class BrowserPart:
    """The state and helpers the listing, actions and history parts share.

    Not a widget itself: :class:`~jupyter_volume.widgets.VolumeBrowser` combines the
    parts with ``ipywidgets.VBox``. Each part builds its own widgets in a ``_build_*``
    method and reads the others' state only through the attributes declared here.
    """

    volume: Volume
    #: the folder shown ("" is the root)
    path: str
    #: the commit browsed from the history pane (read only), or None for the head
    at: int | None
    #: the newest commit seen at the last refresh
    head_seq: int | None
    selected: set[str]
    entries: list[FileEntry]
    commits: list[CommitInfo]
    diff_entries: list[DiffEntry]
    _busy_depth: int
    _had_error: bool
    #: the button (or widget) whose action is running: its messages show beside it
    _origin: W.Widget | None
    #: the button that opened the confirmation waiting in the form
    _pending_near: W.Widget | None
    #: the message area beside each button made with ``_near``, by ``id`` of the button
    _results: dict[int, W.HTML]
    _rendering: bool
    _pending: Callable[[], None] | None
    _own: list[W.Widget]
    #: the form area beside each button that opens a form, by ``id`` of the button
    _slots: dict[int, W.HBox]
    #: the form area holding the open form (an unused, never shown one when none is open)
    form: W.HBox
    _no_form: W.HBox
    status: W.Label
    message: W.HTML
    cancel_button: W.Button
    confirm_text: W.HTML
    confirm_button: W.Button
    download_link: W.HTML

    history_select: W.Select
    restore_path: W.Text
    move_button: W.Button
    download_button: W.Button
    delete_button: W.Button
    restore_path_button: W.Button

    if TYPE_CHECKING:  # implemented by one part (or the browser), used by the others

        def refresh(self) -> None: ...
        def _load_listing(self) -> None: ...
        def _sort_and_filter(self) -> None: ...
        def _render(self) -> None: ...
        def _show_mode(self) -> None: ...
        def _view_change(self) -> AbstractContextManager[None]: ...
        def _selected_entries(self) -> list[FileEntry]: ...
        def _one_selected(self, what: str) -> FileEntry: ...

    # -- construction ----------------------------------------------------------------------------
    def _w(self, cls: type[W.Widget], **kw: Any) -> Any:
        w = cls(**kw)
        self._own.append(w)
        return w

    def _button(
        self,
        description: str,
        on_click: Callable[..., Any],
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
        b.on_click(lambda _b: on_click())
        return b

    def _build_common(self) -> None:
        """The status line, the message line and the form area every part uses."""
        w = self._w
        self.status = w(W.Label, value="")
        # What navigation and refresh say; an action's confirmation or error shows
        # beside its button instead (see _near and handler's ``near``).
        self.message = w(W.HTML, value="")
        self._results = {}
        self._origin = None
        self._pending_near = None
        # Forms and confirmations open beside the button that asked for them (one at a
        # time), so the question is where the user is looking; see _near.
        self._slots = {}
        self._no_form = w(W.HBox)
        self.form = self._no_form
        self.cancel_button = self._button("Cancel", self.hide_form)
        self.confirm_text = w(W.HTML, value="")
        self.confirm_button = self._button("Confirm", self.confirm, style="danger")
        self.download_link = w(W.HTML, value="")

    # -- messages ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _action(self, near: str | None) -> Iterator[None]:
        """Run one step of an action: the outermost step clears the old messages and
        says where the new ones go (beside the button named ``near``, else the message
        line); inner steps (a refresh after a commit) report where their action does."""
        top = self._busy_depth == 0
        if top:
            self._clear_messages()
            self._had_error = False
            self._origin = getattr(self, near) if near else None
        self._busy_depth += 1
        try:
            yield
        finally:
            self._busy_depth -= 1
            if top:
                self.status.value = ""

    def _clear_messages(self) -> None:
        self.message.value = ""
        for result in self._results.values():
            result.value = ""

    def message_beside(self, button: W.Widget | None) -> W.HTML:
        """Where the messages of ``button``'s action show (None: the message line)."""
        if button is None:
            return self.message
        return self._results.get(id(button), self.message)

    def shown_messages(self) -> list[str]:
        """The messages shown now (HTML): the message line's, then those beside buttons."""
        return [m.value for m in (self.message, *self._results.values()) if m.value]

    def _show_error(self, text: str) -> None:
        self._had_error = True
        self.message_beside(
            self._origin
        ).value = f'<span class="jv-error">⚠ {html.escape(text)}</span>'

    def _show_info(self, text: str) -> None:
        place = self.message_beside(self._origin)
        info = f'<span class="jv-info">✔ {html.escape(text)}</span>'
        # an error from a step of the same action (say, the refresh after a commit) stays
        place.value = f"{place.value}<br>{info}" if self._had_error else info

    def _committed(self, info: CommitInfo | None, fallback: str) -> None:
        if info is None:
            self._show_info(f"{fallback}: nothing changed, no commit")
        else:
            self._show_info(f"commit #{info.seq}: {info.message}")

    @property
    def read_only(self) -> bool:
        """True while an old commit is browsed: every write action is off."""
        return self.at is not None

    # -- forms ---------------------------------------------------------------------------------------------
    def _near(self, button: W.Widget) -> W.HBox:
        """``button`` and, right after it, the area where the forms it opens appear,
        then the one where its action's confirmation or error shows."""
        slot = self._w(W.HBox, layout=W.Layout(flex_flow="row wrap", align_items="center"))
        slot.add_class("jv-form")
        self._slots[id(button)] = slot
        result = self._w(W.HTML, value="")
        result.add_class("jv-result")
        self._results[id(button)] = result
        return self._w(
            W.HBox,
            children=[button, slot, result],
            layout=W.Layout(flex_flow="row wrap", align_items="center"),
        )

    def form_beside(self, button: W.Button) -> W.HBox:
        """The form area beside ``button`` (where its form or confirmation opens)."""
        return self._slots[id(button)]

    def _show_form(self, near: W.Button, *children: W.Widget) -> None:
        """Open a form beside ``near`` (the button that asked), closing any other."""
        if self.form is not self._no_form:
            self.form.children = []
        self.form = self._slots[id(near)]
        self.form.children = [*children, self.cancel_button]

    def hide_form(self) -> None:
        """Close the open form (new folder, move, download or confirmation)."""
        self._pending = None
        self.form.children = []
        self.form = self._no_form
        self.download_link.value = ""

    def _ask(self, near: W.Button, question: str, action: str, run: Callable[[], None]) -> None:
        """Show a confirmation beside ``near``: ``run`` happens only when it is confirmed."""
        self._pending = run
        self._pending_near = near
        self.confirm_text.value = question
        self.confirm_button.description = action
        self._show_form(near, self.confirm_text, self.confirm_button)

    def _reset_after_write(self) -> None:
        """After a write: no selection and no open form refer to what was there before."""
        self.hide_form()
        self.selected.clear()

    @handler
    def confirm(self) -> None:
        """Carry out the action waiting for confirmation (delete or restore)."""
        run = self._pending
        # the outcome shows beside the button that asked (delete, restore)
        self._origin = self._pending_near
        self.hide_form()
        if run is None:
            raise InvalidError("nothing is waiting for confirmation")
        run()

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise InvalidError(
                f"cannot {what} while browsing old commit #{self.at}: click 'Back to head' first"
            )
