"""Network file systems: propagation latency between live folders, and write throughput
of a live folder against a volume mount with explicit commits.

    .venv/bin/python -m bench.nfs_bench                       # 100 writes, 64 files x 1 MiB
    .venv/bin/python -m bench.nfs_bench --writes 10 --files 8 # a smoke test

Per store (a local folder, and a SeaweedFS it starts itself):

* latency: this process keeps a live folder A, a child process keeps a live folder B of
  the same network file system. For each of ``--writes`` writes, A's file is written
  and closed; the child polls B every 10 ms and reports when the new content is
  readable there. Latency = that moment minus close() (one machine, one clock).
  Writes are one after the other (the next starts once the last arrived).
* throughput: ``--files`` files of ``--file-mib`` MiB of random bytes written into (1) a
  live folder, timed until all are on the store (polled through the API), and (2) a
  volume mount followed by ``Mount.commit()``.

Target: p95 latency under 2 s. Prints a table and writes
``bench/results/nfs-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
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

READER = """
import sys, time
from pathlib import Path
from jupyter_volume import NetworkFileSystem
name, url, folder, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
m = NetworkFileSystem.from_name(name, store=url).mount(folder)
print("ready", flush=True)
for i in range(n):
    want = f"version {i}".encode()
    p = folder / "lat.txt"
    while True:
        try:
            if p.read_bytes() == want:
                break
        except OSError:
            pass
        time.sleep(0.01)
    print(i, time.time(), flush=True)
m.unmount()
"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def latency(url: str, env: dict[str, str], work: Path, writes: int) -> dict[str, Any]:
    from jupyter_volume import NetworkFileSystem

    nfs = NetworkFileSystem.from_name("bench-lat", create_if_missing=True, store=url)
    a = nfs.mount(work / "a")
    child = subprocess.Popen(
        [sys.executable, "-c", READER, "bench-lat", url, str(work / "b"), str(writes)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    out = []
    try:
        for i in range(writes):
            with open(work / "a" / "lat.txt", "wb") as f:
                f.write(f"version {i}".encode())
            closed = time.time()
            j, arrived = child.stdout.readline().split()
            assert int(j) == i
            out.append(float(arrived) - closed)
    finally:
        child.wait(timeout=120)
        a.unmount()
    return {
        "writes": writes,
        "p50_s": statistics.median(out),
        "p95_s": pct(out, 0.95),
        "max_s": max(out),
        "all_s": out,
    }


def throughput(url: str, work: Path, files: int, size: int) -> dict[str, Any]:
    from jupyter_volume import NetworkFileSystem, Volume

    blobs = [os.urandom(size) for _ in range(files)]
    nfs = NetworkFileSystem.from_name("bench-tp", create_if_missing=True, store=url)
    live = nfs.mount(work / "live")
    t0 = time.monotonic()
    for k, b in enumerate(blobs):
        (work / "live" / f"f{k}.bin").write_bytes(b)
    while len(nfs.listdir("/")) < files:
        time.sleep(0.05)
    t_live = time.monotonic() - t0
    live.unmount()

    vol = Volume.from_name("bench-tp", create_if_missing=True, store=url)
    m = vol.mount(work / "vol", background=False)
    t0 = time.monotonic()
    for k, b in enumerate(blobs):
        (work / "vol" / f"f{k}.bin").write_bytes(b)
    m.commit()
    t_vol = time.monotonic() - t0
    m.unmount()
    total = files * size / MiB
    return {
        "files": files,
        "mib": total,
        "live_s": t_live,
        "live_mib_s": total / t_live,
        "volume_commit_s": t_vol,
        "volume_mib_s": total / t_vol,
    }


def run_store(kind: str, url: str, env: dict[str, str], args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"nfs-bench-{kind}-") as tmp:
        work = Path(tmp)
        os.environ["JUPYTER_VOLUME_STATE_DIR"] = str(work / "state")
        env = {**env, "JUPYTER_VOLUME_STATE_DIR": str(work / "state-child")}
        lat = latency(url, env, work, args.writes)
        tp = throughput(url, work, args.files, args.file_mib * MiB)
    return {"store": kind, "latency": lat, "throughput": tp}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writes", type=int, default=100)
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--file-mib", type=int, default=1)
    p.add_argument("--only", choices=("local", "s3"), default=None)
    args = p.parse_args(argv)
    results = []
    env = dict(os.environ)
    from bench.run import LoadWatch

    watch = LoadWatch().__enter__()
    if args.only in (None, "local"):
        with tempfile.TemporaryDirectory(prefix="nfs-bench-store-") as store:
            results.append(run_store("local", Path(store).as_uri(), env, args))
    if args.only in (None, "s3"):
        from jupyter_volume.testing.seaweedfs import SeaweedFS

        server = SeaweedFS()
        server.start()
        try:
            bucket = server.create_bucket("nfs-bench")
            os.environ.update(server.env())
            url = f"s3://{bucket}/nfs?endpoint_url={server.endpoint}"
            results.append(run_store("s3", url, {**env, **server.env()}, args))
        finally:
            server.stop()
    print(
        f"{'store':6} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'live MiB/s':>11} {'volume MiB/s':>13}"
    )
    for r in results:
        lat, tp = r["latency"], r["throughput"]
        print(
            f"{r['store']:6} {lat['p50_s']:7.2f} {lat['p95_s']:7.2f} {lat['max_s']:7.2f} "
            f"{tp['live_mib_s']:11.1f} {tp['volume_mib_s']:13.1f}"
        )
    watch.__exit__(None, None, None)
    load = watch.summary()
    print(
        f"load average before {load['before']}, at most {load['max_during']} during"
        + (" (noisy: not a measurement of record)" if load["noisy"] else "")
    )
    results_dir = ROOT / "bench" / "results"
    out = results_dir / (
        unused_stem(results_dir, f"nfs-{dt.date.today()}-{socket.gethostname()}") + ".json"
    )
    out.write_text(json.dumps({"args": vars(args), "load": load, "results": results}, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
