"""Ranged reads straight into a caller's buffer (``Store.get_range_into``).

On S3 over plain HTTP the body of a ranged GET goes from the socket into the buffer:
botocore builds, signs and judges the request, and the store sends it on a connection of
its own. Checked here, against a real SeaweedFS (through the fault proxy where a fault
is needed): the path is really taken, faults on the way are retried like any request's,
an answer that does not fit the buffer is read again the ordinary way (and an answer for
another range than the one asked, a ``206`` starting later or running longer, is never
taken as it: both ways read ``Content-Range``), a ``206`` saying ``Connection: close``
is read like any other, a body that stops coming ends in the read timeout, a kept
connection the server closed is replaced without spending a retry, errors mean what they mean for
``get_range``, a forked child never uses its parent's connections (nor hangs on their
lock, held by another thread at the fork), and the engine's big
file reads reuse a few buffers instead of one new object per range.
"""

from __future__ import annotations

import io
import os
import select
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from jupyter_volume.errors import NotFoundError, StoreAccessError, StoreError
from jupyter_volume.repository import Repository
from jupyter_volume.repository import repo as repo_module
from jupyter_volume.store import Store
from jupyter_volume.store import s3 as s3mod
from jupyter_volume.store.s3 import S3Store
from jupyter_volume.testing.seaweedfs import SeaweedFS
from jupyter_volume.testing.wrappers import CountingStore, WrappedStore

try:
    from .faultproxy import (
        CLOSE_AFTER,
        CONNECTION_CLOSE,
        RANGE_IGNORED,
        RANGE_LONGER,
        RANGE_MOVED,
        STALL,
        FaultProxy,
        store_through,
    )
except ImportError:  # tests/ is not a package
    from faultproxy import (  # type: ignore[no-redef]
        CLOSE_AFTER,
        CONNECTION_CLOSE,
        RANGE_IGNORED,
        RANGE_LONGER,
        RANGE_MOVED,
        STALL,
        FaultProxy,
        store_through,
    )

MiB = 1 << 20
DATA = blake3(b"into").digest(length=3 * MiB)


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint, seed=7) as p:
        yield p


@pytest.fixture
def proxied(proxy: FaultProxy, seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[S3Store]:
    store = store_through(proxy, seaweedfs, s3_bucket, f"t/into-{uuid.uuid4().hex[:10]}")
    store.put("k", DATA)
    yield store
    store.close()


def _kept(store: S3Store) -> list[Any]:
    """The connections ``store`` keeps for reads into buffers."""
    return [c for conns in store._raw._idle.values() for c in conns]


def _into(store: Store, start: int, size: int) -> bytes:
    buf = bytearray(size)
    return bytes(buf[: store.get_range_into("k", start, buf)])


@pytest.mark.s3
def test_the_body_is_read_on_the_stores_own_connection(proxied: S3Store) -> None:
    assert _kept(proxied) == []
    assert _into(proxied, 1000, 2 * MiB) == DATA[1000 : 1000 + 2 * MiB]
    (conn,) = _kept(proxied)  # botocore sent nothing itself: the answer came here
    assert _into(proxied, 0, 10) == DATA[:10]
    assert _kept(proxied) == [conn]  # and the connection is used again


def _botocore_gets(store: S3Store) -> list[str]:
    """A list that grows by one for every GetObject botocore's pipeline makes for ``store``."""
    calls: list[str] = []
    store._client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda **kw: calls.append(kw["params"]["Key"])
    )
    return calls


@pytest.mark.s3
def test_after_one_ranged_read_the_next_skip_botocores_pipeline(proxied: S3Store) -> None:
    proxied.put("other", DATA[:5000])
    calls = _botocore_gets(proxied)
    assert _into(proxied, 0, 10) == DATA[:10]
    assert len(calls) == 1  # the first: botocore builds it, and the store learns its shape
    assert _into(proxied, 1000, 2 * MiB) == DATA[1000 : 1000 + 2 * MiB]
    buf = bytearray(100)
    assert bytes(buf[: proxied.get_range_into("other", 4950, buf)]) == DATA[4950:5000]
    assert len(calls) == 1  # signed by the client's signer, sent and read by the store
    # a missing key is judged by botocore (NotFoundError), and the direct way stays
    with pytest.raises(NotFoundError):
        proxied.get_range_into("missing", 0, bytearray(10))
    assert len(calls) == 2
    assert _into(proxied, 5, 5) == DATA[5:10]
    assert len(calls) == 2


@pytest.mark.s3
@pytest.mark.parametrize(
    "kind",
    ["drop", "truncate", "error500", RANGE_IGNORED, RANGE_MOVED, RANGE_LONGER, CONNECTION_CLOSE],
)
def test_a_fault_on_a_direct_read_is_handled_as_on_botocores(
    proxy: FaultProxy, proxied: S3Store, kind: str
) -> None:
    calls = _botocore_gets(proxied)
    assert _into(proxied, 0, 10) == DATA[:10]  # learned
    proxy.force(kind, method="GET", path_contains="/k")
    assert _into(proxied, 5, 2 * MiB) == DATA[5 : 5 + 2 * MiB]
    assert proxy.counts[kind] == 1
    assert len(calls) <= 2  # at most the faulty answer went back through botocore
    after = len(calls)
    assert _into(proxied, 7, 7) == DATA[7:14]
    assert len(calls) == after  # and the direct way is still taken after the fault


@pytest.mark.s3
def test_a_refused_direct_read_is_asked_again_through_botocore_and_not_made_again(
    proxied: S3Store,
) -> None:
    """If the server refuses a request the store built itself (400 or 403), botocore's
    way may know what was missing (another region, say): the read is made again that
    way, and the store stops building its own. To have one refused, the store's learned
    context is set to ask for no signature (this SeaweedFS refuses anonymous reads)."""
    assert _into(proxied, 0, 10) == DATA[:10]
    prefix, context = proxied._direct  # type: ignore[misc]
    proxied._direct = (prefix, {**context, "auth_type": "none"})
    calls = _botocore_gets(proxied)
    assert _into(proxied, 20, 1000) == DATA[20:1020]
    assert len(calls) == 1
    assert proxied._direct is False
    assert _into(proxied, 30, 10) == DATA[30:40]
    assert len(calls) == 2


@pytest.mark.s3
@pytest.mark.parametrize("kind", ["drop", "truncate", "error500"])
def test_faults_on_the_way_are_retried(proxy: FaultProxy, proxied: S3Store, kind: str) -> None:
    proxy.force(kind, method="GET", path_contains="/k")
    assert _into(proxied, 5, 2 * MiB) == DATA[5 : 5 + 2 * MiB]
    assert proxy.counts[kind] == 1


@pytest.mark.s3
def test_an_answer_that_ignores_the_range_is_read_again(
    proxy: FaultProxy, proxied: S3Store
) -> None:
    # a 200 carrying zeros: taken as the range, the caller would get zeros
    proxy.force(RANGE_IGNORED, method="GET", path_contains="/k")
    assert _into(proxied, 100, 1000) == DATA[100:1100]
    assert proxy.counts[RANGE_IGNORED] == 1


@pytest.mark.s3
def test_a_kept_connection_the_server_closed_is_replaced_without_a_retry(
    proxy: FaultProxy, proxied: S3Store
) -> None:
    proxied.max_attempts = 1  # a failure of the request itself would be an error now
    proxy.force(CLOSE_AFTER, method="GET", path_contains="/k")
    assert _into(proxied, 0, 100) == DATA[:100]
    assert proxy.counts[CLOSE_AFTER] == 1
    (closed,) = _kept(proxied)  # the client cannot know yet
    assert _into(proxied, 100, 100) == DATA[100:200]
    assert _kept(proxied) != [closed]


@pytest.mark.s3
def test_a_body_that_stops_coming_ends_in_the_read_timeout_and_a_retry(
    proxy: FaultProxy, proxied: S3Store, seaweedfs: SeaweedFS
) -> None:
    # The body is read in blocking mode (one receive for the whole range): the kernel's
    # receive timeout must end the wait, or this read hangs until the proxy stops.
    impatient = store_through(proxy, seaweedfs, proxied.bucket, proxied.prefix, read_timeout=1)
    try:
        proxy.force(STALL, method="GET", path_contains="/k")
        assert _into(impatient, 7, 2 * MiB) == DATA[7 : 7 + 2 * MiB]
        assert proxy.counts[STALL] == 1
    finally:
        impatient.close()


@pytest.mark.s3
def test_errors_mean_what_they_mean_for_get_range(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_store: S3Store, s3_client: Any
) -> None:
    s3_store.put("k", DATA[:100])
    with pytest.raises(NotFoundError):
        s3_store.get_range_into("missing", 0, bytearray(10))
    assert s3_store.get_range_into("k", 100, bytearray(10)) == 0  # at the end: 416
    assert s3_store.get_range_into("k", 90, bytearray(20)) == 10

    def failure(store: S3Store, call: Any) -> tuple[type, str]:
        with pytest.raises(StoreError) as info:
            call(store)
        return type(info.value), str(info.value)

    no_bucket = S3Store("jv-no-such-bucket", endpoint_url=seaweedfs.endpoint, client=s3_client())
    wrong_key = S3Store(
        s3_bucket,
        s3_store.prefix,
        endpoint_url=seaweedfs.endpoint,
        client=s3_client(aws_secret_access_key="not-the-secret"),
    )
    for store in (no_bucket, wrong_key):
        try:
            assert failure(store, lambda s: s.get_range_into("k", 0, bytearray(10))) == failure(
                store, lambda s: s.get_range("k", 0, 10)
            )
        finally:
            store.close()
    with pytest.raises(StoreAccessError):
        wrong_key.get_range_into("k", 0, bytearray(10))


@pytest.mark.s3
def test_a_forked_child_never_uses_its_parents_connection(proxied: S3Store) -> None:
    assert _into(proxied, 0, 10) == DATA[:10]
    (conn,) = _kept(proxied)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it kept after the fork, then read
        try:
            kept = len(_kept(proxied))
            ok = _into(proxied, 20, 10) == DATA[20:30]
            os.write(write_end, f"{kept} {ok} {_kept(proxied)[0] is conn}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == "0 True False"
    assert _into(proxied, 40, 10) == DATA[40:50]  # the parent's connection still works
    assert _kept(proxied) == [conn]


@pytest.mark.s3
def test_a_range_answered_from_elsewhere_is_never_taken_for_the_one_asked(
    proxy: FaultProxy, proxied: S3Store
) -> None:
    # the fast path's answer and the ordinary re-read both start a byte late: the
    # second must not be written into the buffer as if it were the range asked for
    proxy.force(RANGE_MOVED, method="GET", path_contains="/k", n=2)
    assert _into(proxied, 1000, 5000) == DATA[1000:6000]
    assert proxy.counts[RANGE_MOVED] == 2
    proxy.force(RANGE_MOVED, method="GET", path_contains="/k")
    assert proxied.get_range("k", 7000, 100) == DATA[7000:7100]
    assert proxy.counts[RANGE_MOVED] == 3
    # a server that always answers so: an error naming it, never the moved bytes
    proxied.max_attempts = 2
    # per attempt: the fast path's answer and the re-read's
    proxy.force(RANGE_MOVED, method="GET", path_contains="/k", n=4)
    with pytest.raises(StoreError, match="answered bytes 1001-5999/"):
        _into(proxied, 1000, 5000)
    proxy.force(RANGE_MOVED, method="GET", path_contains="/k", n=2)
    with pytest.raises(StoreError, match="answered bytes 7001-7099/"):
        proxied.get_range("k", 7000, 100)
    assert proxy.counts[RANGE_MOVED] == 9


@pytest.mark.s3
def test_a_range_answered_longer_than_asked_gives_the_range(
    proxy: FaultProxy, proxied: S3Store
) -> None:
    # the fast path's answer, then the ordinary re-read's
    proxy.force(RANGE_LONGER, method="GET", path_contains="/k", n=2)
    assert _into(proxied, 1000, 5000) == DATA[1000:6000]
    assert proxy.counts[RANGE_LONGER] == 2
    proxy.force(RANGE_LONGER, method="GET", path_contains="/k")
    assert proxied.get_range("k", 7000, 100) == DATA[7000:7100]
    assert proxy.counts[RANGE_LONGER] == 3


@pytest.mark.s3
def test_a_range_botocore_reads_is_checked_as_the_fast_paths_are(
    proxy: FaultProxy, proxied: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over https or through a proxy botocore sends the request and reads the body; the
    answer is judged the same way. (This server speaks plain HTTP: the test makes the
    store's proxy check, made when it opened, say yes, which sends every read down
    botocore's path.)"""
    monkeypatch.setattr(proxied._raw, "proxied", True)
    proxy.force(RANGE_MOVED, method="GET", path_contains="/k")
    assert _into(proxied, 1000, 5000) == DATA[1000:6000]
    proxy.force(RANGE_LONGER, method="GET", path_contains="/k")
    assert _into(proxied, 7000, 100) == DATA[7000:7100]
    assert proxy.counts[RANGE_MOVED] == proxy.counts[RANGE_LONGER] == 1
    assert _kept(proxied) == []  # none of it went the fast way


@pytest.mark.s3
def test_a_range_answered_with_connection_close(proxy: FaultProxy, proxied: S3Store) -> None:
    proxied.max_attempts = 1  # read in one go, not after a failed attempt
    proxy.force(CONNECTION_CLOSE, method="GET", path_contains="/k")
    assert _into(proxied, 3, MiB) == DATA[3 : 3 + MiB]
    assert proxy.counts[CONNECTION_CLOSE] == 1
    assert proxied._raw._idle.get(proxy.url.removeprefix("http://"), []) == []
    assert _into(proxied, 5, 10) == DATA[5:15]  # on a new connection


def _forked_while_held(lock: Any, read: Any) -> bytes:
    """Fork while another thread holds ``lock`` (as a download thread taking or giving
    back a connection would); the child calls ``read()`` and reports: b"ok", b"wrong
    bytes", or, when it never answers (stuck in a fork handler), b"hung"."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.write(write_end, b"ok" if read() else b"wrong bytes")
            finally:
                os._exit(0)
    finally:
        release.set()
        thread.join()
    os.close(write_end)
    try:
        # a guard against hanging the suite, not a measurement
        ready, _w, _x = select.select([read_end], [], [], 120)
        return os.read(read_end, 100) if ready else b"hung"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.s3
def test_a_fork_while_another_thread_holds_the_kept_connections_lock(
    proxied: S3Store,
) -> None:
    assert _into(proxied, 0, 10) == DATA[:10]  # one connection kept
    answer = _forked_while_held(proxied._raw._lock, lambda: _into(proxied, 20, 10) == DATA[20:30])
    assert answer == b"ok"
    assert _into(proxied, 40, 10) == DATA[40:50]  # the parent still reads


@pytest.mark.s3
def test_a_fork_while_another_thread_holds_botocores_pool_lock(proxied: S3Store) -> None:
    """The same for botocore's own connections (every request but a ranged read into a
    buffer): the fork handler closed them, which takes urllib3's pool lock."""
    assert proxied.get("k") == DATA  # botocore keeps a connection
    pools = proxied._client._endpoint.http_session._manager.pools
    assert len(pools) == 1
    answer = _forked_while_held(
        pools.lock, lambda: proxied.get_range("k", 20, 10) == DATA[20:30] and proxied.exists("k")
    )
    assert answer == b"ok"
    assert proxied.get("k") == DATA  # the parent still reads on its own connections
    assert proxied._client._endpoint.http_session._manager.pools is pools


def test_a_proxy_in_the_environment_is_left_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not s3mod._proxied("127.0.0.1")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert s3mod._proxied("127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert not s3mod._proxied("127.0.0.1")
    assert s3mod._proxied("s3.example")


def test_a_store_asks_about_a_proxy_once_for_its_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment is read when the store opens (as botocore reads it for its
    client), for the endpoint's host, not once per read."""
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "near.example")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")  # else botocore looks further for keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    asked: list[str] = []
    real = s3mod._proxied
    monkeypatch.setattr(s3mod, "_proxied", lambda host: asked.append(host) or real(host))
    far = S3Store("b", endpoint_url="http://far.example:8333", region="us-east-1")
    near = S3Store("b", endpoint_url="http://near.example:8333", region="us-east-1")
    assert (far._raw.proxied, near._raw.proxied) == (True, False)
    assert asked == ["far.example", "near.example"]


class _Buffers(WrappedStore):
    """Records the buffer behind every ranged read into one."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.buffers: list[Any] = []

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        self.buffers.append(memoryview(buf).obj)  # kept alive: no address is reused
        return self.inner.get_range_into(key, start, buf)


def _reader(store: Store, tmp_path: Path, files: dict[str, bytes], through: Store) -> Repository:
    """Commit ``files`` to a new volume in ``store``; the volume opened for reading
    through ``through`` (a wrapper of ``store``), with no chunk cache."""
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    writer_repo = Repository(store, vol_id, cache_dir=tmp_path / "w")
    w = writer_repo.writer()
    writer_repo.commit({p: w.file_entry(io.BytesIO(d)) for p, d in files.items()}, writer=w)
    repo = Repository(through, vol_id, cache_dir=tmp_path / "r")
    repo.chunk_cache = None
    return repo


def _read_into(repo: Repository, path: str, out: Path) -> bytes:
    """``repo.read_into`` of ``path`` into a new file ``out``; what ``out`` then holds."""
    e = repo.lookup(path)
    assert e is not None
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert repo.read_into(e, fd, path) == e.size
    finally:
        os.close(fd)
    return out.read_bytes()


def test_a_big_file_is_read_through_a_few_reused_buffers(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ranges of 1 MiB, at most 4 MiB in flight: many more ranges than download threads
    monkeypatch.setattr(repo_module, "BIG_READ_REQUEST_MAX", 1 * MiB)
    monkeypatch.setattr(repo_module, "BIG_READ_AHEAD_BYTES", 4 * MiB)
    data = blake3(b"reuse").digest(length=40 * MiB)
    seen = _Buffers(store)
    repo = _reader(store, tmp_path, {"big.bin": data}, seen)
    assert _read_into(repo, "big.bin", tmp_path / "out") == data
    distinct = {id(b) for b in seen.buffers}
    assert len(seen.buffers) >= 30  # one read per range, into buffers used again: no
    # more of them than ranges in flight at once, which the download threads bound
    assert len(distinct) <= repo_module._download_pool.max_workers


def test_a_big_file_is_read_in_one_request_per_pack(store: Store, tmp_path: Path) -> None:
    # A pack is sealed once it reaches its target size, so it holds up to one chunk
    # more: ranges of exactly the target size cost a second, tiny request per pack.
    # incompressible: packs sealed at 2, 4, 8 and 16 MiB (a writer's first packs are
    # smaller), then the rest
    data = blake3(b"packs").digest(length=40 * MiB)
    counting = CountingStore(store)
    repo = _reader(store, tmp_path, {"big.bin": data}, counting)
    e = repo.lookup("big.bin")
    assert e is not None
    packs = {repo.locate(h).pack for h, _n in e.chunks or ()}
    assert len(packs) == 5
    counting.reset()
    assert _read_into(repo, "big.bin", tmp_path / "out") == data
    reads = counting.matching(("get", "get_range"), prefix=f"vols/{repo.vol_id}/packs/")
    assert len(reads) == len(packs), reads


def test_big_files_read_together_share_the_download_threads_buffers(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight files at once, each with up to 4 ranges in flight: with a buffer pool per file
    # each kept its own (32 buffers, a mount of eight 96 MiB files peaked at 505 MiB).
    # Shared, no more buffers are made than there are download threads, and none is
    # kept once the last read ends.
    monkeypatch.setattr(repo_module, "BIG_READ_REQUEST_MAX", 1 * MiB)
    monkeypatch.setattr(repo_module, "BIG_READ_AHEAD_BYTES", 4 * MiB)
    files = {f"f{i}.bin": blake3(b"shared%d" % i).digest(length=12 * MiB) for i in range(8)}
    seen = _Buffers(store)
    repo = _reader(store, tmp_path, files, seen)
    start = threading.Barrier(len(files))
    errors: list[BaseException] = []

    def read(path: str) -> None:
        try:
            start.wait()
            assert _read_into(repo, path, tmp_path / path) == files[path]
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            errors.append(err)

    threads = [threading.Thread(target=read, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    distinct = {id(b) for b in seen.buffers}
    assert len(seen.buffers) >= 8 * 12  # one read per range
    assert len(distinct) <= repo_module._download_pool.max_workers, len(distinct)
    assert repo_module._big_buffers._spare == []  # an idle process keeps none
