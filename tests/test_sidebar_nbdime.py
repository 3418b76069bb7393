"""The server side of the sidebar's notebook diff (``GET /volumes/{name}/nbdiff``).

The browser tests in ``test_sidebar_behaviour.py`` show nbdime's rendered diff and the
text fallback when nbdime fails on a version. These cover what they cannot switch on
the one shared server: nbdime switched off (``JUPYTER_VOLUME_NBDIME=0``) and nbdime not
installed both answer 501, which the sidebar takes as "use the text diff"; and the
reply's shape (nbdime's own ``{"base", "diff"}``) for a changed, an added and a deleted
notebook. All against a real local store; no server process needed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import NotFoundError
from jupyter_volume.server.handlers import error_reply
from jupyter_volume.server.nbdiff import (
    ENV_SWITCH,
    NbdimeUnavailableError,
    NotebookDiffError,
    notebook_diff,
)
from jupyter_volume.store import LocalStore

try:
    import nbdime  # noqa: F401
except ImportError:  # a missing test dependency fails loudly, it never skips
    pytest.fail("nbdime is missing: pip install -e '.[test]' (or pip install nbdime)")


def _nb(source: str, stdout: str) -> bytes:
    cell = {
        "id": "c1",
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {},
        "outputs": [{"output_type": "stream", "name": "stdout", "text": stdout}],
        "source": source,
    }
    return json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


@pytest.fixture
def history(local_store: LocalStore) -> tuple[LocalStore, int, int, int]:
    """A volume 'nbs' where nb.ipynb is added (a), changed (b), then deleted (c)."""
    Volume.objects.create("nbs", store=local_store)
    vol = Volume.from_name("nbs", store=local_store)
    seqs = []
    for data in (_nb("x = 1", "1\n"), _nb("x = 2", "2\n")):
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), "nb.ipynb")
        seqs.append(vol.history(limit=1)[0].seq)
    vol.remove_file("nb.ipynb")
    seqs.append(vol.history(limit=1)[0].seq)
    return local_store, seqs[0], seqs[1], seqs[2]


def _ops(diff: list[dict[str, Any]]) -> dict[str, Any]:
    """The first cell's patch, by key (nbdime diffs the notebook's 'cells' list)."""
    (cells,) = [d for d in diff if d["key"] == "cells"]
    (cell,) = cells["diff"]
    assert cell["op"] == "patch" and cell["key"] == 0
    return {d["key"]: d for d in cell["diff"]}


def test_a_changed_notebook_gets_nbdimes_diff_of_source_and_outputs(
    history: tuple[LocalStore, int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    store, a, b, _ = history
    reply = notebook_diff(Volume.lookup("nbs", store=store), "/nb.ipynb", a, b)
    assert (reply["volume"], reply["path"], reply["a"], reply["b"]) == ("nbs", "nb.ipynb", a, b)
    assert reply["base"]["cells"][0]["source"] == "x = 1"
    ops = _ops(reply["diff"])
    assert set(ops) == {"source", "outputs"}
    # nbdime's entries are plain JSON (the handler sends them as they are)
    assert json.loads(json.dumps(reply))["diff"] == reply["diff"]
    # An added notebook is diffed from an empty one, a deleted one to an empty one.
    added = notebook_diff(Volume.lookup("nbs", store=store), "nb.ipynb", 0, a)
    assert added["base"]["cells"] == []
    assert added["diff"][0]["diff"][0]["op"] == "addrange"
    _, _, _, c = history
    deleted = notebook_diff(Volume.lookup("nbs", store=store), "nb.ipynb", b, c)
    assert deleted["diff"][0]["diff"][0]["op"] == "removerange"


def test_switched_off_unreadable_and_absent_notebooks_are_clear_errors(
    history: tuple[LocalStore, int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, a, b, c = history
    monkeypatch.setenv(ENV_SWITCH, "0")
    with pytest.raises(NbdimeUnavailableError, match="switched off") as off:
        notebook_diff(Volume.lookup("nbs", store=store), "nb.ipynb", a, b)
    assert error_reply(off.value, 500) == (
        501,
        {"error": "NbdimeUnavailableError", "message": str(off.value)},
    )
    monkeypatch.setenv(ENV_SWITCH, "1")
    vol = Volume.from_name("nbs", store=store)
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"{not json"), "nb.ipynb")
    broken = vol.history(limit=1)[0].seq
    with pytest.raises(NotebookDiffError, match="not a notebook nbdime can read") as bad:
        notebook_diff(Volume.lookup("nbs", store=store), "nb.ipynb", b, broken)
    assert error_reply(bad.value, 500)[0] == 422
    # absent at both commits: 404; a commit that does not exist: 404 too
    with pytest.raises(NotFoundError) as gone:
        notebook_diff(Volume.lookup("nbs", store=store), "other.ipynb", a, b)
    assert error_reply(gone.value, 500)[0] == 404
    with pytest.raises(NotFoundError) as future:
        notebook_diff(Volume.lookup("nbs", store=store), "nb.ipynb", a, broken + 5)
    assert error_reply(future.value, 500)[0] == 404


def test_without_nbdime_installed_the_server_answers_501(
    history: tuple[LocalStore, int, int, int], tmp_path: Path
) -> None:
    store, a, b, _ = history
    # A real child process where importing nbdime fails as it does when the package is
    # not installed: a None entry in sys.modules is Python's own "not importable"
    # marker, the one way to remove an installed package for one process only.
    code = f"""
import sys
sys.modules["nbdime"] = None
from jupyter_volume.server.handlers import error_reply
from jupyter_volume.server.nbdiff import NbdimeUnavailableError, notebook_diff
from jupyter_volume.store import LocalStore
from jupyter_volume import Volume
try:
    vol = Volume.lookup("nbs", store=LocalStore({str(store.root)!r}))
    notebook_diff(vol, "nb.ipynb", {a}, {b})
except NbdimeUnavailableError as exc:
    print(error_reply(exc, 500)[0], exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert out.startswith("501 nbdime is not installed"), out
