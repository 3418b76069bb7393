"""The on-store format: old stores stay readable, newer ones are refused clearly.

``tests/data/format_v1`` is a local store written by jupyter-volume 0.1.0 (on-store
format 1) by ``tests/data/make_format_v1.py``; it is committed and never regenerated.
Every later change to the format must keep it opening, listing, reading, showing its
history and taking new commits. A store or volume marked with a newer format than this
code knows is refused with one line that says which version to upgrade to.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import InvalidError, UnsupportedFormatError
from jupyter_volume.repository.codec import FORMAT_VERSION
from jupyter_volume.store.local import LocalStore

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "format_v1"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_format_v1", DATA / "make_format_v1.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXPECTED = _fixture_module().EXPECTED


@pytest.fixture
def v1_store(tmp_path: Path) -> LocalStore:
    """A private copy of the committed format-1 store (the test writes to it)."""
    assert (FIXTURE / "names" / "compat").is_file(), f"the committed fixture {FIXTURE} is missing"
    shutil.copytree(FIXTURE, tmp_path / "v1", symlinks=True)
    return LocalStore(tmp_path / "v1")


def _read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def test_fixture_is_tracked_by_git() -> None:
    """A .gitignore rule that hid the fixture would make this suite pass only locally."""
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    assert files
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, files)],
        cwd=FIXTURE,
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 1 and not ignored.stdout, ignored.stdout


def test_format_1_store_opens_lists_reads_and_takes_commits(v1_store: LocalStore) -> None:
    vol = Volume.from_name("compat", store=v1_store)
    listed = {e.path: e for e in vol.listdir("/", recursive=True)}
    head = EXPECTED["head"]
    for path, data in head.items():
        assert _read(vol, path) == data, path
        assert listed[path].size == len(data)
    for link, target in EXPECTED["links"].items():
        assert listed[link].type.name == "SYMLINK"
        assert vol._repo.lookup(link).target == target
    for folder in EXPECTED["empty_dirs"]:
        assert listed[folder].type.name == "DIRECTORY"
        assert vol.listdir(folder) == []
    assert EXPECTED["deleted"] not in listed

    history = vol.history()
    assert [c.seq for c in history] == list(range(EXPECTED["commits"] - 1, -1, -1))
    tag, tagged = EXPECTED["tag"]
    assert vol.tags() == {tag: tagged}
    assert tag in next(c for c in history if c.seq == tagged).tags
    for path, data in EXPECTED["at_1"].items():
        assert _read(vol, path, at=1) == data
    assert {d.path for d in vol.diff(1)} >= {EXPECTED["deleted"], "README.txt"}

    # New commits on top, including a packed file that deduplicates against the old pack.
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"written by today's code\n"), "new.txt")
        b.put_file(io.BytesIO(head["data/packed.bin"] + b"tail"), "data/packed2.bin")
    vol.remove_file("data/nested/deep.txt")
    assert vol.seq == EXPECTED["commits"] + 1
    fresh = Volume.from_name("compat", store=LocalStore(v1_store.root))
    assert _read(fresh, "new.txt") == b"written by today's code\n"
    assert _read(fresh, "data/packed2.bin") == head["data/packed.bin"] + b"tail"
    assert _read(fresh, "data/packed.bin", at=EXPECTED["commits"] - 1) == head["data/packed.bin"]
    report = fresh.verify()
    assert report.ok, report.errors


def _config_path(store: LocalStore) -> Path:
    (vol_dir,) = (store.root / "vols").iterdir()
    return vol_dir / "config"


def test_a_volume_of_a_newer_format_is_refused(v1_store: LocalStore) -> None:
    cfg_path = _config_path(v1_store)
    cfg = json.loads(cfg_path.read_bytes())
    assert cfg["format"] == 1
    cfg["format"] = FORMAT_VERSION + 1
    cfg["min_reader"] = "9.4.0"
    cfg_path.write_bytes(json.dumps(cfg).encode())
    with pytest.raises(UnsupportedFormatError) as info:
        Volume.from_name("compat", store=v1_store).listdir("/")
    message = str(info.value)
    assert "\n" not in message
    assert "upgrade jupyter-volume to >= 9.4.0" in message
    assert f"format {FORMAT_VERSION + 1}" in message
    assert isinstance(info.value, InvalidError)  # callers catching bad input still catch it


def test_a_newer_format_without_a_version_hint_still_says_upgrade(v1_store: LocalStore) -> None:
    cfg_path = _config_path(v1_store)
    cfg = json.loads(cfg_path.read_bytes())
    cfg["format"] = FORMAT_VERSION + 5
    cfg_path.write_bytes(json.dumps(cfg).encode())
    with pytest.raises(UnsupportedFormatError, match=r"upgrade jupyter-volume to >= \S+"):
        Volume.from_name("compat", store=v1_store).listdir("/")


def test_a_commit_of_a_newer_format_is_refused(v1_store: LocalStore) -> None:
    """A volume upgraded in place says so in the commit that upgraded it."""
    vol = Volume.from_name("compat", store=v1_store)
    assert _read(vol, "README.txt") == EXPECTED["head"]["README.txt"]
    (vol_dir,) = (v1_store.root / "vols").iterdir()
    last = sorted((vol_dir / "log").iterdir())[-1]
    rec = json.loads(last.read_bytes())
    rec.update(seq=rec["seq"] + 1, parent=rec["seq"], format=FORMAT_VERSION + 1)
    rec["min_reader"] = "7.0.1"
    (vol_dir / "log" / f"{rec['seq']:020d}").write_bytes(json.dumps(rec).encode())
    with pytest.raises(UnsupportedFormatError, match=r"upgrade jupyter-volume to >= 7\.0\.1"):
        vol.refresh()
    with pytest.raises(UnsupportedFormatError):  # nor may an old writer commit on top of it
        with vol.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(b"x"), "x.txt")


def test_a_store_of_a_newer_format_is_refused(v1_store: LocalStore) -> None:
    (v1_store.root / "format").write_bytes(
        json.dumps({"format": FORMAT_VERSION + 1, "min_reader": "3.2.1"}).encode()
    )
    with pytest.raises(UnsupportedFormatError, match=r"upgrade jupyter-volume to >= 3\.2\.1"):
        Volume.from_name("compat", store=LocalStore(v1_store.root)).listdir("/")
    before = sorted(p for p in v1_store.root.rglob("*"))
    with pytest.raises(UnsupportedFormatError, match=r">= 3\.2\.1"):  # nor a new volume in it
        Volume.from_name(
            "new-one", create_if_missing=True, store=LocalStore(v1_store.root)
        ).listdir("/")
    assert sorted(p for p in v1_store.root.rglob("*")) == before


def test_the_cli_reports_a_newer_format_in_one_line(v1_store: LocalStore) -> None:
    cfg_path = _config_path(v1_store)
    cfg = json.loads(cfg_path.read_bytes())
    cfg.update(format=FORMAT_VERSION + 1, min_reader="9.4.0")
    cfg_path.write_bytes(json.dumps(cfg).encode())
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_volume.cli", "ls", "compat", "--store", str(v1_store.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "upgrade jupyter-volume to >= 9.4.0" in lines[0], p.stderr


def test_compact_chunk_map_writes_the_same_index_segment_as_a_plain_dict() -> None:
    # A commit keeps its new chunks' locations in a ChunkMap (an int per chunk); the
    # segment it writes must be byte for byte the one the plain encoder makes, so its
    # key (a hash of the bytes) and every reader stay as they were.
    import random

    from jupyter_volume.repository.packs import ChunkLoc, ChunkMap, decode_segment, encode_segment

    rnd = random.Random(7)
    packs = [rnd.randbytes(32).hex() for _ in range(5)]
    plain: dict[str, ChunkLoc] = {}
    compact = ChunkMap()
    for i in range(2_000):
        h = rnd.randbytes(32).hex()
        loc = ChunkLoc(rnd.choice(packs), i * 4096, 4000 + i, 4096 + i, i % 2)
        plain[h] = compact[h] = loc
    seg = encode_segment(compact)
    assert seg == encode_segment(plain)
    assert {hb.hex(): (p, o, n, r, c) for hb, p, o, n, r, c in decode_segment(seg, "k")} == {
        h: (loc.pack, loc.offset, loc.length, loc.raw_len, loc.codec) for h, loc in plain.items()
    }
    assert dict(compact) == plain and len(compact) == 2_000
    assert next(iter(plain)) in compact and "00" * 32 not in compact
    assert encode_segment(ChunkMap()) == encode_segment({})


def test_a_written_chunk_map_moves_into_the_index_as_its_segment_would_load() -> None:
    # After a commit's packs land, its new locations move into the process's index
    # (ChunkIndex.absorb) instead of being decoded again from the segment just written:
    # the index must come out exactly as loading that segment makes it, whatever packs
    # the index already numbered, and the commit's own map is emptied (not kept twice).
    import random

    from jupyter_volume.repository.packs import ChunkIndex, ChunkLoc, ChunkMap, encode_segment

    rnd = random.Random(11)
    packs = [rnd.randbytes(32).hex() for _ in range(6)]
    older = ChunkMap()  # what both indexes loaded before: packs numbered in another order
    for i in range(300):
        older[rnd.randbytes(32).hex()] = ChunkLoc(packs[5 - i % 3], i, 10, 10, 0)
    new = ChunkMap()
    for i in range(3_000):
        new[rnd.randbytes(32).hex()] = ChunkLoc(rnd.choice(packs), i * 7, 100 + i, 200 + i, i % 2)
    new[next(iter(older))] = ChunkLoc(packs[0], 1, 2, 3, 1)  # a chunk written again
    seg = encode_segment(new)
    loaded, absorbed = ChunkIndex(), ChunkIndex()
    for idx in (loaded, absorbed):
        idx.add_object("index/older", encode_segment(older))
    loaded.add_object("index/new", seg)
    absorbed.absorb("index/new", new)
    assert len(new) == 0
    assert absorbed.items() == loaded.items() and len(absorbed) == len(loaded) == 3_300
    assert "index/new" in absorbed.loaded
    absorbed.add_object("index/new", seg)  # loaded already: nothing happens
    assert absorbed.items() == loaded.items()


def test_many_chunks_are_located_as_one_at_a_time_would_be() -> None:
    # ChunkIndex.get_many (a mount locates thousands at once) against get: the same
    # locations, None for a chunk no index has and for one in a pack gc condemned.
    import random

    from jupyter_volume.repository.packs import ChunkIndex, ChunkLoc, ChunkMap, encode_segment

    rnd = random.Random(12)
    packs = [rnd.randbytes(32).hex() for _ in range(4)]
    m = ChunkMap()
    for i in range(500):
        m[rnd.randbytes(32).hex()] = ChunkLoc(packs[i % 4], i * 4096, 4000 + i, 4096, i % 2)
    index = ChunkIndex()
    index.add_object("index/a", encode_segment(m))
    index.dead = frozenset({packs[3]})
    dead = {h for h, loc in m.locations() if loc.pack == packs[3]}
    hashes = [*(h for h, _ in m.locations()), rnd.randbytes(32).hex()]
    got = index.get_many(hashes)
    assert got == [index.get(h) for h in hashes]
    assert got[-1] is None and sum(loc is None for loc in got) == 1 + len(dead) == 126
    assert all(loc is None or loc.pack != packs[3] for loc in got)


# Entries whose JSON needs care: quotes, backslashes, control characters, non-ASCII
# (kept as is in nodes, escaped in a mount's rows), inline bytes, links, folders, and
# fields left empty.
ODD_ENTRIES = [
    (
        'a"b\\c\u00e9\u2028\x01\n\t',
        "f",
        {"mode": 0o600, "size": 5, "mtime_ns": -3, "chunks": [("ab" * 32, 5), ("cd" * 32, 7)]},
    ),
    ("empty", "f", {"mode": 0o644, "chunks": []}),
    ("inline", "f", {"mode": 0o755, "size": 3, "mtime_ns": 5, "inline": b"hi\xff"}),
    ("folder", "d", {"mode": 0o700, "size": 10, "mtime_ns": 9, "tree": "ef" * 32, "nfiles": 3}),
    ("bare folder", "d", {}),
    ("link", "l", {"mode": 0o777, "size": 3, "mtime_ns": 1, "target": '../\u00fc"x'}),
    ("bare link", "l", {}),
    ("\u65e5\u672c", "f", {"size": 2**40, "mtime_ns": 2**62, "chunks": [("00" * 32, 1)]}),
]


def _odd_entries() -> list:
    from jupyter_volume.repository.tree import Entry

    return [Entry(name, kind, **kw) for name, kind, kw in ODD_ENTRIES]


def test_direct_node_encoding_is_byte_identical_to_canonical_json() -> None:
    # A streamed commit writes folder nodes without building their JSON objects; the
    # bytes (and so the node's name, its hash) must be exactly the canonical JSON's, or
    # equal folders would stop deduplicating against nodes written the other way.
    from jupyter_volume.repository.codec import dump_json
    from jupyter_volume.repository.tree import encode_flat

    entries = _odd_entries()
    for e in entries:
        assert encode_flat([e]) == dump_json({"v": 1, "e": [e.encode()]}), e
    assert encode_flat(entries) == dump_json({"v": 1, "e": [e.encode() for e in entries]})
    assert encode_flat([]) == dump_json({"v": 1, "e": []})


def test_direct_row_encoding_reads_back_as_the_entry() -> None:
    from jupyter_volume.mount import _entry_json
    from jupyter_volume.repository.tree import Entry

    for e in _odd_entries():
        text = _entry_json(e)
        assert json.loads(text) == json.loads(json.dumps(e.encode())), e
        assert Entry.decode(json.loads(text), "row") == e


def test_compressed_blobs_hold_only_their_bytes() -> None:
    # zstd returns its result in an allocation of the worst case (the input's size); a
    # streamed commit holds many node blobs until they are uploaded.
    from jupyter_volume.repository.codec import compress_blob, decompress_blob

    raw = json.dumps([[f"name{i:05d}", "f", 420, 4096, i] for i in range(500)]).encode()
    blob = compress_blob(raw)
    assert decompress_blob(blob, "t") == raw
    assert sys.getsizeof(blob) < len(blob) + 64 < len(raw) // 4
