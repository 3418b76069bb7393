"""The volume browser widget in a real JupyterLab, driven by a real Chromium.

JupyterLab is served on loopback (:class:`~jupyter_volume.testing.jupyter.JupyterLab`),
a notebook cell runs ``%volume browse NAME`` in a real kernel, and Playwright clicks
into a folder of the rendered widget and downloads a file from it. Needs Debian's
Chromium (``apt-get install -y chromium``); without it the test fails with that hint,
it never skips.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import (
    JupyterLab,
    chromium,
    open_volume_browser,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_browse_magic_renders_enters_a_folder_and_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    store_url = (tmp_path / "store").as_uri()
    Volume.objects.create("browser-test", store=store_url)
    vol = Volume.from_name("browser-test", store=store_url)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"inside the folder"), "results/inside-file.txt")
        batch.put_file(io.BytesIO(b"top level"), "top-level.txt")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "widget-browser.png"
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
    }
    with JupyterLab(env=env) as lab:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            try:
                widget = open_volume_browser(page, lab, "browser-test", "results/")
                folder = widget.get_by_role("button", name="results/")
                # before: the root listing, without the folder's file
                assert widget.get_by_role("button", name="top-level.txt").is_visible()
                assert widget.get_by_role("button", name="inside-file.txt").count() == 0

                folder.click()
                inside = widget.get_by_role("button", name="inside-file.txt")
                inside.wait_for(timeout=30_000)
                assert inside.is_visible()
                # rows are reused widgets updated one message at a time: wait for the last
                expect(widget.get_by_role("button", name="top-level.txt")).to_have_count(
                    0, timeout=30_000
                )
                # the breadcrumb now ends in the folder, and the page counter says one row
                expect(widget.get_by_role("button", name="results", exact=True)).to_be_visible()
                expect(widget).to_contain_text("1–1 of 1")

                # select the file and download it through the browser's own download
                inside.click()
                widget.get_by_role("button", name="Download").click()
                link = widget.locator("a.jv-download")
                link.wait_for(timeout=30_000)
                with page.expect_download(timeout=30_000) as download:
                    link.click()
                assert download.value.suggested_filename == "inside-file.txt"
                assert Path(download.value.path()).read_bytes() == b"inside the folder"
            except Exception:
                print(lab.log_tail())
                raise
            finally:
                page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
