"""The pack writer on its own: chunks given raw are compressed in background batches,
and every chunk lands in a pack exactly once, readable, with the codec it should have."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jupyter_volume.repository import packs as packs_mod
from jupyter_volume.repository.codec import (
    CODEC_RAW,
    CODEC_ZSTD,
    Compressor,
    decode_chunk,
    hash_bytes,
)
from jupyter_volume.repository.packs import PackWriter, parse_pack_header


class _Sink:
    """Collects uploaded packs (their bytes, copied as an upload would send them)."""

    def __init__(self, fail: int | None = None) -> None:
        self.packs: dict[str, bytes] = {}
        self.fail = fail  # fail the n-th upload (0-based)
        self._lock = threading.Lock()

    def upload(self, pack_id: str, data: object) -> None:
        with self._lock:
            n = len(self.packs)
            if self.fail is not None and n == self.fail:
                self.fail = None
                raise OSError("injected: upload failed")
            self.packs[pack_id] = bytes(data)  # type: ignore[call-overload]

    def chunks(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for pid, data in self.packs.items():
            for h, off, n, raw, codec in parse_pack_header(data, pid):
                assert h not in out, "a chunk was written twice"
                out[h] = decode_chunk(codec, data[off : off + n], raw, h, pid)
                assert codec in (CODEC_RAW, CODEC_ZSTD)
        return out


def _noise(n: int, seed: int) -> list[bytes]:
    """``n`` incompressible chunks of 4 KiB."""
    rnd = __import__("random").Random(seed)
    return [rnd.randbytes(4096) for _ in range(n)]


def _chunks(n: int, seed: int) -> list[bytes]:
    rnd = __import__("random").Random(seed)
    out = []
    for i in range(n):
        size = rnd.randrange(600, 32 * 1024)
        out.append(rnd.randbytes(size) if i % 2 else (b"%06d compressible " % i) * (size // 18 + 1))
    return out


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(4) as ex:
        yield ex


def test_raw_and_compressed_chunks_all_land_once(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small packs and batches, so that several of each are in flight
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 1 << 20)
    monkeypatch.setattr(packs_mod, "ZSTD_BATCH", 64 << 10)
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    data = _chunks(400, 1)
    comp = Compressor()
    want = {}
    for i, d in enumerate(data):
        h = hash_bytes(d)
        want[h] = d
        if i % 3 == 0:
            codec, stored = comp.compress(d)
            w.add(h, codec, stored, len(d))
        else:
            w.add_raw(h, d)
        assert w.has(h)  # known at once, while it waits for its batch
        w.add_raw(h, d)  # a repeat is ignored, waiting or not
    w.finish()
    got = sink.chunks()
    assert got == want
    assert len(w.new_chunks) == len(want)
    for h in want:
        loc = w.new_chunks.get(h)
        assert loc is not None and loc.pack in sink.packs
    # compressible chunks were stored compressed, random ones raw
    for pid, blob in sink.packs.items():
        for h, _off, n, raw, codec in parse_pack_header(blob, pid):
            assert codec == (CODEC_ZSTD if b"compressible" in want[h][:40] else CODEC_RAW)
            assert (n < raw) == (codec == CODEC_ZSTD)


def test_abort_with_batches_in_flight_and_a_failed_upload(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 256 << 10)
    monkeypatch.setattr(packs_mod, "ZSTD_BATCH", 32 << 10)
    w = PackWriter(_Sink().upload, pool)
    data = _chunks(100, 2)
    for d in data:
        w.add_raw(hash_bytes(d), d)
    assert w.has(hash_bytes(data[-1]))  # the newest batch: not compressed yet
    w.abort()  # returns once nothing is running; what was not sealed is dropped
    assert not w.has(hash_bytes(data[-1]))

    sink = _Sink(fail=1)
    w = PackWriter(sink.upload, pool)
    with pytest.raises(OSError, match="injected"):  # as soon as that pack is waited for
        for d in _chunks(200, 3):
            w.add_raw(hash_bytes(d), d)
        w.finish()
    w.abort()


def test_a_chunk_bigger_than_the_buffer_still_fits(pool: ThreadPoolExecutor) -> None:
    # Not possible with the format's chunk sizes (a pack is sealed at its target, and a
    # chunk is at most 512 KiB), but the buffer grows rather than fail if it ever is.
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    big = os.urandom(packs_mod.PACK_BUF + 100)
    small = os.urandom(5000)
    w.add_raw(hash_bytes(small), small)
    w.add(hash_bytes(big), CODEC_RAW, big, len(big))
    w.finish()
    assert sink.chunks() == {hash_bytes(big): big, hash_bytes(small): small}


@pytest.mark.parametrize("hinted", [True, False])
def test_told_what_is_to_come_the_writer_makes_the_last_packs_small(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch, hinted: bool
) -> None:
    # The last pack uploads after everything else, with nothing to overlap it: told how
    # much is coming, the writer seals the end in smaller packs.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 1 << 20)
    monkeypatch.setattr(packs_mod, "TAIL_PACK", 256 << 10)
    monkeypatch.setattr(packs_mod, "ZSTD_BATCH", 64 << 10)
    data = _noise(650, 5)  # 2.54 MiB, incompressible
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    if hinted:
        w.expect(sum(map(len, data)))
    for d in data:
        w.add_raw(hash_bytes(d), d)
    w.finish()
    assert sink.chunks() == {hash_bytes(d): d for d in data}
    held = sorted((len(c) // 4096 for c in _pack_contents(sink)), reverse=True)
    if hinted:
        # a full pack while more than one is to come; then each pack holds at least what
        # is left after it, down to TAIL_PACK (64 chunks): 256, 197, 99, 64, 34 chunks
        assert held == [256, 197, 99, 64, 34]
    else:
        assert held == [256, 256, 138]


def _pack_contents(sink: _Sink) -> list[bytes]:
    """The chunk bytes of each uploaded pack (its records and trailer left out)."""
    out = []
    for pid, blob in sink.packs.items():
        recs = parse_pack_header(blob, pid)
        out.append(b"".join(blob[off : off + n] for _h, off, n, _r, _c in recs))
    return out


def test_the_last_pack_does_not_wait_for_an_upload_slot(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With max_in_flight packs on their way, sealing another waits for one of them; the
    # last one (flush) does not: the commit checks and sends its tree meanwhile.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 64 << 10)
    gate = threading.Event()
    sink = _Sink()

    def upload(pack_id: str, data: object) -> None:
        assert gate.wait(60), "never let go"
        sink.upload(pack_id, data)

    w = PackWriter(upload, pool, max_in_flight=1)
    data = _noise(20, 3)
    for d in data[:17]:  # one full pack (on its way, held) and one chunk more
        w.add(hash_bytes(d), CODEC_RAW, d, len(d))
    flushed = threading.Event()
    t = threading.Thread(target=lambda: (w.flush(), flushed.set()), daemon=True)
    t.start()
    # flush returns while the first upload is still held (before the change it waited)
    assert flushed.wait(30), "flush waited for the pack before it to finish uploading"
    gate.set()
    t.join(30)
    for d in data[17:]:
        w.add(hash_bytes(d), CODEC_RAW, d, len(d))
    w.finish()
    assert sink.chunks() == {hash_bytes(d): d for d in data}


def test_an_upload_the_store_holds_up_does_not_hold_up_the_others(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store can keep one PUT waiting for a second or more. The writer then goes on with
    # the other upload slots: it waits for whichever upload ends first, not the oldest.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 64 << 10)
    gate = threading.Event()
    first: list[str] = []
    sink = _Sink()

    def upload(pack_id: str, data: object) -> None:
        if not first:
            first.append(pack_id)
        if pack_id == first[0]:
            assert gate.wait(60), "never let go"
        sink.upload(pack_id, data)

    w = PackWriter(upload, pool, max_in_flight=2)
    data = _noise(16 * 6, 4)  # six packs of 16 chunks
    added = threading.Event()

    def add_all() -> None:
        for d in data:
            w.add(hash_bytes(d), CODEC_RAW, d, len(d))
        added.set()

    t = threading.Thread(target=add_all, daemon=True)
    t.start()
    try:
        # the first pack is held; the five after it go up through the other slot
        assert added.wait(30), f"the writer waited for the held upload ({len(sink.packs)} landed)"
        deadline = time.monotonic() + 30
        while len(sink.packs) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sink.packs) == 5 and first[0] not in sink.packs
    finally:
        gate.set()
        t.join(30)
    w.finish()
    assert sink.chunks() == {hash_bytes(d): d for d in data}


def _resident_kib() -> int:
    # smaps_rollup walks the page tables: exact (status's counters lag behind). Rss, as
    # mmap(-1, n) is shared anonymous memory, which "Anonymous:" leaves out
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError("no Rss: in /proc/self/smaps_rollup")


def test_a_pack_buffer_is_backed_ahead_of_use_and_keeps_its_bytes() -> None:
    # PackWriter.expect backs fresh buffers with memory on another thread (madvise
    # MADV_POPULATE_WRITE through ctypes): the pages are there afterwards, and what was
    # written into the buffer before or meanwhile is unchanged.
    import mmap

    assert packs_mod._madvise is not None, "madvise is not callable through ctypes here"
    buf = mmap.mmap(-1, 32 << 20)
    buf[: 1 << 20] = b"x" * (1 << 20)
    before = _resident_kib()
    packs_mod._populate(buf, 24 << 20)
    assert packs_mod._madvise is not None, "this kernel refused MADV_POPULATE_WRITE (5.14+)"
    grown = _resident_kib() - before
    assert grown >= 20 << 10, f"only {grown} KiB became resident"
    assert buf[: 1 << 20] == b"x" * (1 << 20)
    assert buf[(1 << 20) : (24 << 20)] == bytes(23 << 20)


def _write_told(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch, data: list[bytes]
) -> list[int]:
    """Write ``data`` raw through a writer told its size first; check every chunk
    landed intact, and return how much each buffer was backed ahead of use."""
    backed: list[int] = []
    real = packs_mod._prefault
    monkeypatch.setattr(packs_mod, "_prefault", lambda buf, n: (backed.append(n), real(buf, n)))
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    w.expect(sum(map(len, data)))
    for d in data:
        w.add_raw(hash_bytes(d), d)
    w.finish()
    assert sink.chunks() == {hash_bytes(d): d for d in data}
    return backed


def test_a_writer_told_of_a_big_commit_writes_the_same_packs(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The buffers are backed while the chunks are copied in: every chunk lands intact.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 1 << 20)
    monkeypatch.setattr(packs_mod, "PREFAULT_MIN", 1 << 20)
    prefaulted = _write_told(pool, monkeypatch, _noise(1000, 9))  # 3.9 MiB
    assert len(prefaulted) >= 3  # the first buffer, and each fresh one while more comes


def test_the_first_packs_are_small_and_double_up_to_the_target(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store gets a big commit's first bytes soon: packs are sealed at FIRST_PACK,
    # then twice as much each time, up to PACK_TARGET.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 256 << 10)
    monkeypatch.setattr(packs_mod, "FIRST_PACK", 32 << 10)
    data = _noise(200, 11)  # 800 KiB, incompressible
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    for d in data:
        w.add(hash_bytes(d), CODEC_RAW, d, len(d))
    w.finish()
    assert sink.chunks() == {hash_bytes(d): d for d in data}
    held = [len(c) // 4096 for c in _pack_contents(sink)]
    assert held == [8, 16, 32, 64, 64, 16]  # 32, 64, 128, 256, 256 KiB, then the rest


def test_after_batches_that_did_not_compress_the_next_are_probed_first(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run of incompressible chunks (images, compressed arrays) switches the writer to
    # trying a fast zstd level first; a chunk that compresses is still stored in
    # ZSTD_LEVEL's form, and once a batch has such chunks, the probing stops.
    from jupyter_volume.repository import codec as codec_mod

    monkeypatch.setattr(packs_mod, "ZSTD_BATCH", 64 << 10)
    calls: list[tuple[int, int]] = []
    real = codec_mod._zstd_many
    monkeypatch.setattr(
        codec_mod,
        "_zstd_many",
        lambda level, datas: (calls.append((level, len(datas))), real(level, datas))[1],
    )
    noise = _noise(64, 13)  # four batches of 16
    text = [(b"%06d compressible " % i) * 220 for i in range(32)]  # batches of 15, 15, 2
    sink = _Sink()
    w = PackWriter(sink.upload, pool)
    for d in noise + text:
        w.add_raw(hash_bytes(d), d)
    w.finish()
    comp = Compressor()
    stored = {}
    for pid, blob in sink.packs.items():
        for h, off, n, _raw, codec in parse_pack_header(blob, pid):
            stored[h] = (codec, blob[off : off + n])
    for d in noise:
        assert stored[hash_bytes(d)][0] == CODEC_RAW
    for d in text:
        # the same bytes as the one-chunk compressor gives: ZSTD_LEVEL's form
        assert stored[hash_bytes(d)] == tuple(
            bytes(x) if i else x for i, x in enumerate(comp.compress(d))
        )
    assert sink.chunks() == {hash_bytes(d): d for d in noise + text}
    p, f = codec_mod.ZSTD_PROBE_LEVEL, codec_mod.ZSTD_LEVEL
    # Batches land ZSTD_IN_FLIGHT behind the newest: the first three noise batches go at
    # the full level, the fourth is probed and goes no further; the text batches are
    # probed (the writer has not yet landed one that compressed), and all their chunks
    # go on to the full level.
    assert calls == [(f, 16)] * 3 + [(p, 16), (p, 15), (f, 15), (p, 15), (f, 15), (p, 2), (f, 2)]
    # once a landed batch had chunks that compressed, the next batches skip the probe
    calls.clear()
    w2 = PackWriter(sink.upload, pool)
    w2._probe = True  # as after a run of noise
    more = [(b"%06d more text " % i) * 260 for i in range(64)]
    for d in more:
        w2.add_raw(hash_bytes(d), d)
    w2.finish()
    # the three batches started before the first landed are probed; then no more
    assert [lvl for lvl, _n in calls[:6]] == [p, f] * 3, calls
    assert len(calls) > 6 and all(lvl == f for lvl, _n in calls[6:]), calls


def test_a_small_first_pack_backs_only_what_it_can_hold(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Told of a big commit, the writer backs each fresh buffer ahead of use, but no more
    # than its pack holds: a first pack sealed at FIRST_PACK does not back a whole buffer.
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 1 << 20)
    monkeypatch.setattr(packs_mod, "PACK_BUF", (1 << 20) + (256 << 10))
    monkeypatch.setattr(packs_mod, "FIRST_PACK", 128 << 10)
    monkeypatch.setattr(packs_mod, "PREFAULT_MIN", 64 << 10)
    backed = _write_told(pool, monkeypatch, _noise(1000, 17))  # 3.9 MiB
    slack = 256 << 10
    # the first buffers back their pack's target and the room beyond it: 128, 256, 512 KiB
    assert backed[:3] == [(128 << 10) + slack, (256 << 10) + slack, (512 << 10) + slack]
    assert max(backed) <= (1 << 20) + slack
