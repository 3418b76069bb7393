"""``NetworkFileSystem.write_file`` checks ``fp`` before it tells ``progress_cb`` anything:
a wrong ``fp`` raises the clear InvalidError and leaves no progress task open (Modal's
protocol: ``task = cb(name=, size=)``, ``cb(task, advance=n)``, ``cb(task, complete=True)``).
On a real local store."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import InvalidError
from jupyter_volume.store.local import LocalStore

try:
    from .test_nfs_api import ModalStyleProgress, Unseekable, read
except ImportError:  # tests/ is not a package
    from test_nfs_api import ModalStyleProgress, Unseekable, read  # type: ignore[no-redef]


@pytest.fixture
def nfs(local_store: LocalStore) -> NetworkFileSystem:
    return NetworkFileSystem.from_name("shared", create_if_missing=True, store=local_store)


class DuckReader:
    """A file-like object outside :mod:`io`: only ``read``, of str or of bytes."""

    def __init__(self, data: str | bytes) -> None:
        self._data = data

    def read(self, n: int = -1) -> str | bytes:
        n = len(self._data) if n < 0 else n
        piece, self._data = self._data[:n], self._data[n:]
        return piece


def _bad_fps(tmp_path: Path) -> list[tuple[str, Any, str]]:
    """(what, fp, words of the error) for file objects write_file must refuse."""
    text_file = tmp_path / "notes.txt"
    text_file.write_text("some text\n")
    closed = open(text_file, "rb")  # noqa: SIM115 - closed on purpose
    closed.close()
    return [
        ("a str (a path, not a file object)", "notes.txt", "binary file object"),
        ("a Path", text_file, "binary file object"),
        ("bytes", b"data", "binary file object"),
        ("a StringIO", io.StringIO("text"), "binary"),
        ("a text-mode file", open(text_file), "binary"),  # noqa: SIM115 - closed below
        ("a closed file", closed, "closed"),
        ("a reader of str outside io", DuckReader("text"), "binary mode"),
    ]


def test_a_bad_fp_raises_before_any_progress_call(nfs: NetworkFileSystem, tmp_path: Path) -> None:
    nfs.write_file("keep.txt", io.BytesIO(b"kept"))
    seq = nfs.history(1)[0].seq
    for what, fp, words in _bad_fps(tmp_path):
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

        def cb(*args: Any, _calls: list = calls, **kwargs: Any) -> int:
            _calls.append((args, kwargs))
            return 1

        try:
            for target in ("t.bin", "into/"):  # a folder target asks fp for its name
                with pytest.raises(InvalidError, match=words):
                    nfs.write_file(target, fp, progress_cb=cb)
                assert calls == [], f"{what}: progress_cb was called: {calls}"
            # the Modal-style handler of test_nfs_api: no task left open
            recorder = ModalStyleProgress()
            with pytest.raises(InvalidError, match=words):
                nfs.write_file("t.bin", fp, progress_cb=recorder)
            assert recorder.tasks == {}, what
        finally:
            if hasattr(fp, "close"):
                fp.close()
    assert nfs.history(1)[0].seq == seq  # nothing was committed
    assert [e.path for e in nfs.listdir("/")] == ["keep.txt"]


def test_good_fps_still_report_one_complete_task(nfs: NetworkFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(b"0123456789")
    cases: list[tuple[str, Any, int | None]] = [
        ("bytesio.bin", io.BytesIO(b"abc"), 3),
        ("file.bin", open(local, "rb"), 10),  # noqa: SIM115 - closed below
        ("raw.bin", open(local, "rb", buffering=0), 10),  # noqa: SIM115 - closed below
        ("stream.bin", Unseekable(b"x" * 1000), None),
        ("duck.bin", DuckReader(b"x" * 1000), None),
    ]
    for name, fp, size in cases:
        recorder = ModalStyleProgress()
        with fp if hasattr(fp, "__enter__") else contextlib.nullcontext():
            written = nfs.write_file(name, fp, progress_cb=recorder)
        done = size if size is not None else 1000
        assert written == done
        assert recorder.tasks == {
            0: {"name": name, "size": size, "done": done, "complete": True}
        }, name
    assert read(nfs, "raw.bin") == b"0123456789"
