"""``VolumeBrowser``: an ipywidgets file and history browser for one volume.

Shown by ``%volume browse NAME`` or directly::

    from jupyter_volume.widgets import VolumeBrowser
    VolumeBrowser("my-data")

What it offers: a breadcrumb path and a sortable, filterable, paginated listing (name,
type, size, modified time) in the JupyterLab sidebar's order (folders first, names in
natural order ignoring case; sizes and times with ties by name); entering folders, going up,
refreshing; uploading files of any size into the current folder (in chunks over the
widget's comm, with progress, speed and cancel; see :mod:`.upload`), downloading a
file (to a path on the kernel's disk, or as a browser download link: the Jupyter
server's download route when the kernel runs in a server whose jupyter-volume extension
serves this volume's store, else a ``data:`` link for small files), deleting (after
confirmation), new folder, rename/move; and a history pane: commits newest first,
browsing the tree as it was at one of them (read only), its diff against the head, and
restoring one path or the whole tree (after confirmation). Every form, confirmation
and result opens beside the button that asked for it (navigation speaks on the
message line); after a write, a change of folder or of the
selection, no selection or form is left that refers to what was there before. Every
write is one commit with a message that says what it did. Errors show up in the widget
as a readable message; a handler never raises into the kernel.

The widget is one class put together from parts, each in its own module:

===========  ===================================================================================
module       what it holds
===========  ===================================================================================
``base``     :class:`~.base.BrowserPart`: the shared state, widget factory, message line,
             forms and confirmation (beside their button), and the ``handler`` decorator
             (errors stay in the widget)
``listing``  the folder shown: breadcrumb, sorting, filter, pages, row widgets, selection
``actions``  upload, new folder, rename/move, delete, download
``upload``   :class:`~.upload.ChunkedUpload`: the anywidget that sends files to the kernel
             in chunks (its JavaScript is ``upload.js``)
``history``  the commits, browsing an old commit read only, its diff, restores
``browser``  :class:`VolumeBrowser`: the parts put together, title, mount state, refresh, layout
===========  ===================================================================================

Sizes and times are formatted by :mod:`jupyter_volume.formatting`, as in the commands
and the server.

A front end: it calls the :class:`~jupyter_volume.volume.Volume` API and renders, and
keeps no storage logic.

Layer: imports ``volume``, ``mount``, ``names``, ``errors``, ``formatting``, ``config``
(to tell whether the kernel's Jupyter server serves the volume's store), ipywidgets
and anywidget; never the repository or store layers directly, the server extension's
modules, or IPython's magics.
"""

from __future__ import annotations

from ..formatting import human_size
from .base import DOWNLOAD_LINK_MAX
from .browser import VolumeBrowser

__all__ = [
    "DOWNLOAD_LINK_MAX",
    "VolumeBrowser",
    "human_size",
]
