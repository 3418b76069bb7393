"""The notebook widget's own uploader, in a page without the jupyter-volume labextension
(as in VS Code, Colab or a Notebook without our extension): files go to the kernel in
chunks over the widget's comm, with flow control, progress and cancel.

A real JupyterLab with our labextension switched off (page_config) and the server
extension off, a real kernel running ``%volume browse``, Debian's Chromium. The files
are made in the page (sending 50 MB from Python through the browser's debugging protocol
takes far longer than the upload under test).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import urllib.error
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_sidebar_browser import _labextension_path

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import (
    JupyterLab,
    chromium,
    open_lab,
    open_volume_browser,
    run_cell_until,
    write_notebook,
)

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MiB = 1024 * 1024
TIMEOUT = 60_000

#: Picks a file of ``size`` bytes made in the page: byte i is (i * 31 + (i >> 20)) & 255,
#: so a chunk sent twice, dropped or out of place changes the content.
CHOOSE_JS = """([name, size]) => {
    const input = document.querySelector('.jv-browser .jv-upload-input');
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + (i >> 20)) & 255;
    const dt = new DataTransfer();
    dt.items.add(new File([data], name));
    input.files = dt.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
}"""


def pattern_sha256(size: int) -> str:
    """The SHA-256 of CHOOSE_JS's content of ``size`` bytes."""
    h = hashlib.sha256()
    block = bytes((i * 31) & 255 for i in range(256))
    for start in range(0, size, MiB):
        n = min(MiB, size - start)
        shift = start >> 20  # constant within one MiB; 31 * MiB is 0 mod 256
        row = bytes((b + shift) & 255 for b in block)
        h.update((row * (n // 256 + 1))[:n])
    return h.hexdigest()


def jupyter_config(tmp_path: Path, *, labextension: bool) -> Path:
    """A Jupyter config dir that switches our server extension off, and our
    labextension too unless ``labextension``."""
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    if not labextension:
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"jupyter-volume": True}})
        )
    (config / "jupyter_server_config.d").mkdir()
    (config / "jupyter_server_config.d" / "off.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_volume.server": False}}})
    )
    return config


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("jv-upload-"))


def test_widget_uploads_50mb_over_its_comm_in_chunks_and_cancel_leaves_nothing(
    tmp_path: Path,
) -> None:
    store_url = (tmp_path / "store").as_uri()
    name = f"wcu-{uuid.uuid4().hex[:6]}"
    Volume.objects.create(name, store=store_url)
    vol = Volume.from_name(name, store=store_url)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"already here"), "exists.txt")
    # no jupyter-volume labextension in the page, no server extension in the server
    config = jupyter_config(tmp_path, labextension=False)
    kernel_tmp = tmp_path / "kernel-tmp"  # where the kernel keeps chunks until the commit
    kernel_tmp.mkdir()
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
        "JUPYTER_CONFIG_PATH": str(config),
        "TMPDIR": str(kernel_tmp),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with JupyterLab(env=env) as lab, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            widget = open_volume_browser(page, lab, name, "exists.txt")
            upload_button = widget.locator(".jv-upload-button")
            upload_button.wait_for(timeout=TIMEOUT)
            # the server extension is off: its REST uploader is not there, nor asked for
            assert widget.locator(".jv-web-upload-button").count() == 0

            # 50 MB through the comm: byte progress, then the commit, byte-exact
            size = 50 * MiB
            page.evaluate(CHOOSE_JS, ["big.bin", size])
            group = widget.locator(".jv-upload-group")
            row = widget.locator(".jv-upload-row[data-name='big.bin']")
            row.filter(has_text="of 50 MiB").wait_for(timeout=TIMEOUT)
            bar = row.locator("progress")
            assert bar.get_attribute("max") == str(size)
            # a value strictly between the ends was shown (progress in steps)
            page.wait_for_function(
                "() => { const b = document.querySelector(\".jv-upload-row[data-name='big.bin'] progress\");"
                " return b && b.value > 0 && b.value < b.max; }",
                timeout=TIMEOUT,
            )
            assert upload_button.is_disabled()  # one upload at a time from this button
            group.and_(page.locator("[data-state='done']")).wait_for(timeout=TIMEOUT * 4)
            summary = group.locator(".jv-upload-summary").inner_text()
            print("chunked comm upload:", summary)
            assert re.search(r"commit #2: 1 file: 50 MiB in [\d.]+ s", summary), summary
            assert bar.evaluate("b => b.value") == size
            # the kernel lists it and says so beside the Upload button
            widget.get_by_role("button", name="big.bin").wait_for(timeout=TIMEOUT)
            beside = widget.locator(".jv-result .jv-info", has_text="commit #2: upload big.bin")
            beside.wait_for(timeout=TIMEOUT)
            ub, bb = upload_button.bounding_box(), beside.bounding_box()
            assert ub and bb and bb["x"] > ub["x"] and abs(bb["y"] - ub["y"]) < 3 * ub["height"]
            vol.reload()
            assert vol.stat("big.bin").size == size
            h = hashlib.sha256()
            for part in vol.read_file("big.bin"):
                h.update(part)
            assert h.hexdigest() == pattern_sha256(size)
            assert leftovers(kernel_tmp) == []

            # the connection is alive: other buttons still work
            expect(upload_button).to_be_enabled(timeout=TIMEOUT)
            widget.get_by_role("button", name="New folder").click()
            widget.get_by_placeholder("new folder name (or path)").fill("after-upload")
            widget.get_by_role("button", name="Create folder").click()
            widget.get_by_role("button", name="after-upload/").wait_for(timeout=TIMEOUT)
            widget.locator(".jv-info", has_text="commit #3").wait_for(timeout=TIMEOUT)

            # cancel half way: nothing lands, no temporary file stays
            page.evaluate(CHOOSE_JS, ["cancelled.bin", 100 * MiB])
            row = widget.locator(".jv-upload-row[data-name='cancelled.bin']")
            row.filter(has_text="of 100 MiB").wait_for(timeout=TIMEOUT)
            page.wait_for_function(
                "() => { const b = document.querySelector(\".jv-upload-row[data-name='cancelled.bin'] progress\");"
                " return b && b.value > 0; }",
                timeout=TIMEOUT,
            )
            widget.get_by_role("button", name="Cancel upload").click()
            group.and_(page.locator("[data-state='cancelled']")).wait_for(timeout=TIMEOUT)
            assert "nothing was uploaded" in group.inner_text()
            assert leftovers(kernel_tmp) == []
            vol.reload()
            assert vol.history(limit=1)[0].seq == 3
            assert "cancelled.bin" not in [e.path for e in vol.listdir("/")]

            # a refusal is shown in the widget, beside the button: a name already there
            page.evaluate(CHOOSE_JS, ["exists.txt", 10])
            group.and_(page.locator("[data-state='error']")).wait_for(timeout=TIMEOUT)
            alert = group.get_by_role("alert")
            assert "already there: exists.txt (tick overwrite to replace)" in alert.inner_text()
            expect(widget.locator(".jv-upload-row[data-name='exists.txt']")).to_have_attribute(
                "data-state", "failed"
            )
            vol.reload()
            assert b"".join(vol.read_file("exists.txt")) == b"already here"
            expect(upload_button).to_be_enabled(timeout=TIMEOUT)
        except Exception:
            print(lab.log_tail())
            raise
        finally:
            page.screenshot(path=str(ARTIFACTS / "widget-chunked-upload.png"), full_page=True)


def test_with_our_labextension_but_no_server_extension_the_widget_keeps_its_uploader(
    tmp_path: Path,
) -> None:
    """The page has our labextension, the server not our extension (switched off): the
    REST uploader would fail, so the widget's own uploader stays and works."""
    store_url = (tmp_path / "store").as_uri()
    name = f"wcs-{uuid.uuid4().hex[:6]}"
    Volume.objects.create(name, store=store_url)
    vol = Volume.from_name(name, store=store_url)
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
        "JUPYTER_CONFIG_PATH": str(jupyter_config(tmp_path, labextension=True)),
        "JUPYTER_PATH": str(_labextension_path(tmp_path)),  # the one built from this tree
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with JupyterLab(env=env) as lab, chromium() as browser:
        write_notebook(
            lab.root_dir / "w.ipynb", [f"%load_ext jupyter_volume\n%volume browse {name}"]
        )
        # the server extension is really off: its API is not there
        with pytest.raises(urllib.error.HTTPError) as missing:
            lab.api("GET", "jupyter-volume/api/version")
        assert missing.value.code == 404
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_lab(page, lab, "w.ipynb")
            # our labextension is in the page (its sidebar tab is there)
            page.locator(".jp-SideBar .lm-TabBar-tab[data-id='jupyter-volume-sidebar']").wait_for(
                timeout=TIMEOUT
            )
            widget = page.locator(".jv-browser")
            run_cell_until(page, lab, "w.ipynb", widget.locator(".jv-upload-button"))
            # the page's REST uploader asked the server, which did not answer: it stays out
            page.locator(".jv-browser[data-jv-uploader]").wait_for(
                state="attached", timeout=TIMEOUT
            )
            page.wait_for_timeout(2000)  # time for its (failed) request to the server
            assert widget.locator(".jv-web-upload-button").count() == 0
            assert widget.locator(".jv-upload-button").is_visible()

            size = 12 * MiB  # over the ~10 MiB that one kernel message could carry
            page.evaluate(CHOOSE_JS, ["twelve.bin", size])
            group = widget.locator(".jv-upload-group")
            group.and_(page.locator("[data-state='done']")).wait_for(timeout=TIMEOUT * 2)
            widget.get_by_role("button", name="twelve.bin").wait_for(timeout=TIMEOUT)
            vol.reload()
            h = hashlib.sha256()
            for part in vol.read_file("twelve.bin"):
                h.update(part)
            assert h.hexdigest() == pattern_sha256(size)
            # long after the page's uploader asked the server: still the widget's own
            assert widget.locator(".jv-web-upload-button").count() == 0
            assert widget.locator(".jv-upload-button").is_visible()
        except Exception:
            print(lab.log_tail())
            raise
        finally:
            page.screenshot(
                path=str(ARTIFACTS / "widget-chunked-upload-no-server-ext.png"), full_page=True
            )
