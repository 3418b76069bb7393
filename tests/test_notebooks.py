"""The example notebooks follow the rules that keep their nbval run meaningful.

``pytest --nbval`` (see ``notebooks/conftest.py``) runs each notebook and compares every
cell's output with the one saved in it. These checks keep that comparison honest: the
notebooks are saved with real outputs and no errors, ignore the output of at most two
cells each, work in a scratch folder (so mounts never land in ``notebooks/``), and the
sanitizers are valid regular expressions. Regenerate outputs with
``python notebooks/regenerate.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01-quickstart.ipynb",
    "02-checkpoints.ipynb",
    "03-sharing.ipynb",
    "04-browser-and-history.ipynb",
    "05-s3.ipynb",
    "06-dicts.ipynb",
    "07-network-file-system.ipynb",
]
IGNORE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "PYTEST_VALIDATE_IGNORE_OUTPUT", "NBVAL_SKIP")
SCRATCH = 'os.chdir(tempfile.mkdtemp(prefix="jv-scratch-"))'


def test_the_notebooks_are_there() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_saved_with_clean_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code cells tests nothing"
    assert SCRATCH in code[0].source, (
        "the first code cell must move into a scratch folder, so that mounts (./NAME) "
        "never land in notebooks/"
    )
    ignored = [
        i
        for i, c in enumerate(code)
        if any(m in c.source for m in IGNORE_MARKERS)
        or {"nbval-ignore-output", "nbval-skip"} & set(c.metadata.get("tags", []))
    ]
    assert len(ignored) <= 2, f"cells {ignored} ignore their output: at most two may"
    assert any(c.outputs for c in code), "saved without outputs: run notebooks/regenerate.py"
    for i, c in enumerate(code):
        assert c.execution_count is not None, f"code cell {i} was not run: regenerate"
        for out in c.outputs:
            assert out.output_type != "error", f"code cell {i} saved with an error"
            if out.output_type == "stream":
                assert out.name == "stdout", f"code cell {i} wrote to stderr: {out.text[:200]}"


def test_sanitizers_are_valid_regexes() -> None:
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((NOTEBOOKS / "sanitize.cfg").read_text())
    assert len(patterns) >= 3
    for regex, replace in patterns:
        re.sub(regex, replace, "2025-01-31 14:05:09 /tmp/x/jv-scratch-ab_12/f")
