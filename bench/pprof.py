"""Read a Go CPU profile (``pprof`` format) and say where its samples went.

The bench's store, SeaweedFS, is a Go program: started with ``-cpuprofile`` it writes
such a profile when it stops. This reads one without Go's toolchain: the file is a
gzipped protocol buffer (``profile.proto``), of which only samples, locations,
functions and the string table are needed, so the wire format is decoded by hand.

    .venv/bin/python -m bench.pprof weed.prof          # flat and cumulative tops
"""

from __future__ import annotations

import argparse
import collections
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# field numbers in profile.proto
_P_SAMPLE_TYPE, _P_SAMPLE, _P_LOCATION, _P_FUNCTION, _P_STRINGS = 1, 2, 4, 5, 6
_P_PERIOD = 12
_VT_TYPE, _VT_UNIT = 1, 2
_S_LOCATION, _S_VALUE = 1, 2
_L_ID, _L_LINE = 1, 4
_LINE_FUNCTION = 1
_F_ID, _F_NAME = 1, 2


def _varint(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(b: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            value = b[i : i + n]
            i += n
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        elif wire == 5:
            value, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"not a pprof profile: wire type {wire} at byte {i}")
        yield number, wire, value


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field's values, packed or not."""
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


@dataclass
class Profile:
    """Samples as stacks of function names (innermost first) with their values."""

    sample_types: list[tuple[str, str]] = field(default_factory=list)
    samples: list[tuple[list[str], list[int]]] = field(default_factory=list)
    period: int = 0

    def values(self, unit: str = "nanoseconds") -> list[tuple[list[str], int]]:
        """Each sample's stack and its value of the first sample type in ``unit``
        (CPU time for a CPU profile); the sample counts if there is none."""
        col = next((k for k, (_t, u) in enumerate(self.sample_types) if u == unit), 0)
        return [(stack, vals[col]) for stack, vals in self.samples]


def load(path: str | Path) -> Profile:
    """Parse the (gzipped) pprof file at ``path``."""
    raw = Path(path).read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    strings: list[str] = []
    types: list[tuple[int, int]] = []
    samples: list[tuple[list[int], list[int]]] = []
    locations: dict[int, list[int]] = {}
    functions: dict[int, int] = {}
    period = 0
    for number, _wire, value in _fields(data):
        if number == _P_STRINGS:
            strings.append(bytes(value).decode("utf-8", "replace"))  # type: ignore[arg-type]
        elif number == _P_SAMPLE_TYPE:
            t = dict((n, v) for n, _w, v in _fields(value))  # type: ignore[arg-type]
            types.append((int(t.get(_VT_TYPE, 0)), int(t.get(_VT_UNIT, 0))))  # type: ignore[arg-type]
        elif number == _P_SAMPLE:
            ids: list[int] = []
            vals: list[int] = []
            for n, _w, v in _fields(value):  # type: ignore[arg-type]
                if n == _S_LOCATION:
                    ids += _ints(v)
                elif n == _S_VALUE:
                    vals += _ints(v)
            samples.append((ids, vals))
        elif number == _P_LOCATION:
            lid, funcs = 0, []
            for n, _w, v in _fields(value):  # type: ignore[arg-type]
                if n == _L_ID:
                    lid = int(v)  # type: ignore[arg-type]
                elif n == _L_LINE:
                    funcs += [int(x) for m, _w2, x in _fields(v) if m == _LINE_FUNCTION]  # type: ignore[arg-type,misc]
            locations[lid] = funcs
        elif number == _P_FUNCTION:
            f = dict((n, v) for n, _w, v in _fields(value))  # type: ignore[arg-type]
            functions[int(f.get(_F_ID, 0))] = int(f.get(_F_NAME, 0))  # type: ignore[arg-type]
        elif number == _P_PERIOD:
            period = int(value)  # type: ignore[arg-type]
    prof = Profile(period=period)
    prof.sample_types = [(strings[t], strings[u]) for t, u in types]
    for ids, vals in samples:
        stack = [strings[functions.get(f, 0)] for lid in ids for f in locations.get(lid, [])]
        prof.samples.append((stack, vals))
    return prof


def report(prof: Profile, title: str, top: int = 25, callers_of: tuple[str, ...] = ()) -> str:
    """Text: total CPU, the functions by own (flat) and by total (cumulative) share, and
    for each of ``callers_of`` the call chains that lead to it."""
    vals = prof.values()
    total = sum(v for _s, v in vals) or 1
    flat: collections.Counter[str] = collections.Counter()
    cum: collections.Counter[str] = collections.Counter()
    for stack, v in vals:
        if stack:
            flat[stack[0]] += v
        for name in set(stack):
            cum[name] += v
    lines = [f"# Go CPU profile of {title}: {total / 1e9:.2f} s of CPU", "", "own time (flat):"]
    lines += [f"  {100 * v / total:5.1f} %  {n}" for n, v in flat.most_common(top)]
    lines += ["", "with what it calls (cumulative):"]
    lines += [f"  {100 * v / total:5.1f} %  {n}" for n, v in cum.most_common(top * 2)]
    for target in callers_of:
        chains: collections.Counter[str] = collections.Counter()
        for stack, v in vals:
            if target in stack:
                i = stack.index(target)
                chains[" <- ".join(s.rsplit("/", 1)[-1] for s in stack[i : i + 7])] += v
        lines += ["", f"what calls {target}:"]
        lines += [f"  {100 * v / total:5.1f} %  {c}" for c, v in chains.most_common(8)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the report of one profile file."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--callers", nargs="*", default=[], help="function names to trace up")
    args = ap.parse_args(argv)
    print(report(load(args.profile), args.profile, args.top, tuple(args.callers)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
