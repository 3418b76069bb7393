"""A big file is read straight into the pack buffer (``PackWriter.window``): chunks
that are new and stored raw stay where they were cut, and everything else (chunks the
volume or the writer has already, compressed chunks, small files between big ones)
still lands whole and in place of nothing it should not overwrite."""

from __future__ import annotations

import io
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_volume import Volume
from jupyter_volume.repository import packs as packs_mod
from jupyter_volume.repository.codec import CODEC_RAW, cut_chunks
from jupyter_volume.repository.packs import PackWriter
from jupyter_volume.store import LocalStore

KiB = 1024
MiB = 1024 * KiB


def _volume(store: Any) -> Volume:
    return Volume.from_name(f"w-{uuid.uuid4().hex[:10]}", create_if_missing=True, store=store)


def _put(vol: Volume, files: dict[str, bytes]) -> None:
    with vol.batch_upload() as batch:
        for path, content in files.items():
            batch.put_file(io.BytesIO(content), path)


def _digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def _read_digest(vol: Volume, path: str) -> str:
    h = blake3()
    for piece in vol.read_file(path):
        h.update(piece)
    return h.hexdigest()


def _pack_bytes(vol: Volume) -> int:
    return sum(o.size for o in vol.store.list(f"vols/{vol.info().id}/packs/"))


def _text(n: int, seed: int) -> bytes:
    """``n`` bytes that zstd shrinks well (and that the chunker still cuts)."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choices(b"abcdefghij", k=rnd.randint(2, 9))) for _ in range(500)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


class _Counting:
    """Counts the bytes ``PackWriter._put_bytes`` found already in place (a raw chunk of
    the open window, at the writer's end of data) and all it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.in_place = self.total = 0
        orig = PackWriter._put_bytes
        counter = self

        def put_bytes(self: PackWriter, data: Any) -> None:
            win = self._win
            if win is not None and data is win.piece and win.base + win.at == self._len:
                counter.in_place += len(data)
            counter.total += len(data)
            orig(self, data)

        monkeypatch.setattr(PackWriter, "_put_bytes", put_bytes)


def test_a_new_big_file_is_stored_where_it_was_cut(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(40 * MiB)
    counted = _Counting(monkeypatch)
    vol = _volume(local_store)
    _put(vol, {"big.bin": data})
    assert _read_digest(vol, "big.bin") == _digest(data)
    # every chunk of it went into a pack without a copy; the rest is the packs' headers
    assert counted.in_place == len(data), (counted.in_place, counted.total)
    assert counted.total - counted.in_place < 64 * KiB


def test_chunks_left_out_compressed_or_repeated_land_whole(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(7)
    a = rnd.randbytes(20 * MiB)
    edited = bytearray(a)
    for at in (3 * MiB, 9 * MiB + 12345, 17 * MiB):
        edited[at : at + 100 * KiB] = rnd.randbytes(100 * KiB)
    block = rnd.randbytes(3 * MiB)
    files = {
        "a.bin": a,
        "a-edited.bin": bytes(edited),  # mostly chunks this commit already has: gaps
        "text.txt": _text(6 * MiB, 1),  # every chunk compressed, written where cut
        "then-random.bin": _text(300 * KiB, 2) + rnd.randbytes(5 * MiB),  # zstd tried on all
        "repeats.bin": block + rnd.randbytes(1 * MiB) + block + block,  # repeats itself
        "small.txt": b"hello\n",
        "mid.bin": rnd.randbytes(300 * KiB),  # below a window's size: cut in one buffer
        "just-over.bin": rnd.randbytes(1 * MiB + 1),
    }
    counted = _Counting(monkeypatch)
    vol = _volume(store)
    _put(vol, files)
    for path, content in files.items():
        assert _read_digest(vol, path) == _digest(content), path
    assert counted.in_place > 20 * MiB  # the new raw chunks (a.bin alone is 20 MiB)
    # nothing was stored twice: a.bin's edit adds about 3 chunks, the repeats one block
    unique = 20 + 6 + 5 + 3 + 1 + 0.3 + 1
    assert _pack_bytes(vol) < (unique + 2.5) * MiB

    # a later commit: chunks the volume has are left out against its index
    later = {"b.bin": bytes(edited[: 11 * MiB]) + b"inserted" + bytes(edited[11 * MiB :])}
    before = _pack_bytes(vol)
    _put(vol, later)
    assert _read_digest(vol, "b.bin") == _digest(later["b.bin"])
    assert _pack_bytes(vol) - before < 2 * MiB
    for path, content in files.items():
        assert _read_digest(vol, path) == _digest(content), path


_BLOCKS = [random.Random(i).randbytes(192 * KiB) for i in range(6)]


_PIECES = st.lists(
    st.tuples(
        st.sampled_from(["random", "block", "text"]),
        st.integers(16 * KiB, 1200 * KiB),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=10,
)


def _file(pieces: list[tuple[str, int, int]]) -> bytes:
    """Random pieces, reused blocks (chunks seen before) and text, one after another."""
    out = bytearray()
    for kind, n, seed in pieces:
        if kind == "random":
            out += random.Random(seed).randbytes(n)
        elif kind == "block":
            out += _BLOCKS[seed % len(_BLOCKS)]
        else:
            out += _text(n, seed % 50)
    return bytes(out)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)
@given(pieces=st.lists(_PIECES, min_size=1, max_size=5), expect=st.booleans())
def test_any_mix_of_big_files_through_one_writer_reads_back(
    local_store: LocalStore, pieces: list[list[tuple[str, int, int]]], expect: bool
) -> None:
    files = [_file(p) for p in pieces]
    vol = _volume(local_store)
    with vol.batch_upload() as batch:
        if expect:  # as a mount does: the writer knows what is to come (tail packs)
            batch._writer.packs.expect(sum(map(len, files)))  # type: ignore[attr-defined]
        for i, content in enumerate(files):
            batch.put_file(io.BytesIO(content), f"f{i}.bin")
    for i, content in enumerate(files):
        assert _read_digest(vol, f"f{i}.bin") == _digest(content)


def test_a_write_that_would_overrun_the_window_is_refused() -> None:
    data = os.urandom(3 * MiB)
    with ThreadPoolExecutor(1) as pool:
        packs = PackWriter(lambda _id, _data: None, pool)
        with packs.window() as win:
            cuts = cut_chunks(io.BytesIO(data), window=win)
            piece, h = next(cuts)
            # one byte longer than the chunk just cut: it would reach into what is not cut
            with pytest.raises(RuntimeError, match="overrun"):
                packs.add("0" * 64, CODEC_RAW, b"x" * (len(piece) + 1), len(piece) + 1)
            cuts.close()
        assert packs._win is None


def test_a_window_takes_no_more_pack_buffers_than_plain_adds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory stays bounded as before: ``max_in_flight`` packs on their way and the one
    being filled (and the last one, after ``flush``), also while a window moves on
    across packs whose uploads are slow: the next pack's buffer is taken only once a
    slot is free."""
    made = []
    orig = PackWriter._take_buf

    def take_buf(self: PackWriter) -> Any:
        if not self._free:
            made.append(1)
        return orig(self)

    monkeypatch.setattr(PackWriter, "_take_buf", take_buf)
    landed: list[int] = []

    def upload(_id: str, data: Any) -> None:
        time.sleep(0.3)  # slower than cutting: the writer waits for slots
        landed.append(len(data))

    data = os.urandom(120 * MiB)
    with ThreadPoolExecutor(packs_mod.MAX_IN_FLIGHT) as pool:
        packs = PackWriter(upload, pool)
        with packs.window() as win:
            for piece, h in cut_chunks(io.BytesIO(data), window=win):
                packs.add(h, CODEC_RAW, piece, len(piece))
        while_cutting = len(made)
        packs.finish()
    assert sum(landed) > len(data)
    assert while_cutting <= packs_mod.MAX_IN_FLIGHT + 1, while_cutting
    assert len(made) <= packs_mod.MAX_IN_FLIGHT + 2, len(made)
