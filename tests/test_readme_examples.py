"""Every fenced example in README.md runs verbatim, top to bottom, on a fresh store.

Python blocks (notebook magics included) run in a real IPython kernel, bash blocks in
bash with the venv's ``jupyter volume`` on PATH, JSON blocks are parsed. A block is
marked in the README source by an HTML comment on the line before its fence:

* ``<!-- example: illustrative -->``: shows a shape, not something to run here (a team's
  S3 URL, a config file, the quickstart script itself): only its syntax is checked.
* ``<!-- example: store=NAME -->``: blocks with the same NAME share one store, working
  folder and kernel, in README order (a later block goes on from an earlier one).

Every other block gets a fresh store, working folder and kernel. The working folder
holds the local files the examples assume a reader has (``LOCAL_FILES``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:
    from .children import isolated_env
except ImportError:  # tests/ is not a package
    from children import isolated_env  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent

#: Local files and folders the examples name as the reader's own.
LOCAL_FILES = {
    "weights.npy": b"\x93NUMPY fake weights",
    "weights.bin": b"\x00\x01binary weights",
    "notes.txt": b"hello again\n",
    "data/a.csv": b"x,y\n1,2\n",
    "data/b.csv": b"x,y\n3,4\n",
    "results/run-1.csv": b"epoch,loss\n1,0.5\n",
}

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
_MARK = re.compile(r"<!--\s*example:\s*(?P<words>.*?)\s*-->")


@dataclass
class Block:
    """One fenced block of the README."""

    line: int
    lang: str
    code: str
    illustrative: bool = False
    store: str | None = None

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'plain'}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, with the marks on the line before each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent, lang = i, m["indent"], m["lang"]
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = _MARK.search(prev)
        words = mark["words"].split() if mark else []
        store = next((w.split("=", 1)[1] for w in words if w.startswith("store=")), None)
        code = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
        blocks.append(Block(start + 1, lang, code + "\n", "illustrative" in words, store))
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_the_readme_has_examples_and_every_block_has_a_known_language() -> None:
    assert len(BLOCKS) >= 10
    unknown = [b.id for b in BLOCKS if b.lang not in ("python", "bash", "json", "text", "")]
    assert unknown == []
    # a block without a language is output or a foreign command: it must say so
    assert [b.id for b in BLOCKS if b.lang == "" and not b.illustrative] == []


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.illustrative], ids=lambda b: b.id)
def test_illustrative_blocks_are_valid_syntax(block: Block, tmp_path: Path) -> None:
    if block.lang == "python":
        if block.code.lstrip().startswith("%"):
            return  # IPython magics: not Python syntax
        compile(block.code, f"README.md:{block.line}", "exec")
    elif block.lang == "bash":
        p = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
        assert p.returncode == 0, p.stderr
    elif block.lang == "json":
        json.loads(block.code)


# -- running the examples ----------------------------------------------------------------------
@dataclass
class Place:
    """A store, a working folder and (for Python) a kernel, shared by one group of blocks."""

    root: Path
    env: dict[str, str]
    kernel: Any = None
    client: Any = None
    outputs: list[str] = field(default_factory=list)

    @property
    def work(self) -> Path:
        return self.root / "work"


def _place(root: Path) -> Place:
    work = root / "work"
    for rel, data in LOCAL_FILES.items():
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    env = isolated_env(
        root,
        root / "jupyter-config",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(root / "home"),
        SHELL="/bin/sh",
    )
    (root / "home").mkdir(exist_ok=True)
    return Place(root, env)


def _run_python(place: Place, block: Block) -> None:
    from jupyter_client.manager import start_new_kernel

    if place.client is None:
        place.kernel, place.client = start_new_kernel(
            kernel_name="python3", cwd=str(place.work), env=place.env, startup_timeout=120
        )
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg.get("content", {})
        if msg["msg_type"] == "error":
            errors.append("\n".join(content.get("traceback", [])))
        elif msg["msg_type"] == "stream":
            place.outputs.append(content.get("text", ""))

    reply = place.client.execute_interactive(block.code, timeout=300, output_hook=hook)
    content = reply["content"]
    if content["status"] != "ok":
        tb = "\n".join(errors) or f"{content.get('ename')}: {content.get('evalue')}"
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        pytest.fail(f"README.md:{block.line} ({block.lang}) failed:\n{ansi.sub('', tb)}")


def _run_bash(place: Place, block: Block) -> None:
    p = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=place.work,
        env=place.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, (
        f"README.md:{block.line} (bash) exited {p.returncode}\n"
        f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    )


def test_every_readme_example_runs_verbatim(tmp_path: Path) -> None:
    places: dict[str, Place] = {}
    ran = 0
    try:
        for n, block in enumerate(BLOCKS):
            if block.illustrative or block.lang in ("text", ""):
                continue
            key = block.store or f"fresh-{n}"
            if key not in places:
                places[key] = _place(tmp_path / key)
            place = places[key]
            if block.lang == "python":
                _run_python(place, block)
            elif block.lang == "bash":
                _run_bash(place, block)
            elif block.lang == "json":
                json.loads(block.code)
            ran += 1
    finally:
        for place in places.values():
            if place.client is not None:
                place.client.stop_channels()
                place.kernel.shutdown_kernel(now=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert ran >= 8
