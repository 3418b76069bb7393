"""The bench's reader of Go CPU profiles (how the store's own CPU is shown)."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest

from jupyter_volume.testing.seaweedfs import SeaweedFS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench import pprof  # noqa: E402


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _profile() -> bytes:
    """Three samples over three functions, as Go writes them: packed location ids
    (innermost first) and values (count, nanoseconds), one string table."""
    strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "md5.block", "write"]
    msg = b""
    msg += _field(1, _field(1, 1) + _field(2, 2))  # sample type: samples/count
    msg += _field(1, _field(1, 3) + _field(2, 4))  # sample type: cpu/nanoseconds
    packed = lambda *xs: b"".join(_varint(x) for x in xs)  # noqa: E731
    # md5.block <- main, twice (30 ms); write <- main (10 ms); one sample with a
    # non-packed location list, as older writers produce
    msg += _field(2, _field(1, packed(2, 1)) + _field(2, packed(3, 30_000_000)))
    msg += _field(2, _field(1, 3) + _field(1, 1) + _field(2, packed(1, 10_000_000)))
    for lid, fid in ((1, 1), (2, 2), (3, 3)):
        msg += _field(4, _field(1, lid) + _field(4, _field(1, fid) + _field(2, 7)))
    for fid, name in ((1, 5), (2, 6), (3, 7)):
        msg += _field(5, _field(1, fid) + _field(2, name))
    for s in strings:
        msg += _field(6, s.encode())
    msg += _field(12, 10_000_000)  # period
    return gzip.compress(msg)


def test_a_hand_built_profile_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "p.prof"
    path.write_bytes(_profile())
    prof = pprof.load(path)
    assert prof.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert prof.period == 10_000_000
    assert prof.values() == [(["md5.block", "main"], 30_000_000), (["write", "main"], 10_000_000)]
    text = pprof.report(prof, "test", callers_of=("md5.block",))
    assert "0.04 s of CPU" in text
    own = text.split("own time (flat):\n")[1].split("\n\n")[0].splitlines()
    assert own == ["   75.0 %  md5.block", "   25.0 %  write"]
    assert "  100.0 %  main" in text
    assert "   75.0 %  md5.block <- main" in text.split("what calls md5.block:")[1]


def test_not_a_profile_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.prof"
    path.write_bytes(gzip.compress(b"\x0f\x00"))  # wire type 7 does not exist
    with pytest.raises(ValueError, match="not a pprof profile"):
        pprof.load(path)


def test_a_real_seaweedfs_profile_shows_its_http_work(tmp_path: Path) -> None:
    """The flag reaches weed, the profile is written when it stops, and it parses: 64 MiB
    PUT (about a second of the store's CPU) shows up under Go's HTTP server."""
    data = os.urandom(16 << 20)
    for attempt in range(6):  # SeaweedFS now and then leaves the profile empty at stop
        prof_path = tmp_path / f"weed-{attempt}.prof"
        sw = SeaweedFS(extra_args=[f"-cpuprofile={prof_path}"])
        sw.start()
        try:
            bucket = sw.create_bucket("prof")
            client = sw.client()
            for i in range(4):
                client.put_object(Bucket=bucket, Key=f"k{i}", Body=data)
        finally:
            sw.stop()
        prof = pprof.load(prof_path)
        if prof.samples:
            break
    assert prof.sample_types[-1][1] == "nanoseconds"
    assert sum(v for _s, v in prof.values()) > 0
    text = pprof.report(prof, "weed")
    assert "net/http.(*conn).serve" in text
