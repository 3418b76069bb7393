"""Cutting a file with its previous version's chunk list gives exactly the chunks that
cutting it from scratch gives, whatever the edit, on both read paths: a real file (read
at positions, in parts, on the hash threads) and a plain stream (read sequentially).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from jupyter_volume.repository.codec import CHUNK_WINDOW, cut_chunks

SIZE = 3 * CHUNK_WINDOW + 123_457  # several windows, not a multiple of anything


def chunks(stream: io.RawIOBase | io.BufferedIOBase, previous=None) -> list[tuple[str, int]]:
    return [(h, len(mv)) for mv, h in cut_chunks(stream, previous=previous)]


def edits(data: bytes, rnd: random.Random) -> dict[str, bytes]:
    mid = len(data) // 2
    scattered = bytearray(data)
    for _ in range(40):
        at = rnd.randrange(0, len(data) - 4096)
        scattered[at : at + 4096] = rnd.randbytes(4096)
    return {
        "unchanged": data,
        "scattered": bytes(scattered),
        "insert": data[:mid] + rnd.randbytes(1000) + data[mid:],
        "delete": data[:mid] + data[mid + 70_000 :],
        "append": data + rnd.randbytes(3 << 20),
        "truncate": data[: len(data) - CHUNK_WINDOW - 5],
        "first_byte": b"x" + data[1:],
        "last_byte": data[:-1] + b"x",
        "small": data[:700_000],
    }


@pytest.fixture(scope="module")
def versions() -> tuple[list[tuple[str, int]], dict[str, bytes]]:
    rnd = random.Random(7)
    old = rnd.randbytes(SIZE)
    return chunks(io.BytesIO(old)), edits(old, rnd)


@pytest.mark.parametrize(
    "edit",
    [
        "unchanged",
        "scattered",
        "insert",
        "delete",
        "append",
        "truncate",
        "first_byte",
        "last_byte",
        "small",
    ],
)
def test_previous_chunks_change_nothing(versions, edit: str, tmp_path: Path) -> None:
    previous, new = versions
    data = new[edit]
    expected = chunks(io.BytesIO(data))
    assert sum(n for _h, n in expected) == len(data)
    # a plain stream: sequential reads
    assert chunks(io.BytesIO(data), previous) == expected
    # a real file: positional reads in parts; also from an offset other than 0, and the
    # stream is left at the end, as a sequential read would leave it
    path = tmp_path / "f"
    path.write_bytes(b"HEADER" + data)
    with open(path, "rb") as f:
        f.seek(6)
        assert chunks(f, previous) == expected
        assert f.tell() == 6 + len(data)
        assert f.read() == b""
    with open(path, "rb", buffering=0) as f:  # unbuffered: FileIO itself
        f.seek(6)
        assert chunks(f, previous) == expected


def test_previous_chunks_are_reused_not_recut(versions) -> None:
    """The shortcut is taken: an in-place edit shares all but the edited chunks."""
    previous, new = versions
    got = chunks(io.BytesIO(new["scattered"]), previous)
    shared = set(previous) & set(got)
    assert len(shared) >= len(got) - 2 * 40  # at most two chunks per 4 KiB edit differ
