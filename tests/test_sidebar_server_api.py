"""The REST API's answers to the sidebar's bug reports, through a real Jupyter server.

Each test here failed before its fix: names with control characters, an oversized
chunk, an upload session that outlived its volume, unbounded upload sessions, and a
restore of a path that a commit deleted. The HTTP client and its helpers are the ones
of ``test_server_api``; this module starts a server of its own, so the session caps it
fills up never reach the other module's tests.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_server_api import REPO, Api, error_of, sha

from jupyter_volume import Volume
from jupyter_volume.server.engine import MAX_CHUNK_SIZE, MAX_UPLOADS_PER_USER, MAX_UPLOADS_TOTAL
from jupyter_volume.testing.jupyter import JupyterLab


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    base = tmp_path_factory.mktemp("sidebar-server")
    store_url = (base / "store").as_uri()
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        "JUPYTER_VOLUME_CACHE_DIR": str(base / "cache"),
        "JUPYTER_VOLUME_STATE_DIR": str(base / "state"),
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
    }
    with JupyterLab(app="server", env=env) as lab:
        try:
            yield Api(lab), store_url
        except BaseException:
            print(lab.log_tail(200))
            raise


@pytest.fixture
def api(served: tuple[Api, str]) -> Api:
    return served[0]


@pytest.fixture
def store_url(served: tuple[Api, str]) -> str:
    return served[1]


@pytest.fixture
def vol(api: Api) -> Iterator[str]:
    name = f"s-{uuid.uuid4().hex[:10]}"
    code, body = api("POST", "volumes", {"name": name})
    assert code == 201, body
    yield name
    api("DELETE", f"volumes/{name}")


def test_names_with_control_characters_are_refused_and_old_ones_download(
    api: Api, vol: str, store_url: str
) -> None:
    for bad in ("line\nbreak.txt", "tab\there.txt", "bell\x07.txt", "dir/esc\x1b[31m.txt"):
        code, body = api("POST", f"volumes/{vol}/uploads", {"path": bad, "size": 1})
        error_of(code, body, 400, "InvalidError")
        assert "control character" in body["message"], body
    error_of(*api("POST", f"volumes/{vol}/folders", {"path": "new\rfolder"}), 400, "InvalidError")
    api.upload(vol, "plain.txt", b"x")
    error_of(
        *api("POST", f"volumes/{vol}/move", {"src": "plain.txt", "dst": "a\nb.txt"}),
        400,
        "InvalidError",
    )
    # A name the Python API wrote (it allows them) downloads, its real name encoded
    # in filename* and an ASCII stand-in in filename.
    v = Volume.from_name(vol, store=store_url)
    with v.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"odd"), 'we"ird\nname\x7f.txt')
    r = api.raw("GET", f"volumes/{vol}/files/we%22ird%0Aname%7F.txt")
    assert r.code == 200, r.body
    assert r.body == b"odd"
    disposition = r.headers["Content-Disposition"]
    assert 'filename="we_ird_name_.txt"' in disposition
    assert "filename*=UTF-8''we%22ird%0Aname%7F.txt" in disposition


def test_an_oversized_chunk_gets_the_json_error_and_the_session_goes_on(api: Api, vol: str) -> None:
    data = b"small file\n"
    code, up = api("POST", f"volumes/{vol}/uploads", {"path": "f.txt", "size": len(data)})
    assert code == 201, up
    uid = up["upload_id"]
    big = b"\0" * (MAX_CHUNK_SIZE + 1)
    r = api.raw(
        "PUT",
        f"volumes/{vol}/uploads/{uid}",
        body=big,
        params={"offset": 0},
        headers={"X-Content-SHA256": sha(big)},
    )
    error_of(r.code, r.json(), 400, "InvalidError")
    assert "max_chunk_size" in r.json()["message"]
    assert api("GET", f"volumes/{vol}/uploads/{uid}")[1]["received"] == 0
    assert api.put_chunk(vol, uid, 0, data)[0] == 200
    code, done = api(
        "POST", f"volumes/{vol}/uploads/{uid}/finish", {"size": len(data), "sha256": sha(data)}
    )
    assert code == 200, done


def test_an_upload_session_belongs_to_the_volume_not_its_name(
    api: Api, vol: str, store_url: str
) -> None:
    data = b"meant for the first volume"
    code, up = api("POST", f"volumes/{vol}/uploads", {"path": "f.txt", "size": len(data)})
    assert code == 201, up
    uid = up["upload_id"]
    assert api.put_chunk(vol, uid, 0, data[:5])[0] == 200
    # The volume is deleted and a new one gets its name.
    assert api.raw("DELETE", f"volumes/{vol}").code == 204
    assert api("POST", "volumes", {"name": vol})[0] == 201
    code, body = api.put_chunk(vol, uid, 5, data[5:])
    error_of(code, body, 404, "NotFoundError")
    assert "deleted" in body["message"]
    error_of(*api("GET", f"volumes/{vol}/uploads/{uid}"), 404, "NotFoundError")
    # ... and the session committed nothing into the new volume.
    assert Volume.from_name(vol, store=store_url).listdir("/") == []

    # Same at finish time: all bytes arrived, then the name changed hands.
    code, up = api("POST", f"volumes/{vol}/uploads", {"path": "g.txt", "size": len(data)})
    uid = up["upload_id"]
    assert api.put_chunk(vol, uid, 0, data)[0] == 200
    assert api.raw("DELETE", f"volumes/{vol}").code == 204
    assert api("POST", "volumes", {"name": vol})[0] == 201
    code, body = api(
        "POST", f"volumes/{vol}/uploads/{uid}/finish", {"size": len(data), "sha256": sha(data)}
    )
    error_of(code, body, 404, "NotFoundError")
    assert Volume.from_name(vol, store=store_url).listdir("/") == []


def _login_cookie(api: Api) -> dict[str, str]:
    """Headers that make every request the same user (token requests alone get a new
    anonymous user each time; the login cookie the server sets keeps one)."""
    r = api.raw("GET", "version")
    cookies = r.headers.get_all("Set-Cookie") or []
    assert cookies, r.headers
    return {"Cookie": "; ".join(c.split(";", 1)[0] for c in cookies)}


def test_upload_sessions_are_capped_by_size_per_user_and_in_total(api: Api, vol: str) -> None:
    base = f"volumes/{vol}/uploads"
    code, body = api("POST", base, {"path": "huge.bin", "size": 2**50})
    error_of(code, body, 400, "InvalidError")
    assert "largest upload" in body["message"]

    me = _login_cookie(api)
    mine: list[str] = []

    def start(i: int, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return api("POST", base, {"path": f"f{i}.bin", "size": 1}, headers=headers)

    try:
        for i in range(MAX_UPLOADS_PER_USER):
            code, up = start(i, me)
            assert code == 201, up
            mine.append(up["upload_id"])
        code, body = start(999, me)
        error_of(code, body, 429, "TooManyUploadsError")
        assert "finish or cancel one" in body["message"]
        # Cancelling one frees a slot.
        assert api.raw("DELETE", f"{base}/{mine.pop()}", headers=me).code == 204
        code, up = start(998, me)
        assert code == 201, up
        mine.append(up["upload_id"])
        # Other users (each token request is a new anonymous one) fill up the server.
        for i in range(MAX_UPLOADS_TOTAL - MAX_UPLOADS_PER_USER):
            code, up = start(1000 + i)
            assert code == 201, up
            mine.append(up["upload_id"])
        code, body = start(5000)
        error_of(code, body, 429, "TooManyUploadsError")
        assert "unfinished uploads" in body["message"]
    finally:
        for uid in mine:
            api.raw("DELETE", f"{base}/{uid}")
    assert start(6000)[0] == 201


def test_restoring_a_path_a_commit_deleted_needs_the_commit_before(
    api: Api, vol: str, store_url: str
) -> None:
    api.upload(vol, "keep.txt", b"precious")
    assert api.raw("DELETE", f"volumes/{vol}/files/keep.txt").code == 200
    head = Volume.from_name(vol, store=store_url).history(limit=1)[0].seq
    # At the deleting commit the path is gone: that is said, not silently skipped.
    code, body = api("POST", f"volumes/{vol}/restore", {"commit": head, "path": "keep.txt"})
    error_of(code, body, 404, "NotFoundError")
    assert "commit before" in body["message"]
    code, body = api("POST", f"volumes/{vol}/restore", {"commit": head - 1, "path": "keep.txt"})
    assert code == 200 and body["commit"] is not None, body
    assert api.raw("GET", f"volumes/{vol}/files/keep.txt").body == b"precious"
