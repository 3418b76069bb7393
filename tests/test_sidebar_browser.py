"""The JupyterLab sidebar, end to end: a real JupyterLab on loopback, Debian's Chromium.

Playwright opens the Volumes panel, creates a volume, uploads a file with the button
and a new version by drag and drop, sees it listed, downloads it, opens the history,
restores the first version and downloads the restored content. A second Lab without
the server extension shows how to enable it instead of a blank panel. Screenshots land
in ``test-artifacts/``.

The labextension must be built (``pip install -e .`` does it; or ``jlpm install &&
jlpm build:prod``); the test serves that build and enables the server extension with
the repo's own ``jupyter-config`` file. Needs ``/usr/bin/chromium`` (``apt-get install
-y chromium``): without it, or without the build, the test fails saying so; it never
skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import JupyterLab, chromium, open_lab

REPO = Path(__file__).resolve().parent.parent
BUILT = REPO / "jupyter_volume" / "labextension"
ARTIFACTS = REPO / "test-artifacts"
PANEL = "#jupyter-volume-sidebar"
TIMEOUT = 30_000

V1 = b"version one\n"
V2 = b"version two, which is longer\n"


def _labextension_path(tmp_path: Path) -> Path:
    """A Jupyter data dir holding just our built labextension (as pip would install it)."""
    if not (BUILT / "package.json").is_file() or not (BUILT / "static" / "style.js").is_file():
        pytest.fail(
            f"the labextension is not built ({BUILT} is missing): run `pip install -e .` "
            "or `jlpm install && jlpm build:prod` in the repository first"
        )
    share = tmp_path / "share-jupyter"
    (share / "labextensions").mkdir(parents=True)
    (share / "labextensions" / "jupyter-volume").symlink_to(BUILT, target_is_directory=True)
    return share


@pytest.fixture
def lab_env(tmp_path: Path) -> dict[str, str]:
    store = (tmp_path / "store").as_uri()
    return {
        "JUPYTER_VOLUME_STORE": store,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
        "JUPYTER_PATH": str(_labextension_path(tmp_path)),
        # The server extension is switched on by the very file a pip install puts in
        # <prefix>/etc/jupyter/jupyter_server_config.d.
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
    }


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _open_panel(page: Any) -> Any:
    page.locator(f".jp-SideBar .lm-TabBar-tab[data-id='{PANEL[1:]}']").click()
    panel = page.locator(PANEL)
    panel.wait_for(state="visible", timeout=TIMEOUT)
    return panel


def _dialog_accept(page: Any, text: str | None = None) -> None:
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible", timeout=TIMEOUT)
    if text is not None:
        dialog.locator("input").fill(text)
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached", timeout=TIMEOUT)


def _download(page: Any, panel: Any, name: str) -> bytes:
    with page.expect_download(timeout=TIMEOUT) as dl:
        panel.get_by_role("button", name=f"Download {name}", exact=True).click()
    assert dl.value.suggested_filename == name
    return Path(dl.value.path()).read_bytes()


def _drop_file(page: Any, selector: str, name: str, data: bytes) -> None:
    """Drag a file from "the desktop" onto ``selector`` (a DataTransfer built in the page)."""
    page.evaluate(
        """([selector, name, text]) => {
            const zone = document.querySelector(selector);
            const dt = new DataTransfer();
            dt.items.add(new File([text], name, { type: 'text/plain' }));
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, name, data.decode()],
    )


def test_sidebar_create_upload_history_restore(lab_env: dict[str, str], browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "sidebar-browser.png"
    with JupyterLab(env=lab_env) as lab:
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        try:
            open_lab(page, lab)
            panel = _open_panel(page)
            # The server extension answered: no notice, and an empty volume list.
            panel.locator(".jp-VolumePanel-empty", has_text="No volumes yet").wait_for(
                timeout=TIMEOUT
            )
            assert panel.locator(".jp-VolumePanel-notice").is_hidden()

            # Create a volume: it is listed and opened.
            panel.get_by_role("button", name="New volume").click()
            _dialog_accept(page, "e2e-notes")
            panel.locator("li[data-volume='e2e-notes']").wait_for(timeout=TIMEOUT)
            panel.locator(".jp-VolumePanel-breadcrumbs", has_text="e2e-notes").wait_for(
                timeout=TIMEOUT
            )
            assert [v.name for v in Volume.objects.list(store=lab_env["JUPYTER_VOLUME_STORE"])] == [
                "e2e-notes"
            ]

            # Upload with the button (the hidden file input behind it).
            panel.locator("input.jp-VolumePanel-fileInput").set_input_files(
                files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": V1}]
            )
            row = panel.locator("tr.jp-VolumePanel-entry[data-path='notes.txt']")
            row.wait_for(timeout=TIMEOUT)
            assert row.locator(".jp-VolumePanel-size").inner_text() == f"{len(V1)} B"
            assert row.locator(".jp-VolumePanel-mtime").inner_text().strip()
            panel.locator(".jp-VolumePanel-upload[data-state='done']").first.wait_for(
                timeout=TIMEOUT
            )

            # A new version by drag and drop, confirming the overwrite.
            _drop_file(page, f"{PANEL} .jp-VolumePanel-files", "notes.txt", V2)
            _dialog_accept(page)
            row.locator(".jp-VolumePanel-size", has_text=f"{len(V2)} B").wait_for(timeout=TIMEOUT)
            assert _download(page, panel, "notes.txt") == V2

            # History: the two uploads, newest first; show the change, restore the first.
            vol = Volume.from_name("e2e-notes", store=lab_env["JUPYTER_VOLUME_STORE"])
            first, second = sorted(c.seq for c in vol.history() if c.message == "upload notes.txt")
            panel.get_by_role("tab", name="History").click()
            commit = panel.locator(f"li.jp-VolumePanel-commit[data-seq='{second}']")
            commit.wait_for(timeout=TIMEOUT)
            commit.get_by_role("button", name=f"Show changes of commit {second}").click()
            commit.locator(
                ".jp-VolumePanel-change.jp-mod-modified[data-path='notes.txt']"
            ).wait_for(timeout=TIMEOUT)
            panel.locator(f"li.jp-VolumePanel-commit[data-seq='{first}']").get_by_role(
                "button", name=f"Restore commit {first}"
            ).click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=TIMEOUT)
            assert f"commit #{first}" in dialog.inner_text()
            _dialog_accept(page)
            panel.locator("li.jp-VolumePanel-commit").first.locator(
                ".jp-VolumePanel-message", has_text=f"restore to commit {first}"
            ).wait_for(timeout=TIMEOUT)

            # The restored content, in the listing and downloaded.
            panel.get_by_role("tab", name="Files").click()
            row.locator(".jp-VolumePanel-size", has_text=f"{len(V1)} B").wait_for(timeout=TIMEOUT)
            assert _download(page, panel, "notes.txt") == V1
            page.mouse.move(900, 700)  # off the row: its hover actions hide again
            page.screenshot(path=str(ARTIFACTS / "sidebar-files.png"))
            vol.reload()
            assert b"".join(vol.read_file("notes.txt")) == V1
            page.get_by_role("tab", name="History").click()
            page.screenshot(path=str(shot))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "sidebar-browser-failure.png"))
            print(lab.log_tail())
            raise
    assert shot.stat().st_size > 0


def test_sidebar_without_server_extension_says_how_to_enable_it(
    lab_env: dict[str, str], browser: Any
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # The labextension is there, the server extension switched off (whatever config
    # files say: the command line wins).
    off = "--ServerApp.jpserver_extensions=jupyter_volume.server=False"
    with JupyterLab(env=lab_env, args=[off]) as lab:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        try:
            open_lab(page, lab)
            panel = _open_panel(page)
            notice = panel.locator(".jp-VolumePanel-notice[data-status='missing']")
            notice.wait_for(timeout=TIMEOUT)
            text = notice.inner_text()
            assert "server extension is not enabled" in text
            assert "jupyter server extension enable jupyter_volume.server" in text
            assert "jupyter server extension list" in text
            page.screenshot(path=str(ARTIFACTS / "sidebar-no-server-extension.png"))
        except Exception:
            print(lab.log_tail())
            raise
