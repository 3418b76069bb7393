"""The REST routes for network file systems (``nfs/...``, the volume routes served on
network file systems), through a real Jupyter server: the setup of
``test_server_api.py``, whose server fixture and client this module reuses."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_server_api import Api, api, server, sha  # noqa: F401 - fixtures, used by name

from jupyter_volume import NetworkFileSystem

pytestmark = pytest.mark.timeout(300)


def test_nfs_routes_and_an_upload_seen_by_a_live_folder(
    api: Api,  # noqa: F811
    server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = f"n-{uuid.uuid4().hex[:10]}"
    code, body = api("POST", "nfs", {"name": name})
    assert code == 201 and body["name"] == name, body
    code, body = api("GET", "nfs")
    assert code == 200 and name in [n["name"] for n in body["nfs"]]
    code, body = api("GET", "volumes")
    assert name not in [v["name"] for v in body["volumes"]]  # another namespace

    nfs = NetworkFileSystem.from_name(name, store=server.store_url)
    live = nfs.mount(tmp_path / "live")
    try:
        data = b"uploaded through the sidebar's API\n" * 1000
        code, up = api("POST", f"nfs/{name}/uploads", {"path": "docs/up.txt", "size": len(data)})
        assert code == 201, up
        r = api.raw(
            "PUT",
            f"nfs/{name}/uploads/{up['upload_id']}",
            body=data,
            params={"offset": 0},
            headers={"X-Content-SHA256": sha(data)},
        )
        assert r.code == 200, r.body
        code, done = api(
            "POST",
            f"nfs/{name}/uploads/{up['upload_id']}/finish",
            {"size": len(data), "sha256": sha(data)},
        )
        assert code == 200, done
        assert b"".join(nfs.read_file("docs/up.txt")) == data  # every handle, at once
        deadline = time.monotonic() + 90  # hang guard only
        while not (tmp_path / "live" / "docs" / "up.txt").exists():
            assert time.monotonic() < deadline, "the live folder never showed the upload"
            time.sleep(0.05)
        assert (tmp_path / "live" / "docs" / "up.txt").read_bytes() == data
    finally:
        live.unmount()

    code, body = api("GET", f"nfs/{name}/tree/docs")
    assert code == 200 and [e["path"] for e in body["entries"]] == ["docs/up.txt"]
    r = api.raw("GET", f"nfs/{name}/files/docs/up.txt")
    assert r.code == 200 and r.body == data
    code, body = api("GET", f"nfs/{name}/history")
    assert code == 200, body

    code, body = api("GET", f"nfs/{name}/tree/missing")
    assert code == 404 and f"network file system {name!r}" in body["message"], body
    code, body = api("GET", "nfs/no-such-nfs/tree")
    assert code == 404 and "network file system 'no-such-nfs' not found" in body["message"]
    code, body = api("PATCH", f"nfs/{name}", {"name": "other"})
    assert code == 400 and "cannot be renamed" in body["message"], body

    code, _ = api("DELETE", f"nfs/{name}")
    assert code == 204
    code, body = api("GET", "nfs")
    assert name not in [n["name"] for n in body["nfs"]]


def test_nfs_routes_refuse_bad_names_in_network_file_system_words(
    api: Api,  # noqa: F811
) -> None:
    # before the fix: "invalid volume name 'bad name': volume names are ..."
    for bad in ("bad name", "", 5, None, "x" * 65):
        code, body = api("POST", "nfs", {"name": bad})
        assert code == 400, (bad, body)
        assert "invalid network file system name" in body["message"], body
        assert "volume" not in body["message"], body
    code, body = api("GET", "nfs/bad%20name/tree")
    assert code == 400 and "invalid network file system name" in body["message"], body
    code, body = api("DELETE", "nfs/bad%20name")
    assert code == 400 and "invalid network file system name" in body["message"], body
    code, body = api("GET", "nfs")
    assert code == 200 and all(n["name"] != "bad name" for n in body["nfs"]), body
