"""The sidebar as a demanding JupyterLab user drives it: each bug of the sidebar issue and
each file-browser and history behaviour, in Debian's Chromium against a real JupyterLab.

One JupyterLab (and one Chromium) serves the whole module, each test on a fresh page
and volumes of its own, so the module adds about a minute to a run. Volumes are
prepared with the Python API on the same store the server uses; what the sidebar did is
checked in the store too, not only on screen. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import io
import json
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sidebar_browser import (
    ARTIFACTS,
    PANEL,
    REPO,
    TIMEOUT,
    _dialog_accept,
    _labextension_path,
    _open_panel,
)

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import JupyterLab, chromium

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    base = tmp_path_factory.mktemp("sidebar-behaviour")
    env = {
        "JUPYTER_VOLUME_STORE": (base / "store").as_uri(),
        **private_folders(base),
        "JUPYTER_PATH": str(_labextension_path(base)),
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
    }
    with JupyterLab(env=env) as server:
        try:
            yield server
        except BaseException:
            print(server.log_tail(100))
            raise


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def store(lab: JupyterLab) -> str:
    return lab.extra_env["JUPYTER_VOLUME_STORE"]


@pytest.fixture(scope="module")
def lab_page(lab: JupyterLab, browser: Any) -> Iterator[Any]:
    """One Lab page for the module: loading JupyterLab is most of a test's time."""
    p = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    # ?reset: a fresh workspace, so the sidebar is not restored open (clicking its tab
    # would then close it)
    p.goto(lab.lab_url().replace("/lab/?", "/lab/?reset&"), timeout=TIMEOUT * 2)
    p.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=TIMEOUT * 2)
    p.wait_for_selector("#jupyterlab-splash", state="detached", timeout=TIMEOUT * 2)
    _open_panel(p)
    yield p
    p.close()


@pytest.fixture
def page(lab_page: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's page, tidy: no dialog or menu left open, the Files tab shown."""
    p = lab_page
    p.keyboard.press("Escape")
    for dialog in p.locator(".jp-Dialog").all():
        dialog.locator(".jp-Dialog-button.jp-mod-reject, .jp-Dialog-button").first.click()
    panel = p.locator(PANEL)
    if panel.locator(".jp-VolumePanel-tabs").is_visible():
        panel.get_by_role("tab", name="Files").click()
    try:
        yield p
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / f"sidebar-{request.node.name}.png"))


def new_volume(store: str, files: dict[str, bytes] | None = None) -> tuple[str, Volume]:
    """A volume of its own for one test, with ``files`` committed in one commit."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    Volume.objects.create(name, store=store)
    vol = Volume.from_name(name, store=store)
    if files:
        with vol.batch_upload() as batch:
            for path, data in files.items():
                batch.put_file(io.BytesIO(data), path)
    return name, vol


def open_volume(page: Any, name: str) -> Any:
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    panel.locator(f"li[data-volume='{name}']").click()
    panel.locator(".jp-VolumePanel-breadcrumbs", has_text=name).wait_for(timeout=TIMEOUT)
    return panel


def row(panel: Any, path: str) -> Any:
    return panel.locator(f"tr.jp-VolumePanel-entry[data-path='{path}']")


def listed(panel: Any) -> list[str]:
    return panel.locator("tr.jp-VolumePanel-entry").evaluate_all(
        "rows => rows.map(r => r.dataset.path)"
    )


def sort_by(panel: Any, key: str, direction: str) -> None:
    """Click a column's sort button and wait until the listing shows that sort (the
    server sorts the folder, so the rows change when its answer arrives)."""
    panel.locator(f"button.jp-VolumePanel-sort[data-sort='{key}']").click()
    panel.locator(f"th[aria-sort='{direction}'] > button[data-sort='{key}']").wait_for(
        timeout=TIMEOUT
    )


def read(store: str, name: str, path: str) -> bytes:
    return b"".join(Volume.from_name(name, store=store).read_file(path))


def paths(store: str, name: str) -> set[str]:
    vol = Volume.from_name(name, store=store)
    return {e.path for e in vol.iterdir("/", recursive=True) if e.type.name == "FILE"}


def drop_generated(page: Any, files: list[tuple[str, int, int]]) -> None:
    """Drop files made in the page onto the file list: (name, size, byte value) each.

    Big files are made by the page itself: sending them from Python through the
    browser's debugging protocol takes far longer than the upload under test.
    """
    page.evaluate(
        """([selector, files]) => {
            const zone = document.querySelector(selector);
            const dt = new DataTransfer();
            for (const [name, size, fill] of files) {
                dt.items.add(new File([new Uint8Array(size).fill(fill)], name));
            }
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
            }
        }""",
        [f"{PANEL} .jp-VolumePanel-files", files],
    )


def no_dialog(page: Any) -> None:
    """No JupyterLab dialog is open (an error modal would be one)."""
    page.wait_for_timeout(300)  # a modal is opened right after the action it reports
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()


# -- the bugs ------------------------------------------------------------------------------------
def test_an_upload_stays_in_the_volume_it_started_in(page: Any, store: str) -> None:
    a, _ = new_volume(store)
    b, _ = new_volume(store)
    panel = open_volume(page, a)
    # two chunks: the first file takes a moment to send
    drop_generated(page, [("big.bin", 12 * MiB, 7), ("one.txt", 1, 49), ("two.txt", 1, 50)])
    # The queue is visible while the first file is sent; then the user opens volume b.
    panel.locator(".jp-VolumePanel-upload[data-state='queued']").first.wait_for(timeout=TIMEOUT)
    panel.locator(f"li[data-volume='{b}']").click()
    panel.locator(".jp-VolumePanel-breadcrumbs", has_text=b).wait_for(timeout=TIMEOUT)
    for name in ("big.bin", "one.txt", "two.txt"):
        panel.locator(f".jp-VolumePanel-upload[data-path='{name}'][data-state='done']").wait_for(
            timeout=TIMEOUT * 2
        )
    assert paths(store, a) == {"big.bin", "one.txt", "two.txt"}
    assert paths(store, b) == set()
    assert read(store, a, "big.bin") == b"\x07" * (12 * MiB)
    assert read(store, a, "one.txt") == b"1"
    # The transfers say where the files went, and volume b's listing stayed empty.
    assert f"uploaded into {a}" in panel.locator(".jp-VolumePanel-uploads").inner_text()
    assert listed(panel) == []


def test_cancel_on_replace_is_not_a_failure_and_errors_stay_in_the_panel(
    page: Any, store: str
) -> None:
    name, _ = new_volume(store, {"notes.txt": b"keep me", "data/inside.txt": b"x"})
    panel = open_volume(page, name)
    panel.locator("input.jp-VolumePanel-fileInput").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"new"}]
    )
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT)
    assert "already exists" in dialog.inner_text()
    dialog.locator(".jp-Dialog-button.jp-mod-reject").click()
    up = panel.locator(".jp-VolumePanel-upload[data-path='notes.txt']")
    up.and_(page.locator("[data-state='skipped']")).wait_for(timeout=TIMEOUT)
    assert "not replaced" in up.inner_text()
    no_dialog(page)
    assert read(store, name, "notes.txt") == b"keep me"

    # A real failure (a file onto a folder's name) is shown on its row, not in a modal.
    panel.locator("input.jp-VolumePanel-fileInput").set_input_files(
        files=[{"name": "data", "mimeType": "text/plain", "buffer": b"oops"}]
    )
    failed = panel.locator(".jp-VolumePanel-upload[data-path='data'][data-state='error']")
    failed.wait_for(timeout=TIMEOUT)
    assert "folder" in failed.locator("[role='alert']").inner_text()
    no_dialog(page)


def test_a_running_upload_can_be_cancelled(page: Any, store: str) -> None:
    name, _ = new_volume(store)
    panel = open_volume(page, name)
    drop_generated(page, [("huge.bin", 40 * MiB, 1)])
    up = panel.locator(".jp-VolumePanel-upload[data-path='huge.bin']")
    up.and_(page.locator("[data-state='uploading']")).wait_for(timeout=TIMEOUT)
    # bytes and a speed are shown while it runs
    panel.locator(
        ".jp-VolumePanel-upload[data-path='huge.bin']", has_text=re.compile(r"/s")
    ).wait_for(timeout=TIMEOUT)
    assert re.search(r"MiB of 40 MiB", up.inner_text()), up.inner_text()
    panel.get_by_role("button", name="Cancel upload of huge.bin").click()
    up.and_(page.locator("[data-state='cancelled']")).wait_for(timeout=TIMEOUT)
    no_dialog(page)
    assert paths(store, name) == set()


def test_restoring_a_deleted_path_and_counts_that_match_the_change_list(
    page: Any, store: str
) -> None:
    name, vol = new_volume(
        store, {"keep.txt": b"precious", "dir/a.txt": b"a", "dir/b.txt": b"b", "x.txt": b"1"}
    )
    vol.remove_file("keep.txt")
    vol.remove_file("dir", recursive=True)
    head = vol.history(limit=1)[0].seq
    panel = open_volume(page, name)
    panel.get_by_role("tab", name="History").click()
    commit = panel.locator(f"li.jp-VolumePanel-commit[data-seq='{head}']")
    commit.get_by_role("button", name=f"Show changes of commit {head}").click()
    commit.locator(".jp-VolumePanel-change").first.wait_for(timeout=TIMEOUT)
    # The commit removed a folder of two files: "−2", and two deleted rows.
    counts = commit.locator(".jp-VolumePanel-counts")
    deleted = commit.locator(".jp-VolumePanel-change.jp-mod-deleted")
    assert counts.get_attribute("data-deleted") == str(deleted.count()) == "2"
    assert "−2" in counts.inner_text()

    earlier = panel.locator(f"li.jp-VolumePanel-commit[data-seq='{head - 1}']")
    earlier.get_by_role("button", name=f"Show changes of commit {head - 1}").click()
    earlier.get_by_role("button", name=f"Restore keep.txt as before commit {head - 1}").click()
    _dialog_accept(page)
    panel.locator("li.jp-VolumePanel-commit").first.locator(
        ".jp-VolumePanel-message", has_text="restore keep.txt"
    ).wait_for(timeout=TIMEOUT)
    no_dialog(page)
    assert read(store, name, "keep.txt") == b"precious"


def test_renaming_the_open_volume_updates_the_breadcrumb(page: Any, store: str) -> None:
    name, _ = new_volume(store, {"f.txt": b"x"})
    panel = open_volume(page, name)
    panel.locator(f"li[data-volume='{name}']").hover()
    panel.get_by_role("button", name=f"Rename volume {name}").click()
    _dialog_accept(page, name + "-new")
    panel.locator(".jp-VolumePanel-breadcrumbs .jp-VolumePanel-crumb").first.filter(
        has_text=re.compile(f"^{name}-new$")
    ).wait_for(timeout=TIMEOUT)
    row(panel, "f.txt").wait_for(timeout=TIMEOUT)


def test_renaming_a_file_to_a_path_is_refused(page: Any, store: str) -> None:
    name, _ = new_volume(store, {"f.txt": b"x", "sub/g.txt": b"y"})
    panel = open_volume(page, name)
    for bad in ("sub/f.txt", "..", "../f.txt"):
        row(panel, "f.txt").click()
        page.keyboard.press("F2")
        ask = page.locator(".jp-Dialog", has_text="Rename f.txt")
        ask.locator("input").fill(bad)
        ask.locator(".jp-Dialog-button.jp-mod-accept").click()
        refused = page.locator(".jp-Dialog", has_text="Invalid name")
        refused.wait_for(timeout=TIMEOUT)
        refused.locator(".jp-Dialog-button").last.click()
        refused.wait_for(state="detached", timeout=TIMEOUT)
    assert paths(store, name) == {"f.txt", "sub/g.txt"}


# -- the file list -------------------------------------------------------------------------------
def test_sort_select_keyboard_context_menu_and_open(page: Any, store: str) -> None:
    name, vol = new_volume(
        store,
        {
            "b-medium.txt": b"m" * 100,
            "a-small.txt": b"s",
            "c-large.txt": b"l" * 1000,
            "folder/inner.txt": b"in",
        },
    )
    panel = open_volume(page, name)
    row(panel, "c-large.txt").wait_for(timeout=TIMEOUT)
    assert listed(panel) == ["folder", "a-small.txt", "b-medium.txt", "c-large.txt"]
    sort_by(panel, "size", "ascending")
    assert listed(panel) == ["folder", "a-small.txt", "b-medium.txt", "c-large.txt"]
    assert panel.locator("th[aria-sort='ascending']").inner_text().startswith("Size")
    sort_by(panel, "size", "descending")
    assert listed(panel) == ["folder", "c-large.txt", "b-medium.txt", "a-small.txt"]
    sort_by(panel, "name", "ascending")
    assert listed(panel) == ["folder", "a-small.txt", "b-medium.txt", "c-large.txt"]

    # Click, ctrl-click and shift-click select; arrows move; Delete asks for all of them.
    selected = panel.locator("tr.jp-VolumePanel-entry[aria-selected='true']")
    row(panel, "a-small.txt").click()
    row(panel, "c-large.txt").click(modifiers=["Control"])
    assert selected.count() == 2
    row(panel, "a-small.txt").click()
    row(panel, "c-large.txt").click(modifiers=["Shift"])
    assert selected.count() == 3
    row(panel, "a-small.txt").click()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    assert [r for r in listed(panel) if row(panel, r).get_attribute("aria-selected") == "true"] == [
        "b-medium.txt",
        "c-large.txt",
    ]
    page.keyboard.press("Delete")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT)
    assert "these 2 items" in dialog.inner_text()
    before = vol.refresh().seq
    _dialog_accept(page)
    row(panel, "c-large.txt").wait_for(state="detached", timeout=TIMEOUT)
    assert paths(store, name) == {"a-small.txt", "folder/inner.txt"}
    # one commit for the two (a commit each left half a delete behind when one failed)
    assert vol.refresh().seq == before + 1
    assert vol.history()[0].message == "remove b-medium.txt, c-large.txt"

    # The context menu.
    row(panel, "a-small.txt").click(button="right")
    menu = page.locator(".jp-VolumePanel-menu[role='menu']")
    menu.wait_for(timeout=TIMEOUT)
    items = menu.get_by_role("menuitem").all_inner_texts()
    assert items == ["Open (read-only)", "Download", "Rename", "Delete", "Copy path"]
    with page.expect_download(timeout=TIMEOUT) as dl:
        menu.get_by_role("menuitem", name="Download").click()
    assert Path(dl.value.path()).read_bytes() == b"s"

    # Double-click opens a file read-only in the main area; Enter opens a folder.
    row(panel, "a-small.txt").dblclick()
    viewer = page.locator(".jp-VolumeViewer-body[data-path='a-small.txt']")
    viewer.locator(".jp-VolumeViewer-text", has_text="s").wait_for(timeout=TIMEOUT)
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="a-small.txt").count()
    row(panel, "folder").click()
    page.keyboard.press("Enter")
    row(panel, "folder/inner.txt").wait_for(timeout=TIMEOUT)


def test_sorting_a_large_folder_sorts_all_of_it_and_scrolling_continues_the_order(
    page: Any, store: str
) -> None:
    # 2,000 files, four pages of the sidebar's 500: names and sizes in unrelated
    # orders, the largest file far from the first page by name.
    n, page_size = 2000, 500
    sizes = {f"f-{i:04d}.bin": (i * 1237) % n + 1 for i in range(n)}
    biggest = max(sizes, key=sizes.__getitem__)
    assert sorted(sizes).index(biggest) >= page_size, "the largest file must not be on page 1"
    name, vol = new_volume(store)
    with vol.batch_upload() as batch:
        for path, size in sizes.items():
            batch.put_file(io.BytesIO(b"z" * size), path)
        batch.put_file(io.BytesIO(b"tiny"), "a-folder/inner.txt")
    by_size = sorted(sizes, key=sizes.__getitem__)  # sizes are all different
    panel = open_volume(page, name)
    rows = panel.locator("tr.jp-VolumePanel-entry")
    row(panel, "f-0498.bin").wait_for(state="attached", timeout=TIMEOUT)
    assert rows.count() == 1 + page_size - 1  # the folder and the first page's files

    sort_by(panel, "size", "ascending")
    sort_by(panel, "size", "descending")
    assert listed(panel)[:3] == ["a-folder", biggest, by_size[-2]]
    assert rows.nth(1).locator(".jp-VolumePanel-size").inner_text() == "2.0 KiB"  # 2,000 B
    assert rows.count() == page_size

    # Scrolling to the end loads the next pages, and the order goes on across them.
    listing = panel.locator(".jp-VolumePanel-listing")
    want = ["a-folder", *reversed(by_size)]
    for loaded in (2 * page_size, 3 * page_size, 4 * page_size, n + 1):
        listing.evaluate("e => { e.scrollTop = e.scrollHeight; }")
        rows.nth(loaded - 1).wait_for(state="attached", timeout=TIMEOUT)
    assert listed(panel) == want
    assert rows.count() == n + 1
    assert panel.get_by_role("button", name=re.compile("^Show more")).count() == 0

    # Another sort starts again from the top and from the first page.
    sort_by(panel, "size", "ascending")
    assert listed(panel) == ["a-folder", *by_size[: page_size - 1]]
    assert listing.evaluate("e => e.scrollTop") == 0
    listing.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    rows.nth(2 * page_size - 1).wait_for(state="attached", timeout=TIMEOUT)
    assert listed(panel)[: 2 * page_size] == ["a-folder", *by_size[: 2 * page_size - 1]]
    sort_by(panel, "name", "ascending")


# -- history ---------------------------------------------------------------------------------------
def test_history_compare_diff_browse_and_whole_volume_restore(page: Any, store: str) -> None:
    def notebook(source: str) -> bytes:
        cell = {"cell_type": "code", "metadata": {}, "outputs": [], "source": source}
        return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}).encode()

    name, vol = new_volume(
        store, {"notes.txt": b"one\ntwo\nthree\n", "nb.ipynb": notebook("x = 1\nprint(x)")}
    )
    first = vol.history(limit=1)[0].seq
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"one\n2\nthree\nfour\n"), "notes.txt")
        batch.put_file(io.BytesIO(b"new"), "added.txt")
        batch.put_file(io.BytesIO(notebook("x = 2\nprint(x)")), "nb.ipynb")
    second = vol.history(limit=1)[0].seq
    panel = open_volume(page, name)
    panel.get_by_role("tab", name="History").click()
    newest = panel.locator(f"li.jp-VolumePanel-commit[data-seq='{second}']")
    newest.wait_for(timeout=TIMEOUT)
    assert newest.locator("time").inner_text() == "just now"
    # Nothing to restore at the newest commit: not offered.
    assert newest.get_by_role("button", name=f"Restore commit {second}").count() == 0

    # Compare two commits.
    panel.get_by_role("checkbox", name=f"Compare commit {first}").check()
    panel.get_by_role("checkbox", name=f"Compare commit {second}").check()
    box = panel.locator(f".jp-VolumePanel-compare[data-a='{first}'][data-b='{second}']")
    box.locator(".jp-VolumePanel-change").first.wait_for(timeout=TIMEOUT)
    changes = box.locator(".jp-VolumePanel-change").evaluate_all(
        "rows => rows.map(r => r.dataset.path + ':' + r.className.match(/jp-mod-(\\w+)/)[1])"
    )
    assert sorted(changes) == ["added.txt:added", "nb.ipynb:modified", "notes.txt:modified"]

    # The text diff of a changed file, in the main area.
    box.get_by_role("button", name="Show the diff of notes.txt").click()
    diff = page.locator(".jp-VolumeViewer-diffBody[data-path='notes.txt']")
    diff.locator(".jp-VolumeViewer-diffLine").first.wait_for(timeout=TIMEOUT)
    lines = diff.locator(".jp-VolumeViewer-diffLine").evaluate_all(
        "rows => rows.map(r => r.textContent)"
    )
    assert lines == [" one", "-two", "+2", " three", "+four"]
    # a notebook is compared by nbdime (test_notebook_diff_is_nbdimes_with_sources_and_outputs
    # looks closer), not as JSON
    box.get_by_role("button", name="Show the diff of nb.ipynb").click()
    nb_diff = page.locator(".jp-VolumeViewer-diffBody[data-path='nb.ipynb'][data-diff='nbdime']")
    nb_diff.wait_for(timeout=TIMEOUT)

    # Browse the tree as it was at the first commit (read-only), then come back.
    panel.locator(f"li.jp-VolumePanel-commit[data-seq='{first}']").get_by_role(
        "button", name=f"Browse files at commit {first}"
    ).click()
    panel.locator(".jp-VolumePanel-atBanner", has_text=f"commit #{first}").wait_for(timeout=TIMEOUT)
    row(panel, "notes.txt").wait_for(timeout=TIMEOUT)
    assert listed(panel) == ["nb.ipynb", "notes.txt"]
    assert panel.get_by_role("button", name="Upload files").is_hidden()
    with page.expect_download(timeout=TIMEOUT) as dl:
        row(panel, "notes.txt").hover()
        panel.get_by_role("button", name="Download notes.txt").click()
    assert Path(dl.value.path()).read_bytes() == b"one\ntwo\nthree\n"
    panel.get_by_role("button", name="Back to the latest files").click()
    row(panel, "added.txt").wait_for(timeout=TIMEOUT)

    # A whole-volume restore warns what it does.
    panel.get_by_role("tab", name="History").click()
    panel.locator(f"li.jp-VolumePanel-commit[data-seq='{first}']").get_by_role(
        "button", name=f"Restore commit {first}"
    ).click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT)
    text = dialog.inner_text()
    assert "files added since are removed" in text and "Restore volume" in text
    dialog.locator(".jp-Dialog-button.jp-mod-reject").click()
    assert paths(store, name) == {"notes.txt", "added.txt", "nb.ipynb"}


def _nb_v4(*cells: tuple[str, str, str | None]) -> bytes:
    """A notebook of (id, source, stream output or None for markdown) cells."""
    out = []
    for cid, source, stdout in cells:
        if stdout is None:
            out.append({"id": cid, "cell_type": "markdown", "metadata": {}, "source": source})
            continue
        stream = {"output_type": "stream", "name": "stdout", "text": stdout}
        out.append(
            {
                "id": cid,
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {},
                "outputs": [stream],
                "source": source,
            }
        )
    nb = {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1).encode()


def _open_nb_diff(page: Any, store: str, before: bytes, after: bytes) -> Any:
    """Commit two versions of analysis.ipynb and open its diff from the history."""
    name, vol = new_volume(store, {"analysis.ipynb": before})
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(after), "analysis.ipynb")
    head = vol.history(limit=1)[0].seq
    panel = open_volume(page, name)
    panel.get_by_role("tab", name="History").click()
    commit = panel.locator(f"li.jp-VolumePanel-commit[data-seq='{head}']")
    diff_button = commit.get_by_role("button", name="Show the diff of analysis.ipynb")
    commit.get_by_role("button", name=f"Show changes of commit {head}").click()
    diff_button.wait_for(timeout=TIMEOUT)
    # Opening a volume and its History tab each load the history: another load of the
    # same commits (here: the tab clicked again) must not redraw the list and close the
    # changes opened above (it did, and swallowed clicks on them).
    with page.expect_response(lambda r: "/history?" in r.url, timeout=TIMEOUT):
        panel.get_by_role("tab", name="History").click()
    page.wait_for_timeout(300)  # the answer is drawn (or not) right after it arrives
    assert diff_button.is_visible(), "a reload of the same history closed the changes"
    diff_button.click()
    body = page.locator(f".jp-VolumeViewer-diffBody[data-volume='{name}']")
    body.wait_for(timeout=TIMEOUT)
    return body


def test_notebook_diff_is_nbdimes_with_sources_and_outputs(page: Any, store: str) -> None:
    intro = ("c0", "# Analysis", None)
    before = _nb_v4(intro, ("c1", "x = 1\nprint(x * 10)", "10\n"))
    after = _nb_v4(intro, ("c1", "x = 2\nprint(x * 10)", "20\n"))
    body = _open_nb_diff(page, store, before, after)
    # nbdime's own notebook diff widget (its cells in the tab, below our banner), not
    # our text fallback
    body.and_(page.locator("[data-diff='nbdime']")).wait_for(timeout=TIMEOUT)
    assert body.locator(".jp-VolumeViewer-diffLine").count() == 0
    nbd = page.locator(".jp-VolumeViewer", has=body).locator(".jp-Notebook-diff")
    nbd.wait_for(timeout=TIMEOUT)
    assert nbd.locator(".jp-Cell-diff").count() == 2
    changed = nbd.locator(".jp-Cell-diff:not(.jp-Diff-unchanged)")
    assert changed.count() == 1
    # the changed source, side by side: the old lines on the left, the new on the right
    left = changed.locator(".jp-Cellrow-source .cm-diff-left-editor .cm-content")
    right = changed.locator(".jp-Cellrow-source .cm-diff-right-editor .cm-content")
    assert left.inner_text().splitlines() == ["x = 1", "print(x * 10)"]
    assert right.inner_text().splitlines() == ["x = 2", "print(x * 10)"]
    assert left.is_visible() and right.is_visible()
    # the changed output: the removed stream and the added one, each rendered and visible
    removed = changed.locator(".jp-Diff-deleted.jp-Diff-outputPanel .jp-Diff-renderedOutput")
    added = changed.locator(".jp-Diff-added.jp-Diff-outputPanel .jp-Diff-renderedOutput")
    assert removed.inner_text().strip() == "10"
    assert added.inner_text().strip() == "20"
    assert removed.is_visible() and added.is_visible()
    # Hiding unchanged cells leaves the changed one.
    unchanged = nbd.locator(".jp-Cell-diff.jp-Diff-unchanged")
    assert unchanged.is_visible()
    body.get_by_role("checkbox", name="Hide unchanged cells (1 of 2)").check()
    unchanged.wait_for(state="hidden", timeout=TIMEOUT)
    assert changed.is_visible()


def test_notebook_diff_falls_back_to_the_sources_when_nbdime_fails(page: Any, store: str) -> None:
    # nbdime cannot read a version that is not JSON: the server answers 422 and the view
    # shows the cells' sources as text instead, saying why. (nbdime missing, or switched
    # off with JUPYTER_VOLUME_NBDIME=0, is a 501 and takes the same path: see
    # tests/test_sidebar_nbdime.py for the server side.)
    after = _nb_v4(("c1", "x = 2", "2\n"))
    body = _open_nb_diff(page, store, b"not a notebook yet\n", after)
    body.and_(page.locator("[data-diff='text']")).wait_for(timeout=TIMEOUT)
    note = body.locator(".jp-VolumeViewer-nbdimeFallback")
    assert "not a notebook nbdime can read" in note.inner_text()
    body.locator(".jp-VolumeViewer-diffLine").first.wait_for(timeout=TIMEOUT)
    lines = body.locator(".jp-VolumeViewer-diffLine").evaluate_all(
        "rows => rows.map(r => r.textContent)"
    )
    assert lines == ["-not a notebook yet", "+# %% [code]", "+x = 2"]
    assert page.locator(".jp-VolumeViewer", has=body).locator(".jp-Notebook-diff").count() == 0


# -- Dicts and network file systems in the same list ------------------------------------------------
def test_dicts_and_network_file_systems_are_listed_with_their_kind(page: Any, store: str) -> None:
    from jupyter_volume import Dict, NetworkFileSystem

    tag = uuid.uuid4().hex[:6]
    d = Dict.from_name(f"cache-{tag}", create_if_missing=True, store=store)
    d["run-1"] = {"loss": 0.12}
    d["run-2"] = [1, 2, 3]
    nfs = NetworkFileSystem.from_name(f"share-{tag}", create_if_missing=True, store=store)
    nfs.write_file("shared.txt", io.BytesIO(b"on the nfs"))
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    dict_item = panel.locator(f"li[data-volume='cache-{tag}'][data-kind='dict']")
    nfs_item = panel.locator(f"li[data-volume='share-{tag}'][data-kind='nfs']")
    assert dict_item.locator(".jp-VolumePanel-kind").inner_text(timeout=TIMEOUT) == "Dict"
    assert nfs_item.locator(".jp-VolumePanel-kind").inner_text() == "NFS"

    nfs_item.click()
    row(panel, "shared.txt").wait_for(timeout=TIMEOUT)

    dict_item.click()
    entry = panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'run-1'")
    entry.wait_for(timeout=TIMEOUT)
    cells = entry.locator("td").all_inner_texts()
    assert cells[:3] == ["'run-1'", "{'loss': 0.12}", "dict"]
    panel.get_by_role("button", name="Delete entry 'run-2'").click()
    _dialog_accept(page)
    panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'run-2'").wait_for(
        state="detached", timeout=TIMEOUT
    )
    assert list(d.keys()) == ["run-1"]


# -- late answers and other writers ------------------------------------------------------------------
def _hold(page: Any, pattern: str) -> list[Any]:
    """Hold the requests matching ``pattern`` until the test lets them go (its answer then
    arrives late: a slow store, a big Dict or history)."""
    held: list[Any] = []
    page.route(pattern, lambda route: held.append(route))
    return held


def _release_late(page: Any, held: list[Any], pattern: str, part: str) -> None:
    """Let the held requests go and wait for their answers, then for the page to use them."""
    assert held, f"no request matched {pattern}"
    with page.expect_response(lambda r: part in r.url, timeout=TIMEOUT):
        for route in held:
            route.continue_()
    page.unroute(pattern)
    page.wait_for_timeout(500)  # the panel handles the answer (no assertion on how long)


def test_a_dicts_late_entries_are_not_shown_under_another_dict(page: Any, store: str) -> None:
    """Dict a's entries arrive after Dict b was opened: they are dropped, so b's rows and
    their Delete stay b's (a late a page was drawn under b's name and its Delete removed
    b's entry of the same key). The delay is made by holding a's request in the browser."""
    from jupyter_volume import Dict

    tag = uuid.uuid4().hex[:6]
    a = Dict.from_name(f"late-a-{tag}", create_if_missing=True, store=store)
    a["shared"] = "a value"
    b = Dict.from_name(f"late-b-{tag}", create_if_missing=True, store=store)
    b["shared"] = "b value"
    b["keep"] = 1
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    pattern = f"**/jupyter-volume/api/dicts/late-a-{tag}/entries*"
    held = _hold(page, pattern)
    panel.locator(f"li[data-volume='late-a-{tag}'][data-kind='dict']").click()
    panel.locator(f"li[data-volume='late-b-{tag}'][data-kind='dict']").click()
    panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'keep'").wait_for(timeout=TIMEOUT)
    _release_late(page, held, pattern, f"late-a-{tag}/entries")

    assert panel.locator(".jp-VolumePanel-dictName").inner_text() == f"late-b-{tag}"
    values = panel.locator("td.jp-VolumePanel-dictValue").all_inner_texts()
    assert sorted(values) == ["'b value'", "1"]
    panel.get_by_role("button", name="Delete entry 'shared'").click()
    _dialog_accept(page)
    panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'shared'").wait_for(
        state="detached", timeout=TIMEOUT
    )
    assert list(b.keys()) == ["keep"]
    assert list(a.keys()) == ["shared"]


def test_a_volumes_late_history_is_not_shown_as_another_volumes(page: Any, store: str) -> None:
    """Volume a's history arrives after volume b was opened: b's History tab keeps b's
    commits, so its Restore buttons restore b's own (a late answer listed a's commits
    under b, and restoring one of them rewound b). The delay is made by holding a's
    history request in the browser."""
    a, va = new_volume(store)
    b, vb = new_volume(store)
    for i in (1, 2, 3):
        for vol, path in ((va, f"only-in-a-{i}.txt"), (vb, f"b{i}.txt")):
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"x"), path)
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    pattern = f"**/jupyter-volume/api/volumes/{a}/history*"
    held = _hold(page, pattern)
    panel.locator(f"li[data-volume='{a}']").click()
    panel.locator(".jp-VolumePanel-breadcrumbs", has_text=a).wait_for(timeout=TIMEOUT)
    panel.locator(f"li[data-volume='{b}']").click()
    panel.locator(".jp-VolumePanel-breadcrumbs", has_text=b).wait_for(timeout=TIMEOUT)
    panel.get_by_role("tab", name="History").click()
    panel.locator(".jp-VolumePanel-message", has_text="b3.txt").wait_for(timeout=TIMEOUT)
    _release_late(page, held, pattern, f"volumes/{a}/history")

    messages = panel.locator(".jp-VolumePanel-message").all_inner_texts()
    assert not [m for m in messages if "only-in-a" in m], messages
    assert [m for m in messages if "upload b" in m] == [
        "upload b3.txt",
        "upload b2.txt",
        "upload b1.txt",
    ]


def test_double_clicking_a_folder_opens_that_folder_only(page: Any, store: str) -> None:
    """A double click on a folder's name opens it, and not the subfolder drawn under the
    pointer after the first click (the name opened on a single click, so the second
    click landed on the new listing); a single click selects, as in JupyterLab."""
    name, _ = new_volume(store, {"a/b/deep.txt": b"d", "a/x.txt": b"x", "top.txt": b"t"})
    panel = open_volume(page, name)
    label = row(panel, "a").locator(".jp-VolumePanel-entryName")
    label.wait_for(timeout=TIMEOUT)
    box = label.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # a user's double click: a click, and a moment later the second one
    page.mouse.click(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y, click_count=2)
    row(panel, "a/x.txt").wait_for(timeout=TIMEOUT)
    page.wait_for_timeout(500)  # a second navigation, if any, would have started
    assert panel.locator(".jp-VolumePanel-crumb").all_inner_texts() == [name, "a"]
    # One click on a folder selects it and stays here.
    row(panel, "a/b").locator(".jp-VolumePanel-entryName").click()
    assert row(panel, "a/b").get_attribute("aria-selected") == "true"
    assert panel.locator(".jp-VolumePanel-crumb").all_inner_texts() == [name, "a"]


def test_enter_on_a_button_in_the_file_list_does_what_the_button_says(
    page: Any, store: str
) -> None:
    """With a cursor row set, Enter on the "Sort by size" button sorts (it opened the
    cursor's folder, and the sort never happened)."""
    name, _ = new_volume(store, {"dir/inside.txt": b"i", "a.txt": b"aaaa", "b.txt": b"b"})
    panel = open_volume(page, name)
    row(panel, "a.txt").wait_for(timeout=TIMEOUT)
    panel.locator(".jp-VolumePanel-listing").focus()
    page.keyboard.press("ArrowDown")
    panel.locator("tr.jp-mod-cursor[data-path='dir']").wait_for(timeout=TIMEOUT)
    panel.get_by_role("button", name="Sort by size").focus()
    page.keyboard.press("Enter")
    panel.locator("th[aria-sort='ascending'] > button[data-sort='size']").wait_for(timeout=TIMEOUT)
    assert listed(panel) == ["dir", "b.txt", "a.txt"]
    assert panel.locator(".jp-VolumePanel-crumb").all_inner_texts() == [name]
    sort_by(panel, "name", "ascending")


def test_an_upload_whose_path_another_writer_created_meanwhile_asks_to_replace(
    page: Any, store: str
) -> None:
    """A file another writer creates at the upload's path while its bytes are sent: the
    sidebar asks "Replace?" as it does when the path is taken at the start; yes commits
    the upload, no keeps the other file ("not replaced"). Before, the whole transfer was
    discarded with a Python-API message. The other writer gets its moment by holding
    the upload's chunk request in the browser."""
    name, vol = new_volume(store)
    panel = open_volume(page, name)
    for answer, fname in ((True, "report.csv"), (False, "table.csv")):
        pattern = f"**/jupyter-volume/api/volumes/{name}/uploads/*?offset=*"
        held = _hold(page, pattern)
        drop_generated(page, [(fname, 3 * MiB, 65)])
        up = panel.locator(f".jp-VolumePanel-upload[data-path='{fname}']")
        up.and_(page.locator("[data-state='uploading']")).wait_for(timeout=TIMEOUT)
        for _ in range(200):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the chunk request was not seen"
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"the notebook's report\n"), fname)
        for route in held:
            route.continue_()
        page.unroute(pattern)
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=TIMEOUT)
        assert "already exists" in dialog.inner_text() and fname in dialog.inner_text()
        if answer:
            _dialog_accept(page)
            up.and_(page.locator("[data-state='done']")).wait_for(timeout=TIMEOUT)
            assert read(store, name, fname) == b"A" * (3 * MiB)
        else:
            dialog.locator(".jp-Dialog-button.jp-mod-reject").click()
            up.and_(page.locator("[data-state='skipped']")).wait_for(timeout=TIMEOUT)
            assert "not replaced" in up.inner_text()
            assert read(store, name, fname) == b"the notebook's report\n"
        no_dialog(page)


def test_show_more_lists_every_file_when_another_writer_deletes_one_meanwhile(
    page: Any, store: str
) -> None:
    """The next page of a large folder continues the first page's listing (its commit),
    so a file deleted meanwhile shifts nothing: every file is listed once (the page by
    offset of the newest tree skipped the file that moved back across the page break)."""
    files = {f"f-{i:03d}.txt": b"x" for i in range(600)}
    name, vol = new_volume(store, files)
    panel = open_volume(page, name)
    row(panel, "f-499.txt").wait_for(state="attached", timeout=TIMEOUT)
    assert len(listed(panel)) == 500
    vol.remove_file("f-000.txt")
    # The click scrolls the button into view, and scrolling near the end of the listing
    # loads the next page by itself: that page is held until the click has landed (the
    # click then waits for the same page), else it could arrive first and take the
    # button away under the click (all 600 listed, the click timed out on a detached
    # button).
    pattern = f"**/jupyter-volume/api/volumes/{name}/tree*offset=500*"
    held = _hold(page, pattern)
    try:
        panel.get_by_role("button", name="Show more (500 of 600)").click()
        for _ in range(200):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the next page was not asked for"
        for route in held:
            route.continue_()
    finally:
        page.unroute(pattern)
    row(panel, "f-599.txt").wait_for(state="attached", timeout=TIMEOUT)
    assert listed(panel) == sorted(files)
    assert panel.get_by_role("button", name=re.compile("^Show more")).count() == 0
    # A refresh shows the folder as it is now.
    panel.get_by_role("button", name="Refresh folder").click()
    row(panel, "f-000.txt").wait_for(state="detached", timeout=TIMEOUT)
    assert len(listed(panel)) == 500
    assert panel.get_by_role("button", name="Show more (500 of 599)").count() == 1


def _focused(page: Any, within: str = ".jp-VolumePanel-listing") -> dict[str, Any]:
    """What has the keyboard focus: its tag, label, row (a file's path, a commit's seq or
    a Dict entry's id) and whether it is inside ``within`` (the file listing)."""
    return page.evaluate(
        """([panel, within]) => {
            const a = document.activeElement;
            const box = document.querySelector(panel + ' ' + within);
            const d = a && a.dataset ? a.dataset : {};
            return {
                tag: a ? a.tagName : null,
                label: a ? a.getAttribute('aria-label') : null,
                row: d.path ?? d.seq ?? d.id ?? null,
                inside: Boolean(a && box && box.contains(a)),
            };
        }""",
        [PANEL, within],
    )


def _next_page_held(page: Any, name: str, offset: int, act: Any) -> None:
    """Do ``act`` with the folder's page at ``offset`` held, then let the page go: the
    page is asked for once, whether by ``act`` or by the scrolling it causes (focusing
    "Show more" scrolls it into view, which loads the next page by itself)."""
    pattern = f"**/jupyter-volume/api/volumes/{name}/tree*offset={offset}&*"
    held = _hold(page, pattern)
    try:
        act()
        for _ in range(200):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, f"the page at {offset} was not asked for"
        for route in held:
            route.continue_()
    finally:
        page.unroute(pattern)


def test_the_keyboard_focus_stays_in_the_listing_when_show_more_loads_a_page(
    page: Any, store: str
) -> None:
    """Enter on "Show more" in a large folder (1,200 files, pages of 500) leaves the focus
    on "Show more" while there is more to load, then on the first row the last page
    brought; the same when the page loads by scrolling while "Show more" has the focus.
    Each page drew the listing anew, button included, and the focus fell to the main
    area."""
    files = {f"f-{i:04d}.txt": b"x" for i in range(1200)}
    name, _ = new_volume(store, files)
    panel = open_volume(page, name)
    row(panel, "f-0499.txt").wait_for(state="attached", timeout=TIMEOUT)
    more = panel.locator(".jp-VolumePanel-listing").get_by_role(
        "button", name=re.compile("^Show more")
    )

    def enter_on_show_more() -> None:
        more.focus()
        page.keyboard.press("Enter")

    _next_page_held(page, name, 500, enter_on_show_more)
    row(panel, "f-0999.txt").wait_for(state="attached", timeout=TIMEOUT)
    page.wait_for_timeout(300)  # the focus has settled
    assert _focused(page) == {
        "tag": "BUTTON",
        "label": "Show more (1000 of 1200)",
        "row": None,
        "inside": True,
    }

    # Enter again, on the focus as it is: the last page; the focus goes to its first row,
    # and the arrow keys go on from there.
    page.keyboard.press("Enter")
    row(panel, "f-1199.txt").wait_for(state="attached", timeout=TIMEOUT)
    page.wait_for_timeout(300)
    assert more.count() == 0
    assert _focused(page) == {"tag": "TR", "label": None, "row": "f-1000.txt", "inside": True}
    page.keyboard.press("ArrowDown")
    cursor = panel.locator("tr.jp-mod-cursor")
    assert cursor.get_attribute("data-path") == "f-1001.txt"
    assert cursor.get_attribute("aria-selected") == "true"
    assert _focused(page)["inside"]
    assert len(listed(panel)) == 1200

    # The next page loads by scrolling while "Show more" has the focus. (From the top:
    # the listing shrunk under a scrolled end would load that page by itself.)
    listing = panel.locator(".jp-VolumePanel-listing")
    listing.evaluate("e => { e.scrollTop = 0; }")
    panel.get_by_role("button", name="Refresh folder").click()
    row(panel, "f-0500.txt").wait_for(state="detached", timeout=TIMEOUT)
    assert len(listed(panel)) == 500

    def scroll_with_focus_on_show_more() -> None:
        more.focus()
        listing.evaluate("e => { e.scrollTop = e.scrollHeight; }")

    _next_page_held(page, name, 500, scroll_with_focus_on_show_more)
    row(panel, "f-0999.txt").wait_for(state="attached", timeout=TIMEOUT)
    page.wait_for_timeout(300)
    assert _focused(page)["label"] == "Show more (1000 of 1200)"


def _enter(page: Any, view: str, loaded: Any) -> dict[str, Any]:
    """Press Enter on the focus, wait for ``loaded`` (a row of the page that loads) and
    for the focus to settle; where the focus is then, in ``view``."""
    page.keyboard.press("Enter")
    loaded.wait_for(state="attached", timeout=TIMEOUT)
    page.wait_for_timeout(300)
    return _focused(page, view)


def test_the_keyboard_focus_stays_in_the_dict_when_show_more_entries_loads_a_page(
    page: Any, store: str
) -> None:
    """Enter on "Show more entries" of a Dict (250 entries, pages of 100) leaves the focus
    on that button while there is more to load, then on the first entry the last page
    brought. Each page drew the Dict view anew, button included, and the focus fell out
    of the panel."""
    from jupyter_volume import Dict

    tag = uuid.uuid4().hex[:6]
    d = Dict.from_name(f"paged-{tag}", create_if_missing=True, store=store)
    d.update({f"k-{i:03d}": i for i in range(250)})
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    panel.locator(f"li[data-volume='paged-{tag}'][data-kind='dict']").click()
    entries = panel.locator("tr.jp-VolumePanel-dictEntry")
    entries.nth(99).wait_for(state="attached", timeout=TIMEOUT)
    view = ".jp-VolumePanel-dict"
    more = panel.locator(view).get_by_role("button", name="Show more entries")
    more.focus()
    focus = _enter(page, view, entries.nth(199))
    assert focus == {"tag": "BUTTON", "label": "Show more entries", "row": None, "inside": True}

    # Enter again, on the focus as it is: the last page; the focus goes to its first entry.
    focus = _enter(page, view, entries.nth(249))
    assert more.count() == 0
    ids = entries.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert len(ids) == 250
    assert focus == {"tag": "TR", "label": None, "row": ids[200], "inside": True}
    # Tab goes on from that entry, to its own Delete button.
    page.keyboard.press("Tab")
    assert (
        _focused(page, view)["label"]
        == f"Delete entry {entries.nth(200).locator('td').first.inner_text()}"
    )


def test_the_keyboard_focus_stays_in_the_history_when_show_older_commits_loads_a_page(
    page: Any, store: str
) -> None:
    """Enter on "Show older commits" (250 commits, pages of 100) leaves the focus on that
    button while there are older ones, then on the first commit the last page brought.
    Each page drew the history anew, button included, and the focus fell out of the
    panel."""
    name, vol = new_volume(store)
    for i in range(249):  # and the volume's creation: 250 commits
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"x"), f"c{i}.txt")
    seqs = [c.seq for c in vol.history(limit=300)]
    assert len(seqs) == 250
    panel = open_volume(page, name)
    panel.get_by_role("tab", name="History").click()

    def commit(i: int) -> Any:
        return panel.locator(f"li.jp-VolumePanel-commit[data-seq='{seqs[i]}']")

    commit(99).wait_for(state="attached", timeout=TIMEOUT)
    view = ".jp-VolumePanel-history"
    more = panel.locator(view).get_by_role("button", name="Show older commits")
    more.focus()
    focus = _enter(page, view, commit(199))
    assert focus == {"tag": "BUTTON", "label": "Show older commits", "row": None, "inside": True}

    # Enter again, on the focus as it is: the last page; the focus goes to its first commit.
    focus = _enter(page, view, commit(249))
    assert more.count() == 0
    assert focus == {"tag": "LI", "label": None, "row": str(seqs[200]), "inside": True}
    # Tab goes on from that commit, to its own controls.
    page.keyboard.press("Tab")
    assert _focused(page, view)["label"] == f"Compare commit {seqs[200]}"


def test_show_older_commits_asks_only_for_the_page_older_than_the_oldest_shown(
    page: Any, store: str
) -> None:
    """ "Show older commits" asks for the 100 commits older than the oldest one shown and
    appends them. It asked for every commit shown again with a limit 100 higher, so each
    page cost all the pages before it."""
    name, vol = new_volume(store)
    for i in range(149):  # and the volume's creation: 150 commits
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"x"), f"c{i}.txt")
    seqs = [c.seq for c in vol.history()]
    assert len(seqs) == 150
    panel = open_volume(page, name)
    panel.get_by_role("tab", name="History").click()
    commits = panel.locator("li.jp-VolumePanel-commit")
    commits.nth(99).wait_for(state="attached", timeout=TIMEOUT)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/history?" in r.url else None)
    more = panel.locator(".jp-VolumePanel-history").get_by_role("button", name="Show older commits")
    with page.expect_response(lambda r: "/history?" in r.url, timeout=TIMEOUT):
        more.click()
    commits.nth(149).wait_for(state="attached", timeout=TIMEOUT)
    assert more.count() == 0
    shown = commits.evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert shown == seqs
    assert len(asked) == 1, asked
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(asked[0]).query)
    assert (query["limit"], query["before"]) == (["100"], [str(seqs[99])]), asked


def test_a_dict_value_the_server_cannot_read_shows_why(
    page: Any, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value whose class exists only in the kernel shows the server's reason in its
    Value cell (it was a blank cell, as if the value were an empty string)."""
    from jupyter_volume import Dict

    module = f"only_in_the_kernel_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{module}.py").write_text("class Model:\n    weights = [1, 2, 3]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(module)
    tag = uuid.uuid4().hex[:6]
    d = Dict.from_name(f"models-{tag}", create_if_missing=True, store=store)
    d["best"] = mod.Model()
    d["plain"] = "fine"
    panel = page.locator(PANEL)
    panel.get_by_role("button", name="Refresh volumes").click()
    panel.locator(f"li[data-volume='models-{tag}'][data-kind='dict']").click()
    value = panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'best'").locator(
        "td.jp-VolumePanel-dictValue"
    )
    value.wait_for(timeout=TIMEOUT)
    assert "unreadable here" in value.inner_text() and module in value.inner_text()
    assert "jp-mod-error" in (value.get_attribute("class") or "")
    plain = panel.locator("tr.jp-VolumePanel-dictEntry", has_text="'plain'")
    assert plain.locator("td.jp-VolumePanel-dictValue").inner_text() == "'fine'"


def test_commits_ticked_in_one_volume_are_not_ticked_in_the_next(page: Any, store: str) -> None:
    """Ticks for a comparison belong to the volume they were made in: opening another
    volume shows its history with nothing ticked and no comparison (its commits #1 and
    #2 were ticked and compared)."""
    names = []
    for prefix in ("a", "b"):
        name, vol = new_volume(store)
        for i in (1, 2, 3):
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"x" * i), f"{prefix}{i}.txt")
        names.append(name)
    panel = open_volume(page, names[0])
    panel.get_by_role("tab", name="History").click()
    for seq in (1, 2):
        panel.get_by_role("checkbox", name=f"Compare commit {seq}").check()
    panel.locator(".jp-VolumePanel-compare:not([hidden])").wait_for(timeout=TIMEOUT)
    panel.locator(f"li[data-volume='{names[1]}']").click()
    panel.locator(f"li.jp-mod-selected[data-volume='{names[1]}']").wait_for(timeout=TIMEOUT)
    panel.get_by_role("tab", name="History").click()
    panel.locator(".jp-VolumePanel-message", has_text="b3.txt").wait_for(timeout=TIMEOUT)
    assert panel.locator("input.jp-VolumePanel-pick:checked").count() == 0
    assert panel.locator(".jp-VolumePanel-compare").is_hidden()


def test_downloading_a_file_another_writer_removed_says_why(page: Any, store: str) -> None:
    """Download of a listed file that another writer removed since: an error dialog with
    the server's message (the browser's own download failed, and the panel said nothing)."""
    name, vol = new_volume(store, {"results.csv": b"a,b\n1,2\n", "kept.csv": b"k"})
    panel = open_volume(page, name)
    row(panel, "results.csv").wait_for(timeout=TIMEOUT)
    vol.remove_file("results.csv")
    row(panel, "results.csv").hover()
    panel.get_by_role("button", name="Download results.csv").click()
    dialog = page.locator(".jp-Dialog", has_text="Cannot download results.csv")
    dialog.wait_for(timeout=TIMEOUT)
    assert "results.csv" in dialog.locator(".jp-Dialog-body").inner_text()
    dialog.locator(".jp-Dialog-button").last.click()
    dialog.wait_for(state="detached", timeout=TIMEOUT)
    # a file that is there still downloads
    with page.expect_download(timeout=TIMEOUT) as dl:
        row(panel, "kept.csv").hover()
        panel.get_by_role("button", name="Download kept.csv").click()
    assert Path(dl.value.path()).read_bytes() == b"k"
    no_dialog(page)


def test_a_download_gets_the_version_it_checked_whatever_is_committed_meanwhile(
    page: Any, store: str
) -> None:
    """The panel checks a file (HEAD) before the browser downloads it (GET). A writer
    removing the file in between made the browser's download fail with no word in the
    panel (its check had passed); now the download asks for the commit checked."""
    name, vol = new_volume(store, {"model.bin": b"checked version"})
    panel = open_volume(page, name)
    row(panel, "model.bin").wait_for(timeout=TIMEOUT)

    def checked_then_removed(route: Any) -> None:
        response = route.fetch()  # the server answers the check first
        vol.remove_file("model.bin")  # then another writer commits
        route.fulfill(response=response)

    page.route(
        re.compile(r".*/files/model\.bin(\?.*)?$"),
        lambda r: checked_then_removed(r) if r.request.method == "HEAD" else r.continue_(),
    )
    try:
        with page.expect_download(timeout=TIMEOUT) as dl:
            row(panel, "model.bin").hover()
            panel.get_by_role("button", name="Download model.bin").click()
        assert dl.value.failure() is None
        assert Path(dl.value.path()).read_bytes() == b"checked version"
    finally:
        page.unroute(re.compile(r".*/files/model\.bin(\?.*)?$"))
    assert "model.bin" not in paths(store, name)  # the removal did land in between
    no_dialog(page)


def test_opening_a_file_again_after_it_changed_shows_the_new_content(page: Any, store: str) -> None:
    """A file opened, changed by another writer, the listing refreshed, opened again: the
    tab shows the new content and says which version (it showed the old tab, unchanged);
    opening an unchanged file again still only shows its tab."""
    name, vol = new_volume(store, {"changing.txt": b"old text\n"})
    panel = open_volume(page, name)
    row(panel, "changing.txt").dblclick()
    viewer = page.locator(".jp-VolumeViewer-body[data-path='changing.txt']:visible")
    viewer.locator(".jp-VolumeViewer-text", has_text="old text").wait_for(timeout=TIMEOUT)
    row(panel, "changing.txt").dblclick()
    page.wait_for_timeout(300)
    assert page.locator(".jp-VolumeViewer-body[data-path='changing.txt']").count() == 1
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"NEW TEXT from another writer\n"), "changing.txt")
    panel.get_by_role("button", name="Refresh folder").click()
    row(panel, "changing.txt").locator(".jp-VolumePanel-size", has_text="29 B").wait_for(
        timeout=TIMEOUT
    )
    row(panel, "changing.txt").dblclick()
    viewer.locator(".jp-VolumeViewer-text", has_text="NEW TEXT").wait_for(timeout=TIMEOUT)
    assert page.locator(".jp-VolumeViewer-body[data-path='changing.txt']").count() == 1
    assert "modified" in viewer.locator(".jp-VolumeViewer-banner").inner_text()


# -- layout and contrast, in both themes --------------------------------------------------------------
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"

#: Every visible leaf of each file row, as boxes; a pair that overlaps is reported.
OVERLAPS_JS = """panel => {
  const out = [];
  for (const tr of panel.querySelectorAll('tr.jp-VolumePanel-entry')) {
    const parts = [...tr.querySelectorAll('.jp-VolumePanel-icon, .jp-VolumePanel-entryName,'
      + ' td.jp-VolumePanel-size, td.jp-VolumePanel-mtime, .jp-VolumePanel-actions button')]
      .filter(e => {
        const s = getComputedStyle(e);
        const r = e.getBoundingClientRect();
        return s.display !== 'none' && s.visibility !== 'hidden' && s.opacity !== '0'
          && r.width > 0 && r.height > 0 && (e.textContent.trim() || e.tagName !== 'TD');
      })
      .map(e => [e, e.className.baseVal ?? e.className, e.getBoundingClientRect()]);
    for (let i = 0; i < parts.length; i++) {
      for (let j = i + 1; j < parts.length; j++) {
        const [ea, na, a] = parts[i], [eb, nb, b] = parts[j];
        if (ea.contains(eb) || eb.contains(ea)) {
          continue;  // an icon inside its button
        }
        if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5
            && b.top < a.bottom - 0.5) {
          out.push(`${tr.dataset.path}: ${na} overlaps ${nb}`);
        }
      }
    }
  }
  return out;
}"""

#: Each name label's visible width against the width of its first 12 characters.
NAME_WIDTH_JS = """panel => [...panel.querySelectorAll('.jp-VolumePanel-entryName')].map(e => {
  const range = document.createRange();
  range.setStart(e.firstChild, 0);
  range.setEnd(e.firstChild, Math.min(12, e.textContent.length));
  return [e.textContent, e.getBoundingClientRect().width, range.getBoundingClientRect().width];
})"""

#: The lines each change row's path takes for its first 12 characters (1: not squeezed).
CHANGE_LINES_JS = """panel => [...panel.querySelectorAll('.jp-VolumePanel-changePath')].map(e => {
  const range = document.createRange();
  range.setStart(e.firstChild, 0);
  range.setEnd(e.firstChild, Math.min(12, e.textContent.length));
  return [e.textContent, new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
})"""


def _set_theme(page: Any, theme: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{theme}$")).click()
    light = "false" if "Dark" in theme else "true"
    page.locator(f"body[data-jp-theme-light='{light}']").wait_for(state="attached", timeout=TIMEOUT)


def _contrast_violations(page: Any) -> list[str]:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `jlpm install` in the repository")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async sel => {
            const r = await axe.run(document.querySelector(sel),
                                    { runOnly: { type: 'rule', values: ['color-contrast'] } });
            return r.violations.flatMap(v => v.nodes.map(n => n.target.join(' ') + ': '
                                                        + n.failureSummary));
        }""",
        PANEL,
    )
    return list(result)


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_layout_and_contrast_at_the_default_width(page: Any, store: str, theme: str) -> None:
    name, vol = new_volume(
        store,
        {
            "experiment-results-2026-summary.csv": b"x" * 2000,
            "a-very-long-notebook-name-for-the-layout.ipynb": b"{}",
            "short.txt": b"s",
            "images/figure-one-with-a-long-name.png": b"png",
        },
    )
    vol.remove_file("short.txt")  # a history with a deletion, for the history view
    with vol.batch_upload(force=True) as batch:  # and a change (size, Diff, restore)
        batch.put_file(io.BytesIO(b"y" * 3000), "experiment-results-2026-summary.csv")
    if "Dark" in theme:
        _set_theme(page, theme)
    panel = open_volume(page, name)
    row(panel, "short.txt").wait_for(state="detached", timeout=TIMEOUT)
    row(panel, "experiment-results-2026-summary.csv").wait_for(timeout=TIMEOUT)
    width = panel.evaluate("p => p.getBoundingClientRect().width")
    assert 200 <= width <= 400, width  # JupyterLab's default sidebar width, untouched
    for state in ("at rest", "hovered", "selected"):
        if state == "hovered":
            row(panel, "experiment-results-2026-summary.csv").hover()
        if state == "selected":
            row(panel, "a-very-long-notebook-name-for-the-layout.ipynb").click()
        for label, shown, twelve in panel.evaluate(NAME_WIDTH_JS):
            assert shown + 0.5 >= twelve, f"{state}: {label!r} shows {shown}px < {twelve}px"
        assert panel.evaluate(OVERLAPS_JS) == [], state
        assert _contrast_violations(page) == [], state
    page.mouse.move(900, 700)
    slug = "dark" if "Dark" in theme else "light"
    page.screenshot(path=str(ARTIFACTS / f"sidebar-layout-{slug}.png"))
    panel.get_by_role("tab", name="History").click()
    panel.locator("li.jp-VolumePanel-commit").first.get_by_role(
        "button", name=re.compile("Show changes")
    ).click()
    panel.locator(".jp-VolumePanel-change").first.wait_for(timeout=TIMEOUT)
    for label, lines in panel.evaluate(CHANGE_LINES_JS):
        assert lines == 1, f"history: the first 12 characters of {label!r} take {lines} lines"
    assert _contrast_violations(page) == [], "history"
    page.screenshot(path=str(ARTIFACTS / f"sidebar-history-{slug}.png"))


def test_list_folds_toolbar_stays_loading_shows_and_columns_follow_the_width(
    page: Any, store: str
) -> None:
    files = {f"file-{i:03d}.txt": b"x" * i for i in range(60)}
    files["sub/inner.txt"] = b"in"
    name, _ = new_volume(store, files)
    panel = open_volume(page, name)
    row(panel, "file-059.txt").wait_for(state="attached", timeout=TIMEOUT)

    # The volume list folds away, naming the open volume, and unfolds.
    fold = panel.locator(".jp-VolumePanel-collapse")
    fold.click()
    assert fold.get_attribute("aria-expanded") == "false"
    assert panel.locator(".jp-VolumePanel-volumes").is_hidden()
    assert panel.locator(".jp-VolumePanel-openName").inner_text() == name
    fold.click()
    assert panel.locator(f"li[data-volume='{name}']").is_visible()

    # Scrolling the long listing leaves breadcrumbs, toolbar and column headers in place.
    toolbar = panel.locator(".jp-VolumePanel-toolbar")
    header = panel.locator("th.jp-VolumePanel-nameHead")
    before = (toolbar.bounding_box()["y"], header.bounding_box()["y"])
    panel.locator(".jp-VolumePanel-listing").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    assert row(panel, "file-059.txt").is_visible()
    assert row(panel, "file-000.txt").evaluate(
        "r => r.getBoundingClientRect().bottom <= r.closest('.jp-VolumePanel-listing')"
        ".getBoundingClientRect().top + 30"
    )
    assert (toolbar.bounding_box()["y"], header.bounding_box()["y"]) == before

    # While a folder loads, a progress bar shows (the listing request is held here).
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route("**/jupyter-volume/api/volumes/*/tree/sub*", hold)
    try:
        row(panel, "sub").dblclick()
        loading = panel.locator(".jp-VolumePanel-loading[role='progressbar']")
        loading.wait_for(state="visible", timeout=TIMEOUT)
        assert panel.locator(".jp-VolumePanel-listing").get_attribute("aria-busy") == "true"
        assert held, "the listing request was not seen"
        held[0].continue_()
        loading.wait_for(state="hidden", timeout=TIMEOUT)
    finally:
        page.unroute("**/jupyter-volume/api/volumes/*/tree/sub*")
    row(panel, "sub/inner.txt").wait_for(timeout=TIMEOUT)

    # At the default width the Modified column is hidden; widen the sidebar and it shows.
    mtime = panel.locator(".jp-VolumePanel-listing th.jp-VolumePanel-mtime")
    assert mtime.is_hidden()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 250, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    mtime.wait_for(state="visible", timeout=TIMEOUT)
    assert panel.locator(".jp-VolumePanel-listing td.jp-VolumePanel-mtime").first.inner_text()
    page.mouse.move(box["x"] + 250, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    mtime.wait_for(state="hidden", timeout=TIMEOUT)
