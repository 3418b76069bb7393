"""Low-level encodings of the on-store format: hashes, chunking, compression, JSON.

Nothing here touches a store. Objects are named by the blake3 hash of their *logical*
content (a chunk's raw bytes, a tree node's canonical JSON), never of their stored
(compressed) form, so equal content gets an equal name however it was compressed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import zstandard
from blake3 import blake3
from pyfastcdc import FastCDC

from ..errors import CorruptionError

FORMAT_VERSION = 1
CHUNK_MIN = 32 * 1024
CHUNK_AVG = 128 * 1024
CHUNK_MAX = 512 * 1024
INLINE_MAX = 512  # files up to this size live inside their tree node
ZSTD_LEVEL = 3
MIN_GAIN = 0.05  # store raw when zstd saves less than this fraction

CODEC_RAW = 0
CODEC_ZSTD = 1


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex blake3 digest of ``data`` (64 characters)."""
    return blake3(data, max_threads=blake3.AUTO if len(data) > 4 << 20 else 1).hexdigest()


def new_chunker() -> FastCDC:
    """A FastCDC chunker with the format's parameters (min 32 KiB, avg ~128 KiB, max 512 KiB).

    pyfastcdc's effective average is ``avg_size + min_size``, so ask for the difference.
    """
    return FastCDC(CHUNK_AVG - CHUNK_MIN, min_size=CHUNK_MIN, max_size=CHUNK_MAX)


def iter_chunks(stream: IO[bytes]) -> Iterator[memoryview]:
    """Cut a binary stream into content-defined chunks.

    Each yielded memoryview is valid only until the next one is produced: copy or
    consume it first. Memory stays bounded by the chunker's buffer, whatever the size.
    """
    for chunk in new_chunker().cut_stream(stream):
        yield chunk.data


class Compressor:
    """zstd per chunk, falling back to raw when compression does not pay.

    Not thread-safe: use one per thread.
    """

    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def compress(self, data: bytes | memoryview, try_zstd: bool = True) -> tuple[int, bytes]:
        """Return ``(codec, stored_bytes)`` for one chunk."""
        if try_zstd and len(data) >= 64:
            z = self._c.compress(data)
            if len(z) <= len(data) * (1 - MIN_GAIN):
                return CODEC_ZSTD, z
        return CODEC_RAW, bytes(data)

    def worth_compressing(self, sample: bytes | memoryview) -> bool:
        """True if zstd gains at least ``MIN_GAIN`` on ``sample`` (a file's first chunk)."""
        if len(sample) < 64:
            return False
        return len(self._c.compress(sample)) <= len(sample) * (1 - MIN_GAIN)


def decode_chunk(codec: int, stored: bytes, raw_len: int, expect_hash: str, where: str) -> bytes:
    """Decompress one stored chunk and check its hash; raise CorruptionError on mismatch."""
    try:
        if codec == CODEC_ZSTD:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_len)
        elif codec == CODEC_RAW:
            raw = stored
        else:
            raise CorruptionError(f"unknown codec {codec} in {where}", key=where)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"chunk {expect_hash[:16]}… in {where} does not decompress: {e}", key=where) from None
    if len(raw) != raw_len or hash_bytes(raw) != expect_hash:
        raise CorruptionError(
            f"chunk {expect_hash[:16]}… in {where} is corrupt (hash mismatch); "
            "run verify() and restore from an older commit if needed",
            key=where,
        )
    return raw


def dump_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (so equal objects hash equally)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, where: str) -> Any:
    """Parse JSON read from the store, reporting damage as CorruptionError naming ``where``."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptionError(f"object {where} is not valid JSON: {e}", key=where) from None


def compress_blob(data: bytes) -> bytes:
    """zstd-compress a metadata blob (tree node, index checkpoint)."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


def decompress_blob(data: bytes, where: str) -> bytes:
    """Inverse of :func:`compress_blob`, reporting damage as CorruptionError."""
    try:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"object {where} does not decompress: {e}", key=where) from None
