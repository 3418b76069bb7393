"""``VolumeBrowser`` driven from Python: set values, click buttons, feed FileUpload values,
then check what landed in the store and in the history.

Each test runs on the local store and on SeaweedFS (the ``store`` fixture), except the
100,000-file folder (local only: it is about the widget, not the store).
"""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as W
import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import StoreError
from jupyter_volume.testing.wrappers import WrappedStore
from jupyter_volume.volume import FileEntryType
from jupyter_volume.widgets import VolumeBrowser, human_size


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


def error(b: VolumeBrowser) -> str:
    assert "jv-error" in b.message.value, f"expected an error, got {b.message.value!r}"
    return b.message.value


def ok(b: VolumeBrowser) -> str:
    assert "jv-info" in b.message.value, f"expected success, got {b.message.value!r}"
    return b.message.value


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
    b.upload.value = upload_value(("one.txt", b"first upload"))
    assert "commit #2: upload data/one.txt" in ok(b)
    assert b.upload.value == ()  # the widget lets go of the bytes
    assert b.progress.layout.display == "none"
    b.upload.value = upload_value(("two.bin", big), ("three.txt", b"3"))
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
    b.upload.value = upload_value(("a.txt", b"replaced"))
    assert "already exists" in error(b)
    assert read(vol, "data/a.txt") == b"alpha"
    assert len(history(vol)) == 2  # no commit
    b.overwrite.value = True
    b.upload.value = upload_value(("a.txt", b"replaced"))
    assert "commit #2: upload data/a.txt" in ok(b)
    assert read(vol, "data/a.txt") == b"replaced"
    assert history(vol)[0].modified == 1


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
    b.upload.value = upload_value(("a.txt", b"changed"))  # commit 2
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
    b.upload.value = upload_value(("lost.txt", b"x"))
    assert "did not answer" in error(b)
    assert b.upload.value == () and b.progress.layout.display == "none"
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
    started = time.monotonic()
    row(b, "many/").name.click()
    entered = time.monotonic() - started
    assert names(b)[:2] == ["f000000.txt", "f000001.txt"] and len(names(b)) == 50
    assert len(b.listing.children) == 5 * 51  # header + one page of rows, nothing more
    assert b.page_info.value == "1–50 of 100,000"
    b.next_button.click()
    assert names(b)[0] == "f000050.txt" and b.page_info.value == "51–100 of 100,000"
    b.prev_button.click()
    assert names(b)[0] == "f000000.txt" and b.prev_button.disabled
    started = time.monotonic()
    b.sort_buttons["size"].click()
    b.sort_buttons["size"].click()
    b.filter.value = "f09999"
    resorted = time.monotonic() - started
    expected = sorted((f"f09999{i}.txt" for i in range(10)), key=lambda n: (int(n[1:7]) % 7, n))
    assert names(b) == expected[::-1]  # by size, biggest first
    assert len(b._rows) == 50  # row widgets are reused, never more than one page
    assert entered < 10 and resorted < 5, (entered, resorted)


def test_shows_when_the_head_is_ahead_of_a_mount_in_this_kernel(
    vol: Volume, tmp_path: Path
) -> None:
    m = vol.mount(tmp_path / "mnt", background=False)
    b = VolumeBrowser(vol)
    assert "up to date" in b.mount_info.value
    assert b.reload_mount_button.layout.display == "none"
    b.upload.value = upload_value(("via-widget.txt", b"hi"))
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
