"""A store in an S3 bucket (AWS S3 or any S3-compatible server: SeaweedFS, MinIO, ...).

Objects live under ``prefix/key`` in ``bucket``. Endpoint and credentials come the
standard AWS ways (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws/config``) unless given explicitly.

Fault handling lives in one place, :meth:`S3Store._retry`: botocore is configured to
never retry by itself, and every operation -- including reading a response body, since
a connection can drop in the middle of one -- runs through that wrapper, which retries
5xx answers, throttling, 409 ConditionalRequestConflict, request timeouts and
connection failures with exponential backoff and jitter, and translates everything
else into the package's error tree.

Create-only puts use ``If-None-Match: *``. When an earlier attempt of the same call may
have landed before its response was lost, a later 412 PreconditionFailed is ambiguous;
the store then reads the object back and reports True when it holds our bytes.

Conditional overwrites (``put_if_match``) use the object's ETag as the version token and
``If-Match``. A missing key answers 404 on AWS and 412 on SeaweedFS; both mean "no
match". An ambiguous 412 after a retried attempt is settled as above. Answers that
cannot tell a missing key from a missing bucket (a HEAD's bare 404, a conditional
write's "no match") are checked once per store with a HEAD of the bucket, so a typo in
the bucket name is reported as such, not as "no such object" or "another version".
A 501 NotImplemented (a server without conditional writes) is not retried.

Listing does not trust the server's order: some S3-compatible servers (SeaweedFS among
them) list a "directory" ``a/`` where ``a`` sorts rather than where ``a/`` does, which
puts ``a/b`` before ``a-b``, and skip by that order for ``StartAfter``. :meth:`list`
therefore walks the key space one ``/``-level at a time and merges each level itself,
which yields ascending byte order from any server that returns the right entries.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import http.client
import io
import ipaddress
import os
import random
import re
import socket
import struct
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import botocore.exceptions as bexc
import botocore.session
import botocore.utils
from botocore.config import Config

from ..errors import InvalidError, NotFoundError, StoreAccessError, StoreError, VolumeError
from .base import ObjectInfo, Store, check_key

__all__ = ["S3Store", "make_client"]

T = TypeVar("T")

MiB = 1024 * 1024
#: Objects up to this size go up in one PUT; larger ones as a multipart upload.
MULTIPART_THRESHOLD = 32 * MiB
#: Size of each multipart part (the last one may be smaller).
PART_SIZE = 16 * MiB
#: Parts uploaded at once by one ``put``.
UPLOAD_THREADS = 4
#: A buffer's request body goes to the socket in pieces of FIRST_PIECE (what botocore
#: uses) up to SEND_PIECE bytes (see :class:`_ViewBody`): over loopback to SeaweedFS, a
#: 1 GiB commit took about 0.2 s less of our CPU in 1 MiB pieces (bench/NOTES.md,
#: forty-second pass). A piece doubles only after the one before went out within
#: FAST_PIECE seconds, and halves after one that took over SLOW_PIECE: each piece must
#: reach the kernel within the connect timeout (urllib3 sends the body under it), which
#: a slow uplink could not do for 1 MiB.
FIRST_PIECE = 128 * 1024
SEND_PIECE = 1 * MiB
FAST_PIECE = 0.02
SLOW_PIECE = 1.0
#: Keys per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000

_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AccountProblem",
        "403",
    }
)
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",
        "OperationAborted",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
#: What a bucket name may hold anywhere (AWS allows less: 3-63 lowercase characters).
_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")
#: Failures after which the request certainly never reached the server.
_NOT_SENT = (bexc.EndpointConnectionError, bexc.ConnectTimeoutError)


class _WrongRange(Exception):
    """A ``206`` answer for bytes other than those asked for (it starts after them): a
    cache or proxy on the way answered another request's range; asked again."""


#: Transport failures worth retrying (besides ClientErrors with a retryable code).
_TRANSIENT = (
    _WrongRange,
    bexc.HTTPClientError,  # ConnectionClosed, ReadTimeout, ResponseStreamingError, ...
    bexc.ConnectionError,  # EndpointConnection, ConnectTimeout, ...
    bexc.IncompleteReadError,  # body shorter than Content-Length
    http.client.HTTPException,  # IncompleteRead, RemoteDisconnected, ...
    ConnectionError,
    TimeoutError,
)


def _code(e: bexc.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: bexc.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _describe(e: BaseException) -> str:
    """An error in a few words: a server's answer as status, code and message (botocore's
    own wording says "reached max retries: 0" even after our retries)."""
    if isinstance(e, bexc.ClientError):
        message = e.response.get("Error", {}).get("Message") or ""
        return f"HTTP {_status(e) or '?'} {_code(e)}: {message}".rstrip(": ")
    return str(e) or type(e).__name__


def _is_retryable(e: BaseException) -> bool:
    if isinstance(e, bexc.ClientError):
        status, code = _status(e), _code(e)
        if status == 501 or code == "NotImplemented":
            return False  # the server lacks the feature: asking again will not help
        return status >= 500 or status == 429 or code in _RETRY_CODES
    if isinstance(e, _TRANSIENT):
        return True
    try:  # urllib3 errors escaping botocore's wrappers (e.g. ProtocolError from a body)
        from urllib3.exceptions import HTTPError as Urllib3HTTPError
    except ImportError:  # pragma: no cover - urllib3 always comes with botocore
        return False
    return isinstance(e, Urllib3HTTPError)


def _may_have_landed(e: BaseException) -> bool:
    """Whether a failed attempt may nevertheless have been applied by the server."""
    if isinstance(e, _NOT_SENT):
        return False
    if isinstance(e, bexc.ClientError):
        # the server answered; a 409 conflict or throttling means it did nothing
        return _status(e) >= 500 and _code(e) not in ("SlowDown", "ServiceUnavailable")
    return True


def _sign_payload(endpoint_url: str, config: Any) -> bool:
    """Whether PUT bodies to ``endpoint_url`` should carry their SHA-256 in the signature.

    Over TLS the connection protects the body, and to a loopback address nothing is in
    between: there the hash buys nothing, and it costs a pass of SHA-256 over every
    byte sent (0.6-0.8 s of CPU per GiB here, botocore's default over plain HTTP). To
    any other host over plain HTTP, or through a proxy, the body is signed, so a server
    that checks it refuses a body changed on the way."""
    parts = urlsplit(endpoint_url)
    if parts.scheme == "https":
        return False
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    # the environment's proxies only for a loopback host (signed anyway otherwise)
    return not loopback or bool(getattr(config, "proxies", None)) or _proxied(host)


def _custom_endpoint(endpoint_url: str | None) -> bool:
    if endpoint_url:
        return True
    return bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    sign_payload: bool | None = None,
) -> Any:
    """Return a botocore S3 client configured the way :class:`S3Store` needs it.

    botocore's own retries are off (the store has its single retry loop), the
    connection pool is large enough for parallel part uploads, and servers at a
    custom endpoint are addressed path-style (``http://host/bucket/key``), which every
    S3-compatible server understands. Arguments left as None come from the standard
    AWS environment variables and config files.

    ``sign_payload``: whether a PUT's signature covers the SHA-256 of its body. None
    (the default) decides by the endpoint the client ends up with: not over HTTPS nor
    to a loopback address (the connection already protects the body there, and the
    hash is a pass over every byte), yes over plain HTTP to any other host or through
    a proxy.

    Raises:
        StoreAccessError: the named profile does not exist.
        StoreError: botocore refused the configuration (e.g. a malformed endpoint).
    """
    options: dict[str, Any] = {
        # NB: botocore's "max_attempts" counts *retries*; one attempt in all is this:
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "max_pool_connections": 32,
    }
    if _custom_endpoint(endpoint_url):
        options["s3"] = {"addressing_style": "path"}
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:  # botocore >= 1.36
        # checksums only where S3 requires them: several S3-compatible servers reject
        # the (newer) default checksum headers and trailers
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    config = Config(**options)
    try:
        core = botocore.session.get_session()
        # LIST pages carry a timestamp per key, and botocore parses each with dateutil:
        # with many writers waiting on one volume (they list its log and its line of
        # intents), that was a quarter of their CPU. ISO 8601 (what S3 sends in XML)
        # goes through the standard library's C parser; anything else (HTTP dates in
        # headers) to botocore's own.
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_parse_timestamp
        )
        # botocore alone: boto3's session adds nothing a client of ours uses (its
        # transfer and resource methods), and importing it costs every process that
        # opens an S3 store a tenth of a second or more of CPU (s3transfer and more)
        if profile is not None:
            core.set_config_variable("profile", profile)
        if region is not None:
            core.set_config_variable("region", region)
        client = core.create_client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            config=config,
        )
    except bexc.ProfileNotFound as e:
        raise StoreAccessError(
            f"AWS profile {profile!r} not found: check AWS_PROFILE and ~/.aws/config"
        ) from e
    except (bexc.BotoCoreError, ValueError) as e:
        raise StoreError(f"cannot create an S3 client for endpoint {endpoint_url}: {e}") from e
    # Decided once the endpoint is known (it may come from the environment or a config
    # file); botocore reads the client's config at every request.
    final = client.meta.config
    if sign_payload is None:
        sign_payload = _sign_payload(str(client.meta.endpoint_url), final)
    final.s3 = {**(final.s3 or {}), "payload_signing_enabled": sign_payload}
    _fresh_pools(client)  # pools that ask bodies for pieces of up to SEND_PIECE bytes
    return client


_stores: weakref.WeakSet[S3Store] = weakref.WeakSet()


def _drop_connections_after_fork() -> None:
    """In a forked child, drop the pooled HTTP connections of every store.

    The child holds copies of its parent's open sockets: a request it sent on one could
    be answered to the parent or to another child, and the answer to a conditional PUT
    read by the wrong process would be a lost update. Dropping (closing) the child's
    copies leaves the parent's connections open; the clients stay usable and connect
    afresh. No lock of the old pools is taken (see :func:`_fresh_pools`).
    """
    for store in list(_stores):
        store._raw.close(forked=True)
        if _fresh_pools(store._client):
            continue
        close = getattr(store._client, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001, S110 - a fork handler must not raise
                pass


def _fresh_pools(client: Any) -> bool:
    """Give ``client`` new, empty connection pools without touching its old ones; True
    if done (False: a botocore whose insides differ; the caller closes instead).

    Used after a fork: closing the old pools takes their locks, and a lock that another
    thread of the parent held at the fork (a download thread handing back a connection)
    stays held in the child for ever: the child hung in this handler. The old pools are
    dropped instead; their sockets (the child's copies) close as they are freed.

    The new pools ask a request body for pieces of up to :data:`SEND_PIECE` bytes where
    urllib3 can (from 2.0, when botocore sets a piece size of its own; a buffer's body
    decides how much of that to give, see :class:`_ViewBody`); :func:`make_client`
    starts every client with such pools.
    """
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    make = getattr(session, "_get_pool_manager_kwargs", None)
    classes = getattr(session, "_pool_classes_by_scheme", None)
    if make is None or classes is None or not hasattr(session, "_manager"):
        return False
    try:
        from botocore.httpsession import BUFFER_SIZE
        from urllib3 import PoolManager

        manager = PoolManager(**make(**({"blocksize": SEND_PIECE} if BUFFER_SIZE else {})))
        manager.pool_classes_by_scheme = classes
        session._manager = manager
        session._proxy_managers = {}
    except Exception:  # noqa: BLE001 - a fork handler must not raise
        return False
    return True


os.register_at_fork(after_in_child=_drop_connections_after_fork)


class _ViewBody(io.RawIOBase):
    """A request body that reads from a buffer in place (seekable, so botocore can hash
    it, size it and send it again on a retry).

    Sending a pack as ``bytes(view)`` copied 16 MiB per pack on the upload threads, and
    glibc keeps such freed blocks in each thread's arena once its mmap threshold has
    grown: a streamed commit of 1,000,000 files on S3 held about 300 MB more than on a
    local folder that way. Nor does :meth:`read` copy: its pieces are views of the
    buffer, which lives until the request is done, and they grow from FIRST_PIECE to
    SEND_PIECE bytes while the connection takes them fast.
    """

    #: what :meth:`read` times pieces by
    clock = staticmethod(time.monotonic)

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0
        self._piece = FIRST_PIECE
        self._last = 0.0  # when the last piece was read (0: none since the start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        self._piece, self._last = FIRST_PIECE, 0.0  # a new pass: sending starts afresh
        return self._pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> memoryview | bytes:  # type: ignore[override]
        """The next bytes, up to ``size``, as a view of the buffer, not a copy (urllib3
        sends each piece as it reads it, and botocore hashes them the same way); ``b""``
        at the end. A sized read returns at most the current piece: FIRST_PIECE bytes,
        doubled up to SEND_PIECE while each read comes within FAST_PIECE seconds of the
        one before (the piece before it was sent that fast), halved after one that took
        over SLOW_PIECE seconds."""
        n = len(self._view)
        if size is None or size < 0:
            end = n
        else:
            now = self.clock()
            if self._last:
                took = now - self._last
                if took < FAST_PIECE:
                    self._piece = min(2 * self._piece, SEND_PIECE)
                elif took > SLOW_PIECE:
                    self._piece = max(self._piece // 2, FIRST_PIECE)
            self._last = now
            end = min(n, self._pos + min(size, self._piece))
        out = self._view[self._pos : end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return out

    def __len__(self) -> int:
        return len(self._view)


class _Unfit(Exception):
    """An answer to a ranged read into a buffer that the buffer cannot take as it is (a
    server that ignored the Range header, a body longer than asked for): the read is
    made again the ordinary way."""


class _RawBody:
    """What botocore reads an answer's body from when :class:`_Into` sent the request:
    an error's few bytes, or nothing (a range already written into its buffer)."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = data

    def stream(self, **_kw: Any) -> Iterator[bytes]:
        if self._data:
            yield self._data

    def read(self, amt: int | None = None) -> bytes:
        n = len(self._data) if amt is None else amt
        out, self._data = self._data[:n], self._data[n:]
        return out

    def close(self) -> None:
        self._data = b""


class _RawConnections:
    """Idle HTTP/1.1 connections of one store for :class:`_Into`, kept for reuse."""

    MAX_IDLE = 16

    def __init__(self, connect_timeout: float, read_timeout: float, proxied: bool) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        #: whether the environment sends plain HTTP to the endpoint through a proxy
        #: (decided once, as botocore decides for its client): the reads go botocore's way
        self.proxied = proxied
        self._lock = threading.Lock()
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._pid = os.getpid()

    def take(self, netloc: str) -> http.client.HTTPConnection | None:
        """An idle connection to ``netloc``, or None."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child never uses its parent's sockets
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(netloc)
            return idle.pop() if idle else None

    def new(self, host: str, port: int | None) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        # the kernel's own bound on one receive, for bodies read in blocking mode
        whole = int(self.read_timeout)
        conn.sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", whole, int((self.read_timeout - whole) * 1e6)),
        )
        return conn

    def give(self, netloc: str, conn: http.client.HTTPConnection) -> None:
        """Keep ``conn`` (its last answer read to the end) for the next request."""
        with self._lock:
            idle = self._idle.setdefault(netloc, [])
            if self._pid == os.getpid() and len(idle) < self.MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def close(self, *, forked: bool = False) -> None:
        """Close every idle connection (in a forked child: the child's copies only)."""
        if forked:
            # the child runs only the thread that forked: a lock another thread of the
            # parent held at that moment (taking or giving back a connection) would stay
            # held here forever, and this fork handler with it
            self._lock = threading.Lock()
        with self._lock:
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle = {}
            if forked:
                self._pid = os.getpid()
        for conn in idle:
            conn.close()


#: The ranged read into a buffer that the current thread is making, if any.
_into = threading.local()

#: Failures on a kept connection that mean the server closed it while it was idle.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _Into:
    """One ranged GET whose body goes straight from the socket into ``view``.

    botocore calls :meth:`send` (through its ``before-send`` event) with the request it
    built and signed; over plain HTTP without a proxy this sends it on a kept connection
    of :class:`_RawConnections` and reads a 206 body into ``view`` (:meth:`_read`), then
    hands botocore an answer with an empty body (``got``: the bytes written). Errors go back
    to botocore with their body, so they are judged and retried as for any request.
    """

    def __init__(self, conns: _RawConnections, view: memoryview, start: int) -> None:
        self.conns = conns
        self.view = view
        self.start = start
        self.got: int | None = None
        #: the URL and context of the request last given to :meth:`send`
        self.sent: tuple[str, dict[str, Any]] | None = None

    def send(self, request: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        self.got = None
        self.sent = (request.url, getattr(request, "context", None) or {})
        parts = urlsplit(request.url)
        if parts.scheme != "http" or request.method != "GET" or request.body:
            return None
        host = parts.hostname or ""
        if self.conns.proxied:
            return None
        netloc = parts.netloc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(request.headers.items())
        conn = self.conns.take(netloc)
        try:
            if conn is not None:
                try:
                    resp = self._ask(conn, target, headers)
                except _STALE:  # closed by the server while idle: once more, afresh
                    conn.close()
                    conn = None
            if conn is None:
                try:
                    conn = self.conns.new(host, parts.port)
                except (OSError, http.client.HTTPException) as e:
                    raise bexc.EndpointConnectionError(endpoint_url=request.url, error=e) from e
                resp = self._ask(conn, target, headers)
            if resp.status >= 300:
                body = resp.read()
            elif resp.status == 206 and self._fits(resp):
                self.got = self._read(resp, conn.sock)
                body = b""
            else:
                raise _Unfit(f"HTTP {resp.status} to a ranged GET")
        except _Unfit:
            conn.close()  # type: ignore[union-attr]
            raise
        except TimeoutError as e:
            if conn is not None:
                conn.close()
            raise bexc.ReadTimeoutError(endpoint_url=request.url, error=e) from e
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            raise bexc.ConnectionClosedError(endpoint_url=request.url) from e
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self.conns.give(netloc, conn)
        return AWSResponse(request.url, resp.status, resp.getheaders(), _RawBody(body))

    @staticmethod
    def _ask(
        conn: http.client.HTTPConnection, target: str, headers: dict[str, Any]
    ) -> http.client.HTTPResponse:
        conn.request("GET", target, headers=headers)
        return conn.getresponse()

    def _fits(self, resp: http.client.HTTPResponse) -> bool:
        """Whether a 206 answer is the range asked for and fits the buffer."""
        if resp.length is None or resp.length > len(self.view):
            return False
        crange = resp.getheader("Content-Range")
        return crange is None or _range_first(crange) == self.start

    def _read(self, resp: http.client.HTTPResponse, sock: socket.socket | None) -> int:
        """Read the body into ``view``: what came with the headers, then the rest with
        ``MSG_WAITALL`` in blocking mode, so the kernel fills the buffer in one call
        instead of a call (and a turn at the GIL) per 64-128 KiB that arrive (a bare
        1 GiB read on 8 threads spent a third less system time; through a mount, where
        more competes for the two cores, the gain was about 2 %).

        ``sock`` None: the answer said ``Connection: close``, and http.client handed
        the socket to it (the connection has none): read through the answer then."""
        want = resp.length or 0
        view = self.view
        got = 0
        if sock is None:
            while got < want:
                n = resp.readinto(view[got:want])
                if not n:
                    raise http.client.IncompleteRead(b"", want - got)
                got += n
            return got
        fp: Any = resp.fp
        if want:
            ahead = len(fp.peek(1))  # bytes that arrived with the headers (or one read)
            if ahead:
                got = fp.readinto(view[: min(ahead, want)])
        if got < want:
            sock.settimeout(None)  # blocking; SO_RCVTIMEO bounds each receive
            try:
                while got < want:
                    n = sock.recv_into(view[got:want], want - got, socket.MSG_WAITALL)
                    if not n:
                        raise http.client.IncompleteRead(b"", want - got)
                    got += n
            except BlockingIOError as e:  # nothing arrived within the read timeout
                raise TimeoutError(f"no data for {self.conns.read_timeout} s") from e
            finally:
                sock.settimeout(self.conns.read_timeout)
        resp.length = 0  # the body is read: the connection can take the next request
        resp.close()
        return got


def _range_first(crange: str | None) -> int | None:
    """The first byte a ``Content-Range`` (``bytes 100-199/1000``) names, or None."""
    if not crange:
        return None
    first = crange.strip().removeprefix("bytes ").partition("-")[0].strip()
    return int(first) if first.isdigit() else None


def _proxied(host: str) -> bool:
    """Whether plain-HTTP requests to ``host`` go through a proxy (the environment's).

    It reads the whole environment (about 60 µs), so a store asks once, when it opens,
    as botocore does for its client's endpoint."""
    proxies = urllib.request.getproxies()
    return "http" in proxies and not urllib.request.proxy_bypass(host)


def _send_into(request: Any, **_kw: Any) -> Any:
    """botocore's ``before-send`` hook for GetObject: see :class:`_Into`."""
    target = getattr(_into, "target", None)
    return None if target is None else target.send(request)


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _http_date(value: str) -> datetime.datetime | None:
    """An HTTP date in its one current form (``Sun, 06 Dec 2026 02:14:03 GMT``, what
    every answer's ``Last-Modified`` holds) as an aware datetime; None for anything else."""
    if (
        len(value) != 29
        or value[3:5] != ", "
        or value[7] != " "
        or value[11] != " "
        or value[16] != " "
        or value[19] != ":"
        or value[22] != ":"
        or value[25:] != " GMT"
    ):
        return None
    month = _MONTHS.get(value[8:11])
    fields = (value[12:16], value[5:7], value[17:19], value[20:22], value[23:25])
    if month is None or not all(f.isdigit() and f.isascii() for f in fields):
        return None
    year, day, hour, minute, second = map(int, fields)
    try:
        return datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError:  # a day or time out of range: botocore's parser judges it
        return None


def _parse_timestamp(value: Any) -> datetime.datetime:
    """A response timestamp as an aware datetime, as botocore's default parser gives it.

    botocore parses each with dateutil, about 60 µs a time: a tenth of the CPU a small
    GET or HEAD costs here. ISO 8601 (what S3 sends in XML) goes through the standard
    library's C parser, an HTTP date (the ``Last-Modified`` header) is cut apart by
    :func:`_http_date`; anything else goes to botocore's own parser."""
    if isinstance(value, str):
        if value.endswith(" GMT"):
            got = _http_date(value)
            if got is not None:
                return got
        else:
            try:
                got = datetime.datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return got if got.tzinfo is not None else got.replace(tzinfo=datetime.UTC)
    return botocore.utils.parse_timestamp(value)


class S3Store(Store):
    """Objects in ``bucket`` under ``prefix``; see the module docstring.

    Args:
        bucket: the bucket; it must exist.
        prefix: folder-like prefix inside the bucket ("" for the whole bucket); keys
            are stored as ``prefix/key``.
        endpoint_url: S3 endpoint (``http://127.0.0.1:8333``); default: AWS, or
            ``$AWS_ENDPOINT_URL``.
        region: region name; default from the AWS environment/config.
        profile: AWS profile name for credentials; default ``$AWS_PROFILE``.
        client: a ready botocore (or boto3) S3 client to use instead of creating one
            (give it no retries of its own, as :func:`make_client` does).

    Query options of an ``s3://`` URL arrive here as keyword strings; unknown ones are
    refused with :class:`InvalidError`.
    """

    #: Retry policy of :meth:`_retry` (exponential backoff with jitter).
    max_attempts = 10
    backoff_base = 0.05
    backoff_cap = 2.0

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        client: Any = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise InvalidError(
                f"unknown S3 store option(s) {', '.join(sorted(unknown))}: "
                "the options are endpoint_url, region and profile"
            )
        if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket):
            raise InvalidError(
                f"invalid S3 bucket name {bucket!r}: letters, digits, '.', '_' and '-' only"
            )
        prefix = (prefix or "").strip("/")
        if prefix:
            try:
                check_key(prefix)
            except InvalidError:
                raise InvalidError(f"invalid S3 store prefix {prefix!r}") from None
        self.bucket = bucket
        self.prefix = prefix
        self._root = prefix + "/" if prefix else ""
        self._own_client = client is None
        self._bucket_seen = False  # set once a HEAD of the bucket found it
        self._client = client or make_client(
            endpoint_url=endpoint_url or None, region=region or None, profile=profile or None
        )
        self.endpoint = str(self._client.meta.endpoint_url)
        config = self._client.meta.config
        self._raw = _RawConnections(
            float(config.connect_timeout or 60),
            float(config.read_timeout or 60),
            _proxied(urlsplit(self.endpoint).hostname or ""),
        )
        if not config.proxies:
            # one hook per client however many stores share it; it acts only for the
            # thread's own get_range_into
            self._client.meta.events.register(
                "before-send.s3.GetObject", _send_into, unique_id="jupyter-volume-into"
            )
        # What a ranged GET of this bucket looks like once botocore has built one (see
        # _direct_range): the URL up to the key, and the signing context. None: not seen
        # yet; False: not used with this store.
        self._direct: tuple[str, dict[str, Any]] | None | bool = (
            None if not config.proxies and not bucket.endswith("--x-s3") else False
        )
        _stores.add(self)
        query = {
            name: value
            for name, value in (
                ("endpoint_url", endpoint_url),
                ("region", region),
                ("profile", profile),
            )
            if value
        }
        # "%", "#" and "?" escaped: open_store unquotes the path, which would otherwise
        # end at a "#" or "?" of the prefix (and open another store)
        quoted = prefix.replace("%", "%25").replace("#", "%23").replace("?", "%3F")
        self.url = f"s3://{bucket}" + (f"/{quoted}" if prefix else "")
        if query:
            self.url += "?" + urlencode(query)

    # -- plumbing --------------------------------------------------------------------
    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def _where(self) -> str:
        return f"bucket {self.bucket} at endpoint {self.endpoint}"

    def _no_bucket(self) -> StoreError:
        return StoreError(
            f"bucket {self.bucket} does not exist at endpoint {self.endpoint}: create it first"
        )

    def _check_bucket(self) -> None:
        """Raise the missing-bucket StoreError if the bucket does not exist.

        Answers that do not name the bucket (a HEAD's bare 404, a conditional write's
        "no match") are the same for a missing key and a missing bucket; before such an
        answer is given as "missing key" or "other version", one HEAD of the bucket per
        store tells the two apart. Any answer but 404 counts as "it exists": credentials
        limited to a prefix may not look at the bucket itself.
        """
        if self._bucket_seen:
            return

        def attempt() -> None:
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except bexc.ClientError as e:
                if _status(e) == 404 or _code(e) == "NoSuchBucket":
                    raise self._no_bucket() from e
                if _is_retryable(e):
                    raise
                # refused or odd: the bucket is there as far as we can tell

        self._retry("head_bucket", None, attempt)
        self._bucket_seen = True

    def _error(self, e: Exception, what: str, key: str | None) -> VolumeError:
        """Translate a non-retryable failure into the package's error tree."""
        obj = f" {key!r}" if key is not None else ""
        if isinstance(e, bexc.ClientError):
            code, status = _code(e), _status(e)
            message = e.response.get("Error", {}).get("Message") or ""
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchUpload"):
                return NotFoundError(f"no object{obj} in {self._where()}")
            if status == 501 or code == "NotImplemented":
                need = {
                    "put_if_absent": "create-only writes (PUT with If-None-Match: *)",
                    "put_if_match": "conditional writes (PUT with If-Match)",
                    "delete_if_match": "conditional deletes (DELETE with If-Match)",
                }.get(what, f"the request ({what})")
                return StoreError(
                    f"the S3 server at endpoint {self.endpoint} does not support {need}, "
                    f"which jupyter-volume needs (bucket {self.bucket}, key{obj}; it said "
                    f"{code or status}: {message}); use a server that does, such as AWS "
                    "S3, a recent MinIO, Ceph or SeaweedFS"
                )
            if code in _ACCESS_CODES or status == 403:
                return StoreAccessError(
                    f"access to {self._where()} was refused ({code or status}): check the "
                    "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the AWS "
                    "profile) and their permissions on the bucket"
                )
            return StoreError(f"S3 {what} of{obj} in {self._where()} failed: {code} {message}")
        if isinstance(e, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
            return StoreAccessError(
                f"no usable AWS credentials for {self._where()}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        if isinstance(e, bexc.CredentialRetrievalError):
            return StoreAccessError(f"cannot obtain AWS credentials for {self._where()}: {e}")
        return StoreError(f"S3 {what} of{obj} in {self._where()} failed: {e}")

    def _retry(
        self,
        what: str,
        key: str | None,
        fn: Callable[[], T],
        *,
        on_transient: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Run ``fn`` (one complete request, body included), retrying transient faults.

        Retries 5xx, throttling, 409 ConditionalRequestConflict, request timeouts and
        connection failures, with exponential backoff (``backoff_base`` doubling up to
        ``backoff_cap``) and jitter, ``max_attempts`` times in all; ``on_transient`` sees
        every retried failure. Other failures are translated (:meth:`_error`).

        Raises:
            NotFoundError, StoreAccessError, StoreError: see :meth:`_error`; after the
                last attempt a StoreError naming endpoint, bucket, key and last error.
        """
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except VolumeError:
                raise
            except Exception as e:
                if not _is_retryable(e):
                    raise self._error(e, what, key) from e
                last = e
                if on_transient is not None:
                    on_transient(e)
            if attempt + 1 < self.max_attempts:
                delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
                time.sleep(delay / 2 + random.uniform(0, delay / 2))
        obj = f" of {key!r}" if key is not None else ""
        raise StoreError(
            f"S3 {what}{obj} in bucket {self.bucket} at endpoint {self.endpoint} failed "
            f"after {self.max_attempts} attempts; last error: {_describe(last) if last else ''}"
        ) from last

    # -- Store API -------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        """Return the whole object stored under ``key``.

        Raises:
            NotFoundError: no such key.
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        full = self._full(key)

        def attempt() -> bytes:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
            with resp["Body"] as body:
                return body.read()

        return self._retry("get", key, attempt)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to ``length`` bytes of ``key`` from byte ``start`` (an HTTP Range GET).

        Fewer bytes come back when the object ends first, ``b""`` when ``start`` is at
        or past its end or ``length`` is 0.

        Raises:
            InvalidError: negative ``start`` or ``length``.
            NotFoundError: no such key.
        """
        if start < 0 or length < 0:
            raise InvalidError(f"start and length must be >= 0, got {start}, {length}")
        full = self._full(key)
        if length == 0:
            self.stat(key)  # still NotFoundError for a missing key
            return b""
        return self._retry("get_range", key, lambda: self._range_once(full, start, length) or b"")

    def _range_once(
        self, full: str, start: int, length: int, into: _Into | None = None
    ) -> bytes | None:
        """One ranged GET (``b""`` past the end). With ``into``, its hook may send it and
        put the body in ``into.view`` itself: None then (``into.got`` bytes are there);
        otherwise botocore read the body, which is judged here."""
        _into.target = into
        try:
            resp = self._client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
            )
        except bexc.ClientError as e:
            if _status(e) == 416 or _code(e) == "InvalidRange":
                return b""  # the range starts at or past the end
            raise
        finally:
            _into.target = None
        if into is not None and into.got is not None:
            resp["Body"].close()  # empty: the body is in into.view
            return None
        with resp["Body"] as body:
            data = body.read()
        if resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200:
            return data[start : start + length]  # the server ignored the Range header
        # a 206 is taken for what its Content-Range says it holds, never for the range
        # asked: one starting earlier or running longer gives the part asked for
        first = _range_first(resp.get("ContentRange"))
        if first is not None and first != start:
            if first > start or first + len(data) <= start:
                raise _WrongRange(
                    f"asked for bytes {start}-{start + length - 1}, answered {resp['ContentRange']}"
                )
            data = data[start - first :]
        return data[:length]

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes of ``key`` from byte ``start`` into ``buf`` (a
        writable buffer) and return how many arrived (fewer at the object's end, 0 past it).

        Same answers and errors as :meth:`get_range`. Over plain HTTP without a proxy,
        the body goes from the socket straight into ``buf``: botocore builds, signs and
        judges the request as for any other GET (errors, redirects, credentials), but
        the bytes skip urllib3, whose reads copy a body again into a new object. A
        caller reading a big file in ranges through a few reused buffers then touches no
        new memory per range (a 1 GiB mount from SeaweedFS on this project's 2-core
        machine: 1.51 s instead of 1.65 s, medians of 6, and 0.1 s less CPU).
        """
        view = memoryview(buf).cast("B")
        if view.readonly:
            raise InvalidError("get_range_into needs a writable buffer")
        if start < 0:
            raise InvalidError(f"start must be >= 0, got {start}")
        length = len(view)
        full = self._full(key)
        if length == 0:
            self.stat(key)  # still NotFoundError for a missing key
            return 0

        def attempt() -> int:
            into = _Into(self._raw, view, start)
            try:
                if self._direct_range(full, start, length, into):
                    assert into.got is not None
                    return into.got
                data = self._range_once(full, start, length, into)
            except _Unfit:  # an answer that does not fit view: asked again, the usual way
                data = self._range_once(full, start, length)
            if data is None:  # the hook put the body in view
                assert into.got is not None
                self._learn_direct(full, into)
                return into.got
            view[: len(data)] = data
            return len(data)

        return self._retry("get_range", key, attempt)

    def _direct_range(self, full: str, start: int, length: int, into: _Into) -> bool:
        """Send one ranged GET of ``full`` into ``into`` without botocore's request
        pipeline, once one such GET of this bucket went through it (:meth:`_learn_direct`):
        the same URL with this key, signed by the client's own signer (its credentials,
        refreshed as for any request). True if the body is in ``into.view``.

        botocore spends about 1.3 ms of CPU per request building, checking and judging
        one (endpoint rules, events, parsing); a 1 GiB mount makes 70 of them. Any answer
        but the range asked for (an error, a redirect, a server that ignores ranges) is
        left to botocore's way: False, and the caller asks again through it, which judges
        the answer as ever. A refusal (400, 403) also stops this path for the store:
        botocore may know what the request needed (another region, say).
        """
        direct = self._direct
        if not direct:
            return False
        from botocore.awsrequest import AWSRequest

        prefix, context = direct  # type: ignore[misc]
        request = AWSRequest(
            method="GET",
            url=prefix + botocore.utils.percent_encode(full, safe="/~"),
            headers={"Range": f"bytes={start}-{start + length - 1}"},
        )
        request.context.update(context)
        request.context["signing"] = dict(context.get("signing") or {})
        self._client._request_signer.sign("GetObject", request)
        answer = into.send(request.prepare())
        if into.got is not None:
            return True
        if answer is None or answer.status_code in (400, 403):
            self._direct = False
        return False

    def _learn_direct(self, full: str, into: _Into) -> None:
        """After botocore built, signed and :class:`_Into` sent a ranged GET of ``full``:
        keep its URL up to the key and its signing context for :meth:`_direct_range`
        (only if the URL ends with the key as botocore writes keys in paths, and the
        client has the signer that path uses)."""
        if self._direct is not None or into.sent is None:
            return
        url, context = into.sent
        quoted = botocore.utils.percent_encode(full, safe="/~")
        if (
            "?" not in url
            and url.endswith("/" + quoted)
            and hasattr(self._client, "_request_signer")
        ):
            kept = {k: context[k] for k in ("auth_type", "auth_options") if k in context}
            kept["signing"] = dict(context.get("signing") or {})  # a copy of its own
            self._direct = (url[: len(url) - len(quoted)], kept)
        else:
            self._direct = False

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically.

        Up to 32 MiB go in one PUT; larger objects as a multipart upload of 16 MiB parts
        sent by a few threads. A failed multipart upload is aborted.

        Raises:
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        full = self._full(key)
        view = memoryview(data).cast("B")
        if view.nbytes > MULTIPART_THRESHOLD:
            self._put_multipart(key, full, view)
            return
        # bytes as they are; a buffer (a pack) read in place, with a fresh body per attempt
        body: Callable[[], Any] = (
            (lambda: data) if isinstance(data, bytes) else (lambda: _ViewBody(view))
        )
        self._retry(
            "put", key, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=body())
        )

    def _put_multipart(self, key: str, full: str, view: memoryview) -> None:
        created = self._retry(
            "create_multipart_upload",
            key,
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=full),
        )
        upload_id = created["UploadId"]
        offsets = list(range(0, view.nbytes, PART_SIZE))
        etags: list[str] = [""] * len(offsets)

        def upload(index: int) -> None:
            part = view[offsets[index] : offsets[index] + PART_SIZE]
            resp = self._retry(
                "upload_part",
                key,
                lambda: self._client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=_ViewBody(part),
                ),
            )
            etags[index] = resp["ETag"]

        try:
            pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3-part")
            try:
                for future in [pool.submit(upload, i) for i in range(len(offsets))]:
                    future.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            self._complete_multipart(key, full, upload_id, etags)
        except BaseException:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
            except Exception:  # noqa: BLE001 - best effort; the original error matters
                pass
            raise

    def _complete_multipart(self, key: str, full: str, upload_id: str, etags: list[str]) -> None:
        landed = False

        def note(e: BaseException) -> None:
            nonlocal landed
            landed = landed or _may_have_landed(e)

        parts = [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(etags)]
        try:
            self._retry(
                "complete_multipart_upload",
                key,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
                on_transient=note,
            )
        except StoreError as e:
            # a retried completion whose first attempt landed finds the upload gone
            cause = e.__cause__
            gone = isinstance(cause, bexc.ClientError) and _code(cause) == "NoSuchUpload"
            if not (landed and gone):
                raise
            digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in etags)
            expected = f"{hashlib.md5(digests).hexdigest()}-{len(etags)}"  # noqa: S324
            head = self._retry(
                "head_object", key, lambda: self._client.head_object(Bucket=self.bucket, Key=full)
            )
            if head.get("ETag", "").strip('"') != expected:
                raise

    def _conditional(
        self, what: str, key: str, request: Callable[[], T], *, missing: bool = True
    ) -> tuple[T | None, bool]:
        """Run one conditional request (``If-None-Match`` / ``If-Match``) with retries:
        ``(its result, landed)``, the result None when the condition did not hold (412;
        with ``missing``, also 404: AWS says so for a missing key where SeaweedFS says
        412). ``landed``: an earlier attempt may have landed before its response was
        lost, so a "did not hold" may be this call's own earlier success."""
        landed = False

        def note(e: BaseException) -> None:
            nonlocal landed
            landed = landed or _may_have_landed(e)

        def attempt() -> T | None:
            try:
                return request()
            except bexc.ClientError as e:
                status, code = _status(e), _code(e)
                if status == 412 or code == "PreconditionFailed":
                    return None
                if code == "NoSuchBucket":
                    raise
                if missing and (code in _NOT_FOUND_CODES or status == 404):
                    return None
                raise

        return self._retry(what, key, attempt, on_transient=note), landed

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        """Create ``key`` with ``data`` unless it exists; True if this call created it.

        One ``PUT`` with ``If-None-Match: *``: 412 PreconditionFailed means the key
        exists (False), 409 ConditionalRequestConflict is retried. If an earlier attempt
        of this call may have landed before its response was lost, a 412 is settled by
        reading the object back: True when it holds exactly ``data``.

        Raises:
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        return self.put_if_absent_versioned(key, data) is not None

    def put_if_absent_versioned(self, key: str, data: bytes | bytearray | memoryview) -> str | None:
        """As :meth:`put_if_absent`, giving the new object's ETag (from the PUT's own
        answer) instead of True, None instead of False."""
        full = self._full(key)
        body = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data

        def request() -> str:
            resp = self._client.put_object(Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
            return str(resp["ETag"])

        while True:
            created, landed = self._conditional("put_if_absent", key, request, missing=False)
            if created is not None:
                return created
            if not landed:
                return None
            try:
                existing, etag = self.get_versioned(key)
            except NotFoundError:
                continue  # deleted in the meantime: it is absent, so try again
            return etag if existing == body else None

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """Return the whole object under ``key`` and its ETag (the version token).

        Raises:
            NotFoundError: no such key.
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        full = self._full(key)

        def attempt() -> tuple[bytes, str]:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
            with resp["Body"] as body:
                return body.read(), str(resp["ETag"])

        return self._retry("get", key, attempt)

    def put_if_match(
        self, key: str, data: bytes | bytearray | memoryview, token: str
    ) -> str | None:
        """Replace ``key`` with ``data`` if its ETag is still ``token`` (one ``PUT`` with
        ``If-Match``, whatever the size); the new ETag, or None when the object changed
        or is missing (412 or 404). An ambiguous 412 after a retry is settled by reading
        the object back.

        Raises:
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        if not isinstance(token, str):
            raise TypeError(f"put_if_match token must be a str, got {type(token).__name__}")
        full = self._full(key)
        body = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data

        def request() -> str:
            resp = self._client.put_object(Bucket=self.bucket, Key=full, Body=body, IfMatch=token)
            return str(resp["ETag"])

        new, landed = self._conditional("put_if_match", key, request)
        if new is not None:
            return new
        if not landed:
            self._check_bucket()  # "no match" from a bucket that is not there: say so
            return None
        try:
            existing, etag = self.get_versioned(key)
        except NotFoundError:
            return None
        return etag if existing == body else None

    def delete_if_match(self, key: str, token: str) -> bool:
        """Delete ``key`` if its ETag is still ``token`` (one ``DELETE`` with ``If-Match``:
        AWS S3, Ceph and SeaweedFS check it); True when deleted, False when the object
        changed or is missing (412 or 404). A server that ignores the header deletes
        whatever is there, which is what a plain delete does. If an earlier attempt of
        this call may have landed before its response was lost, a "no match" is settled
        by looking: the key gone means this call deleted it.

        Raises:
            StoreError: the server failed after retries (StoreAccessError: refused).
        """
        if not isinstance(token, str):
            raise TypeError(f"delete_if_match token must be a str, got {type(token).__name__}")
        full = self._full(key)

        def request() -> bool:
            self._client.delete_object(Bucket=self.bucket, Key=full, IfMatch=token)
            return True

        deleted, landed = self._conditional("delete_if_match", key, request)
        if deleted:
            return True
        if not landed:
            self._check_bucket()  # "no match" from a bucket that is not there: say so
            return False
        return not self.exists(key)

    def touch(self, key: str) -> None:
        """Make ``key``'s LastModified now: a copy onto itself inside the server (with
        new metadata, which S3 requires of such a copy); NotFoundError when missing."""
        full = self._full(key)
        self._retry(
            "touch",
            key,
            lambda: self._client.copy_object(
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                MetadataDirective="REPLACE",
                Metadata={"touched": f"{time.time():.3f}"},
            ),
        )

    def delete(self, keys: Iterable[str]) -> None:
        """Delete every key in ``keys`` (batched DeleteObjects); missing keys are fine.

        Raises:
            InvalidError: an invalid key (nothing is deleted then).
            StoreError: the server failed, or refused some key (StoreAccessError).
        """
        full_keys = [self._full(k) for k in keys]
        for i in range(0, len(full_keys), DELETE_BATCH):
            batch = [{"Key": k} for k in full_keys[i : i + DELETE_BATCH]]
            resp = self._retry(
                "delete",
                batch[0]["Key"][len(self._root) :],
                lambda batch=batch: self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                ),
            )
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                key = str(first.get("Key", ""))[len(self._root) :]
                if first.get("Code") in _ACCESS_CODES:
                    raise StoreAccessError(
                        f"deleting {key!r} from {self._where()} was refused "
                        f"({first.get('Code')}): check the credentials' permissions"
                    )
                raise StoreError(
                    f"S3 delete failed for {len(errors)} key(s) in {self._where()}, e.g. "
                    f"{key!r}: {first.get('Code')} {first.get('Message', '')}"
                )

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, in ascending byte order,
        after ``start_after`` when given (paginated ListObjectsV2, one level at a time).

        Raises:
            StoreError: the server failed after retries, or the bucket does not exist.
        """
        if not isinstance(prefix, str) or (
            start_after is not None and not isinstance(start_after, str)
        ):
            raise InvalidError("list prefix and start_after must be strings")
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if head and any(part in ("", ".", "..") for part in head.split("/")):
            return  # no valid key has an empty, "." or ".." segment
        root = len(self._root)
        after = None if start_after is None else self._root + start_after
        for full, size, mtime in self._walk(self._root + prefix, after):
            yield ObjectInfo(full[root:], size, mtime)

    def _walk(self, level: str, after: str | None) -> Iterator[tuple[str, int, float]]:
        """Yield (full key, size, mtime) under ``level`` (any string; its keys are
        listed with ``Delimiter="/"``) that sort after ``after``, in byte order.

        Each page's files and sub-"directories" go into a heap ordered by the byte
        order of their full names (``a/`` for a directory); everything below the
        smallest name the server may still send is emitted, directories by recursing.
        This is correct whether the server orders a level by name (``a`` for a
        directory, as SeaweedFS does) or by full key (``a/``, as AWS does).
        """
        if after is not None:
            if after < level:
                after = None  # every key under ``level`` sorts after it
            elif not after.startswith(level):
                return  # every key under ``level`` sorts before it
        server_after = None
        if after is not None:
            # the server may skip by name; names still needed are >= rel[:k] where k is
            # the first character <= "/" (a directory "x" holds keys after "x-y")
            rel = after[len(level) :]
            k = next((i for i, ch in enumerate(rel) if ch <= "/"), len(rel))
            if k >= 2:
                server_after = level + rel[: k - 1]
        heap: list[tuple[str, int, float]] = []  # (name, size or -1 for a dir, mtime)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": level,
                "Delimiter": "/",
                "MaxKeys": 1000,
            }
            if token:
                kwargs["ContinuationToken"] = token
            elif server_after:
                kwargs["StartAfter"] = server_after
            page = self._retry(
                "list",
                level[len(self._root) :],
                lambda kw=kwargs: self._client.list_objects_v2(**kw),
            )
            bound = ""
            for obj in page.get("Contents", ()):
                name = obj["Key"]
                bound = max(bound, name)
                if not name.startswith(level) or name.endswith("/"):
                    continue  # a "directory marker" object is no store key, nor is
                    # a key outside ``level`` (from a server that normalized the prefix)
                if after is not None and name <= after:
                    continue
                heapq.heappush(heap, (name, int(obj["Size"]), obj["LastModified"].timestamp()))
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"]
                bound = max(bound, name[:-1])
                if not name.startswith(level) or not name.endswith("/") or "//" in name:
                    continue  # some servers normalize "a//" or "a/../" in a prefix
                if after is not None and name <= after and not after.startswith(name):
                    continue
                heapq.heappush(heap, (name, -1, 0.0))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            # later pages only hold names >= bound (full keys >= bound, too)
            while heap and (token is None or heap[0][0] < bound):
                name, size, mtime = heapq.heappop(heap)
                if size >= 0:
                    yield name, size, mtime
                else:
                    yield from self._walk(name, after)
            if token is None:
                return

    def stat(self, key: str) -> ObjectInfo:
        """Return the size and mtime of ``key`` (a HEAD request).

        Raises:
            NotFoundError: no such key.
        """
        full = self._full(key)
        try:
            head = self._retry(
                "stat", key, lambda: self._client.head_object(Bucket=self.bucket, Key=full)
            )
        except NotFoundError:
            self._check_bucket()  # a HEAD's bare 404 may mean "no such bucket"
            raise
        return ObjectInfo(key, int(head["ContentLength"]), head["LastModified"].timestamp())

    def close(self) -> None:
        """Close the HTTP connections of the client this store created, and the ones
        :meth:`get_range_into` keeps."""
        self._raw.close()
        if self._own_client:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
