"""The REST API's answers to bad requests, reviewed as its front-end developers see them.

Every bad request gets its own status (400/404/405/409/507...) and a JSON body whose
``message`` is one line saying what is wrong and what to do; never a 500 "unexpected
server error" for a user's mistake, never a 200 with the error hidden inside. A store
the server cannot reach is a 5xx naming the store; a server configuration the CLI
refuses as a usage error is refused by the API with the CLI's words.

Real ``jupyter server`` processes, over plain HTTP: the client and helpers are those of
``test_server_api``. Each test marked "failed before its fix" below did.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server_api import REPO, Api, error_of, sha

from jupyter_volume import Volume
from jupyter_volume.testing.jupyter import JupyterLab

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def _server_env(
    base: Path, store_url: str | None, config_dir: Path | None = None
) -> dict[str, str]:
    config_path = str(REPO / "jupyter-config")
    if config_dir is not None:
        config_path += os.pathsep + str(config_dir)
    env = {
        **private_folders(base),
        "JUPYTER_CONFIG_PATH": config_path,
        "TMPDIR": str(base / "tmp"),
    }
    (base / "tmp").mkdir()
    if store_url is not None:
        env["JUPYTER_VOLUME_STORE"] = store_url
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str, Path]]:
    """``(api, store_url, spool_parent)`` of a server of this module's own."""
    base = tmp_path_factory.mktemp("errors-review")
    store_url = (base / "store").as_uri()
    with JupyterLab(app="server", env=_server_env(base, store_url)) as lab:
        try:
            yield Api(lab), store_url, base / "tmp"
        except BaseException:
            print(lab.log_tail(200))
            raise


@pytest.fixture
def api(served: tuple[Api, str, Path]) -> Api:
    return served[0]


@pytest.fixture
def store_url(served: tuple[Api, str, Path]) -> str:
    return served[1]


@pytest.fixture
def vol(api: Api) -> Iterator[str]:
    """A volume with a.txt, d/b.txt and nb.ipynb (three commits after its creation)."""
    name = f"r-{uuid.uuid4().hex[:10]}"
    code, body = api("POST", "volumes", {"name": name})
    assert code == 201, body
    api.upload(name, "a.txt", b"hello")
    api.upload(name, "d/b.txt", b"bee")
    api.upload(name, "nb.ipynb", NB)
    yield name
    api("DELETE", f"volumes/{name}")


def one_line_error(code: int, body: Any, status: int, error: str) -> str:
    """Check a JSON error answer; returns its message (one line, no traceback)."""
    error_of(code, body, status, error)
    message = body["message"]
    assert "\n" not in message and "Traceback" not in message, message
    assert "unexpected server error" not in message, message
    return message


def _expire_all_but_the_newest(api: Api, store_url: str, name: str) -> int:
    """Commit once more, then gc the volume down to its newest commit; returns the
    newest of the commits gc expired."""
    v = Volume.from_name(name, store=store_url)
    old = v.seq
    api.upload(name, "later.txt", b"later")
    v.set_retention(keep_last=1)
    v.gc(grace=0)
    with pytest.raises(FileNotFoundError, match="expired by garbage collection"):
        Volume.from_name(name, store=store_url).listdir("/", at=old)
    return old


# -- a sweep of bad requests: each its status, a JSON one-liner -----------------------------------
def test_bad_requests_get_their_status_and_a_one_line_json_message(
    api: Api, vol: str, store_url: str
) -> None:
    v = f"volumes/{vol}"
    code, up = api("POST", f"{v}/uploads", {"path": "u.bin", "size": 3})
    assert code == 201, up
    uid = up["upload_id"]
    cases: list[tuple[str, str, Any, dict[str, Any] | None, int, str]] = [
        # missing or invalid parameters
        ("GET", f"{v}/tree", None, {"at": "x"}, 400, "InvalidError"),
        ("GET", f"{v}/tree", None, {"limit": "0"}, 400, "InvalidError"),
        ("GET", f"{v}/tree", None, {"sort": "colour"}, 400, "InvalidError"),
        ("GET", f"{v}/tree", None, {"order": "up"}, 400, "InvalidError"),
        ("GET", f"{v}/tree/a.txt", None, None, 400, "InvalidError"),
        ("GET", f"{v}/files/d", None, None, 400, "InvalidError"),
        ("DELETE", f"{v}/files/d", None, {"recursive": "maybe"}, 400, "InvalidError"),
        ("DELETE", f"{v}/files/d", None, None, 400, "InvalidError"),
        ("GET", f"{v}/history", None, {"limit": "many"}, 400, "InvalidError"),
        ("GET", f"{v}/diff", None, None, 400, "InvalidError"),
        ("GET", f"{v}/nbdiff", None, {"path": "nb.ipynb"}, 400, "InvalidError"),
        ("POST", f"{v}/restore", {}, None, 400, "InvalidError"),
        ("POST", f"{v}/restore", {"commit": "1"}, None, 400, "InvalidError"),
        ("POST", f"{v}/remove", {"paths": "a.txt"}, None, 400, "InvalidError"),
        ("POST", f"{v}/folders", {}, None, 400, "InvalidError"),
        ("POST", f"{v}/move", {"src": "a.txt"}, None, 400, "InvalidError"),
        ("POST", f"{v}/uploads", {"path": "x", "size": -1}, None, 400, "InvalidError"),
        (
            "POST",
            f"{v}/uploads",
            {"path": "x", "size": 1, "force": "yes"},
            None,
            400,
            "InvalidError",
        ),
        # paths leaving the volume
        ("GET", f"{v}/files/..%2Fsecret", None, None, 400, "InvalidError"),
        ("POST", f"{v}/folders", {"path": "../x"}, None, 400, "InvalidError"),
        ("POST", f"{v}/remove", {"paths": ["a/../../x"]}, None, 400, "InvalidError"),
        (
            "GET",
            f"{v}/nbdiff",
            None,
            {"path": "../x.ipynb", "a": "1", "b": "2"},
            400,
            "InvalidError",
        ),
        # invalid volume names, and bytes that are no UTF-8
        ("POST", "volumes", {"name": "bad name!"}, None, 400, "InvalidError"),
        ("PATCH", v, {"name": "-x"}, None, 400, "InvalidError"),
        ("GET", "volumes/bad%20name/tree", None, None, 400, "InvalidError"),
        ("DELETE", "volumes/..", None, None, 400, "InvalidError"),
        ("GET", "volumes/%FF/tree", None, None, 400, "BadRequest"),
        # ...on the upload routes too (their session lookup once answered 404)
        ("GET", f"volumes/bad%20name/uploads/{uid}", None, None, 400, "InvalidError"),
        ("DELETE", "volumes/bad%20name/uploads/x", None, None, 400, "InvalidError"),
        (
            "POST",
            "volumes/-x/uploads/x/finish",
            {"size": 1, "sha256": "0" * 64},
            None,
            400,
            "InvalidError",
        ),
        # things that do not exist
        ("GET", "volumes/no-such-volume/tree", None, None, 404, "NotFoundError"),
        ("PATCH", "volumes/no-such-volume", {"name": "y"}, None, 404, "NotFoundError"),
        ("GET", f"{v}/files/nope.txt", None, None, 404, "NotFoundError"),
        ("GET", f"{v}/tree", None, {"at": "999"}, 404, "NotFoundError"),
        ("GET", f"{v}/files/a.txt", None, {"at": "-1"}, 404, "NotFoundError"),
        ("GET", f"{v}/diff", None, {"a": "999"}, 404, "NotFoundError"),
        ("POST", f"{v}/restore", {"commit": 999}, None, 404, "NotFoundError"),
        ("POST", f"{v}/remove", {"paths": ["nope"]}, None, 404, "NotFoundError"),
        ("GET", f"{v}/uploads/no-such-upload", None, None, 404, "NotFoundError"),
        ("DELETE", f"{v}/uploads/no-such-upload", None, None, 404, "NotFoundError"),
        (
            "POST",
            f"{v}/uploads/no-such-upload/finish",
            {"size": 1, "sha256": "0" * 64},
            None,
            404,
            "NotFoundError",
        ),
        ("GET", "no/such/route", None, None, 404, "NotFound"),
        # conflicts
        ("POST", "volumes", {"name": vol}, None, 409, "AlreadyExistsError"),
        ("POST", f"{v}/folders", {"path": "a.txt"}, None, 409, "AlreadyExistsError"),
        ("POST", f"{v}/uploads", {"path": "a.txt", "size": 1}, None, 409, "AlreadyExistsError"),
        ("POST", f"{v}/move", {"src": "a.txt", "dst": "d"}, None, 409, "AlreadyExistsError"),
        # too large: the largest upload a server takes (400, as test_sidebar_server_api asks)
        ("POST", f"{v}/uploads", {"path": "x", "size": 2**60}, None, 400, "InvalidError"),
        # methods a route does not take
        ("PUT", "volumes", {}, None, 405, "MethodNotAllowed"),
        ("GET", v, None, None, 405, "MethodNotAllowed"),
        ("POST", f"{v}/tree", {}, None, 405, "MethodNotAllowed"),
        ("GET", f"{v}/uploads", None, None, 405, "MethodNotAllowed"),
        ("POST", f"{v}/uploads/{uid}", {}, None, 405, "MethodNotAllowed"),
    ]
    for method, route, data, params, status, error in cases:
        code, body = api(method, route, data, params=params)
        assert isinstance(body, dict), (method, route, code, body)
        one_line_error(code, body, status, error)
        if status == 405:
            assert method in body["message"] and "takes" in body["message"], body


def test_a_missing_field_is_named_not_shown_as_none(api: Api, vol: str) -> None:
    # Was "invalid volume name None: ..." and "path must be a path string, got None".
    v = f"volumes/{vol}"
    for method, route, data, words in [
        ("POST", "volumes", {}, "needs 'name'"),
        ("PATCH", v, {}, "needs 'name'"),
        ("POST", f"{v}/folders", {}, "needs 'path'"),
        ("POST", f"{v}/move", {"src": "a.txt"}, "needs 'dst'"),
        ("POST", f"{v}/uploads", {"size": 1}, "needs 'path'"),
    ]:
        code, body = api(method, route, data)
        message = one_line_error(code, body, 400, "InvalidError")
        assert words in message and "None" not in message, (method, route, message)


def test_an_upload_chunk_too_large_to_read_gets_the_json_error(api: Api, vol: str) -> None:
    code, up = api("POST", f"volumes/{vol}/uploads", {"path": "c.bin", "size": 5})
    assert code == 201, up
    # A Content-Length past what the server reads and drops: refused before any body byte.
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    try:
        conn.putrequest("PUT", api.path(f"volumes/{vol}/uploads/{up['upload_id']}", {"offset": 0}))
        for k, val in {
            **api.auth,
            "Content-Length": str(10**12),
            "X-Content-SHA256": sha(b"x"),
        }.items():
            conn.putheader(k, val)
        conn.endheaders()
        r = conn.getresponse()
        message = one_line_error(r.status, json.loads(r.read()), 413, "ChunkTooLargeError")
    finally:
        conn.close()
    assert "smaller chunks" in message, message


# -- defects found in this review: each test failed before its fix ----------------------------------
def test_a_json_body_nested_too_deeply_is_a_400_not_a_500(api: Api, vol: str) -> None:
    # Failed before its fix: json.loads raised RecursionError -> 500 InternalError.
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b"{not json", b"[1]", b"\xff\xfe"):
        r = api.raw("POST", "volumes", body=raw)
        message = one_line_error(r.code, r.json(), 400, "InvalidError")
        assert "request body" in message and "JSON" in message, message
        r = api.raw("POST", f"volumes/{vol}/move", body=raw)
        one_line_error(r.code, r.json(), 400, "InvalidError")


def test_a_range_header_with_an_absurd_number_is_ignored_not_a_500(api: Api, vol: str) -> None:
    # Failed before its fix: int() of a 5000-digit number raised ValueError -> 500.
    huge = "9" * 5000
    for header in (f"bytes={huge}-", f"bytes=-{huge}", f"bytes=0-{huge}"):
        r = api.raw("GET", f"volumes/{vol}/files/a.txt", headers={"Range": header})
        assert r.code == 200, (header, r.code, r.body[:300])
        assert r.body == b"hello"
    # An ordinary unsatisfiable range is still 416 with its JSON message.
    r = api.raw("GET", f"volumes/{vol}/files/a.txt", headers={"Range": "bytes=10-20"})
    one_line_error(r.code, r.json(), 416, "RangeNotSatisfiable")


def test_finish_with_a_missing_or_malformed_field_keeps_the_upload(api: Api, vol: str) -> None:
    # Failed before its fix: a finish without a well-formed sha256 was taken for a failed
    # verification and threw away every byte received; one whose size was missing or not
    # the declared one said "incomplete: 5 of 5 bytes received ... send the rest".
    data = b"hello"
    base = f"volumes/{vol}/uploads"
    code, up = api("POST", base, {"path": "f.txt", "size": len(data)})
    assert code == 201, up
    uid = up["upload_id"]
    # Finishing before every byte arrived: "incomplete", and where to go on from.
    assert api.put_chunk(vol, uid, 0, data[:2])[0] == 200
    message = one_line_error(
        *api("POST", f"{base}/{uid}/finish", {"size": 5, "sha256": sha(data)}), 400, "InvalidError"
    )
    assert "incomplete" in message and "offset 2" in message, message
    assert api.put_chunk(vol, uid, 2, data[2:])[0] == 200
    for body, word in [
        ({}, "size"),
        ({"size": 5}, "sha256"),
        ({"size": 5, "sha256": None}, "sha256"),
        ({"size": 5, "sha256": "abc"}, "sha256"),
        ({"size": "5", "sha256": sha(data)}, "size"),
        ({"size": 6, "sha256": sha(data)}, "size"),
        ({"size": 5, "sha256": sha(data), "force": "x"}, "force"),
    ]:
        message = one_line_error(*api("POST", f"{base}/{uid}/finish", body), 400, "InvalidError")
        assert word in message, (body, message)
        assert "incomplete" not in message and "send the rest" not in message, (body, message)
        assert "failed verification" not in message, (body, message)
        code, status = api("GET", f"{base}/{uid}")
        assert code == 200 and status["received"] == 5, (body, status)  # the upload is kept
    code, done = api("POST", f"{base}/{uid}/finish", {"size": 5, "sha256": sha(data)})
    assert code == 200, done
    assert api.raw("GET", f"volumes/{vol}/files/f.txt").body == data


def test_a_wrong_sha256_at_finish_still_discards_the_upload(api: Api, vol: str) -> None:
    base = f"volumes/{vol}/uploads"
    code, up = api("POST", base, {"path": "g.txt", "size": 1})
    uid = up["upload_id"]
    assert api.put_chunk(vol, uid, 0, b"x")[0] == 200
    message = one_line_error(
        *api("POST", f"{base}/{uid}/finish", {"size": 1, "sha256": "0" * 64}), 400, "InvalidError"
    )
    assert "failed verification" in message and "upload the file again" in message
    one_line_error(*api("GET", f"{base}/{uid}"), 404, "NotFoundError")


def test_a_missing_or_expired_commit_is_404_for_nbdiff_and_restore(
    api: Api, vol: str, store_url: str
) -> None:
    # Failed before its fix: nbdiff took a commit that does not exist (a negative one) or
    # that gc expired for "the notebook is absent there" and answered 200 with a made-up
    # diff (every cell added); restore of a path said "did not exist at commit N ...
    # restore the commit before the one that deleted it" about a commit that is not there.
    nbdiff = f"volumes/{vol}/nbdiff"
    message = one_line_error(
        *api("GET", nbdiff, params={"path": "nb.ipynb", "a": "-1", "b": "3"}), 404, "NotFoundError"
    )
    assert "commit -1 does not exist" in message, message
    message = one_line_error(
        *api("POST", f"volumes/{vol}/restore", {"commit": 999, "path": "gone.txt"}),
        404,
        "NotFoundError",
    )
    assert "commit 999 does not exist" in message, message
    # The CLI (Volume.restore) says the same about that commit.
    with pytest.raises(FileNotFoundError) as info:
        Volume.from_name(vol, store=store_url).restore(999, "gone.txt")
    assert str(info.value) in message

    old = _expire_all_but_the_newest(api, store_url, vol)
    head = Volume.from_name(vol, store=store_url).seq
    for code, body in [
        api("GET", nbdiff, params={"path": "nb.ipynb", "a": str(old), "b": str(head)}),
        api("GET", nbdiff, params={"path": "nb.ipynb", "a": str(head), "b": str(old)}),
        api("POST", f"volumes/{vol}/restore", {"commit": old, "path": "gone.txt"}),
        api("POST", f"volumes/{vol}/restore", {"commit": old, "path": "a.txt"}),
        api("GET", f"volumes/{vol}/tree", params={"at": str(old)}),
        api("GET", f"volumes/{vol}/diff", params={"a": str(old)}),
    ]:
        message = one_line_error(code, body, 404, "NotFoundError")
        assert f"commit {old} of volume {vol!r} was expired by garbage collection" in message
    # The newest commit still diffs with itself.
    code, body = api("GET", nbdiff, params={"path": "nb.ipynb", "a": str(head), "b": str(head)})
    assert code == 200 and body["diff"] == [], body


def test_an_upload_that_cannot_fit_in_the_upload_folder_is_507(tmp_path: Path) -> None:
    # Failed before its fix: 400 InvalidError, "your request is wrong", for a lack of room
    # on the server that a chunk meeting a full disk reports as 507 UploadSpaceError.
    # The service in process (a real store and upload folder), with its size limit above
    # the folder's free space so that the check runs on any disk; the status is the
    # handlers' mapping of the error, as the server answers it.
    from jupyter_volume.config import get_store
    from jupyter_volume.server.engine import VolumeService
    from jupyter_volume.server.handlers import error_reply

    spool = tmp_path / "up"
    store = get_store(url=(tmp_path / "store").as_uri())
    Volume.from_name("v", store=store, create_if_missing=True)
    too_big = shutil.disk_usage(tmp_path).free + (1 << 30)
    service = VolumeService(store, upload_dir=spool, max_upload_size=too_big)
    try:
        with pytest.raises(Exception) as info:
            service.start_upload("v", "big.bin", too_big)
    finally:
        service.close()
    code, body = error_reply(info.value, 500)
    message = one_line_error(code, body, 507, "UploadSpaceError")
    assert "upload folder" in message and "big.bin" in message, message


# -- the server's store and configuration ---------------------------------------------------------
def test_a_config_value_the_server_refuses_is_a_400_with_the_clis_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failed before its fix: 500 InternalError "unexpected server error (TraitError: ...)"
    # and a traceback in the log; the CLI calls it a usage error (exit 2) in one line.
    from jupyter_volume.commands.exits import EXIT_USAGE, exit_code_for, one_line
    from jupyter_volume.config import load_config

    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_volume_config.py").write_text(
        "c = get_config()\nc.VolumeConfig.commit_interval = -1\n"
    )
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(config))
    with pytest.raises(Exception) as info:
        load_config()
    assert exit_code_for(info.value) == EXIT_USAGE
    cli_message = one_line(info.value)

    store_url = (tmp_path / "store").as_uri()
    with JupyterLab(app="server", env=_server_env(tmp_path, store_url, config)) as lab:
        api = Api(lab)
        code, version = api("GET", "version")
        assert code == 200 and version["store"] is None, version
        assert version["store_error"] == cli_message, version
        for method, route, data in [
            ("GET", "volumes", None),
            ("POST", "volumes", {"name": "x"}),
            ("GET", "volumes/x/tree", None),
            ("GET", "dicts", None),
            ("GET", "nfs", None),
        ]:
            message = one_line_error(*api(method, route, data), 400, "InvalidError")
            assert message == cli_message, (route, message)
        assert "Traceback" not in lab.log_tail(400), lab.log_tail(60)


def test_an_unreachable_store_is_a_502_naming_it(tmp_path: Path) -> None:
    port = 1  # nothing listens there: every connection is refused at once
    store_url = f"s3://no-bucket/p?endpoint_url=http://127.0.0.1:{port}"
    env = _server_env(tmp_path, store_url)
    env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1")
    with JupyterLab(app="server", env=env) as lab:
        api = Api(lab)
        message = one_line_error(*api("GET", "volumes"), 502, "StoreError")
        assert f"127.0.0.1:{port}" in message and "no-bucket" in message, message
        assert "Traceback" not in lab.log_tail(400), lab.log_tail(60)
