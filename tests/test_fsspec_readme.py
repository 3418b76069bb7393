"""The README's "Use it with pandas, pyarrow and zarr" examples run as written.

Every ```python block of that section runs, in order, in one namespace, against a fresh
store named by ``$JUPYTER_VOLUME_STORE`` (as a reader's own store would be), and what
the comments promise is checked afterwards. A block that is a Jupyter config file
(``c.…``) runs against a traitlets Config, and its jupyter-fs resource is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import fsspec
import numpy as np
import pytest
from traitlets.config import Config

from jupyter_volume import Volume
from jupyter_volume.fsspec import VolumeFileSystem, parse_url

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Use it with pandas, pyarrow and zarr"


def python_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_fsspec_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks()
    assert blocks, f"no python examples under {SECTION!r} in README.md"
    store = tmp_path / "store"
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", str(store))
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    monkeypatch.chdir(tmp_path)
    # fsspec keeps one instance per set of options; an earlier test's instance would
    # point at that test's store
    VolumeFileSystem.clear_instance_cache()
    ns: dict = {}
    configs = []
    for i, block in enumerate(blocks):
        code = compile(block, f"README.md python block {i + 1}", "exec")
        if block.startswith("c."):  # a Jupyter config file: runs with a config object
            c = Config()
            exec(code, {"c": c})
            configs.append(c)
        else:
            exec(code, ns)
    VolumeFileSystem.clear_instance_cache()

    # the jupyter-fs snippet names an fsspec resource that this protocol serves
    (jfs,) = configs
    (resource,) = jfs.JupyterFs.resources
    assert resource["type"] == "fsspec"
    assert fsspec.core.url_to_fs(resource["url"], skip_instance_cache=True)[0].protocol == "volume"
    assert parse_url(resource["url"]) == ("weather", None, "")

    assert list(ns["old"]["city"]) == ["Oslo", "Lima", "Pune"]
    assert ns["temps"].column("temp").to_pylist() == [4.5, 19.0, 31.2]
    assert ns["magic"] == b"PAR1"
    assert ns["grid"].shape == (100, 100)
    np.testing.assert_array_equal(
        ns["grid"][:], np.random.default_rng(0).random((100, 100), dtype="f4")
    )
    vol = Volume.from_name("weather", store=str(store))
    messages = [c.message for c in vol.history()]
    # the transaction's six files (five pipes and a pandas write) are one commit
    assert [m for m in messages if "raw/" in m] == ["upload 6 paths (raw/day-0.json, …)"]
    assert len(vol.listdir("raw")) == 6
