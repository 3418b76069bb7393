"""Child-process side of the benchmark: one process per measured session.

The parent (:mod:`bench.run`) starts ``python -m bench.worker TASK`` with a JSON spec on
stdin and reads one JSON result from the last stdout line. Running each measurement in
its own process gives it a clean page of memory statistics: before each timed step the
peak RSS is reset (``echo 5 > /proc/self/clear_refs``) and read back from ``VmHWM`` in
``/proc/self/status`` afterwards, so every step reports its own peak (``ru_maxrss`` would
be inherited from the parent and never goes down).

Tasks:

* ``jv``: a jupyter-volume session, a list of steps (mount, populate, edit, commit,
  other_write, reload, listdir, gc, store_size...) run against one volume in one process;
  timed steps report seconds, peak RSS and bytes/requests sent through the store.
* ``jv_write``: "another writer": one ``batch_upload`` that overwrites one file.
* ``boto3``: upload or download files with boto3's transfer manager (what ``aws s3
  cp/sync`` uses) at pinned ``TransferConfig`` settings.
* ``limit``: the store's own limit: the same bytes PUT then GET as 16 MiB objects, 16 in
  parallel, with plain boto3 calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCHRESULT "


# -- memory ---------------------------------------------------------------------------------
def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


# -- CPU ------------------------------------------------------------------------------------
def store_cpu() -> float | None:
    """CPU seconds the store's server has used so far (its pid in ``$BENCH_STORE_PID``,
    set by the parent), None when unknown: what the store spent during a step tells a
    slow store from a slow client."""
    pid = os.environ.get("BENCH_STORE_PID")
    return process_cpu(int(pid)) if pid else None


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- a store that counts bytes ----------------------------------------------------------------
def counting_store(url: str) -> Any:
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    class ByteCountingStore(WrappedStore):
        """Counts requests and payload bytes sent (put) and received (get) by the engine."""

        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            self._lock = threading.Lock()
            self.c = {"puts": 0, "bytes_put": 0, "gets": 0, "bytes_got": 0, "lists": 0}

        def _add(self, **kw: int) -> None:
            with self._lock:
                for k, v in kw.items():
                    self.c[k] += v

        def put(self, key: str, data: Any) -> None:
            self._add(puts=1, bytes_put=memoryview(data).nbytes)
            return self.inner.put(key, data)

        def put_if_absent(self, key: str, data: Any) -> bool:
            self._add(puts=1, bytes_put=memoryview(data).nbytes)
            return self.inner.put_if_absent(key, data)

        def get(self, key: str) -> bytes:
            data = self.inner.get(key)
            self._add(gets=1, bytes_got=len(data))
            return data

        def get_range(self, key: str, start: int, length: int) -> bytes:
            data = self.inner.get_range(key, start, length)
            self._add(gets=1, bytes_got=len(data))
            return data

        def get_range_into(self, key: str, start: int, buf: Any) -> int:
            n = self.inner.get_range_into(key, start, buf)
            self._add(gets=1, bytes_got=n)
            return n

        def list(self, prefix: str = "", start_after: str | None = None) -> Any:
            self._add(lists=1)
            return self.inner.list(prefix, start_after)

        def snapshot(self) -> dict[str, int]:
            with self._lock:
                return dict(self.c)

    return ByteCountingStore(open_store(url))


class Steps:
    """Runs timed steps and collects their measurements."""

    def __init__(self, store: Any = None) -> None:
        self.store = store
        self.out: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def timed(self, name: str, **extra: Any):  # type: ignore[no-untyped-def]
        before = self.store.snapshot() if self.store is not None else {}
        reset_peak()
        rec: dict[str, Any] = {"step": name, **extra}
        store0, cpu0 = store_cpu(), time.process_time()
        t0 = time.perf_counter()
        yield rec
        rec["seconds"] = time.perf_counter() - t0
        rec["cpu_s"] = time.process_time() - cpu0  # this process, every thread
        store1 = store_cpu()
        if store0 is not None and store1 is not None:
            rec["store_cpu_s"] = store1 - store0
        rec["peak_rss"] = status_bytes("VmHWM")
        if self.store is not None:
            after = self.store.snapshot()
            rec.update({k: after[k] - before.get(k, 0) for k in after})
        self.out.append(rec)


# -- file generation -----------------------------------------------------------------------------
def tree_paths(n: int, per_dir: int) -> list[str]:
    """``d0000/f000000`` ... : ``n`` files, ``per_dir`` per folder."""
    return [f"d{i // per_dir:04d}/f{i:07d}" for i in range(n)]


def generate_tree(root: Path, n: int, size: int, per_dir: int, seed: int = 0) -> None:
    """Write ``n`` incompressible files of ``size`` bytes below ``root``."""
    rnd = random.Random(seed)
    blob = rnd.randbytes(size * 64 + 4096)
    made: set[str] = set()
    for i, rel in enumerate(tree_paths(n, per_dir)):
        d = rel.rsplit("/", 1)[0]
        if d not in made:
            (root / d).mkdir(parents=True, exist_ok=True)
            made.add(d)
        # distinct contents for every file: a counter prefix and a rotating window
        off = (i * 61) % (len(blob) - size)
        data = i.to_bytes(8, "little") + blob[off + 8 : off + size]
        with open(root / rel, "wb") as f:
            f.write(data)


def scattered_edits(path: Path, n: int, size: int, seed: int) -> list[int]:
    """Overwrite ``n`` blocks of ``size`` random bytes at scattered offsets, in place."""
    rnd = random.Random(seed)
    total = path.stat().st_size
    offsets = sorted(rnd.randrange(0, total - size) for _ in range(n))
    fd = os.open(path, os.O_WRONLY)
    try:
        for off in offsets:
            os.pwrite(fd, rnd.randbytes(size), off)
    finally:
        os.close(fd)
    return offsets


def edit_one(path: Path, seed: int) -> None:
    """Replace one file's contents with new random bytes of the same size."""
    size = path.stat().st_size
    path.write_bytes(random.Random(seed).randbytes(size))


def copy_into(src: Path, dst: Path, link: bool) -> None:
    """Put ``src`` (a file or a folder) into folder ``dst``: hard links, or copies."""
    if src.is_file():
        if link:
            os.link(src, dst / src.name)
        else:
            shutil.copy2(src, dst / src.name)
        return
    for dirpath, _dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst / rel if rel != "." else dst
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            s = os.path.join(dirpath, name)
            if link:
                os.link(s, target / name)
            else:
                shutil.copy2(s, target / name)


def count_files(root: Path | str) -> int:
    """How many files (and links) there are below ``root``, at any depth."""
    return sum(len(f) for _d, _s, f in os.walk(root))


def store_size(store: Any, prefix: str) -> tuple[int, int]:
    """Bytes and objects stored under ``prefix``."""
    total = n = 0
    for info in store.list(prefix):
        total += info.size
        n += 1
    return total, n


# -- tasks ----------------------------------------------------------------------------------------
def task_jv(spec: dict[str, Any]) -> dict[str, Any]:
    """A jupyter-volume session: ``spec["steps"]`` run in order against one volume."""
    from jupyter_volume import Volume

    store = counting_store(spec["store"])
    vol = Volume(spec["volume"], store=store, create_if_missing=True)
    s = Steps(store)
    mount = None
    mount_dir = Path(spec["mount_dir"]) if spec.get("mount_dir") else None
    notes: dict[str, Any] = {}
    for step in spec["steps"]:
        op = step["op"]
        name = step.get("name", op)
        if op == "mount":
            with s.timed(name) as rec:
                mount = vol.mount(mount_dir, background=False)
            if step.get("count_files"):
                rec["files"] = count_files(mount_dir)
        elif op == "populate":
            copy_into(Path(step["src"]), mount_dir, step.get("link", False))  # type: ignore[arg-type]
        elif op == "generate":
            generate_tree(mount_dir, step["n"], step["size"], step["per_dir"], step.get("seed", 0))  # type: ignore[arg-type]
        elif op == "write_random":
            (mount_dir / step["path"]).write_bytes(
                random.Random(step["seed"]).randbytes(step["size"])
            )  # type: ignore[operator]
        elif op == "edit_one":
            edit_one(mount_dir / step["path"], step["seed"])  # type: ignore[operator]
        elif op == "scattered_edits":
            scattered_edits(mount_dir / step["path"], step["n"], step["size"], step["seed"])  # type: ignore[operator]
        elif op == "commit":
            assert mount is not None
            with s.timed(name) as rec:
                info = mount.commit(step.get("message"))
            rec["committed"] = info is not None
            if info is not None:
                rec["seq"] = info.seq
        elif op == "stream_commit":
            # The engine's streaming initial commit (Repository.commit_stream) of a folder,
            # walked in tree order: memory bounded whatever the file count.
            with s.timed(name) as rec:
                info = stream_commit(vol, Path(step["src"]))
            rec["committed"] = info is not None
        elif op == "other_write":
            # another writer, in its own process, overwrites one file
            run_child(
                "jv_write",
                {
                    "store": spec["store"],
                    "volume": spec["volume"],
                    "path": step["path"],
                    "size": step["size"],
                    "seed": step["seed"],
                },
            )
        elif op == "reload":
            assert mount is not None
            with s.timed(name):
                mount.reload()
            if step.get("check"):
                p = mount_dir / step["check"]  # type: ignore[operator]
                want = random.Random(step["seed"]).randbytes(step["size"])
                assert p.read_bytes() == want, "reload did not bring the other writer's file"
        elif op == "listdir":
            with s.timed(name) as rec:
                vol.refresh()
                entries = vol.listdir(step.get("path", "/"), recursive=step.get("recursive", False))
            rec["entries"] = len(entries)
        elif op == "set_retention":
            vol.set_retention(**step["policy"])
        elif op == "gc":
            with s.timed(name) as rec:
                report = vol.gc(grace=step.get("grace", 0))
            rec["report"] = (
                {k: v for k, v in vars(report).items() if isinstance(v, (int, float, str))}
                if hasattr(report, "__dict__")
                else str(report)
            )
        elif op == "store_size":
            total, n = store_size(store.inner, "vols/" + vol._resolve().id + "/")
            s.out.append({"step": name, "store_bytes": total, "store_objects": n})
        elif op == "pyspy":
            # Sample this process (every thread, native frames too) until "pyspy_stop":
            # py-spy from the bench extra, writing collapsed stacks to step["out"].
            spy = subprocess.Popen(
                [
                    step.get("py_spy", "py-spy"),
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--rate",
                    str(step.get("rate", 250)),
                    "--native",
                    "--format",
                    "raw",
                    "--output",
                    step["out"],
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # py-spy attaches
            notes["pyspy"] = spy
        elif op == "pyspy_stop":
            spy = notes.pop("pyspy")
            spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
            _o, err = spy.communicate(timeout=60)
            if spy.returncode not in (0, -2, 130):
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
        elif op == "detach":
            assert mount is not None
            mount._detach()  # skip unmount's final full scan: nothing is left to commit
            mount = None
        elif op == "unmount":
            assert mount is not None
            mount.unmount()
            mount = None
        else:
            raise ValueError(f"unknown step {op}")
    if mount is not None:
        mount._detach()
    return {"steps": s.out, "notes": notes}


def stream_commit(vol: Any, src: Path) -> Any:
    """Commit every file below ``src`` with ``Repository.commit_stream``."""
    from jupyter_volume.repository.tree import DIR, LINK, Entry

    repo = vol._repo
    writer = repo.writer()

    def walk(folder: str, prefix: str) -> Any:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            st = e.stat(follow_symlinks=False)
            if e.is_symlink():
                target = os.readlink(e.path)
                yield rel, Entry("", LINK, 0o777, len(target), st.st_mtime_ns, target=target)
            elif e.is_dir(follow_symlinks=False):
                yield rel, Entry("", DIR, st.st_mode & 0o7777, mtime_ns=st.st_mtime_ns)
                yield from walk(e.path, rel + "/")
            elif e.is_file(follow_symlinks=False):
                with open(e.path, "rb") as f:
                    yield (
                        rel,
                        writer.file_entry(f, mode=st.st_mode & 0o7777, mtime_ns=st.st_mtime_ns),
                    )

    rec, _stats = repo.commit_stream(walk(str(src), ""), writer=writer, message="initial")
    return rec


def task_limit(spec: dict[str, Any]) -> dict[str, Any]:
    """The store's own limit: ``nbytes`` PUT then GET as 16 MiB objects, 16 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    part = 16 << 20
    n = max(1, -(-int(spec["nbytes"]) // part))
    body = random.Random(9).randbytes(part)
    client = boto3_client(24)
    bucket, prefix = spec["bucket"], spec["prefix"]
    keys = [f"{prefix}{i:06d}" for i in range(n)]
    s = Steps()
    with ThreadPoolExecutor(16) as pool:
        with s.timed("put") as rec:
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=body), keys))
        rec["bytes"] = n * part

        def get(k: str) -> int:
            resp = client.get_object(Bucket=bucket, Key=k)
            total = 0
            for chunk in resp["Body"].iter_chunks(1 << 20):
                total += len(chunk)
            return total

        with s.timed("get") as rec:
            got = sum(pool.map(get, keys))
        rec["bytes"] = got
    for i in range(0, n, 1000):
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
        )
    return {"steps": s.out}


def task_jv_write(spec: dict[str, Any]) -> dict[str, Any]:
    import io

    from jupyter_volume import Volume

    vol = Volume(spec["volume"], store=spec["store"])
    data = random.Random(spec["seed"]).randbytes(spec["size"])
    t0 = time.perf_counter()
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(data), spec["path"])
    return {"seconds": time.perf_counter() - t0}


def boto3_client(max_pool: int) -> Any:
    import boto3
    from botocore.config import Config

    opts: dict[str, Any] = {
        "max_pool_connections": max_pool,
        "s3": {"addressing_style": "path"},
        "retries": {"mode": "standard"},
    }
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
        opts["request_checksum_calculation"] = "when_required"
        opts["response_checksum_validation"] = "when_required"
    return boto3.session.Session().client("s3", config=Config(**opts))


def task_boto3(spec: dict[str, Any]) -> dict[str, Any]:
    """Upload or download ``files`` (list of [local path, key]) with one TransferManager."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    cfg = spec["config"]
    client = boto3_client(cfg["max_concurrency"] + 8)
    tc = TransferConfig(
        multipart_threshold=cfg["multipart_threshold"],
        multipart_chunksize=cfg["multipart_chunksize"],
        max_concurrency=cfg["max_concurrency"],
        use_threads=True,
    )
    bucket = spec["bucket"]
    files = spec["files"]
    if spec.get("files_from"):
        root = Path(spec["files_from"])
        files = [[str(root / rel), spec["prefix"] + rel] for rel in spec["rels"]]
    s = Steps()
    nbytes = 0
    with s.timed(spec["direction"]) as rec:
        with create_transfer_manager(client, tc) as tm:
            futures = []
            for local, key in files:
                if spec["direction"] == "upload":
                    futures.append(tm.upload(local, bucket, key))
                else:
                    Path(local).parent.mkdir(parents=True, exist_ok=True)
                    futures.append(tm.download(bucket, key, local))
            for f in futures:
                f.result()
        nbytes = sum(os.path.getsize(local) for local, _k in files)
    rec["bytes"] = nbytes
    rec["files"] = len(files)
    return {"steps": s.out}


def task_fs_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The file system's own floor for a tree of small files, in the same run and folder:
    ``read``: walk ``src`` and stat, open, read and close every file (what any upload of
    the tree must do); ``create``: create, write and close every file of the same tree under
    ``dst`` (what any download must do, without even a temporary name and rename)."""
    src, dst = spec["src"], spec["dst"]
    s = Steps()
    with s.timed("read") as rec:
        n = 0
        todo = [src]
        while todo:
            with os.scandir(todo.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
                        continue
                    st = e.stat(follow_symlinks=False)
                    fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        # A buffer of the file's size (and one byte to see it end), as a
                        # reader of small files sizes it: a fixed 1 MiB one costs an
                        # allocation and fresh pages per file, 5x the system calls here
                        os.read(fd, st.st_size + 1)
                    finally:
                        os.close(fd)
                    n += 1
        rec["files"] = n
    data = random.Random(4).randbytes(spec["size"])
    os.sync()
    with s.timed("create"):
        create_files(dst, tree_paths(spec["n"], spec["per_dir"]), data)
    return {"steps": s.out}


def create_files(root: str | Path, rels: Iterable[str], data: bytes) -> None:
    """Create every one of ``rels`` below ``root`` holding ``data`` (none may exist yet;
    folders are made as needed): create, write, close, and nothing else, which is what
    any download of small files must do at least."""
    made: set[str] = set()
    for rel in rels:
        d = rel.rpartition("/")[0]
        if d not in made:
            os.makedirs(f"{root}/{d}", exist_ok=True)
            made.add(d)
        fd = os.open(f"{root}/{rel}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


TASKS = {
    "jv": task_jv,
    "jv_write": task_jv_write,
    "boto3": task_boto3,
    "limit": task_limit,
    "fs_floor": task_fs_floor,
}


def run_child(
    task: str, spec: dict[str, Any], env: dict[str, str] | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``task`` in a new Python process and return its JSON result."""
    root = str(Path(__file__).resolve().parent.parent)
    cenv = dict(os.environ if env is None else env)
    cenv["PYTHONPATH"] = root + os.pathsep + cenv.get("PYTHONPATH", "")
    p = subprocess.run(
        [sys.executable, "-m", "bench.worker", task],
        input=json.dumps(spec).encode(),
        capture_output=True,
        env=cenv,
        cwd=root,
        timeout=timeout,
    )
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(
            f"bench worker {task} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')[-4000:]}"
        )
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(
        f"bench worker {task} printed no result:\n{out[-2000:]}\n{p.stderr.decode(errors='replace')[-2000:]}"
    )


def main() -> None:
    task = sys.argv[1]
    spec = json.loads(sys.stdin.read())
    if spec.get("profile"):
        from pyinstrument import Profiler

        prof = Profiler(interval=0.002)
        prof.start()
        result = TASKS[task](spec)
        prof.stop()
        Path(spec["profile"]).write_text(
            prof.output_text(unicode=False, color=False, show_all=False)
        )
    else:
        result = TASKS[task](spec)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    # Leave without atexit hooks (mounts were detached; nothing else needs running).
    os._exit(0)


if __name__ == "__main__":
    main()
