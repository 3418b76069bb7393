"""Dicts: get/put latency against raw boto3, bulk update, len/items, contended incr.

    .venv/bin/python -m bench.dict_bench                  # the default sizes
    .venv/bin/python -m bench.dict_bench --quick          # a smoke test (seconds)

Starts its own SeaweedFS on loopback and measures, in one run on that server:

* get and put latency (p50, p99) of ``Dict.get`` / ``Dict.put`` with a ``--value-size``
  bytes value, and of a raw boto3 ``get_object`` / ``put_object`` of the same bytes on
  the same server (target: Dict p50 within 1.2x of boto3's);
* ``update`` of ``--update`` small entries (entries/s);
* ``len()`` and ``items()`` over ``--entries`` entries (entries/s);
* ``incr`` with ``--local-procs`` contending processes on a local-folder store and
  ``--s3-procs`` on SeaweedFS (ops/s in total).

Prints a table and writes ``bench/results/dict-<date>-<host>.json``. Run it on a quiet
machine: the numbers are ratios within one run, but a busy machine still skews them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
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

INCR_CHILD = """
import sys, time
from jupyter_volume import Dict
d = Dict.from_name(sys.argv[1], store=sys.argv[2])
n = int(sys.argv[3])
d.len()
print("ready", flush=True)
sys.stdin.readline()
for _ in range(n):
    d.incr("counter")
"""


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def timed(fn: Any, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn(i)``."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def latency(d: Any, client: Any, bucket: str, size: int, n: int) -> dict[str, Any]:
    """p50/p99 of Dict get/put and raw boto3 GET/PUT of the same bytes."""
    value = os.urandom(size)
    raw_key = f"bench-raw/{uuid.uuid4().hex}"
    for _ in range(min(5, n)):  # warm up connections on both paths
        d.put("warm", value)
        d.get("warm")
        client.put_object(Bucket=bucket, Key=raw_key, Body=value)
        client.get_object(Bucket=bucket, Key=raw_key)["Body"].read()
    out: dict[str, Any] = {"value_size": size, "n": n}
    runs = {
        "dict_put": timed(lambda i: d.put(f"lat-{i % 16}", value), n),
        "boto3_put": timed(lambda i: client.put_object(Bucket=bucket, Key=raw_key, Body=value), n),
        "dict_get": timed(lambda i: d.get(f"lat-{i % 16}"), n),
        "boto3_get": timed(
            lambda i: client.get_object(Bucket=bucket, Key=raw_key)["Body"].read(), n
        ),
    }
    # pop: each key popped once (filled first, untimed); its peer is what a pop without
    # a claim costs, a GET and a DELETE of the same bytes
    d.update({f"pop-{i}": value for i in range(n)})
    for i in range(n):
        client.put_object(Bucket=bucket, Key=f"{raw_key}-pop-{i}", Body=value)
    runs["dict_pop"] = timed(lambda i: d.pop(f"pop-{i}"), n)

    def get_delete(i: int) -> None:
        client.get_object(Bucket=bucket, Key=f"{raw_key}-pop-{i}")["Body"].read()
        client.delete_object(Bucket=bucket, Key=f"{raw_key}-pop-{i}")

    runs["boto3_get_delete"] = timed(get_delete, n)
    for name, xs in runs.items():
        out[name] = {"p50_ms": pct(xs, 0.5) * 1000, "p99_ms": pct(xs, 0.99) * 1000}
    out["pop_p50_ratio"] = out["dict_pop"]["p50_ms"] / out["boto3_get_delete"]["p50_ms"]
    for op in ("put", "get"):
        out[f"{op}_p50_ratio"] = out[f"dict_{op}"]["p50_ms"] / out[f"boto3_{op}"]["p50_ms"]
    return out


def bulk(d: Any, update: int, entries: int) -> dict[str, Any]:
    """update of ``update`` small entries; len() and items() over ``entries`` entries."""
    d.clear()
    t = time.perf_counter()
    d.update({f"u-{i:07d}": i for i in range(update)})
    update_s = time.perf_counter() - t
    # fill up to `entries` in batches (not timed)
    for start in range(update, entries, 10_000):
        d.update({f"u-{i:07d}": i for i in range(start, min(entries, start + 10_000))})
    t = time.perf_counter()
    n = d.len()
    len_s = time.perf_counter() - t
    t = time.perf_counter()
    m = sum(1 for _ in d.items())
    items_s = time.perf_counter() - t
    assert n == m == entries, (n, m, entries)
    return {
        "update_entries": update,
        "update_s": update_s,
        "update_per_s": update / update_s,
        "entries": entries,
        "len_s": len_s,
        "len_entries_per_s": n / len_s,
        "items_s": items_s,
        "items_entries_per_s": m / items_s,
    }


def contended_incr(url: str, env: dict[str, str], procs: int, each: int) -> dict[str, Any]:
    """``procs`` processes x ``each`` incr on one key; total ops/s from the common start."""
    from jupyter_volume import Dict

    name = f"bench-incr-{uuid.uuid4().hex[:8]}"
    Dict.objects.create(name, store=url)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", INCR_CHILD, name, url, str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(procs)
    ]
    for c in children:
        assert c.stdout is not None and c.stdout.readline() == "ready\n"
    t = time.perf_counter()
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    for c in children:
        assert c.wait(timeout=3600) == 0
    seconds = time.perf_counter() - t
    total = Dict.from_name(name, store=url)["counter"]
    assert total == procs * each, (total, procs * each)
    Dict.objects.delete(name, store=url)
    return {"procs": procs, "each": each, "seconds": seconds, "ops_per_s": total / seconds}


def main(argv: list[str] | None = None) -> int:
    """Run the Dict benchmark (see the module docstring); 0 on success."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value (latency)")
    p.add_argument("--latency-n", type=int, default=500, help="calls per latency series")
    p.add_argument("--update", type=int, default=10_000, help="entries in one update()")
    p.add_argument("--entries", type=int, default=100_000, help="entries for len()/items()")
    p.add_argument("--local-procs", type=int, default=16)
    p.add_argument("--s3-procs", type=int, default=4)
    p.add_argument("--incr-each", type=int, default=50, help="incr calls per process")
    args = p.parse_args(argv)
    if args.quick:
        args.latency_n, args.update, args.entries, args.incr_each = 30, 200, 1000, 5

    from bench.run import LoadWatch
    from jupyter_volume import Dict
    from jupyter_volume.store.s3 import S3Store, make_client
    from jupyter_volume.testing.seaweedfs import SeaweedFS

    watch = LoadWatch().__enter__()
    work = Path(tempfile.mkdtemp(prefix="jv-dict-bench-"))
    sw = SeaweedFS(volume_size_limit_mb=1024)
    sw.start()
    results: dict[str, Any] = {
        "host": socket.gethostname(),
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "args": vars(args),
    }
    try:
        bucket = sw.create_bucket(f"jv-dict-bench-{uuid.uuid4().hex[:6]}")
        env = {**os.environ, **sw.env()}
        os.environ.update(sw.env())
        client = make_client(
            endpoint_url=sw.endpoint,
            region=sw.region,
            aws_access_key_id=sw.access_key,
            aws_secret_access_key=sw.secret_key,
        )
        store = S3Store(bucket, "dict", endpoint_url=sw.endpoint, client=client)
        s3_url = f"s3://{bucket}/dict?endpoint_url={sw.endpoint}"
        d = Dict.from_name("bench", create_if_missing=True, store=store)
        print("latency ...", flush=True)
        results["latency"] = latency(d, client, bucket, args.value_size, args.latency_n)
        print("update, len, items ...", flush=True)
        results["bulk"] = bulk(d, args.update, args.entries)
        print("contended incr ...", flush=True)
        local_url = (work / "store").as_uri()
        results["incr_local"] = contended_incr(local_url, env, args.local_procs, args.incr_each)
        results["incr_s3"] = contended_incr(s3_url, env, args.s3_procs, args.incr_each)
    finally:
        sw.stop()
        shutil.rmtree(work, ignore_errors=True)
        watch.__exit__(None, None, None)
    results["load"] = watch.summary()

    lat, bulk_r = results["latency"], results["bulk"]
    rows = [
        ("get p50 / p99 (ms)", f"{lat['dict_get']['p50_ms']:.2f} / {lat['dict_get']['p99_ms']:.2f}",
         f"boto3 {lat['boto3_get']['p50_ms']:.2f} / {lat['boto3_get']['p99_ms']:.2f}",
         f"p50 ratio {lat['get_p50_ratio']:.2f} (target <= 1.2)"),
        ("put p50 / p99 (ms)", f"{lat['dict_put']['p50_ms']:.2f} / {lat['dict_put']['p99_ms']:.2f}",
         f"boto3 {lat['boto3_put']['p50_ms']:.2f} / {lat['boto3_put']['p99_ms']:.2f}",
         f"p50 ratio {lat['put_p50_ratio']:.2f} (target <= 1.2)"),
        ("pop p50 / p99 (ms)", f"{lat['dict_pop']['p50_ms']:.2f} / {lat['dict_pop']['p99_ms']:.2f}",
         f"boto3 GET+DELETE {lat['boto3_get_delete']['p50_ms']:.2f} / {lat['boto3_get_delete']['p99_ms']:.2f}",
         f"p50 ratio {lat['pop_p50_ratio']:.2f} (claim + delete: 3 requests)"),
        (f"update {bulk_r['update_entries']:,} entries", f"{bulk_r['update_per_s']:,.0f} entries/s", "", ""),
        (f"len() of {bulk_r['entries']:,}", f"{bulk_r['len_entries_per_s']:,.0f} entries/s", "", ""),
        (f"items() of {bulk_r['entries']:,}", f"{bulk_r['items_entries_per_s']:,.0f} entries/s", "", ""),
        (f"incr, {args.local_procs} procs, local", f"{results['incr_local']['ops_per_s']:,.0f} ops/s", "", ""),
        (f"incr, {args.s3_procs} procs, SeaweedFS", f"{results['incr_s3']['ops_per_s']:,.0f} ops/s", "", ""),
    ]  # fmt: skip
    for row in rows:
        print("  ".join(f"{c:<34}" for c in row).rstrip())
    load = results["load"]
    print(
        f"load average before {load['before']}, at most {load['max_during']} during"
        + (" (noisy: not a measurement of record)" if load["noisy"] else "")
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = (
        unused_stem(
            out,
            f"dict-{dt.date.today().isoformat()}-{socket.gethostname()}{'-quick' if args.quick else ''}",
        )
        + ".json"
    )
    (out / name).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote bench/results/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
