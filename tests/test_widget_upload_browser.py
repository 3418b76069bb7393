"""The notebook widget uploads a 50 MB file in JupyterLab with our labextension and server
extension: in chunks through the Jupyter server's REST upload (the labextension puts its
Upload button in place of the widget's own uploader, which sends chunks over the kernel
connection and is tested in test_widget_chunked_upload_browser.py), with progress, and
the kernel connection survives.

A real JupyterLab with the built labextension and the server extension, a real kernel
running ``%volume browse``, Debian's Chromium. The file is made in the page (sending 50
MB from Python through the browser's debugging protocol takes far longer than the upload
under test).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from test_sidebar_browser import ARTIFACTS, REPO, _labextension_path

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import (
    JupyterLab,
    chromium,
    open_volume_browser,
)

MiB = 1024 * 1024
TIMEOUT = 60_000

CHOOSE_JS = """([name, size, fill]) => {
    const input = document.querySelector('.jv-browser .jv-web-upload-input');
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(size).fill(fill)], name));
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
}"""


def test_widget_uploads_50mb_in_chunks_with_progress_and_visible_failures(tmp_path: Path) -> None:
    store_url = (tmp_path / "store").as_uri()
    name = f"wup-{uuid.uuid4().hex[:6]}"
    Volume.objects.create(name, store=store_url)
    vol = Volume.from_name(name, store=store_url)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"already here"), "exists.txt")
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
        "JUPYTER_PATH": str(_labextension_path(tmp_path)),
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with JupyterLab(env=env) as lab, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            widget = open_volume_browser(page, lab, name, "exists.txt")
            # the page's uploader took the widget's own uploader's place
            widget.locator(".jv-web-upload-button").wait_for(timeout=TIMEOUT)
            assert widget.locator(".widget-upload").is_hidden()

            page.evaluate(CHOOSE_JS, ["big.bin", 50 * MiB, 7])
            row = widget.locator(".jv-web-upload-row[data-path='big.bin']")
            row.filter(has_text="of 50 MiB").wait_for(timeout=TIMEOUT)  # byte progress
            row.and_(page.locator("[data-state='done']")).wait_for(timeout=TIMEOUT * 2)
            # the kernel heard of it and lists the file: the connection is alive
            widget.get_by_role("button", name="big.bin").wait_for(timeout=TIMEOUT)
            widget.locator(".jv-info", has_text="uploaded 1 file").wait_for(timeout=TIMEOUT)
            vol.reload()
            assert vol.stat("big.bin").size == 50 * MiB
            assert b"".join(vol.read_file("big.bin", offset=50 * MiB - 4)) == b"\x07" * 4

            # a failure is shown in the widget, next to the button and in its message line
            page.evaluate(CHOOSE_JS, ["exists.txt", 10, 1])
            refused = widget.locator(".jv-web-upload-row[data-path='exists.txt'] [role='alert']")
            refused.wait_for(timeout=TIMEOUT)
            assert "tick overwrite" in refused.inner_text()
            widget.locator(".jv-error", has_text="already there: exists.txt").wait_for(
                timeout=TIMEOUT
            )
            vol.reload()
            assert b"".join(vol.read_file("exists.txt")) == b"already here"
        except Exception:
            print(lab.log_tail())
            raise
        finally:
            page.screenshot(path=str(ARTIFACTS / "widget-upload.png"), full_page=True)
