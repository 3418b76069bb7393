"""Scenario (f): many writers committing to one volume at once.

``N`` processes each mount the same volume into a folder of their own, wait for a
common start, then write their own file and commit it ``COMMITS`` times (mounts with
``settle=0``: the default 1 s quiet interval would be waited for at every commit), and
stay until the last of them is done (so no writer's shut-down takes CPU from those
still committing). Reported:
acknowledged commits per second over the whole run (from the common start to the last
acknowledgement), p50/p99 latency of one ``commit()``, and lost updates: a writer's
acknowledged version that is missing from the commit that acknowledged it, or a final
file that is not its writer's last version (must be 0).

    .venv/bin/python -m bench.many_writers --store local --writers 1,16,64
    .venv/bin/python -m bench.many_writers --store seaweedfs --writers 1,16 --commits 5
    .venv/bin/python -m bench.many_writers --writers 64 --commits 20 --profile DIR

``--profile DIR`` runs each writer's commit loop under cProfile with a CPU clock
(``time.process_time``: waiting is not counted), writes ``DIR/<writer>.prof`` and
``DIR/summary.txt`` (all writers together, by cumulative CPU time). With dozens of
writer processes, sampling profilers lose most samples; this counts every call.

``--mode repo`` commits through the repository layer instead of a mount (no folder
scan, no quiet gate): the engine's own contention cost.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _content(who: int, i: int) -> bytes:
    # Above the inline limit, so each version is a real chunk in a pack.
    return (f"writer {who} version {i}\n".encode()) * 64


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One writer: mount (or open), say ready, wait for the start, commit N times."""
    from jupyter_volume import Volume
    from jupyter_volume.store import open_store

    who, sync = spec["who"], Path(spec["sync"])
    store = open_store(spec["url"])
    vol = Volume.from_name(spec["volume"], store=store)
    requests = _count_requests(store)
    lat: list[float] = []
    acks: list[tuple[str, int, int]] = []  # (path, version, seq)
    path = f"w{who:03d}.bin"
    if spec["mode"] == "mount":
        folder = Path(spec["work"]) / f"mnt-{who}"
        # Commits only when told, and with no settle interval: a file written just before
        # commit() would otherwise be waited for (1 s by default) until it stays quiet,
        # which measures the quiet policy, not the commit path.
        mnt = vol.mount(folder, background=False, settle=spec.get("settle", 0.0))
        (sync / f"ready-{who}").touch()
        _wait(sync / "go")
        requests.clear()
        prof = _profiler(spec)
        cpu0 = os.times()
        for i in range(spec["commits"]):
            (folder / path).write_bytes(_content(who, i))
            t0 = time.perf_counter()
            info = mnt.commit()
            lat.append(time.perf_counter() - t0)
            acks.append((path, i, info.seq if info else -1))
        _profiled(prof, spec)
    else:
        repo = vol._repo
        repo.head()
        (sync / f"ready-{who}").touch()
        _wait(sync / "go")
        requests.clear()
        prof = _profiler(spec)
        cpu0 = os.times()
        for i in range(spec["commits"]):
            t0 = time.perf_counter()
            w = repo.writer()
            rec, _ = repo.commit({path: w.bytes_entry(_content(who, i))}, writer=w)
            lat.append(time.perf_counter() - t0)
            acks.append((path, i, rec.seq if rec else -1))
        _profiled(prof, spec)
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    end = time.time()
    # Stay until every writer is done: a writer that finished early and shut down (its
    # interpreter's exit, its mount's teardown) would take CPU from those still committing.
    (sync / f"done-{who}").touch()
    _wait(sync / "end")
    if spec["mode"] == "mount":
        mnt._detach()  # nothing is left to commit: skip unmount's final scan
    return {
        "who": who,
        "lat": lat,
        "acks": acks,
        "end": end,
        "cpu": cpu,
        "requests": dict(requests),
    }


def _key_kind(params: dict[str, Any]) -> str:
    """The part of the repository a request touches: ``log``, ``intents``, ``index``..."""
    key = params.get("Key") or params.get("Prefix") or ""
    parts = key.split("/")
    return next((p for p in reversed(parts) if p in _KINDS), "")


_KINDS = {"log", "intents", "index", "packs", "trees", "head", "config", "gc", "format"}


def _count_requests(store: Any) -> dict[str, int]:
    """Count the S3 requests ``store`` sends, by operation (empty on a local folder).
    Each request costs a writer a few ms of CPU, and with dozens of writers on two
    cores that CPU, not the network, bounds the throughput."""
    counts: dict[str, int] = {}
    client = getattr(store, "_client", None)
    if client is not None:

        def count(model: Any, params: dict[str, Any], **_kw: Any) -> None:
            op = f"{model.name} {_key_kind(params)}".rstrip()
            counts[op] = counts.get(op, 0) + 1

        client.meta.events.register("before-parameter-build.s3", count)
    return counts


def _profiler(spec: dict[str, Any]) -> Any:
    if not spec.get("profile"):
        return None
    import cProfile

    prof = cProfile.Profile(time.process_time)
    prof.enable()
    return prof


def _profiled(prof: Any, spec: dict[str, Any]) -> None:
    if prof is not None:
        prof.disable()
        prof.dump_stats(str(Path(spec["profile"]) / f"{spec['who']}.prof"))


def profile_summary(folder: Path, lines: int = 45) -> str:
    """Every writer's profile in ``folder`` added up, by cumulative CPU time."""
    import io
    import pstats

    files = sorted(str(p) for p in folder.glob("*.prof"))
    out = io.StringIO()
    stats = pstats.Stats(files[0], stream=out)
    for f in files[1:]:
        stats.add(f)
    stats.strip_dirs().sort_stats("cumulative").print_stats(lines)
    # pstats names every file it read (this machine's paths): keep the table only
    kept = [ln for ln in out.getvalue().splitlines() if not ln.rstrip().endswith(".prof")]
    return f"{len(files)} writers' commit loops, CPU time (cProfile, time.process_time)\n" + (
        "\n".join(kept).strip() + "\n"
    )


def _wait(p: Path, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not p.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no start signal at {p}")
        time.sleep(0.005)


def _until_all(
    sync: Path, prefix: str, procs: list[subprocess.Popen[str]], deadline: float
) -> None:
    """Until every writer has left a ``prefix*`` file in ``sync`` (or one failed, or the
    deadline passed: the results then say what went wrong)."""
    while len(list(sync.glob(prefix + "*"))) < len(procs):
        if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def run(
    url: str,
    env: dict[str, str],
    writers: int,
    commits: int = 5,
    mode: str = "mount",
    settle: float = 0.0,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run ``writers`` processes against a fresh volume on ``url``; return the figures."""
    from jupyter_volume import FileEntryType, Volume
    from jupyter_volume.store import open_store

    name = f"writers-{uuid.uuid4().hex[:8]}"
    store = open_store(url)
    Volume.objects.create(name, store=store)
    with tempfile.TemporaryDirectory(prefix="jv-writers-") as work:
        sync = Path(work) / "sync"
        sync.mkdir()
        procs = []
        for who in range(writers):
            spec = {
                "who": who,
                "sync": str(sync),
                "url": url,
                "volume": name,
                "commits": commits,
                "mode": mode,
                "work": work,
                "settle": settle,
                "profile": profile,
            }
            child_env = {
                **os.environ,
                **env,
                "JUPYTER_VOLUME_CACHE_DIR": f"{work}/cache-{who}",
                "JUPYTER_VOLUME_STATE_DIR": f"{work}/state-{who}",
                "JUPYTER_VOLUME_PROGRESS": "0",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.many_writers", "--child", json.dumps(spec)],
                    cwd=str(ROOT),
                    env=child_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 600
        _until_all(sync, "ready-", procs, deadline)
        start = time.time()
        (sync / "go").touch()
        _until_all(sync, "done-", procs, deadline)
        (sync / "end").touch()
        results = []
        errors = []
        for p in procs:
            out, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                errors.append(err[-2000:])
                continue
            results.append(json.loads(out.strip().splitlines()[-1]))
    if errors:
        raise RuntimeError(f"{len(errors)} writer(s) failed:\n" + "\n".join(errors[:3]))
    end = max(r["end"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    acked = sum(len(r["acks"]) for r in results)
    # Lost updates: an acknowledged version not in the commit that acknowledged it,
    # or a final file that is not its writer's last version.
    vol = Volume.from_name(name, store=open_store(url))
    lost = 0
    for r in results:
        for path, i, seq in r["acks"]:
            try:
                got = b"".join(vol.read_file(path, at=seq))
            except Exception:  # noqa: BLE001 - counted as lost
                got = b""
            lost += got != _content(r["who"], i)
        path, i, _seq = r["acks"][-1]
        lost += b"".join(vol.read_file(path)) != _content(r["who"], i)
    files = [e for e in vol.listdir("/", recursive=True) if e.type == FileEntryType.FILE]
    records = vol.history()
    return {
        "writers": writers,
        "commits_each": commits,
        "mode": mode,
        "settle": settle,
        "acknowledged": acked,
        "seconds": end - start,
        "commits_per_s": acked / (end - start),
        "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "max_s": lat[-1],
        "records": len(records) - 1,
        "lost_updates": lost,
        "files": len(files),
        # CPU the writers spent from the start to their last commit, per acknowledged
        # commit: on a machine with few cores this, not waiting, bounds the throughput.
        "cpu_ms_per_commit": 1000 * sum(r["cpu"] for r in results) / acked,
        # S3 requests the writers sent per acknowledged commit, by operation
        "requests_per_commit": {
            op: round(sum(r["requests"].get(op, 0) for r in results) / acked, 2)
            for op in sorted({op for r in results for op in r["requests"]})
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--store", default="local", choices=["local", "seaweedfs"])
    ap.add_argument("--writers", default="1,16,64")
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--mode", default="mount", choices=["mount", "repo"])
    ap.add_argument("--profile", help="folder for per-writer cProfile stats and a summary")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return
    counts = [int(x) for x in a.writers.split(",")]
    prof = str(Path(a.profile).resolve()) if a.profile else None
    if prof:
        Path(prof).mkdir(parents=True, exist_ok=True)
    if a.store == "local":
        with tempfile.TemporaryDirectory(prefix="jv-writers-store-") as d:
            for n in counts:
                res = run(Path(d).as_uri(), {}, n, a.commits, a.mode, profile=prof)
                print(json.dumps(res), flush=True)
    else:
        from jupyter_volume.testing.seaweedfs import SeaweedFS

        with SeaweedFS() as sw:
            os.environ.update(sw.env())
            sw.create_bucket("bench")
            url = f"s3://bench/w?endpoint_url={sw.endpoint}"
            for n in counts:
                print(
                    json.dumps(run(url, sw.env(), n, a.commits, a.mode, profile=prof)), flush=True
                )
    if prof:
        summary = profile_summary(Path(prof))
        (Path(prof) / "summary.txt").write_text(summary)
        print(summary)


if __name__ == "__main__":
    main()
