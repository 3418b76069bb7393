"""The widget's download link in a real JupyterLab and Chromium: for a file over the
``data:`` link limit, the link is the server's REST download route, and the browser's
own download of it gives the file's bytes (a case that had no browser link before).

Needs Debian's Chromium (``apt-get install -y chromium``); without it the test fails
with that hint, it never skips.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import (
    JupyterLab,
    chromium,
    open_volume_browser,
)
from jupyter_volume.widgets import DOWNLOAD_LINK_MAX

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_a_big_file_downloads_through_the_servers_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    store_url = (tmp_path / "store").as_uri()
    Volume.objects.create("link-test", store=store_url)
    vol = Volume.from_name("link-test", store=store_url)
    big = bytes(range(256)) * (DOWNLOAD_LINK_MAX // 256 + 4096)  # over the data: limit
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(big), "big file #1.bin")

    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
    }
    with JupyterLab(env=env) as lab:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            try:
                widget = open_volume_browser(page, lab, "link-test", "big file #1.bin")
                name = widget.get_by_role("button", name="big file #1.bin")
                name.click()
                download_button = widget.get_by_role("button", name="Download")
                download_button.click()
                link = widget.locator("a.jv-download")
                link.wait_for(timeout=30_000)
                href = link.get_attribute("href") or ""
                assert href == "/jupyter-volume/api/volumes/link-test/files/big%20file%20%231.bin"
                # the link sits in the same row as the Download button, right after it
                box, link_box = download_button.bounding_box(), link.bounding_box()
                assert box and link_box and link_box["x"] >= box["x"] + box["width"] - 1
                middle = link_box["y"] + link_box["height"] / 2
                assert box["y"] <= middle <= box["y"] + box["height"], (box, link_box)
                with page.expect_download(timeout=60_000) as download:
                    link.click()
                assert download.value.suggested_filename == "big file #1.bin"
                assert Path(download.value.path()).read_bytes() == big
            except Exception:
                print(lab.log_tail())
                raise
            finally:
                page.screenshot(path=str(ARTIFACTS / "widget-download-link.png"), full_page=True)
