"""Where the time of the throughput scenarios goes: py-spy profiles of jupyter-volume.

    .venv/bin/python -m bench.profile                 # (a), (b) and (d), about 4 minutes
    .venv/bin/python -m bench.profile --only a --size-mib 256

Starts its own SeaweedFS on loopback (as ``python -m bench`` does), then runs each
jupyter-volume step of scenarios (a) and (b) in a fresh worker process under py-spy
(every thread, native frames included, 250 samples a second, idle threads left out):

* ``a-commit``: commit of one 1 GiB file written into a mount;
* ``a-mount``: mount of that volume into an empty folder;
* ``b-commit``: commit of 10,000 x 4 KiB files;
* ``b-mount``: mount of those;
* ``d-commit``: commit of 100 scattered 64 KiB edits in the 1 GiB file.

For each it writes ``bench/results/profiles/<date>-<step>.txt``: the share of samples per
category (jupyter-volume's own Python; hashing; compression; copies; system calls,
i.e. the kernel's file system and network work; the S3 client library; the
interpreter and other libraries), then the 30 hottest leaf frames, then the collapsed
stacks themselves (``stack;stack;... count``, loadable in speedscope or flamegraph.pl).
A category is decided by the innermost frame that names one: a system call made from
our code counts as a system call, time in our Python lines as our own.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.worker import run_child  # noqa: E402

MiB = 1 << 20
BUCKET = "jv-profile"
SCENARIOS = ("a", "b", "d")

#: (category, substrings of a frame that put a sample in it), tried from the innermost
#: frame outwards; the first frame that matches any decides.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("hashing (blake3)", ("blake3",)),
    ("compression (zstd)", ("zstd", "ZSTD")),
    ("memory copies", ("memcpy", "memmove", "__memcpy", "__memmove")),
    (
        "system calls from our code (kernel: file reads and writes, renames, opens)",
        (
            "(libc.so",
            "__libc_",
            "syscall",
            "pwrite",
            "__GI_",
            "(ld-linux",
        ),
    ),
    (
        "S3 client library (botocore, urllib3, http.client)",
        ("botocore/", "urllib3/", "http/client", "s3transfer/"),
    ),
    ("jupyter-volume's own Python", ("jupyter_volume/",)),
    ("sqlite", ("sqlite",)),
]
OTHER = "interpreter and other libraries"


#: Where a thread waits for work or for another thread (py-spy counts a thread blocked
#: in a native futex wait as busy): samples whose innermost Python frame is one of these.
IDLE = "idle: a thread waiting for work or for other threads"
IDLE_FRAMES = (
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread.join (threading.py",
    "_wait_for_tstate_lock (threading.py",
    "(queue.py",
    "Future.result (concurrent/futures/_base.py",
)
#: Waiting for the store: a socket read or write below the HTTP client.
NETWORK = "network: waiting for the store (socket reads and writes)"
NETWORK_FRAMES = (
    "(socket.py",
    "(ssl.py",
    "HTTPConnection.send (http/client.py",
    "(urllib3/util/wait.py",
)


def categorize(stack: list[str]) -> str:
    """The category of one sample, from its frames (outermost first)."""
    python = [f for f in stack if ".py:" in f]
    native_leaf = bool(python) and stack[-1] != python[-1]
    if python and native_leaf:
        inner = python[-1]
        if any(n in inner for n in IDLE_FRAMES):
            return IDLE
        if any(n in inner for n in NETWORK_FRAMES):
            return NETWORK
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return OTHER


def summarize(raw: str) -> tuple[dict[str, int], collections.Counter[str], int]:
    """Samples per category, samples per leaf frame, total samples of py-spy's raw
    (collapsed) output."""
    cats: dict[str, int] = collections.defaultdict(int)
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        n = int(count)
        stack = stack_text.split(";")
        total += n
        cats[categorize(stack)] += n
        leaves[stack[-1]] += n
    return dict(cats), leaves, total


def report(step: str, seconds: float, raw: str) -> str:
    """The text written for one profiled step."""
    cats, leaves, total = summarize(raw)
    busy = total - cats.get(IDLE, 0)
    lines = [
        f"# py-spy profile of {step}: {seconds:.2f} s, {total} samples of all threads",
        "",
        "share of samples by category (innermost frame that names one); the second column",
        "leaves out idle threads (pool workers waiting for work, waits on futures):",
    ]
    for name, n in sorted(cats.items(), key=lambda kv: -kv[1]):
        of_busy = "      -" if name == IDLE else f"{100 * n / max(busy, 1):5.1f} %"
        lines.append(f"  {100 * n / max(total, 1):5.1f} %  {of_busy}  {name}")
    lines += ["", "hottest leaf frames:"]
    for frame, n in leaves.most_common(30):
        lines.append(f"  {100 * n / max(total, 1):5.1f} %  {frame}")
    lines += ["", "collapsed stacks (py-spy --format raw):", raw]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Profile the chosen steps; 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--only",
        default="a,b,d",
        help="scenarios: a (one big file), b (small files), d (100 edits in the big file)",
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="the big file of (a)")
    ap.add_argument("--files", type=int, default=10_000, help="small files of (b)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "profiles"))
    ap.add_argument(
        "--reanalyze",
        nargs="+",
        metavar="TXT",
        help="only re-make the summaries of profiles written before, from their stacks",
    )
    args = ap.parse_args(argv)
    if args.reanalyze:
        for name in args.reanalyze:
            path = Path(name)
            text = path.read_text()
            head = text.splitlines()[0]
            step = head.split("profile of ", 1)[1].split(":", 1)[0]
            seconds = float(head.split(": ", 1)[1].split(" s,", 1)[0])
            raw = text.split("collapsed stacks (py-spy --format raw):\n", 1)[1]
            path.write_text(report(step, seconds, raw.rstrip("\n")))
            print("\n".join(path.read_text().splitlines()[:16]) + "\n")
        return 0
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenarios {bad}: choose from {', '.join(SCENARIOS)}")
    from bench.run import compile_package

    compile_package()  # as the bench does: no module compiled from source under py-spy
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy not found: pip install py-spy (it is in the bench extra)")

    from jupyter_volume.testing.seaweedfs import SeaweedFS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="jv-profile-"))
    sw = SeaweedFS(volume_size_limit_mb=1024)
    sw.start()
    try:
        sw.create_bucket(BUCKET)
        env = {**os.environ, **sw.env(), "JUPYTER_VOLUME_SETTLE_INTERVAL": "0"}

        def session(
            volume: str, steps: list[dict[str, Any]], folder: str, profiled: str
        ) -> dict[str, Any]:
            raw = work / f"{profiled}.raw"
            spec = {
                "store": f"s3://{BUCKET}/{volume}",
                "volume": volume,
                "mount_dir": str(work / folder),
                "steps": [],
            }
            for s in steps:
                if s.get("profiled"):
                    spec["steps"] += [
                        {"op": "pyspy", "out": str(raw), "py_spy": py_spy},
                        {k: v for k, v in s.items() if k != "profiled"},
                        {"op": "pyspy_stop"},
                    ]
                else:
                    spec["steps"].append(s)
            cenv = dict(env, JUPYTER_VOLUME_CACHE_DIR=str(work / f"cache-{profiled}"))
            res = run_child("jv", spec, env=cenv)
            timed = next(s for s in res["steps"] if s["step"] == profiled)
            text = report(profiled, timed["seconds"], raw.read_text())
            path = out / f"{dt.date.today().isoformat()}-{profiled}.txt"
            path.write_text(text)
            print("\n".join(text.splitlines()[:14]), flush=True)
            print(f"wrote {path}\n", flush=True)
            return res

        src = work / "src"
        src.mkdir()
        if "a" in only or "d" in only:
            from bench.run import write_random

            write_random(src / "big.bin", args.size_mib * MiB, seed=1)
        big = {"op": "populate", "src": str(src / "big.bin"), "link": False}
        small = {"op": "generate", "n": args.files, "size": 4096, "per_dir": 1000, "seed": 2}
        for scenario, content in (("a", big), ("b", small)):
            if scenario not in only:
                continue
            first = [
                {"op": "mount", "name": "mount_empty"},
                content,
                {"op": "commit", "name": f"{scenario}-commit", "profiled": True},
            ]
            session(scenario, first, f"{scenario}1", f"{scenario}-commit")
            again = [{"op": "mount", "name": f"{scenario}-mount", "profiled": True}]
            session(scenario, again, f"{scenario}2", f"{scenario}-mount")
        if "d" in only:
            edits = [
                {"op": "mount", "name": "mount_empty"},
                big,
                {"op": "commit", "name": "d-initial"},
                {
                    "op": "scattered_edits",
                    "path": "big.bin",
                    "n": 100,
                    "size": 64 << 10,
                    "seed": 300,
                },
                {"op": "commit", "name": "d-commit", "profiled": True},
            ]
            session("d", edits, "d1", "d-commit")
    finally:
        sw.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
