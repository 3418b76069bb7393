"""The order in which the suite hands out its files (tests/conftest.py): files marked
slow first, then most tests first, each file's tests in their own order."""

from __future__ import annotations

from pathlib import Path

try:
    from .children import run_pytest
except ImportError:
    from children import run_pytest  # type: ignore[no-redef]

TESTS = Path(__file__).resolve().parent


def _collected(*files: str) -> list[str]:
    p = run_pytest("--collect-only", "-q", *(str(TESTS / f) for f in files), cwd=TESTS.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    return [line for line in p.stdout.splitlines() if "::" in line]


def _files(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(i.partition("::")[0].rpartition("/")[2] for i in ids))


def test_files_marked_slow_come_first_then_the_ones_with_most_tests() -> None:
    # test_bench_order.py: quick, a few tests; test_pools.py: quick; test_model_dict.py:
    # two tests of about a minute (marked slow); test_engine_crash.py: marked slow too
    ids = _collected(
        "test_pools.py", "test_bench_order.py", "test_model_dict.py", "test_engine_crash.py"
    )
    files = _files(ids)
    assert set(files[:2]) == {"test_model_dict.py", "test_engine_crash.py"}, files
    n = {f: sum(1 for i in ids if i.partition("::")[0].endswith(f)) for f in files}
    assert n[files[0]] >= n[files[1]] and n[files[2]] >= n[files[3]], n
    # a file's own tests stay together and in their order
    alone = _collected("test_engine_crash.py")
    assert [i for i in ids if "test_engine_crash.py" in i] == alone
