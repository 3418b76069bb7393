"""The REST API's answers to the sidebar's bug reports, through a real Jupyter server.

Each test here failed before its fix: names with control characters, an oversized
chunk, an upload session that outlived its volume, unbounded upload sessions, and a
restore of a path that a commit deleted. The HTTP client and its helpers are the ones
of ``test_server_api``; this module starts a server of its own, so the session caps it
fills up never reach the other module's tests.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server_api import REPO, Api, error_of, sha

from jupyter_volume import Volume
from jupyter_volume.server.engine import MAX_CHUNK_SIZE, MAX_UPLOADS_PER_USER, MAX_UPLOADS_TOTAL
from jupyter_volume.testing.jupyter import JupyterLab

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    base = tmp_path_factory.mktemp("sidebar-server")
    store_url = (base / "store").as_uri()
    env = {
        "JUPYTER_VOLUME_STORE": store_url,
        **private_folders(base),
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
    error_of(r.code, r.json(), 413, "ChunkTooLargeError")
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
    """Headers that make every request the same user: a new anonymous user of its own,
    whose login cookie the server sets on a token request that carries none."""
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
        # The caps count sessions on network file systems too (they used to be kept
        # apart, so one user could hold twice as many, the server 256).
        nfs = f"n-{uuid.uuid4().hex[:8]}"
        assert api("POST", "nfs", {"name": nfs})[0] == 201
        code, body = api("POST", f"nfs/{nfs}/uploads", {"path": "n.bin", "size": 1}, headers=me)
        error_of(code, body, 429, "TooManyUploadsError")
        api("DELETE", f"nfs/{nfs}")
        # Cancelling one frees a slot.
        assert api.raw("DELETE", f"{base}/{mine.pop()}", headers=me).code == 204
        code, up = start(998, me)
        assert code == 201, up
        mine.append(up["upload_id"])
        # Other users (each login cookie is another anonymous user) fill up the server.
        others = [_login_cookie(api) for _ in range(MAX_UPLOADS_TOTAL // MAX_UPLOADS_PER_USER)]
        for i in range(MAX_UPLOADS_TOTAL - MAX_UPLOADS_PER_USER):
            code, up = start(1000 + i, others[i // MAX_UPLOADS_PER_USER])
            assert code == 201, up
            mine.append(up["upload_id"])
        code, body = start(5000, others[-1])
        error_of(code, body, 429, "TooManyUploadsError")
        assert "unfinished uploads" in body["message"]
    finally:
        for uid in mine:
            api.raw("DELETE", f"{base}/{uid}")
    code, up = start(6000)
    assert code == 201, up
    assert api.raw("DELETE", f"{base}/{up['upload_id']}").code == 204


def test_the_per_user_cap_counts_token_authenticated_requests_as_one_user(
    api: Api, vol: str
) -> None:
    # jupyter_server makes up a new anonymous user for every token request without a
    # login cookie; counted by that name, a script could open sessions without end.
    base = f"volumes/{vol}/uploads"
    query_token = {"token": api.auth["Authorization"].split(" ", 1)[1]}
    opened: list[tuple[str, dict[str, Any]]] = []

    def start(i: int, **how: Any) -> tuple[int, Any]:
        return api("POST", base, {"path": f"t{i}.bin", "size": 1}, **how)

    try:
        # Half by the Authorization header, half by ?token=: one holder of one token.
        for i in range(MAX_UPLOADS_PER_USER):
            how: dict[str, Any] = {"auth": False, "params": query_token} if i % 2 else {}
            code, up = start(i, **how)
            assert code == 201, up
            opened.append((up["upload_id"], how))
        for how in ({}, {"auth": False, "params": query_token}):
            code, body = start(100, **how)
            error_of(code, body, 429, "TooManyUploadsError")
            assert "finish or cancel one" in body["message"], body
            assert "token-sha256:" in body["message"], body
            # the error names a hash of the token, never the token itself
            assert query_token["token"] not in body["message"]
        # A browser user (login cookie) is another user: not blocked by the script.
        code, up = start(200, headers=_login_cookie(api))
        assert code == 201, up
        opened.append((up["upload_id"], {}))
        # Finishing a session frees a slot for the token's holder.
        uid, how = opened.pop(0)
        assert api.put_chunk(vol, uid, 0, b"x")[0] == 200
        code, done = api("POST", f"{base}/{uid}/finish", {"size": 1, "sha256": sha(b"x")}, **how)
        assert code == 200, done
        code, up = start(300, auth=False, params=query_token)
        assert code == 201, up
        opened.append((up["upload_id"], {}))
    finally:
        for uid, _ in opened:
            api.raw("DELETE", f"{base}/{uid}")


# -- sorted, paged listings ------------------------------------------------------------------------
def _listing(api: Api, vol: str, **params: Any) -> tuple[int, Any]:
    return api("GET", f"volumes/{vol}/tree", params=params)


def _all_pages(api: Api, vol: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every entry of the root, requested ``limit`` at a time."""
    out: list[dict[str, Any]] = []
    while True:
        code, page = _listing(api, vol, offset=len(out), limit=limit, **params)
        assert code == 200, page
        assert (page["sort"], page["order"]) == (
            params.get("sort", "name"),
            params.get("order", "asc"),
        )
        out += page["entries"]
        if len(out) >= page["total"]:
            return out


def test_the_tree_sorts_the_whole_folder_before_paging_it(
    api: Api, vol: str, store_url: str, tmp_path: Path
) -> None:
    # Sizes and times in an order unrelated to the names; two files share a size and
    # time, to see ties go by name; folders with sizes of their own.
    n = 60
    sizes = [(i * 37) % n for i in range(n)]
    sizes[5] = sizes[6]
    v = Volume.from_name(vol, store=store_url)
    with v.batch_upload() as batch:
        for i, size in enumerate(sizes):
            local = tmp_path / f"f{i}"
            local.write_bytes(b"x" * size)
            stamp = 1_600_000_000 + (i * 13) % n * 60
            if i == 6:
                stamp = 1_600_000_000 + (5 * 13) % n * 60
            os.utime(local, (stamp, stamp))
            batch.put_file(str(local), f"file{i}.bin")
        batch.put_file(io.BytesIO(b"b" * 500), "big-dir/inner.bin")
        batch.put_file(io.BytesIO(b"s"), "Small-dir/inner.bin")
    files = {f"file{i}.bin": (sizes[i], i) for i in range(n)}

    by_name = _all_pages(api, vol, 7)
    names = [e["name"] for e in by_name]
    # natural and case-insensitive: file2 before file10; folders first
    assert names == ["big-dir", "Small-dir"] + [f"file{i}.bin" for i in range(n)]
    assert [e["name"] for e in _all_pages(api, vol, 11, order="desc")] == [
        "Small-dir",
        "big-dir",
    ] + [f"file{i}.bin" for i in reversed(range(n))]

    for order in ("asc", "desc"):
        listed = _all_pages(api, vol, 7, sort="size", order=order)
        assert [e["type"] for e in listed[:2]] == ["directory", "directory"]
        folder_sizes = [e["size"] for e in listed[:2]]
        assert folder_sizes == sorted(folder_sizes, reverse=order == "desc")
        got = [e["name"] for e in listed[2:]]
        want = sorted(
            files, key=lambda f: (files[f][0] * (-1 if order == "desc" else 1), files[f][1])
        )
        assert got == want, order
        # ties go by name ascending in both orders (as JupyterLab's file browser)
        assert got.index("file5.bin") + 1 == got.index("file6.bin")

    by_time = _all_pages(api, vol, 9, sort="mtime", order="desc")
    times = [e["mtime"] for e in by_time if e["type"] == "file"]
    assert times == sorted(times, reverse=True)
    assert len(set(times)) == n - 1  # the one shared time is there once too many
    newest = max(range(n), key=lambda i: (i * 13) % n)  # unique: 13 and 60 share no factor
    assert by_time[2]["name"] == f"file{newest}.bin"

    # The largest file is first however the folder is paged.
    biggest = max(files, key=lambda f: files[f][0])
    code, page = _listing(api, vol, sort="size", order="desc", limit=3)
    assert page["entries"][2]["name"] == biggest, page

    for bad in ({"sort": "colour"}, {"order": "down"}, {"sort": ""}):
        code, body = _listing(api, vol, **bad)
        error_of(code, body, 400, "InvalidError")
        assert next(iter(bad)) in body["message"], body


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


def test_a_folders_next_pages_can_come_from_the_commit_of_its_first(
    api: Api, vol: str, store_url: str
) -> None:
    """A page of a folder says which commit it was listed at (``seq``); the next pages
    asked ``at`` that commit continue it even after another writer deleted a file, so
    no file is skipped across the page break (the newest tree's page started one late)."""
    v = Volume.from_name(vol, store=store_url)
    with v.batch_upload() as batch:
        for i in range(10):
            batch.put_file(io.BytesIO(b"x"), f"f{i}.txt")
    code, first = _listing(api, vol, limit=5)
    assert code == 200, first
    assert first["at"] is None and first["seq"] == v.history(limit=1)[0].seq
    v.remove_file("f0.txt")

    code, rest = _listing(api, vol, offset=5, limit=5, at=first["seq"])
    assert code == 200, rest
    assert rest["seq"] == rest["at"] == first["seq"]
    assert rest["total"] == 10
    names = [e["name"] for e in first["entries"] + rest["entries"]]
    assert names == [f"f{i}.txt" for i in range(10)]

    # Without it, the page is of the newest tree: the folder as it is now.
    code, now = _listing(api, vol, offset=0, limit=5)
    assert now["total"] == 9 and now["seq"] == first["seq"] + 1
