"""The widget's own uploader (upload.py, upload.js) when things go wrong: a name the
volume refuses, a kernel interrupted while it commits, a commit that takes longer than
the page waits for a reply, an upload bigger than the kernel's temporary folder.

The browser tests run a real JupyterLab (our labextension and server extension off, so
the widget's comm uploader is the one used), a real kernel and Debian's Chromium. Where
a commit must be held open (to interrupt the kernel in it, or to outlast the page's
wait), the uploader is a real ChunkedUpload whose ``commit`` callback is the test's own:
it waits for a file the test creates, which no real volume commit can be made to do.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_widget_chunked_upload_browser import ARTIFACTS, CHOOSE_JS, jupyter_config, leftovers

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import (
    JupyterLab,
    chromium,
    open_lab,
    open_volume_browser,
    run_cell_until,
    write_notebook,
)
from jupyter_volume.widgets.upload import ChunkedUpload

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

TIMEOUT = 60_000

#: Records every state the upload group goes through (data-state), in the page.
WATCH_JS = """() => {
    window.jvStates = [];
    const seen = (g) => { if (g && g.dataset.state) window.jvStates.push(g.dataset.state); };
    new MutationObserver((ms) => { for (const m of ms) {
        const t = m.target;
        if (t.classList && t.classList.contains('jv-upload-group')) seen(t);
        for (const n of m.addedNodes || [])
            if (n.classList && n.classList.contains('jv-upload-group')) seen(n);
    } }).observe(document.body, { subtree: true, childList: true, attributes: true,
                                  attributeFilter: ['data-state'] });
}"""

#: Picks a file of ``size`` bytes in a bare uploader (not inside a .jv-browser).
CHOOSE_BARE_JS = CHOOSE_JS.replace(".jv-browser .jv-upload-input", ".jv-upload-input")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[JupyterLab, Any, str, Path]]:
    """A JupyterLab without our extensions, a Chromium page, a volume, the kernel's tmp."""
    store_url = (tmp_path / "store").as_uri()
    name = f"wur-{uuid.uuid4().hex[:6]}"
    Volume.objects.create(name, store=store_url)
    vol = Volume.from_name(name, store=store_url)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"already here"), "exists.txt")
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / "state"),
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "cache"),
        "JUPYTER_CONFIG_PATH": str(jupyter_config(tmp_path, labextension=False)),
        "TMPDIR": str(kernel_tmp),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with JupyterLab(env=env) as server, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield server, page, name, kernel_tmp
        print(server.log_tail())  # shown when the test failed


#: A cell showing a ChunkedUpload whose commit writes ``hold/started`` (the names and
#: sizes it got) and then waits until ``hold/release`` exists.
HELD_CELL = """
import json, pathlib, time
from jupyter_volume.widgets.upload import ChunkedUpload
hold = pathlib.Path({hold!r})
def commit(_ctx, files):
    (hold / "started").write_text(json.dumps([[n, p.stat().st_size] for p, n in files]))
    while not (hold / "release").exists():
        time.sleep(0.05)
    return "saved " + ", ".join(n for _, n in files)
ChunkedUpload(prepare=lambda names, sizes: None, commit=commit, ack_timeout={ack_timeout})
"""


def held_uploader(lab: JupyterLab, page: Any, hold: Path, ack_timeout: int) -> Any:
    """A notebook showing a ChunkedUpload whose commit writes ``hold/started`` (the
    names and sizes it got) and then waits until ``hold/release`` exists."""
    cell = HELD_CELL.format(hold=str(hold), ack_timeout=ack_timeout)
    write_notebook(lab.root_dir / "held.ipynb", [cell])
    open_lab(page, lab, "held.ipynb")
    run_cell_until(page, lab, "held.ipynb", page.locator(".jv-upload-button"))
    return page.locator(".jv-upload")


def wait_for_file(page: Any, path: Path) -> None:
    """Wait (polling from the page's clock) until ``path`` exists."""
    for _ in range(TIMEOUT // 100):
        if path.exists():
            return
        page.wait_for_timeout(100)
    raise TimeoutError(f"{path} did not appear")


def test_a_name_the_volume_refuses_fails_before_any_byte_is_sent(
    lab: tuple[JupyterLab, Any, str, Path],
) -> None:
    server, page, name, kernel_tmp = lab
    widget = open_volume_browser(page, server, name, "exists.txt")
    page.evaluate(WATCH_JS)
    # 150 two-byte letters: a legal file name on macOS and Windows (255 UTF-16 units),
    # but 300 bytes of UTF-8, over the 255 a volume's name may have
    long_name = "é" * 150 + ".bin"
    page.evaluate(CHOOSE_JS, [long_name, 3 * 1024 * 1024])
    group = widget.locator(".jv-upload-group")
    group.and_(page.locator("[data-state='error']")).wait_for(timeout=TIMEOUT)
    alert = group.get_by_role("alert").inner_text()
    assert "255" in alert and "rename" in alert, alert
    states = page.evaluate("() => window.jvStates")
    # refused at the start: no byte was sent, nothing was committed
    assert "uploading" not in states and "committing" not in states, states
    assert leftovers(kernel_tmp) == []


def test_interrupting_the_kernel_while_it_commits_says_so_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Where the frontend's comm messages are handled on the kernel's main thread
    (ipykernel 6, VS Code, a kernel without subshells), the notebook's Stop button
    interrupts an upload's commit. JupyterLab with ipykernel 7 handles them in a
    subshell thread, which an interrupt does not reach: so a real kernel is driven
    here with jupyter_client, the test playing the page's side of the comm protocol."""
    from jupyter_client.manager import start_new_kernel

    hold = tmp_path / "hold"
    hold.mkdir()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        cell = HELD_CELL.format(hold=str(hold), ack_timeout=300_000).replace(
            "ack_timeout=", f"tmp_dir={str(uploads)!r}, ack_timeout="
        )
        kc.execute(cell)
        comm_id = None
        while comm_id is None:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "comm_open":
                state = msg["content"]["data"].get("state", {})
                if state.get("_model_name") == "AnyModel":
                    comm_id = msg["content"]["comm_id"]

        def say(content: dict[str, Any], *buffers: bytes) -> None:
            data = {"method": "custom", "content": content}
            kc.session.send(
                kc.shell_channel.socket,
                "comm_msg",
                {"comm_id": comm_id, "data": data},
                buffers=list(buffers),
            )

        def reply() -> dict[str, Any]:
            while True:
                msg = kc.get_iopub_msg(timeout=60)
                if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == comm_id:
                    data = msg["content"]["data"]
                    if data.get("method") == "custom":
                        return data["content"]

        say({"op": "begin", "id": "u", "files": [{"name": "big.bin", "size": 5}]})
        assert reply()["op"] == "ready"
        say({"op": "chunk", "id": "u", "file": 0, "offset": 0}, b"12345")
        assert reply()["op"] == "ack"
        say({"op": "end", "id": "u"})
        for _ in range(600):  # the commit is under way (it said so in a file)
            if (hold / "started").exists():
                break
            time.sleep(0.1)
        assert (hold / "started").exists(), "the commit did not start"
        km.interrupt_kernel()
        answer = reply()
        assert answer["op"] == "error", answer
        assert "interrupted" in answer["message"], answer
        assert answer.get("unsure") is True  # it may have landed: the page does not deny it
        assert list(uploads.iterdir()) == []
        # the kernel lives on, and the uploader takes the next upload
        say({"op": "begin", "id": "v", "files": [{"name": "next.bin", "size": 0}]})
        assert reply()["op"] == "ready"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_commit_longer_than_the_reply_timeout_is_waited_for_not_called_failed(
    lab: tuple[JupyterLab, Any, str, Path], tmp_path: Path
) -> None:
    server, page, _name, kernel_tmp = lab
    hold = tmp_path / "hold"
    hold.mkdir()
    # the page gives up on a silent kernel after 1 s here (5 minutes by default): a
    # commit of a big file into S3 takes longer than that
    up = held_uploader(server, page, hold, ack_timeout=1000)
    page.evaluate(WATCH_JS)
    page.evaluate(CHOOSE_BARE_JS, ["slow.bin", 1024 * 1024])
    wait_for_file(page, hold / "started")
    group = up.locator(".jv-upload-group")
    # past the timeout, the page says the commit is still under way (not "failed")
    group.locator(".jv-upload-summary", has_text="still saving").wait_for(timeout=TIMEOUT)
    (hold / "release").touch()
    group.and_(page.locator("[data-state='done']")).wait_for(timeout=TIMEOUT)
    assert "saved slow.bin" in group.inner_text()
    assert "error" not in page.evaluate("() => window.jvStates")
    assert leftovers(kernel_tmp) == []


def test_an_upload_bigger_than_the_room_for_its_chunks_is_refused_at_the_start(
    tmp_path: Path,
) -> None:
    """No page can pick a file bigger than the disk: the frontend's ``begin`` is sent
    into the widget directly, and its replies caught (no frontend is connected)."""
    replies: list[dict[str, Any]] = []
    prepared: list[list[str]] = []
    w = ChunkedUpload(
        prepare=lambda names, sizes: prepared.append(names),
        commit=lambda ctx, files: "",
        tmp_dir=str(tmp_path),
    )
    w.send = lambda content, buffers=None: replies.append(content)  # type: ignore[method-assign]
    huge = shutil.disk_usage(tmp_path).free + 1024**3
    w._on_msg(w, {"op": "begin", "id": "u", "files": [{"name": "huge.bin", "size": huge}]}, [])
    assert replies[-1]["op"] == "error", replies
    assert "room" in replies[-1]["message"], replies
    assert list(tmp_path.iterdir()) == [] and w.active == 0
    w.close()


def test_a_kernel_that_dies_while_it_commits_ends_the_wait_with_an_unsure_error(
    lab: tuple[JupyterLab, Any, str, Path], tmp_path: Path
) -> None:
    """Killed mid-commit (out of memory, a crash), the kernel never answers: JupyterLab
    restarts it and the old widget's comm is dead. The page must say so (the files may
    or may not have landed), not stay at "still saving" for good."""
    server, page, _name, _kernel_tmp = lab
    hold = tmp_path / "hold"
    hold.mkdir()
    cell = HELD_CELL.format(hold=str(hold), ack_timeout=1000)
    cell = cell.replace(
        "def commit(_ctx, files):\n",
        'def commit(_ctx, files):\n    import os\n    (hold / "pid").write_text(str(os.getpid()))\n',
    )
    write_notebook(server.root_dir / "dies.ipynb", [cell])
    open_lab(page, server, "dies.ipynb")
    up = page.locator(".jv-upload")
    run_cell_until(page, server, "dies.ipynb", page.locator(".jv-upload-button"))
    page.evaluate(WATCH_JS)
    page.evaluate(CHOOSE_BARE_JS, ["doomed.bin", 64 * 1024])
    wait_for_file(page, hold / "started")
    group = up.locator(".jv-upload-group")
    os.kill(int((hold / "pid").read_text()), signal.SIGKILL)
    group.and_(page.locator("[data-state='error']")).wait_for(timeout=TIMEOUT)
    text = group.inner_text()
    assert "kernel" in text and "may not be saved" in text, text
    assert "done" not in page.evaluate("() => window.jvStates")
