"""The Linux calls reached through ctypes (jupyter_volume._libc), on real files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from jupyter_volume import _libc


def test_fallocate_is_reachable_here() -> None:
    assert _libc._fallocate is not None, "fallocate64 is not callable through ctypes here"


def test_preallocate_grows_a_file_and_keeps_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"head")
    fd = os.open(path, os.O_RDWR)
    try:
        assert _libc.preallocate(fd, 8 << 20) is True
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert st.st_size == 8 << 20
    assert st.st_blocks * 512 >= 8 << 20  # the disk is given now, not at write time
    with open(path, "rb") as f:
        assert f.read(4) == b"head"
        assert f.read(1 << 20) == bytes(1 << 20)


def test_preallocate_ignores_what_cannot_be_preallocated(tmp_path: Path) -> None:
    # a pipe cannot be (ESPIPE): the caller writes as it would have without asking
    r, w = os.pipe()
    try:
        assert _libc.preallocate(w, 1 << 20) is False
    finally:
        os.close(r)
        os.close(w)
    fd = os.open(tmp_path / "empty", os.O_RDWR | os.O_CREAT)
    try:
        assert _libc.preallocate(fd, 0) is False  # nothing to do
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


def test_preallocate_on_a_full_disk_raises_enospc(tmpfs: Path) -> None:
    fd = os.open(tmpfs / "big", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(OSError) as exc:
            _libc.preallocate(fd, 64 << 20)  # the tmpfs holds 8 MiB
        assert exc.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
