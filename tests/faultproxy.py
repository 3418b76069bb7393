"""A loopback HTTP proxy that injects faults between an S3 client and its server.

It relays requests byte for byte (Host header and body untouched, so SigV4 signatures
still validate; ``Content-Length`` and chunked bodies alike) and, driven by a seeded
RNG or by faults forced with :meth:`FaultProxy.force`, injects:

* ``error500``: answer 500 InternalError without forwarding the request;
* ``drop``: close the connection without forwarding or answering;
* ``lost_response``: forward a PUT/POST (or, when forced, any request: a DELETE), read
  the server's answer, then close the connection without passing it on (the request
  landed, the client cannot know);
* ``truncate``: forward a GET and pass on the headers and only half of the body.

Apart from those (never picked by ``fault_rate``, whose mix the connection-fault tests
rely on), it can answer as a server lacking a feature, and damage data silently:

* ``not_implemented`` (:meth:`FaultProxy.force` only): answer 501 NotImplemented
  without forwarding, as S3-compatible servers do for headers they do not support
  (``If-None-Match``, ``If-Match``);

* ``range_ignored`` (:meth:`FaultProxy.force` only): forward a ranged GET and answer
  ``200 OK`` instead of ``206``, with zeros for a body, as a server that ignores the
  Range header would answer with the whole object (a client that takes it as the range
  reads wrong bytes);
* ``close_after`` (:meth:`FaultProxy.force` only): answer normally, then close the
  connection without saying so (``Connection: close``), as a server does with a kept
  connection it finds idle too long: the client learns it on its next request there;
* ``connection_close`` (:meth:`FaultProxy.force` only): answer normally with
  ``Connection: close``, then close the connection, as a server does that keeps no
  connections (or closes one after so many requests);
* ``range_moved`` (:meth:`FaultProxy.force` only): forward a ranged GET and answer a
  ``206`` for a range starting one byte later than asked (its first byte dropped,
  ``Content-Range`` saying so), as a cache answering another range of the object would;
* ``range_longer`` (:meth:`FaultProxy.force` only): forward a ranged GET and answer a
  ``206`` running 16 bytes past the range asked (filler bytes, ``Content-Range`` saying
  so), as a server that sends more than asked would;

* ``stall`` (:meth:`FaultProxy.force` only): forward a GET, pass on the headers and half
  of the body, then send nothing more until the proxy stops (a server or network that
  hangs mid-answer: only the client's read timeout ends the wait);

* ``bitflip``: forward a GET and pass on the whole answer with one bit of its body
  flipped (status and length intact, as a faulty NIC or middlebox would). Driven by
  ``flip_rate`` (probability per matching GET) or :meth:`FaultProxy.flip` (the next N
  matching GETs); ``flip_match`` restricts both to object paths containing a string.

:attr:`FaultProxy.counts` records how many faults of each kind were injected (and how
many requests were seen and forwarded), so tests can prove the faults happened.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

__all__ = [
    "BITFLIP",
    "CLOSE_AFTER",
    "CONNECTION_CLOSE",
    "KINDS",
    "NOT_IMPLEMENTED",
    "RANGE_IGNORED",
    "RANGE_LONGER",
    "RANGE_MOVED",
    "STALL",
    "FaultProxy",
    "store_through",
]

KINDS = ("error500", "drop", "lost_response", "truncate")
BITFLIP = "bitflip"
NOT_IMPLEMENTED = "not_implemented"
RANGE_IGNORED = "range_ignored"
CLOSE_AFTER = "close_after"
CONNECTION_CLOSE = "connection_close"
RANGE_MOVED = "range_moved"
RANGE_LONGER = "range_longer"
STALL = "stall"
_FORCED_ONLY = (
    BITFLIP,
    NOT_IMPLEMENTED,
    RANGE_IGNORED,
    CLOSE_AFTER,
    CONNECTION_CLOSE,
    RANGE_MOVED,
    RANGE_LONGER,
    STALL,
)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_MUTATING = ("PUT", "POST")
_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>injected by the fault proxy</Message></Error>"
)
_NOT_IMPLEMENTED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented"
    b"</Message></Error>"
)


@dataclass
class _Request:
    method: str
    target: str
    head: bytes  # request line + headers + blank line, as forwarded
    body: bytes  # raw body bytes (chunk framing included)


def _applicable(kind: str, method: str) -> bool:
    if kind == "lost_response":
        return method in _MUTATING
    if kind in ("truncate", BITFLIP):
        return method == "GET"
    return True


_RUN_THEN = ("error500", "drop", "lost_response")  # the faults that run their ``then``
HOOK_WAIT = 60.0  # seconds: a fault's hook that runs longer hangs


class _Hook:
    """A forced fault's ``then``, counted by the proxy from the moment its fault is
    picked until it has run (or its request ended without running it)."""

    def __init__(self, fn: Callable[[], None], done: Callable[[], None]) -> None:
        self._fn, self._done, self._settled = fn, done, False

    def __call__(self) -> None:
        if self._settled:
            return
        try:
            self._fn()
        finally:
            self.drop()

    def drop(self) -> None:
        if not self._settled:
            self._settled = True
            self._done()


class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` (``http://h:p``).

    ``fault_rate`` is the probability that a request gets a random applicable fault of
    :data:`KINDS`; ``flip_rate`` the probability that a GET whose path (query string
    excluded) contains ``flip_match`` (or one of them, if a tuple; any GET when None)
    comes back with one bit of its body flipped. ``seed`` makes the choices reproducible. Use as a context manager or
    call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        flip_rate: float = 0.0,
        flip_match: str | tuple[str, ...] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.fault_rate = fault_rate
        self.flip_rate = flip_rate
        self.flip_match = flip_match
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []  # (method, target, fault or "ok")
        # (kind, method, path_contains, for a bit flip (byte, mask) or None: random,
        # what to run once the fault has happened or None)
        self._forced: list[
            tuple[str, str | None, str | None, tuple | None, Callable[[], None] | None]
        ] = []
        self._lock = threading.Lock()
        self._hooks = threading.Condition(self._lock)
        self._hooks_due = 0  # forced faults' hooks picked and not yet finished
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.url = ""

    # -- control ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen on a free loopback port and start accepting connections."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection and wait for the worker threads."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def force(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        then: Callable[[], None] | None = None,
        n: int = 1,
    ) -> None:
        """Inject ``kind`` into the next ``n`` requests matching ``method`` /
        ``path_contains`` (a client that tries a request three times fails with
        ``n=3``).

        ``then`` runs on the proxy's thread once each fault has happened and before the
        client hears of it (for ``lost_response``: after the server applied the request,
        before the connection is closed), so a test can make another writer's request
        land exactly between a client's lost attempt and its retry."""
        if kind not in (*KINDS, *_FORCED_ONLY):
            known = (*KINDS, *_FORCED_ONLY)
            raise ValueError(f"unknown fault {kind!r}; known: {known}")
        with self._lock:
            self._forced.extend([(kind, method, path_contains, None, then)] * n)

    def flip(
        self,
        n: int = 1,
        *,
        path_contains: str | None = None,
        at_byte: int | None = None,
        mask: int | None = None,
    ) -> None:
        """Flip one bit in the body of each of the next ``n`` GET answers whose path
        (query string excluded) contains ``path_contains``: a random bit, or one of the
        byte at offset ``at_byte`` of the body (when the body is that long); ``mask``
        (with ``at_byte``) chooses the bits of that byte to flip."""
        if mask is not None and (at_byte is None or not 0 < mask < 256):
            raise ValueError("mask needs at_byte, and must be 1..255")
        with self._lock:
            self._forced.extend([(BITFLIP, "GET", path_contains, (at_byte, mask), None)] * n)

    def clear(self, wait: float = HOOK_WAIT) -> None:
        """Forget every forced fault that has not happened yet, and wait (at most
        ``wait`` seconds) for the ``then`` of any that has just happened: a client
        that gave up on its request (a read timeout) may have moved on while the hook
        still runs, and what the hook does, or arms, must not land after this returns.

        Raises AssertionError if a hook is still running after ``wait`` seconds (it
        hangs). Not for a hook to call: it would wait for itself.
        """
        with self._lock:
            self._forced.clear()
            if not self._hooks.wait_for(lambda: self._hooks_due == 0, timeout=wait):
                raise AssertionError(f"a fault's hook still runs after {wait:.0f} s")
            self._forced.clear()  # what a hook armed as it ended

    def _hook_done(self) -> None:
        with self._lock:
            self._hooks_due -= 1
            self._hooks.notify_all()

    def arm_stages(
        self,
        stages: list[tuple[str, str | None, str | None, int]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Force ``stages``, each ``(kind, method, path_contains, n)``: ``n`` faults of
        ``kind`` on the next matching requests, then, once the last of them has
        happened, the next stage (so a later stage meets the requests after the earlier
        one's, as a retry's read-back after a lost answer). ``then`` runs at the first
        fault of the first stage. A truncated or stalled answer runs no ``then``: the
        stage after it is forced at once."""

        def arm(stage: int) -> None:
            if stage >= len(stages):
                return
            kind, method, part, n = stages[stage]
            chained = kind in _RUN_THEN
            for i in range(n):
                hooks: list[Callable[[], None]] = []
                if stage == 0 and i == 0 and then is not None:
                    hooks.append(then)
                if chained and i == n - 1:
                    hooks.append(lambda: arm(stage + 1))
                self.force(
                    kind,
                    method=method,
                    path_contains=part,
                    then=(lambda hs=tuple(hooks): [h() for h in hs]) if hooks else None,
                )
            if not chained:
                arm(stage + 1)

        arm(0)

    def pending_flips(self) -> int:
        """How many forced bit flips have not happened yet."""
        with self._lock:
            return sum(1 for kind, *_rest in self._forced if kind == BITFLIP)

    # -- serving ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while not self._stopping.is_set():
                request = self._read_request(rfile, conn)
                if request is None:
                    return
                if not self._handle(conn, request):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            rfile.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    @staticmethod
    def _read_request(rfile: BinaryIO, conn: socket.socket) -> _Request | None:
        line = rfile.readline(65537)
        if not line:
            return None
        method, target, _version = line.decode("latin-1").split(" ", 2)
        lines = [line]
        headers: dict[str, str] = {}
        while True:
            h = rfile.readline(65537)
            if not h:
                return None
            if h in (b"\r\n", b"\n"):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "expect":
                continue  # answered here; the server must not wait for it again
            lines.append(h)
        lines.append(b"\r\n")
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = bytearray()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:  # relay the chunk framing as is, up to the trailers' end
                size_line = rfile.readline(65537)
                body += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        trailer = rfile.readline(65537)
                        body += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                body += rfile.read(size + 2)  # data + CRLF
        elif "content-length" in headers:
            body += rfile.read(int(headers["content-length"]))
        return _Request(method.upper(), target, b"".join(lines), bytes(body))

    def _pick_fault(
        self, request: _Request
    ) -> tuple[str | None, tuple | None, Callable[[], None] | None]:
        """The fault for ``request`` (None: relay it faithfully), for a forced bit flip
        ``(byte, mask)`` to damage (None where random), and a forced fault's ``then``."""
        with self._lock:
            self.counts["requests"] += 1
            obj_path = request.target.split("?", 1)[0]
            for i, (kind, method, path, where, then) in enumerate(self._forced):
                if kind == BITFLIP:  # matched on the object's path, never on a listing query
                    if request.method != "GET" or (path is not None and path not in obj_path):
                        continue
                if (method is None or method == request.method) and (
                    path is None or path in request.target
                ):
                    del self._forced[i]
                    if then is not None:
                        self._hooks_due += 1
                        then = _Hook(then, self._hook_done)
                    return kind, where, then
            if self.fault_rate and self.rng.random() < self.fault_rate:
                kinds = [k for k in KINDS if _applicable(k, request.method)]
                return self.rng.choice(kinds), None, None
            if (
                self.flip_rate
                and request.method == "GET"
                and (
                    self.flip_match is None
                    or any(
                        m in obj_path
                        for m in (
                            (self.flip_match,)
                            if isinstance(self.flip_match, str)
                            else self.flip_match
                        )
                    )
                )
                and self.rng.random() < self.flip_rate
            ):
                return BITFLIP, None, None
            return None, None, None

    def _record(self, request: _Request, outcome: str) -> None:
        with self._lock:
            if outcome != "ok":
                self.counts[outcome] += 1
            self.log.append((request.method, request.target, outcome))

    def _handle(self, conn: socket.socket, request: _Request) -> bool:
        """Serve one request; False when the client connection must be closed."""
        fault, where, then = self._pick_fault(request)
        if isinstance(then, _Hook) and fault not in _RUN_THEN:
            then.drop()  # a fault that runs no hook (a stall may never end)
        try:
            return self._serve_one(conn, request, fault, where, then)
        finally:
            if isinstance(then, _Hook):
                then.drop()  # (its fault never came to run it: counted as done)

    def _serve_one(
        self,
        conn: socket.socket,
        request: _Request,
        fault: str | None,
        where: tuple | None,
        then: Callable[[], None] | None,
    ) -> bool:
        if fault == "error500":
            self._record(request, fault)
            if then is not None:
                then()
            conn.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_ERROR_BODY) + _ERROR_BODY
            )
            return False
        if fault == NOT_IMPLEMENTED:
            self._record(request, fault)
            body = _NOT_IMPLEMENTED_BODY
            conn.sendall(
                b"HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            return True
        if fault == "drop":
            self._record(request, fault)
            if then is not None:
                then()
            return False
        status, reason, headers, body = self._forward(request)
        with self._lock:
            self.counts["forwarded"] += 1
        if fault == "lost_response":
            self._record(request, fault)
            if then is not None:
                then()
            return False
        if fault == RANGE_IGNORED and status == 206:
            self._record(request, fault)
            fault = "done"
            status, reason, body = 200, "OK", bytes(len(body))
            headers = [(n, v) for n, v in headers if n.lower() != "content-range"]
        if fault in (RANGE_MOVED, RANGE_LONGER) and status == 206:
            crange = next((v for n, v in headers if n.lower() == "content-range"), "")
            m = _CONTENT_RANGE.fullmatch(crange.strip())
            if m is not None and len(body) >= 2:
                first, last, total = int(m[1]), int(m[2]), m[3]
                if fault == RANGE_MOVED:
                    first, body = first + 1, body[1:]
                else:
                    last, body = last + 16, body + b"\xee" * 16
                self._record(request, fault)
                fault = "done"
                headers = [(n, v) for n, v in headers if n.lower() != "content-range"]
                headers.append(("Content-Range", f"bytes {first}-{last}/{total}"))
        keep_length = request.method == "HEAD" or status in (204, 304) or status < 200
        out = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")]
        for name, value in headers:
            lower = name.lower()
            if lower in ("transfer-encoding", "connection", "keep-alive"):
                continue
            if lower == "content-length" and not keep_length:
                continue
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not keep_length:
            out.append(b"Content-Length: %d\r\n" % len(body))
        if fault == CONNECTION_CLOSE:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        if fault == "truncate" and len(body) >= 2:
            self._record(request, fault)
            conn.sendall(b"".join(out) + body[: len(body) // 2])
            return False
        if fault == STALL and len(body) >= 2:
            self._record(request, fault)
            conn.sendall(b"".join(out) + body[: len(body) // 2])
            self._stopping.wait()  # the rest never comes (until the proxy stops)
            return False
        if fault == BITFLIP and body and status in (200, 206):
            with self._lock:
                bit = self.rng.randrange(len(body) * 8)
            at_byte, mask = where or (None, None)
            if at_byte is None or at_byte >= len(body):
                at_byte = bit // 8
            damaged = bytearray(body)
            damaged[at_byte] ^= mask if mask is not None else 1 << (bit % 8)
            body = bytes(damaged)
            self._record(request, fault)
        elif fault in (CLOSE_AFTER, CONNECTION_CLOSE):
            self._record(request, fault)
            conn.sendall(b"".join(out) + body)
            return False
        elif fault != "done":
            self._record(request, "ok")
        conn.sendall(b"".join(out) + body)
        return True

    def _forward(self, request: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = socket.create_connection(self.upstream, timeout=120)
        try:
            upstream.sendall(request.head + request.body)
            response = http.client.HTTPResponse(upstream, method=request.method)
            response.begin()
            body = response.read()
            return response.status, response.reason, response.getheaders(), body
        finally:
            upstream.close()


def store_through(
    proxy: FaultProxy, seaweedfs: Any, bucket: str, prefix: str, *, read_timeout: float = 30
) -> Any:
    """An S3Store on ``bucket``/``prefix`` of ``seaweedfs`` that talks to it through
    ``proxy``, retrying quickly (tests wait for its retries, not for real back-off)."""
    from jupyter_volume.store.s3 import S3Store, make_client

    store = S3Store(
        bucket,
        prefix,
        endpoint_url=proxy.url,
        client=make_client(
            endpoint_url=proxy.url,
            region=seaweedfs.region,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key=seaweedfs.secret_key,
            read_timeout=read_timeout,
        ),
    )
    store.backoff_base = 0.005
    store.backoff_cap = 0.1
    return store


@contextlib.contextmanager
def client_b(
    seaweedfs: Any, bucket: str, prefix: str, *, seed: int, read_timeout: float, attempts: int
) -> Iterator[tuple[FaultProxy, Any]]:
    """``(proxy, store)``: a fault proxy in front of ``seaweedfs`` and a store on
    ``bucket``/``prefix`` through it that gives up after ``attempts`` tries of a
    request (a fault model's client B). At the end every mount of this process is let
    go (a failed example may leave one), the store closed and the proxy stopped."""
    with FaultProxy(seaweedfs.endpoint, seed=seed) as proxy:
        store = store_through(proxy, seaweedfs, bucket, prefix, read_timeout=read_timeout)
        store.max_attempts = attempts
        try:
            yield proxy, store
        finally:
            from jupyter_volume.mount import mounts

            for m in mounts():
                m._detach()
            store.close()
