"""``VolumeBrowser`` driven from Python: set values, click buttons, feed FileUpload values,
then check what landed in the store and in the history.

Each test runs on the local store and on SeaweedFS (the ``store`` fixture), except the
100,000-file folder (local only: it is about the widget, not the store).
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as W
import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import StoreError
from jupyter_volume.testing.wrappers import WrappedStore
from jupyter_volume.volume import FileEntryType
from jupyter_volume.widgets import DOWNLOAD_LINK_MAX, VolumeBrowser, human_size


@pytest.fixture
def vol(store: Any) -> Volume:
    """A volume with ``data/a.txt``, ``data/deep/b.bin`` and ``readme.md`` (commit #1)."""
    Volume.objects.create("widget-vol", store=store)
    v = Volume.from_name("widget-vol", store=store)
    with v.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"alpha"), "data/a.txt")
        batch.put_file(io.BytesIO(b"\x00" * 5000), "data/deep/b.bin")
        batch.put_file(io.BytesIO(b"# read me\n" * 300), "readme.md")
    return v


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    fresh = Volume.from_name(vol.name, store=vol.store)  # sees the newest commit
    return b"".join(fresh.read_file(path, at=at))


def history(vol: Volume) -> list[Any]:
    return Volume.from_name(vol.name, store=vol.store).history()


def names(b: VolumeBrowser) -> list[str]:
    """The names on the current page, as the row buttons show them."""
    return [row.name.description for row in b._rows if row.entry is not None]


def row(b: VolumeBrowser, label: str) -> Any:
    for r in b._rows:
        if r.entry is not None and r.name.description == label:
            return r
    raise AssertionError(f"no row {label!r} in {names(b)}")


def upload_value(*files: tuple[str, bytes]) -> tuple[dict[str, Any], ...]:
    """What FileUpload.value holds after the user picked ``files`` in the browser."""
    now = datetime.now(UTC)
    return tuple(
        {
            "name": n,
            "type": "application/octet-stream",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": now,
        }
        for n, data in files
    )


def shown(b: VolumeBrowser) -> str:
    """Every message the widget shows: its message line and those beside the buttons."""
    return "".join([b.message.value, *(r.value for r in b._results.values())])


def error(b: VolumeBrowser) -> str:
    assert "jv-error" in shown(b), f"expected an error, got {shown(b)!r}"
    return shown(b)


def ok(b: VolumeBrowser) -> str:
    assert "jv-info" in shown(b), f"expected success, got {shown(b)!r}"
    return shown(b)


# -- listing and navigation ----------------------------------------------------------------------
def test_listing_shows_name_type_size_mtime_and_navigates(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    assert b.path == ""
    assert names(b) == ["data/", "readme.md"]  # folders first
    r = row(b, "readme.md")
    assert (r.kind.value, r.size.value) == ("file", "2.9 KiB")
    assert r.mtime.value.startswith(str(datetime.now().year))
    assert row(b, "data/").kind.value == "folder"
    assert "1–2 of 2" in b.page_info.value
    assert "commit #1" in b.view_info.value
    assert b.up_button.disabled

    row(b, "data/").name.click()  # enter the folder
    assert b.path == "data"
    assert names(b) == ["deep/", "a.txt"]
    assert [c.description for c in b.breadcrumb.children if isinstance(c, W.Button)] == [
        "widget-vol",
        "data",
    ]
    row(b, "deep/").name.click()
    assert (b.path, names(b)) == ("data/deep", ["b.bin"])
    assert row(b, "b.bin").size.value == "4.9 KiB"

    b.up_button.click()
    assert b.path == "data"
    b._crumbs[0].click()  # the breadcrumb's root
    assert b.path == ""
    b.open_folder("data/deep")
    assert names(b) == ["b.bin"]
    b.open_folder("no/such/folder")
    assert "does not exist" in error(b)
    assert b.path == "" and names(b) == ["data/", "readme.md"]


def test_sort_and_filter(vol: Volume) -> None:
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"x" * 10), "data/zz-small.txt")
        batch.put_file(io.BytesIO(b"x" * 900), "data/Big.txt")
    b = VolumeBrowser(vol)
    b.open_folder("data")
    assert names(b) == ["deep/", "a.txt", "Big.txt", "zz-small.txt"]
    b.sort_buttons["name"].click()  # same key again: reversed
    assert names(b) == ["deep/", "zz-small.txt", "Big.txt", "a.txt"]
    assert b.sort_buttons["name"].description == "Name ▼"
    b.sort_buttons["size"].click()
    assert names(b) == ["deep/", "a.txt", "zz-small.txt", "Big.txt"]
    assert b.sort_buttons["size"].description == "Size ▲"
    b.sort_buttons["size"].click()
    assert names(b) == ["deep/", "Big.txt", "zz-small.txt", "a.txt"]
    b.filter.value = "txt"
    assert names(b) == ["Big.txt", "zz-small.txt", "a.txt"]
    assert "filtered from 4" in b.page_info.value
    b.filter.value = "nothing-like-this"
    assert names(b) == [] and "no entries match" in b.empty_info.value


def test_refresh_shows_other_writers_commits(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    other = Volume.from_name(vol.name, store=vol.store)
    with other.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"new"), "from-elsewhere.txt")
    assert "from-elsewhere.txt" not in names(b)
    b.refresh_button.click()
    assert "from-elsewhere.txt" in names(b)
    assert b.head_seq == 2 and "commit #2" in b.view_info.value
    assert b.history_select.options[0][1] == 2


# -- actions: each is one commit with a message saying what it did ------------------------------------
def test_upload_one_and_many_files_into_the_current_folder(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.open_folder("data")
    big = bytes(range(256)) * 4096  # 1 MiB: several chunks, so progress is reported in steps
    b.upload_files(upload_value(("one.txt", b"first upload")))
    assert "commit #2: upload data/one.txt" in ok(b)
    assert b.progress.layout.display == "none"
    b.upload_files(upload_value(("two.bin", big), ("three.txt", b"3")))
    assert "commit #3: upload 2 paths" in ok(b)
    assert read(vol, "data/one.txt") == b"first upload"
    assert read(vol, "data/two.bin") == big
    assert read(vol, "data/three.txt") == b"3"
    hist = history(vol)
    assert [c.seq for c in hist[:2]] == [3, 2]
    assert (hist[0].added, hist[0].message) == (2, "upload 2 paths (data/three.txt, …)")
    assert (hist[1].added, hist[1].message) == (1, "upload data/one.txt")
    assert names(b) == ["deep/", "a.txt", "one.txt", "three.txt", "two.bin"]
    assert row(b, "two.bin").size.value == "1.0 MiB"
    assert b.progress.value == 1.0


def test_upload_onto_an_existing_file_needs_overwrite(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.open_folder("data")
    b.upload_files(upload_value(("a.txt", b"replaced")))
    # worded for the widget: its overwrite box, not the Python API's force=True
    assert "already exists" in error(b) and "tick overwrite to replace it" in error(b)
    assert "force=True" not in error(b)
    assert read(vol, "data/a.txt") == b"alpha"
    assert len(history(vol)) == 2  # no commit
    b.overwrite.value = True
    b.upload_files(upload_value(("a.txt", b"replaced")))
    assert "commit #2: upload data/a.txt" in ok(b)
    assert read(vol, "data/a.txt") == b"replaced"
    assert history(vol)[0].modified == 1


class Frontend:
    """Plays the page's side of the uploader's comm protocol (upload.js): sends its
    messages into the widget and keeps the widget's replies. The comm itself is the
    browser tests' business (test_widget_upload_browser.py); here only the widget's
    ``send`` is captured, since no frontend is connected to receive it."""

    def __init__(self, b: VolumeBrowser, monkeypatch: pytest.MonkeyPatch) -> None:
        self.w = b.upload
        self.replies: list[dict[str, Any]] = []
        monkeypatch.setattr(
            self.w, "send", lambda content, buffers=None: self.replies.append(content)
        )

    def say(self, content: dict[str, Any], *buffers: bytes) -> dict[str, Any]:
        before = len(self.replies)
        self.w._on_msg(self.w, content, [memoryview(x) for x in buffers])
        assert len(self.replies) == before + 1, self.replies[before:]
        return self.replies[-1]

    def upload(self, uid: str, files: dict[str, bytes], chunk: int = 3000) -> dict[str, Any]:
        """Send ``files`` the way upload.js does; the kernel's last reply."""
        listed = [{"name": n, "size": len(d)} for n, d in files.items()]
        ready = self.say({"op": "begin", "id": uid, "files": listed})
        if ready["op"] != "ready":
            return ready
        for i, data in enumerate(files.values()):
            for off in range(0, len(data), chunk):
                ack = self.say(
                    {"op": "chunk", "id": uid, "file": i, "offset": off}, data[off : off + chunk]
                )
                assert ack == {
                    "op": "ack",
                    "id": uid,
                    "file": i,
                    "received": min(off + chunk, len(data)),
                }
        return self.say({"op": "end", "id": uid})


def beside(b: VolumeBrowser, button: W.Widget) -> str:
    return b.message_beside(button).value


def form_buttons(b: VolumeBrowser) -> tuple[W.Widget, ...]:
    """The action buttons that open a form (each shows its result beside itself)."""
    return (
        b.new_folder_button,
        b.move_button,
        b.download_button,
        b.delete_button,
        b.restore_path_button,
        b.restore_tree_button,
    )


def uploading_browser(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[VolumeBrowser, Path, Frontend]:
    """A browser whose uploader keeps its temporary files in a folder of their own
    (returned: the store is in tmp_path too), and a Frontend talking to it."""
    b = VolumeBrowser(vol)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    b.upload._tmp_dir = str(uploads)
    return b, uploads, Frontend(b, monkeypatch)


def test_chunked_upload_commits_whole_files_once_every_byte_arrived(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, tmp_path, page = uploading_browser(vol, tmp_path, monkeypatch)
    b.open_folder("data")
    big = bytes(range(256)) * 100 + b"tail"
    ready = page.say({"op": "begin", "id": "u1", "files": [{"name": "big.bin", "size": len(big)}]})
    assert ready["op"] == "ready" and ready["chunk_size"] >= 1 << 20 and ready["window"] >= 1
    # the bytes wait in a private temporary folder until the end, not in the volume
    (folder,) = tmp_path.iterdir()
    page.say({"op": "chunk", "id": "u1", "file": 0, "offset": 0}, big[:10_000])
    assert history(vol)[0].seq == 1 and "big.bin" not in names(b)
    assert (folder / "0").read_bytes() == big[:10_000]
    page.say({"op": "chunk", "id": "u1", "file": 0, "offset": 10_000}, big[10_000:])
    done = page.say({"op": "end", "id": "u1"})
    assert done["op"] == "done" and "commit #2" in done["message"]
    assert read(vol, "data/big.bin") == big
    assert list(tmp_path.iterdir()) == [] and b.upload.active == 0
    # the confirmation is beside the Upload button, and the listing shows the file
    assert "commit #2: upload data/big.bin" in beside(b, b.upload)
    assert b.message.value == ""
    assert "big.bin" in names(b)

    # several files, an empty one among them: one commit
    done = page.upload("u2", {"x.txt": b"x" * 7000, "empty": b"", "y.txt": b"why"})
    assert done["op"] == "done", done
    assert (read(vol, "data/x.txt"), read(vol, "data/empty"), read(vol, "data/y.txt")) == (
        b"x" * 7000,
        b"",
        b"why",
    )
    assert history(vol)[0].added == 3 and history(vol)[0].seq == 3


def test_a_file_added_while_a_chunked_upload_runs_is_named_in_the_widgets_words(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two uploads of one name at once both pass the check at begin; the commit of the
    # second refuses, and said "pass force=True", which a page cannot do.
    b, tmp_path, page = uploading_browser(vol, tmp_path, monkeypatch)
    b.open_folder("data")
    ready = page.say({"op": "begin", "id": "u1", "files": [{"name": "new.txt", "size": 4}]})
    assert ready["op"] == "ready"
    with vol.batch_upload() as batch:  # another writer, meanwhile
        batch.put_file(io.BytesIO(b"theirs"), "data/new.txt")
    page.say({"op": "chunk", "id": "u1", "file": 0, "offset": 0}, b"ours")
    done = page.say({"op": "end", "id": "u1"})
    assert done["op"] == "error", done
    assert "tick overwrite to replace it" in done["message"], done
    assert "force=True" not in done["message"]
    assert read(vol, "data/new.txt") == b"theirs"


def test_a_chunked_upload_lands_where_it_began_while_an_old_commit_is_browsed(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is chosen when an upload begins; a click on an old commit in the
    history pane while the bytes travel used to throw the whole upload away at its end
    ("cannot upload while browsing old commit")."""
    b, tmp_path, page = uploading_browser(vol, tmp_path, monkeypatch)
    b.open_folder("data")
    assert (
        page.say({"op": "begin", "id": "u", "files": [{"name": "n.bin", "size": 5}]})["op"]
        == "ready"
    )
    page.say({"op": "chunk", "id": "u", "file": 0, "offset": 0}, b"hello")
    b.history_select.value = 1  # the user looks at commit #1 meanwhile
    assert b.read_only
    done = page.say({"op": "end", "id": "u"})
    assert done["op"] == "done", done
    assert read(vol, "data/n.bin") == b"hello"
    assert b.read_only and b.at == 1  # still showing what the user chose
    # a new upload is refused while the old commit is shown
    refused = page.say({"op": "begin", "id": "u2", "files": [{"name": "m.bin", "size": 1}]})
    assert refused["op"] == "error" and "old commit #1" in refused["message"], refused


def test_chunked_upload_cancelled_or_failed_leaves_nothing(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, tmp_path, page = uploading_browser(vol, tmp_path, monkeypatch)

    def nothing_left() -> None:
        assert list(tmp_path.iterdir()) == [] and b.upload.active == 0
        assert history(vol)[0].seq == 1  # no commit
        assert "new.bin" not in names(b)

    # cancel half way
    page.say({"op": "begin", "id": "c", "files": [{"name": "new.bin", "size": 100}]})
    page.say({"op": "chunk", "id": "c", "file": 0, "offset": 0}, b"1" * 50)
    assert page.say({"op": "cancel", "id": "c"}) == {"op": "cancelled", "id": "c"}
    nothing_left()
    # a chunk after the cancel is refused, not written
    reply = page.say({"op": "chunk", "id": "c", "file": 0, "offset": 50}, b"2" * 50)
    assert reply["op"] == "error" and "not under way" in reply["message"]
    nothing_left()

    # a gap in the bytes, too many bytes, an end before every byte: an error, nothing kept
    for uid, steps, why in [
        ("gap", [(0, b"a" * 10), (20, b"b" * 10)], "expected 10"),
        ("long", [(0, b"a" * 101)], "more bytes than its size"),
        ("short", [(0, b"a" * 10)], "10 of 100 bytes arrived"),
    ]:
        page.say({"op": "begin", "id": uid, "files": [{"name": "new.bin", "size": 100}]})
        for off, data in steps:
            reply = page.say({"op": "chunk", "id": uid, "file": 0, "offset": off}, data)
        if uid == "short":
            reply = page.say({"op": "end", "id": uid})
        assert reply["op"] == "error" and why in reply["message"], reply
        nothing_left()

    # refused before any byte is sent: a file already there (without overwrite), a bad
    # name, a read-only view
    for files, why in [
        ([{"name": "readme.md", "size": 3}], "already there: readme.md"),
        ([{"name": "../up", "size": 3}], "cannot upload a file named"),
        ([{"name": "a", "size": 1}, {"name": "a", "size": 1}], "chosen twice"),
    ]:
        reply = page.say({"op": "begin", "id": "r", "files": files})
        assert reply["op"] == "error" and why in reply["message"], reply
        nothing_left()
    b.history_select.value = 1
    reply = page.say({"op": "begin", "id": "ro", "files": [{"name": "new.bin", "size": 1}]})
    assert reply["op"] == "error" and "old commit #1" in reply["message"]
    b.back_to_head_button.click()

    # the store fails at the commit: an error, and neither the file nor temp files stay
    monkeypatch.setattr(
        type(b.volume),
        "batch_upload",
        lambda *_a, **_k: (_ for _ in ()).throw(OSError("disk gone")),
    )
    reply = page.upload("fail", {"new.bin": b"z" * 100})
    assert reply["op"] == "error" and "disk gone" in reply["message"]
    nothing_left()
    monkeypatch.undo()

    # closing the widget drops an upload under way
    page = Frontend(b, monkeypatch)
    page.say({"op": "begin", "id": "open", "files": [{"name": "new.bin", "size": 100}]})
    assert b.upload.active == 1
    b.close()
    nothing_left()


def test_a_kernel_that_exits_mid_upload_leaves_no_chunks(tmp_path: Path) -> None:
    """A real child Python (as a kernel) starts an upload, gets some bytes and exits."""
    import subprocess
    import sys

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    code = f"""
from jupyter_volume.widgets.upload import ChunkedUpload
w = ChunkedUpload(prepare=lambda n, s: None, commit=lambda c, f: "", tmp_dir={str(uploads)!r})
w.send = lambda content, buffers=None: None
w._on_msg(w, {{"op": "begin", "id": "x", "files": [{{"name": "a", "size": 10}}]}}, [])
w._on_msg(w, {{"op": "chunk", "id": "x", "file": 0, "offset": 0}}, [memoryview(b"12345")])
import os
print(len(os.listdir({str(uploads)!r})), w.active)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["1", "1"], out.stderr  # under way when it exited
    assert list(uploads.iterdir()) == []


def test_new_folder_is_one_commit(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.open_folder("data")
    b.new_folder_button.click()
    assert b.folder_name in b.form.children
    b.folder_name.value = "fresh"
    b.create_folder_button.click()
    assert "commit #2: create folder data/fresh" in ok(b)
    assert b.form.children == ()
    assert names(b) == ["deep/", "fresh/", "a.txt"]
    fresh = Volume.from_name(vol.name, store=vol.store)
    assert fresh.listdir("data/fresh") == []
    assert [e.type for e in fresh.listdir("data") if e.path == "data/fresh"] == [
        FileEntryType.DIRECTORY
    ]
    assert history(vol)[0].message == "create folder data/fresh"
    # an absolute path from the root, with a missing parent
    b.new_folder_button.click()
    b.folder_name.value = "/top/level"
    b.create_folder_button.click()
    assert "create folder top/level" in ok(b)
    # it exists already: an error, no commit
    b.new_folder_button.click()
    b.folder_name.value = "a.txt"
    b.create_folder_button.click()
    assert "already exists" in error(b)
    assert len(history(vol)) == 4


def test_rename_and_move_are_one_commit_each(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.open_folder("data")
    row(b, "a.txt").name.click()  # clicking a file selects it
    assert b.selected == {"data/a.txt"}
    b.move_button.click()
    assert b.move_target.value == "a.txt"
    b.move_target.value = "renamed.txt"
    b.do_move_button.click()
    assert "commit #2: move data/a.txt to data/renamed.txt" in ok(b)
    assert names(b) == ["deep/", "renamed.txt"]
    # a folder with its contents, into another folder (given as a path from the root)
    vol.mkdir("archive")
    b.refresh()
    row(b, "deep/").check.value = True
    b.move_button.click()
    b.move_target.value = "/archive"
    b.do_move_button.click()
    assert "move data/deep to archive/deep" in ok(b)
    assert read(vol, "archive/deep/b.bin") == b"\x00" * 5000
    assert read(vol, "data/renamed.txt") == b"alpha"
    fresh = Volume.from_name(vol.name, store=vol.store)
    assert [e.path for e in fresh.listdir("/", recursive=True)] == [
        "archive",
        "archive/deep",
        "archive/deep/b.bin",
        "data",
        "data/renamed.txt",
        "readme.md",
    ]
    hist = history(vol)
    assert [c.message for c in hist[:3]] == [
        "move data/deep to archive/deep",
        "create folder archive",
        "move data/a.txt to data/renamed.txt",
    ]
    assert (hist[0].added, hist[0].deleted) == (1, 1)
    # moving onto an existing file needs overwrite; two selected is refused
    row(b, "renamed.txt").name.click()
    b.move_button.click()
    b.move_target.value = "/readme.md"
    b.do_move_button.click()
    assert "already exists" in error(b)
    b.open_folder("")
    b.select(["data", "readme.md"])
    b.move_button.click()
    assert "select exactly one" in error(b)
    assert len(history(vol)) == 5


def test_delete_asks_first_then_removes_everything_in_one_commit(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.delete_button.click()
    assert "select the files or folders to delete" in error(b)
    row(b, "data/").check.value = True
    row(b, "readme.md").check.value = True
    b.delete_button.click()
    assert "Delete" in b.confirm_text.value and "data/" in b.confirm_text.value
    assert len(history(vol)) == 2  # nothing happened yet
    b.cancel_button.click()
    assert b.form.children == ()
    assert names(b) == ["data/", "readme.md"]

    b.delete_button.click()
    b.confirm_button.click()
    assert "commit #2: remove data, readme.md" in ok(b)
    assert names(b) == [] and "this folder is empty" in b.empty_info.value
    fresh = Volume.from_name(vol.name, store=vol.store)
    assert fresh.listdir("/", recursive=True) == []
    hist = history(vol)
    assert (hist[0].seq, hist[0].deleted, hist[0].message) == (2, 3, "remove data, readme.md")
    # the old commit still has them
    assert read(vol, "data/a.txt", at=1) == b"alpha"


def test_download_to_a_local_path_and_as_a_link(vol: Volume, tmp_path: Path) -> None:
    b = VolumeBrowser(vol)
    row(b, "readme.md").name.click()
    b.download_button.click()
    content = b"# read me\n" * 300
    link = b.download_link.value
    assert 'download="readme.md"' in link
    assert base64.b64encode(content).decode() in link
    b.download_path.value = str(tmp_path / "copy.md")
    b.save_button.click()
    assert "saved readme.md (2.9 KiB)" in ok(b)
    assert (tmp_path / "copy.md").read_bytes() == content
    b.save_button.click()  # exists: refused without overwrite
    assert "exists already" in error(b)
    (tmp_path / "out").mkdir()
    b.download_path.value = str(tmp_path / "out")  # a folder: the file goes in by name
    b.save_button.click()
    assert (tmp_path / "out" / "readme.md").read_bytes() == content
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["readme.md"]  # no temp left
    row(b, "data/").check.value = True
    row(b, "readme.md").check.value = False
    b.download_button.click()
    assert "only files can be downloaded" in error(b)


# -- history ----------------------------------------------------------------------------------------
def test_history_browse_diff_and_restore(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    b.open_folder("data")
    b.overwrite.value = True
    b.upload_files(upload_value(("a.txt", b"changed")))  # commit 2
    b.select(["data/deep"])
    b.delete_button.click()
    b.confirm_button.click()  # commit 3
    assert [c.seq for c in b.commits] == [3, 2, 1, 0]
    labels = [label for label, _ in b.history_select.options]
    assert (
        labels[0].startswith("#3") and "+0 ~0 -1" in labels[0] and "remove data/deep" in labels[0]
    )
    assert "+2 ~0 -0" not in labels[0] and "+3 ~0 -0" in labels[2]

    b.history_select.value = 1  # browse commit 1, read only
    assert b.at == 1 and b.read_only
    assert "browsing commit #1" in b.view_info.value
    assert names(b) == ["deep/", "a.txt"]
    assert b.delete_button.disabled and b.upload.disabled and b.new_folder_button.disabled
    assert "added 3" in b.commit_info.value
    changes = {(d.path, d.change) for d in b.diff_entries}
    assert changes == {
        ("data/a.txt", "modified"),
        ("data/deep", "deleted"),
        ("data/deep/b.bin", "deleted"),
    }
    assert "data/deep/b.bin" in b.diff_view.value and "to the head #3" in b.diff_view.value
    b.upload_files(upload_value(("x.txt", b"x")))  # refused while read only
    assert "Back to head" in error(b)
    # download from the old commit works
    row(b, "a.txt").name.click()
    b.download_button.click()
    assert base64.b64encode(b"alpha").decode() in b.download_link.value
    b.hide_form()

    # restore one file: select it, confirm
    row(b, "a.txt").name.click()
    assert b.restore_path.value == "data/a.txt"
    b.restore_path_button.click()
    assert "Restore" in b.confirm_text.value and "data/a.txt" in b.confirm_text.value
    assert len(history(vol)) == 4
    b.confirm_button.click()
    assert "commit #4: restore data/a.txt from commit 1" in ok(b)
    assert b.at is None and not b.read_only and b.history_select.value is None
    assert read(vol, "data/a.txt") == b"alpha"
    assert [e.path for e in Volume.from_name(vol.name, store=vol.store).listdir("data")] == [
        "data/a.txt"
    ]
    assert history(vol)[0].kind == "restore"

    # restore the whole tree
    b.history_select.value = 1
    b.restore_tree_button.click()
    assert "whole volume" in b.confirm_text.value
    b.confirm_button.click()
    assert "commit #5: restore to commit 1" in ok(b)
    assert read(vol, "data/deep/b.bin") == b"\x00" * 5000
    assert names(b) == ["deep/", "a.txt"]
    assert len(history(vol)) == 6

    # the head itself: nothing differs
    b.history_select.value = 5
    assert "no differences" in b.diff_view.value
    b.back_to_head_button.click()
    assert b.at is None


def test_history_more_lists_older_commits(vol: Volume) -> None:
    for i in range(4):
        vol.mkdir(f"f{i}")
    b = VolumeBrowser(vol, history_size=3)
    assert [seq for _, seq in b.history_select.options] == [5, 4, 3]
    b.more_history_button.click()
    assert [seq for _, seq in b.history_select.options] == [5, 4, 3, 2, 1, 0]
    assert b.more_history_button.disabled


class BreakableStore(WrappedStore):
    """Forwards to a real store until ``broken`` is set, then every call fails like an
    unreachable store would (a fault we cannot cause on demand in a shared server)."""

    broken = False

    def _do(self, kind: str, key: str, fn: Any, *args: Any) -> Any:
        if self.broken:
            raise StoreError(f"the object store did not answer ({kind} {key}): check the network")
        return fn(*args)


# -- errors, large folders, mounts, helpers --------------------------------------------------------
def test_errors_are_messages_not_exceptions(store: Any) -> None:
    b = VolumeBrowser("no-such-volume", store=store)
    assert "no-such-volume" in error(b)
    b.refresh_button.click()
    assert "no-such-volume" in error(b)
    Volume.objects.create("later", store=store)
    v = Volume.from_name("later", store=store)
    b2 = VolumeBrowser(v)
    b2.new_folder_button.click()
    b2.folder_name.value = "../escape"
    b2.create_folder_button.click()
    assert "escapes the volume root" in error(b2)
    b2.folder_name.value = ""
    b2.create_folder_button.click()
    assert "type a name" in error(b2)
    b2.confirm_button.click()
    assert "nothing is waiting" in error(b2)
    b2.restore_tree_button.click()
    assert "select a commit" in error(b2)
    b2.close()


def test_a_failing_store_is_a_message_and_the_widget_recovers(store: Any) -> None:
    flaky = BreakableStore(store)
    Volume.objects.create("flaky", store=flaky)
    b = VolumeBrowser("flaky", store=flaky)
    b.new_folder_button.click()
    b.folder_name.value = "before"
    b.create_folder_button.click()
    assert "create folder before" in ok(b)
    flaky.broken = True
    b.refresh_button.click()
    assert "did not answer" in error(b)
    b.upload_files(upload_value(("lost.txt", b"x")))
    assert "did not answer" in error(b)
    assert b.progress.layout.display == "none"
    b.history_select.value = 0  # browsing an old commit reads the store too
    assert "did not answer" in error(b)
    flaky.broken = False
    b.refresh_button.click()
    assert b.message.value == ""
    b.open_folder("")
    assert names(b) == ["before/"]
    assert [c.message for c in history(Volume.from_name("flaky", store=flaky))] == [
        "create folder before",
        "create volume",
    ]


def test_a_folder_of_100000_files_is_paginated(local_store: Any) -> None:
    Volume.objects.create("big", store=local_store)
    v = Volume.from_name("big", store=local_store)
    with v.batch_upload() as batch:
        for i in range(100_000):
            batch.put_file(io.BytesIO(b"x" * (i % 7)), f"many/f{i:06d}.txt")
    b = VolumeBrowser(v, page_size=50)
    row(b, "many/").name.click()
    assert names(b)[:2] == ["f000000.txt", "f000001.txt"] and len(names(b)) == 50
    assert len(b.listing.children) == 5 * 51  # header + one page of rows, nothing more
    assert b.page_info.value == "1–50 of 100,000"
    b.next_button.click()
    assert names(b)[0] == "f000050.txt" and b.page_info.value == "51–100 of 100,000"
    b.prev_button.click()
    assert names(b)[0] == "f000000.txt" and b.prev_button.disabled
    b.sort_buttons["size"].click()
    b.sort_buttons["size"].click()
    b.filter.value = "f09999"
    # by size, biggest first; equal sizes by name ascending (as the sidebar)
    expected = sorted((f"f09999{i}.txt" for i in range(10)), key=lambda n: (-(int(n[1:7]) % 7), n))
    assert names(b) == expected
    # the cost stays one page: row widgets are reused, never more than one page of them
    # (how fast it feels is a benchmark's question, not a test's: no timing here)
    assert len(b._rows) == 50


def test_shows_when_the_head_is_ahead_of_a_mount_in_this_kernel(
    vol: Volume, tmp_path: Path
) -> None:
    m = vol.mount(tmp_path / "mnt", background=False)
    b = VolumeBrowser(vol)
    assert "up to date" in b.mount_info.value
    assert b.reload_mount_button.layout.display == "none"
    b.upload_files(upload_value(("via-widget.txt", b"hi")))
    assert "commit #2" in ok(b)
    assert not (tmp_path / "mnt" / "via-widget.txt").exists()  # not until the mount reloads
    assert "1 commit ahead" in b.mount_info.value
    assert b.reload_mount_button.layout.display == ""
    assert names(b) == ["data/", "readme.md", "via-widget.txt"]
    b.reload_mount_button.click()
    assert (tmp_path / "mnt" / "via-widget.txt").read_bytes() == b"hi"
    assert "up to date" in b.mount_info.value
    assert m.base_seq == 2
    m.unmount()


def test_helpers_validate_and_make_single_commits(vol: Volume) -> None:
    assert vol.mkdir("x/y").message == "create folder x/y"
    with pytest.raises(FileExistsError):
        vol.mkdir("x")
    with pytest.raises(FileExistsError):
        vol.mkdir("readme.md/sub")
    with pytest.raises(ValueError):
        vol.mkdir("/")
    with pytest.raises(ValueError):
        vol.move("data", "data/deep")
    with pytest.raises(FileNotFoundError):
        vol.move("nope", "x")
    with pytest.raises(FileNotFoundError):
        vol.move("readme.md", "missing/readme.md")
    with pytest.raises(FileExistsError):
        vol.move("data", "readme.md")
    info = vol.move("readme.md", "data/a.txt", overwrite=True)
    assert info is not None and info.message == "move readme.md to data/a.txt"
    with pytest.raises(FileNotFoundError):
        vol.remove_paths(["data", "nope"])
    info = vol.remove_paths(["data", "x"])
    assert info is not None and (info.deleted, info.message) == (2, "remove data, x")
    assert Volume.from_name(vol.name, store=vol.store).listdir("/") == []


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1, 1023, 1024, 1536, 10 * 1024, 5 << 20, 3 << 40)] == [
        "0 B",
        "1 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "10 KiB",
        "5.0 MiB",
        "3.0 TiB",
    ]


# -- at JupyterLab's standard: forms beside their button, the sidebar's order, real links ----------
def inside(container: Any, target: W.Widget) -> bool:
    """True if ``target`` is ``container`` or shown somewhere within it."""
    if container is target:
        return True
    return any(inside(c, target) for c in getattr(container, "children", ()))


def test_confirmations_and_forms_open_beside_the_button_that_asked(vol: Volume) -> None:
    b = VolumeBrowser(vol)
    every_slot = [b.form_beside(x) for x in form_buttons(b)]
    for slot in every_slot:  # each form area sits in the same row, right after its button
        (pair,) = [box for box in b._own if slot in getattr(box, "children", ())]
        assert pair.children[1] is slot and isinstance(pair.children[0], W.Button)
    row(b, "readme.md").check.value = True
    b.delete_button.click()
    beside_delete = b.form_beside(b.delete_button)
    assert b.confirm_text in beside_delete.children and b.confirm_button in beside_delete.children
    assert [s for s in every_slot if s.children] == [beside_delete]  # nowhere else
    assert not inside(b.message, b.confirm_text)
    b.new_folder_button.click()  # another form: the confirmation closes
    assert beside_delete.children == ()
    assert b.folder_name in b.form_beside(b.new_folder_button).children
    b.cancel_button.click()
    assert all(s.children == () for s in every_slot)

    # the restore confirmations open in the history pane, beside the restore buttons
    b.history_select.value = 1
    row(b, "readme.md").name.click()
    b.restore_path_button.click()
    beside_restore = b.form_beside(b.restore_path_button)
    assert b.confirm_text in beside_restore.children and "readme.md" in b.confirm_text.value
    assert inside(b.history_box, b.confirm_text)
    b.restore_tree_button.click()
    assert beside_restore.children == ()
    assert "whole volume" in b.confirm_text.value
    assert b.confirm_button in b.form_beside(b.restore_tree_button).children
    b.confirm_button.click()
    assert "restore: nothing changed" in ok(b)  # commit 1 is the head
    assert all(s.children == () for s in every_slot)


def test_each_result_shows_beside_the_button_that_asked(vol: Volume, tmp_path: Path) -> None:
    b = VolumeBrowser(vol)
    results = {
        id(x): b.message_beside(x) for x in (b.upload, *form_buttons(b), b.reload_mount_button)
    }
    assert len({id(r) for r in results.values()}) == len(results)  # one place each
    for x, place in [(b.new_folder_button, results[id(b.new_folder_button)])]:
        (pair,) = [box for box in b._own if place in getattr(box, "children", ())]
        assert pair.children[0] is x  # in the button's row, after its form area

    def only(button: W.Widget, text: str, kind: str = "jv-info") -> None:
        """``text`` shows beside ``button``, and nowhere else."""
        here = beside(b, button)
        assert text in here and kind in here, (text, here)
        others = [r.value for k, r in results.items() if k != id(button)] + [b.message.value]
        assert not any(others), others

    b.upload_files(upload_value(("up.txt", b"u")))
    only(b.upload, "commit #2: upload up.txt")
    b.new_folder_button.click()
    b.folder_name.value = "made"
    b.create_folder_button.click()
    only(b.new_folder_button, "commit #3: create folder made")
    b.move_button.click()  # nothing selected
    only(b.move_button, "select exactly one", "jv-error")
    row(b, "up.txt").name.click()
    b.move_button.click()
    b.move_target.value = "moved.txt"
    b.do_move_button.click()
    only(b.move_button, "commit #4: move up.txt")
    row(b, "moved.txt").name.click()
    b.download_button.click()
    b.download_path.value = str(tmp_path)
    b.save_button.click()
    only(b.download_button, f"saved moved.txt (1 B) to {tmp_path / 'moved.txt'}")
    row(b, "moved.txt").check.value = True
    b.delete_button.click()
    b.confirm_button.click()
    only(b.delete_button, "commit #5: remove moved.txt")
    b.history_select.value = 4
    row(b, "moved.txt").name.click()
    b.restore_path_button.click()
    b.confirm_button.click()
    only(b.restore_path_button, "commit #6: restore moved.txt from commit 4")
    # navigation speaks on the message line
    b.open_folder("nowhere")
    assert "does not exist" in b.message.value
    assert not any(r.value for r in results.values())


SIDEBAR_NAMES = [
    "file10.txt",
    "file2.txt",
    "File1.txt",
    "éclair.txt",
    "_notes.txt",
    "9lives.txt",
    "Zeta.md",
    "a-b.txt",
    "a_b.txt",
    "ab.txt",
    "a b.txt",
    "x 10",
    "x 9",
    "~tilde.txt",
]


def test_name_order_is_the_sidebars_natural_key() -> None:
    """The widget's one-string name key orders names exactly as the server's
    ``natural_key`` (the sidebar's listing), on tricky names and random ones."""
    import random

    from jupyter_volume.server.engine import natural_key
    from jupyter_volume.widgets.listing import name_order

    rnd = random.Random(7)
    alphabet = "aAbB09_- .~éÉ1z"
    names_ = [
        *SIDEBAR_NAMES,
        *(f"a{chr(c)}b" for c in range(32, 127) if not chr(c).isalnum()),
        *("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8))) for _ in range(3000)),
        "007",
        "7",
        "x7y",
        "x07y",
        "x7",
        "",
    ]
    by_widget = sorted(names_, key=lambda n: (name_order(n), n))
    by_server = sorted(names_, key=lambda n: (natural_key(n), n))
    assert by_widget == by_server


def test_sorting_follows_the_sidebars_rules(vol: Volume) -> None:
    """Every column and direction gives the server's order (what the sidebar shows),
    across the whole folder, not one page; folders first."""
    from jupyter_volume.server.engine import sort_entries

    with vol.batch_upload() as batch:
        for i, n in enumerate(SIDEBAR_NAMES):
            # two sizes only, so sorting by size has ties (broken by name)
            batch.put_file(io.BytesIO(b"x" * (10 if i % 2 else 20)), f"mixed/{n}")
    vol.mkdir("mixed/beta")
    vol.mkdir("mixed/Alpha")
    vol.mkdir("mixed/folder10")
    vol.mkdir("mixed/folder9")
    b = VolumeBrowser(vol, page_size=5)  # several pages: the order spans all of them
    b.open_folder("mixed")

    def shown_order() -> list[str]:
        return [e.path for e in b.shown]

    def server_order(key: str, desc: bool) -> list[str]:
        return [e.path for e in sort_entries(vol.listdir("mixed"), key, desc)]

    folders = ["Alpha/", "beta/", "folder9/", "folder10/"]
    assert names(b) == folders + ["9lives.txt"]  # page 1 of 4
    assert shown_order() == server_order("name", False)
    b.sort_buttons["name"].click()
    assert shown_order() == server_order("name", True)
    assert names(b)[:4] == folders[::-1]  # reversed, folders still first
    for key in ("size", "mtime"):
        b.sort_buttons[key].click()
        assert shown_order() == server_order(key, False), key
        b.sort_buttons[key].click()
        assert shown_order() == server_order(key, True), key
    # by size descending: the bigger files first, equal sizes by name ascending
    b.sort_buttons["size"].click()
    b.sort_buttons["size"].click()
    big = sorted((n for i, n in enumerate(SIDEBAR_NAMES) if not i % 2), key=natural)
    assert [p.rsplit("/", 1)[-1] for p in shown_order()][4 : 4 + len(big)] == big


def natural(name: str) -> Any:
    from jupyter_volume.server.engine import natural_key

    return natural_key(name)


def test_no_stale_selection_or_form_after_an_action(vol: Volume) -> None:
    b = VolumeBrowser(vol)

    def clean() -> None:
        assert b.selected == set()
        assert b.form.children == () and b._pending is None
        assert not any(r.check.value for r in b._rows if r.entry is not None)
        assert b.download_link.value == ""

    # an upload while the rename form of a selected file is open
    row(b, "readme.md").name.click()
    b.move_button.click()
    b.upload_files(upload_value(("new.txt", b"n")))
    assert "commit #2" in ok(b)
    clean()
    # a new folder while a file is selected
    row(b, "new.txt").check.value = True
    b.new_folder_button.click()
    b.folder_name.value = "made"
    b.create_folder_button.click()
    assert "commit #3" in ok(b)
    clean()
    # a rename, then a delete
    row(b, "new.txt").name.click()
    b.move_button.click()
    b.move_target.value = "renamed.txt"
    b.do_move_button.click()
    assert "commit #4" in ok(b)
    clean()
    row(b, "renamed.txt").check.value = True
    b.delete_button.click()
    b.confirm_button.click()
    assert "commit #5" in ok(b)
    clean()
    # an upload through the page's uploader (the report the labextension writes)
    row(b, "readme.md").name.click()
    b.download_button.click()
    assert b.download_link.value
    b.web_upload_report.value = '{"uploaded": ["web.txt"], "failed": [], "skipped": []}'
    clean()

    # a confirmation about the selection closes when the selection changes: confirming
    # it would have deleted what is no longer selected
    row(b, "readme.md").name.click()
    b.delete_button.click()
    row(b, "made/").check.value = True
    assert b.form_beside(b.delete_button).children == () and b._pending is None
    assert b.selected == {"readme.md", "made"}
    # a form for an entry of the folder left closes when another folder opens
    b.select(["readme.md"])
    b.move_button.click()
    row(b, "data/").name.click()
    assert b.path == "data" and b.form.children == () and b.selected == set()
    # a failed action keeps its form open, to correct it
    b.new_folder_button.click()
    b.folder_name.value = "a.txt"
    b.create_folder_button.click()
    assert "already exists" in error(b)
    assert b.folder_name in b.form.children
    assert read(vol, "readme.md") == b"# read me\n" * 300
    # a restore of the selected path
    b.history_select.value = 2
    b.open_folder("")
    row(b, "new.txt").name.click()
    b.restore_path_button.click()
    b.confirm_button.click()
    assert "restore new.txt from commit 2" in ok(b)
    assert b.at is None
    clean()


def test_download_link_goes_through_the_jupyter_server_of_the_kernel(
    local_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a kernel of a Jupyter server with the extension, the link is the server's
    download route (any size, no bytes through the widget); it is fetched for real."""
    import urllib.request

    from jupyter_volume.server.handlers import API_PREFIX
    from jupyter_volume.testing.jupyter import JupyterLab
    from jupyter_volume.widgets import actions

    assert actions._API_PREFIX == API_PREFIX
    Volume.objects.create("linked", store=local_store)
    v = Volume.from_name("linked", store=local_store)
    big = bytes(range(256)) * (DOWNLOAD_LINK_MAX // 256 + 1)  # over the data: URL limit
    with v.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"first"), "a dir/é #1.txt")
        batch.put_file(io.BytesIO(big), "big.bin")
    with v.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"second"), "a dir/é #1.txt")

    # outside a Jupyter server's kernel: the data: link (small files only)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    b = VolumeBrowser(v)
    b.open_folder("a dir")
    row(b, "é #1.txt").name.click()
    b.download_button.click()
    assert 'href="data:' in b.download_link.value
    b.close()

    env = {"JUPYTER_VOLUME_STORE": local_store.url}
    with JupyterLab(app="server", env=env) as lab:
        assert lab.proc is not None and lab.tmpdir is not None
        # what the kernels of this server see (jupyter_client sets JPY_PARENT_PID)
        monkeypatch.setenv("JPY_PARENT_PID", str(lab.proc.pid))
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab.tmpdir / "runtime"))
        monkeypatch.setenv("JUPYTER_VOLUME_STORE", local_store.url)

        def fetch(href: str) -> bytes:
            assert href.startswith("/jupyter-volume/api/volumes/linked/files/"), href
            req = urllib.request.Request(lab.url.rstrip("/") + html.unescape(href))
            req.add_header("Authorization", f"token {lab.token}")
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read()

        def href(b: VolumeBrowser) -> str:
            m = re.search(r'href="([^"]*)"', b.download_link.value)
            assert m and 'download="' in b.download_link.value, b.download_link.value
            return m.group(1)

        b = VolumeBrowser(v)
        b.open_folder("a dir")
        row(b, "é #1.txt").name.click()
        b.download_button.click()
        assert "data:" not in b.download_link.value
        assert fetch(href(b)) == b"second"
        b.open_folder("")
        row(b, "big.bin").name.click()
        b.download_button.click()
        assert fetch(href(b)) == big
        # an old commit: the link reads that commit
        b.history_select.value = 1
        b.open_folder("a dir")
        row(b, "é #1.txt").name.click()
        b.download_button.click()
        assert href(b).endswith("?at=1") and fetch(href(b)) == b"first"
        b.close()

        # the server serves another store: no link to it (it would be another volume)
        monkeypatch.setenv("JUPYTER_VOLUME_STORE", (tmp_path / "elsewhere").as_uri())
        b = VolumeBrowser(v)
        row(b, "big.bin").name.click()
        b.download_button.click()
        assert "href" not in b.download_link.value and "local path" in b.download_link.value
        b.close()
