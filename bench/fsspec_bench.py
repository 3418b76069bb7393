"""volume:// against s3fs on one SeaweedFS: a tail read and a full sequential read.

    .venv/bin/pip install -e '.[bench]'          # s3fs is in the bench extra
    .venv/bin/python -m bench.fsspec_bench        # 1 GiB, 3 repetitions
    .venv/bin/python -m bench.fsspec_bench --size-mib 64 --reps 1   # a smoke test
    # as against a store 5 ms away (every request through a delaying proxy):
    .venv/bin/python -m bench.fsspec_bench --delay-ms 5 --modes tail,get,cat_file
    # s3fs pins aiobotocore (and so botocore); to keep the development venv's boto3,
    # give s3fs a venv of its own: its children only import s3fs.
    python -m venv /tmp/s3fs && /tmp/s3fs/bin/pip install s3fs
    .venv/bin/python -m bench.fsspec_bench --s3fs-python /tmp/s3fs/bin/python

Starts its own SeaweedFS, stores the same 1 GiB of pseudo-random bytes twice (once as a
file of a volume, once as a plain S3 object for s3fs), then, per repetition and each in
a fresh child process with empty caches:

* tail: open the file and read its last 1 MiB; seconds, and bytes fetched from the
  store (for volume://: every byte the store handed over, metadata included, counted
  by a wrapper around the store; for s3fs: what its read cache requested);
* sequential: read the whole file front to back in 4 MiB reads; seconds and MiB/s;
* get: ``fs.get`` of a folder of 1,000 files of 4 KiB to the local disk;
* cat_file: 200 calls of ``fs.cat_file``, each of another 4 KiB file (what zarr and
  pandas do per chunk or per file): the cost of one call.

Targets: sequential >= 1.0x s3fs; tail fetches < 4 MiB.
Prints a table and writes ``bench/results/fsspec-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import unused_stem  # noqa: E402

MiB = 1 << 20
BUCKET = "fsspec-bench"
VOLUME = "bench-data"
FILE = "data.bin"
READ = 4 * MiB
TAIL = MiB
SMALL_FILES = 1000
SMALL_SIZE = 4096
CALLS = 200
MODES = ("tail", "sequential", "get", "cat_file")


def write_random(path: Path, size: int, seed: int = 7) -> None:
    """``size`` bytes from a seeded PRNG (incompressible, no repeated blocks)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(rng.bytes(n))
            left -= n


# -- children: one measurement each, with cold caches --------------------------------------
def child(mode: str, tool: str, store_url: str, s3_opts: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this (fresh) process and return its numbers."""
    if tool == "volume":
        from jupyter_volume.fsspec import VolumeFileSystem
        from jupyter_volume.store import open_store
        from jupyter_volume.testing.wrappers import CountingStore

        class ByteCountingStore(CountingStore):
            def __init__(self, inner: Any) -> None:
                super().__init__(inner)
                self.nbytes = 0

            def get(self, key: str) -> bytes:
                data = super().get(key)
                self.nbytes += len(data)
                return data

            def get_range(self, key: str, start: int, length: int) -> bytes:
                data = super().get_range(key, start, length)
                self.nbytes += len(data)
                return data

        store = ByteCountingStore(open_store(store_url))
        fs = VolumeFileSystem(store=store, skip_instance_cache=True)
        top = f"volume://{VOLUME}"
        fetched = lambda f: store.nbytes  # noqa: E731
    else:
        import s3fs

        fs = s3fs.S3FileSystem(**s3_opts, skip_instance_cache=True)
        top = BUCKET

        def fetched(f: Any) -> int | None:
            return getattr(getattr(f, "cache", None), "total_requested_bytes", None)

    path = f"{top}/{FILE}"
    if mode in ("get", "cat_file"):
        return _small(mode, fs, top, fetched)
    t0 = time.perf_counter()
    with fs.open(path, "rb") as f:
        if mode == "tail":
            f.seek(-TAIL, 2)
            n = len(f.read())
        else:
            n = 0
            while piece := f.read(READ):
                n += len(piece)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "bytes_read": n, "bytes_fetched": fetched(f)}


def _small(mode: str, fs: Any, top: str, fetched: Any) -> dict[str, Any]:
    """The small-file modes of :func:`child`: ``get`` of the folder, or ``cat_file`` of
    ``CALLS`` of its files one call each."""
    t0 = time.perf_counter()
    if mode == "get":
        with tempfile.TemporaryDirectory(prefix="jv-fsspec-bench-get-") as tmp:
            fs.get(f"{top}/small/", f"{tmp}/out/", recursive=True)
            seconds = time.perf_counter() - t0
            n = sum(len(files) for _d, _s, files in os.walk(f"{tmp}/out"))
        assert n == SMALL_FILES, n
        nbytes = n * SMALL_SIZE
    else:
        nbytes = sum(len(fs.cat_file(f"{top}/small/f{i}.bin")) for i in range(CALLS))
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes_read": nbytes, "bytes_fetched": fetched(None)}


def run_child(
    mode: str, tool: str, store_url: str, s3_opts: dict, env: dict, python: str = sys.executable
) -> dict:
    with tempfile.TemporaryDirectory(prefix="jv-fsspec-bench-") as tmp:
        child_env = dict(env)
        child_env["JUPYTER_VOLUME_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold every time
        child_env["JUPYTER_VOLUME_STATE_DIR"] = str(Path(tmp) / "state")
        out = subprocess.run(
            [
                python,
                "-m",
                "bench.fsspec_bench",
                "--child",
                json.dumps([mode, tool, store_url, s3_opts]),
            ],
            env=child_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"{tool} {mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --child, one measurement)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--s3fs-python",
        default=sys.executable,
        help="the Python that runs the s3fs children (one with s3fs installed)",
    )
    ap.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="reach the store through a proxy that delays each request this long, as a "
        "store further away (bench/delayproxy.py); the data is stored without it",
    )
    ap.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"which measurements, comma-separated (default: {','.join(MODES)})",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        ap.error(f"unknown mode(s) {', '.join(unknown) or '(none given)'}: use {', '.join(MODES)}")

    from jupyter_volume import Volume
    from jupyter_volume.testing.seaweedfs import SeaweedFS

    size = args.size_mib * MiB
    sw = SeaweedFS(volume_size_limit_mb=1024)
    sw.start()
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        sw.create_bucket(BUCKET)
        env = {**os.environ, **sw.env()}
        os.environ.update(sw.env())
        store_url = f"s3://{BUCKET}/volumes?endpoint_url={sw.endpoint}"
        s3_opts = {
            "key": sw.access_key,
            "secret": sw.secret_key,
            "client_kwargs": {"endpoint_url": sw.endpoint, "region_name": sw.region},
        }
        with tempfile.TemporaryDirectory(prefix="jv-fsspec-bench-") as tmp:
            src = Path(tmp) / FILE
            print(f"writing {args.size_mib} MiB of random bytes", flush=True)
            write_random(src, size)
            vol = Volume.from_name(VOLUME, store=store_url, create_if_missing=True)
            client = sw.client()
            with vol.batch_upload(force=True) as batch:
                batch.put_file(src, FILE)
                for i in range(SMALL_FILES):
                    data = os.urandom(SMALL_SIZE)
                    batch.put_file(io.BytesIO(data), f"small/f{i}.bin")
                    client.put_object(Bucket=BUCKET, Key=f"small/f{i}.bin", Body=data)
            client.upload_file(str(src), BUCKET, FILE)
        if args.delay_ms:
            from urllib.parse import urlsplit

            from bench.delayproxy import start as start_proxy

            at = urlsplit(sw.endpoint)
            proxy = f"http://127.0.0.1:{start_proxy(at.hostname, at.port, args.delay_ms / 1000)}"
            store_url = f"s3://{BUCKET}/volumes?endpoint_url={proxy}"
            s3_opts["client_kwargs"]["endpoint_url"] = proxy  # type: ignore[index]
        from bench.run import LoadWatch

        watch = LoadWatch().__enter__()
        for rep in range(args.reps):
            for mode in modes:
                for tool in ("volume", "s3fs"):
                    python = args.s3fs_python if tool == "s3fs" else sys.executable
                    r = run_child(mode, tool, store_url, s3_opts, env, python)
                    results.setdefault(f"{mode}/{tool}", []).append(r)
                    print(f"rep {rep + 1} {mode:10s} {tool:6s} {r}", flush=True)
        watch.__exit__(None, None, None)
        load = watch.summary()
    finally:
        sw.stop()
    s3fs_version = subprocess.run(
        [args.s3fs_python, "-c", "import s3fs; print(s3fs.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()

    def med(key: str, field: str) -> float | None:
        xs = [r[field] for r in results.get(key, []) if r.get(field) is not None]
        return statistics.median(xs) if xs else None

    what = {
        "tail": "last 1 MiB",
        "sequential": f"{args.size_mib} MiB",
        "get": f"{SMALL_FILES:,} x 4 KiB",
        "cat_file": f"{CALLS} calls, 4 KiB each",
    }
    rows = []
    for mode in modes:
        v, s = med(f"{mode}/volume", "seconds"), med(f"{mode}/s3fs", "seconds")
        rows.append(
            {
                "case": f"{mode} ({what[mode]})",
                "volume_s": v,
                "s3fs_s": s,
                "speed_vs_s3fs": (s / v) if v and s else None,
                "volume_fetched_MiB": (med(f"{mode}/volume", "bytes_fetched") or 0) / MiB,
                "s3fs_fetched_MiB": (med(f"{mode}/s3fs", "bytes_fetched") or 0) / MiB,
            }
        )
    print(
        "\n| case | volume:// s | s3fs s | speed vs s3fs | volume fetched MiB | s3fs fetched MiB |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['volume_s']:.3f} | {r['s3fs_s']:.3f} | "
            f"{r['speed_vs_s3fs']:.2f}x | {r['volume_fetched_MiB']:.2f} | {r['s3fs_fetched_MiB']:.2f} |"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    far = f"-delay{args.delay_ms:g}ms" if args.delay_ms else ""
    path = out / (unused_stem(out, f"fsspec-{stamp}-{socket.gethostname()}{far}") + ".json")
    args_out = {**vars(args), "s3fs_python": Path(args.s3fs_python).name}  # no machine paths
    doc = {
        "rows": rows,
        "raw": results,
        "args": args_out,
        "load": load,
        "versions": {"s3fs": s3fs_version},
    }
    path.write_text(json.dumps(doc, indent=2))
    print(
        f"load average before {load['before']}, at most {load['max_during']} during"
        + (" (noisy: not a measurement of record)" if load["noisy"] else "")
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
