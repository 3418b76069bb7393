"""`jupyter volume get` recreates symbolic links and never writes through one.

The tree is shaped like a Hugging Face cache (``blobs/<hash>`` files, and
``snapshots/<rev>/...`` relative links to them), the case that broke when `get` skipped
links. The CLI runs in-process (``jupyter_volume.cli.main``), on a local store and on
SeaweedFS.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.cli import main

REV = "0123456789abcdef0123456789abcdef01234567"


def _hf_cache(root: Path, outside: Path) -> dict[str, bytes]:
    """A small HF-style cache below ``root``; returns snapshot path -> bytes."""
    repo = root / "models--org--tiny"
    blobs = {
        "config.json": b'{"hidden": 8}\n',
        "model.safetensors": os.urandom(3000),
        "tokenizer/vocab.txt": b"a\nb\nc\n" * 200,
    }
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    for rel, data in blobs.items():
        h = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / h).write_bytes(data)
        link = repo / "snapshots" / REV / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        up = "../" * (len(Path(rel).parts) + 1)
        os.symlink(f"{up}blobs/{h}", link)
    # a link that leaves the tree: must come back as the same link, never as the file
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("outside the volume")
    os.symlink(str(outside / "secret.txt"), repo / "escape")
    return blobs


@pytest.fixture
def hf_volume(opened: tuple[Any, str, dict[str, str]], tmp_path: Path) -> tuple[str, dict]:
    """``(store url, snapshot files)``: volume ``hub`` holding ``models--org--tiny``."""
    store, url, _env = opened
    src = tmp_path / "src"
    files = _hf_cache(src, tmp_path / "outside")
    vol = Volume.from_name("hub", create_if_missing=True, store=store)
    with vol.batch_upload() as b:
        b.put_directory(src, "/")
    return url, files


def _cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([*args, "--store", url])
    out, err = capsys.readouterr()
    return rc, out, err


def _tree(root: Path) -> dict[str, str]:
    """Every path below ``root``: 'link:<target>', 'dir', or 'file:<sha256>'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"link:{os.readlink(p)}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_get_recreates_the_links_of_a_hugging_face_cache(
    hf_volume: tuple[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, files = hf_volume
    dest = tmp_path / "dest"
    dest.mkdir()
    rc, out, err = _cli(capsys, url, "get", "hub", "models--org--tiny", str(dest))
    assert rc == 0, err
    n = len(files) + 1  # the blobs and refs/main; the snapshot links and 'escape'
    assert f"Downloaded {n} files" in out and f"{n} symbolic links" in out, out
    assert "skipped" not in out
    got = dest / "models--org--tiny"
    # the same tree as uploaded: links as links with their exact targets
    assert _tree(got) == _tree(tmp_path / "src" / "models--org--tiny")
    snap = got / "snapshots" / REV
    for rel, data in files.items():
        assert (snap / rel).is_symlink()
        assert (snap / rel).read_bytes() == data  # resolves inside the copy
        assert (snap / rel).resolve().parent == (got / "blobs").resolve()
    escape = got / "escape"
    assert escape.is_symlink() and os.readlink(escape) == str(tmp_path / "outside/secret.txt")


def test_get_never_writes_through_a_local_link(
    hf_volume: tuple[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, files = hf_volume
    elsewhere = tmp_path / "elsewhere"
    # what lies behind a link in the way is never looked at, let alone written
    decoy = elsewhere / hashlib.sha256(files["config.json"]).hexdigest()
    decoy.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    dest = tmp_path / "dest"
    repo = dest / "models--org--tiny"
    repo.mkdir(parents=True)
    os.symlink(elsewhere, repo / "blobs")  # a link where a folder of the download goes
    (repo / "refs").mkdir()
    os.symlink(victim, repo / "refs" / "main")  # a link where a file goes
    above = tmp_path / "above"
    above.mkdir()
    os.symlink(above, repo / "snapshots")  # a link above the links that go there

    rc, _out, err = _cli(capsys, url, "get", "hub", "models--org--tiny", str(dest))
    assert rc == 2 and "--force" in err and "(and 2 more)" in err, err
    assert list(elsewhere.iterdir()) == [decoy] and list(above.iterdir()) == []
    assert victim.read_text() == "keep me"

    rc, _out, err = _cli(capsys, url, "get", "hub", "models--org--tiny", str(dest), "--force")
    assert rc == 0, err
    assert list(elsewhere.iterdir()) == [decoy] and list(above.iterdir()) == []
    assert list(decoy.iterdir()) == [] and victim.read_text() == "keep me"
    assert _tree(tmp_path / "src" / "models--org--tiny") == _tree(repo)
    assert not (repo / "blobs").is_symlink() and not (repo / "snapshots").is_symlink()
    assert (repo / "refs" / "main").read_text() == REV and not (repo / "refs/main").is_symlink()

    # a single link fetched onto an existing link: replaced, the old target untouched
    os.symlink(victim, tmp_path / "one")
    rc, _out, err = _cli(
        capsys, url, "get", "hub", "models--org--tiny/escape", str(tmp_path / "one"), "-f"
    )
    assert rc == 0, err
    assert os.readlink(tmp_path / "one") == str(tmp_path / "outside/secret.txt")
    assert victim.read_text() == "keep me"


def test_get_refuses_a_folder_where_a_link_goes(
    hf_volume: tuple[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _files = hf_volume
    dest = tmp_path / "dest"
    (dest / "models--org--tiny" / "escape").mkdir(parents=True)
    rc, _out, err = _cli(capsys, url, "get", "hub", "models--org--tiny", str(dest), "-f")
    assert rc == 2 and "local folder" in err, err
    assert list((dest / "models--org--tiny").iterdir()) == [dest / "models--org--tiny" / "escape"]
