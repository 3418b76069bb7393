"""What the model-based test of the REST API (test_model_rest.py) found, each reduced to
one plain case against a real Jupyter server (the server and client of
``test_server_api.py``, reused by import)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from test_server_api import Api, api, error_of, server  # noqa: F401 - fixtures, used by name

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def vol(api: Api) -> Iterator[str]:  # noqa: F811
    name = f"f-{uuid.uuid4().hex[:10]}"
    code, body = api("POST", "volumes", {"name": name})
    assert code == 201, body
    yield name
    api("DELETE", f"volumes/{name}")


def notebook(source: str) -> bytes:
    cell = {"cell_type": "markdown", "id": "c1", "metadata": {}, "source": source}
    return json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


def test_nbdiff_takes_the_path_as_given(api: Api, vol: str) -> None:  # noqa: F811
    """docs/rest-api.md: a path with a NUL byte "is refused with 400 InvalidError,
    whether it comes in the URL ... or in a JSON body"; any other name is a name. The
    ``path`` of ``nbdiff`` (a query parameter) is read with Tornado's
    ``get_query_argument``, which strips leading and trailing white space and turns
    control characters (NUL included) into spaces: ``" lead.ipynb"`` is diffed as
    ``lead.ipynb`` (another notebook), ``"x\\x00y.ipynb"`` as ``"x y.ipynb"``."""
    api.upload(vol, " lead.ipynb", notebook("the notebook asked for"))
    api.upload(vol, "lead.ipynb", notebook("another notebook"))
    head = api.upload(vol, "x y.ipynb", notebook("a third one"))["commit"]["seq"]

    code, body = api(
        "GET", f"volumes/{vol}/nbdiff", params={"path": " lead.ipynb", "a": 0, "b": head}
    )
    assert code == 200, body
    assert body["path"] == " lead.ipynb", body["path"]
    assert "the notebook asked for" in json.dumps(body["diff"]), "another notebook was diffed"

    code, body = api(
        "GET", f"volumes/{vol}/nbdiff", params={"path": "x\x00y.ipynb", "a": 0, "b": head}
    )
    error_of(code, body, 400, "InvalidError")


def test_a_move_below_a_file_is_a_documented_error(api: Api, vol: str) -> None:  # noqa: F811
    """docs/rest-api.md, ``POST move``: "`404` if `src` or the parent of `dst` does not
    exist, `409` if `dst` exists, `400` for the root or a move into itself"; the other
    routes that make a name below a file answer 409 (new folders: "a parent is a file";
    uploads: "lies below a file"), as ``Volume.move`` raises AlreadyExistsError. A move
    to ``a.txt/b.txt``, below the file ``a.txt``, answers 400 (a move to
    ``a.txt/x/b.txt`` answers 404)."""
    api.upload(vol, "a.txt", b"a")
    api.upload(vol, "b.txt", b"b")
    code, body = api("POST", f"volumes/{vol}/move", {"src": "b.txt", "dst": "a.txt/b.txt"})
    assert code in (404, 409), (code, body)
    error_of(*api("POST", f"volumes/{vol}/folders", {"path": "a.txt/b"}), 409, "AlreadyExistsError")


def test_restoring_a_folder_counts_the_files_it_changes(api: Api, vol: str) -> None:  # noqa: F811
    """A commit's ``added``/``modified``/``deleted`` count files, as every other commit
    does (an upload adds 1, a delete of a folder deletes each file in it, a restore of
    the whole volume counts each file). Restoring one folder counts the difference of
    the folder's file counts instead: ``sub`` holding a.txt and c.txt, restored to when
    it held a.txt and b.txt (a.txt unchanged), is answered as 2 files modified, none
    added or deleted; it added b.txt and deleted c.txt."""
    api.upload(vol, "sub/a.txt", b"a")
    then = api.upload(vol, "sub/b.txt", b"b")["commit"]["seq"]
    code, body = api("DELETE", f"volumes/{vol}/files/sub/b.txt")
    assert code == 200, body
    api.upload(vol, "sub/c.txt", b"c")
    code, body = api("POST", f"volumes/{vol}/restore", {"commit": then, "path": "sub"})
    assert code == 200, body
    c = body["commit"]
    assert (c["added"], c["modified"], c["deleted"]) == (1, 0, 1), c
