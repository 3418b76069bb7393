"""The test servers die with the process that started them, when it dies without
stopping them (a pytest worker killed by the OOM killer or SIGKILL runs no teardown)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jupyter_volume.testing._server import pid_running, terminate_group, tied_to_this_process
from jupyter_volume.testing.seaweedfs import remove_sockets

try:
    from .children import run_pytest
except ImportError:
    from children import run_pytest  # type: ignore[no-redef]

STARTER = """
import json, sys, time
from jupyter_volume.testing import SeaweedFS
server = SeaweedFS().start()
print(server.proc.pid, json.dumps(list(server.ports.values())), flush=True)
time.sleep(600)
"""


@pytest.mark.s3
def test_a_seaweedfs_whose_starter_is_killed_outright_stops(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its folder goes with tmp_path
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], stdout=subprocess.PIPE, env=env, text=True
    )
    ports: list[int] = []
    try:
        line = starter.stdout.readline() if starter.stdout else ""
        pid, _, listed = line.partition(" ")
        assert pid.isdigit(), f"the starter printed {line!r}"
        weed, ports = int(pid), json.loads(listed)
        assert pid_running(weed)
        starter.send_signal(signal.SIGKILL)  # no teardown, no atexit: as the OOM killer
        starter.wait(30)
        deadline = time.monotonic() + 60
        while pid_running(weed) and time.monotonic() < deadline:
            time.sleep(0.1)
        still = pid_running(weed)
        if still:
            os.kill(weed, signal.SIGKILL)  # leave nothing running, then fail
        assert not still, "SeaweedFS outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        remove_sockets(ports)  # the starter's stop() would have


def test_servers_are_started_through_setpriv_with_a_parent_death_signal() -> None:
    args = tied_to_this_process(["weed", "mini"])
    assert args[-2:] == ["weed", "mini"]
    assert args[1:4] == ["--pdeathsig", "TERM", "--"], args  # Debian: util-linux's setpriv


@pytest.mark.s3
def test_a_seaweedfs_under_a_deep_temp_folder_starts_and_leaves_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # weed binds Unix sockets for its filer and S3 server; under a deep TMPDIR (the
    # suite run with TMPDIR=/tmp/some-run, then pytest's tmp_path) a socket's path in
    # the server's own folder is over the 108 bytes an address holds, and weed died
    # with "bind: invalid argument"
    from jupyter_volume.testing import SeaweedFS

    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    server = SeaweedFS().start()
    try:
        assert server.tmpdir is not None
        assert len(os.fsencode(server.tmpdir / "filer.sock")) > 108
        server.client().list_buckets()
        ports = list(server.ports.values())
    finally:
        server.stop()
    left = [p for port in ports for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]
    assert left == []


DEATH = """
import signal


def test_the_server_dies(seaweedfs):
    seaweedfs.proc.send_signal(signal.SIGKILL)
    seaweedfs.proc.wait()


def test_a_later_one_that_needs_it(seaweedfs):
    pass


def test_one_that_does_not(tmp_path):
    pass
"""


@pytest.mark.s3
def test_a_dead_session_seaweedfs_is_reported_with_its_status_and_log(tmp_path: Path) -> None:
    # the session's server died once mid-run, and 68 tests failed after ten refused
    # connections each, none saying why: the suite's conftest now says it at once
    (tmp_path / "test_death.py").write_text(DEATH)
    tests = Path(__file__).resolve().parent
    p = run_pytest(
        "-p",
        "conftest",  # this suite's own, from tests/ (PYTHONPATH below)
        "-q",
        "-rA",
        str(tmp_path / "test_death.py"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "PASSED test_death.py::test_the_server_dies" in out, out
    assert "PASSED test_death.py::test_one_that_does_not" in out, out
    assert "ERROR test_death.py::test_a_later_one_that_needs_it" in out, out  # at setup
    assert "died: killed by signal 9; log tail:" in out, out
    assert "ERROR test_death.py::test_one_that_does_not" in out, out  # the teardown's report
    assert "Start Seaweed" in out, out  # the log's tail


def _sleeper(new_session: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=new_session
    )


def _end(*procs: subprocess.Popen[bytes] | None) -> None:
    """Kill and reap each of the test's own processes that still runs (None: never made)."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


def _with_pid(pid: int, new_session: bool = False) -> subprocess.Popen[bytes]:
    """A new process that gets ``pid``, as a busy machine hands out a freed PID again:
    the kernel's last PID set just below it (root: ``ns_last_pid``), then a fork.
    Retried while other processes take the PID first. ``new_session``: it leads a
    session and process group of its own, as a test's server or kernel does."""
    for _ in range(100):
        try:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        except OSError as e:
            pytest.fail(f"cannot set the kernel's last PID ({e}): this test needs root")
        p = _sleeper(new_session)
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    pytest.fail(f"PID {pid} was never handed out again")


def test_a_server_stop_never_signals_a_process_that_got_a_found_pid_later() -> None:
    # JupyterLab.stop() finds the server's processes, asks it to shut down (up to 15 s)
    # and then kills what is left of them. By then a process found may have ended and
    # its PID gone to another: killing by PID once stopped another worker's SeaweedFS
    # (we think: it died with no trace of its own). Held by pidfd, a process found is
    # the only one a signal can reach.
    from jupyter_volume.testing.jupyter import _Held

    held = _Held()
    found, other, stranger = _sleeper(), _sleeper(), None
    try:
        held.add([found.pid, other.pid])
        assert sorted(held.running()) == sorted([found.pid, other.pid])
        found.kill()
        found.wait()  # ended and reaped: its PID is free
        stranger = _with_pid(found.pid)
        os.kill(found.pid, 0)  # by PID, the found process's number now reaches the stranger
        assert held.running() == [other.pid]
        held.signal([found.pid, other.pid], signal.SIGKILL)
        assert other.wait(30) == -signal.SIGKILL  # a process still running gets it
        time.sleep(0.2)
        assert stranger.poll() is None, "a signal for an ended process reached a stranger"
        assert held.running() == []
    finally:
        held.close()
        _end(found, other, stranger)


def test_stopping_a_server_that_died_and_was_reaped_signals_no_other_group() -> None:
    # A server that dies is reaped by the next look at it (LocalServer.running, the
    # conftest's death report), and stopped at the end of its test or session, minutes
    # later. Its process group's ID, its PID, may lead another group by then: another
    # worker's SeaweedFS, started in a session of its own. Signalling the old group
    # would kill it.
    dead, stranger = _sleeper(new_session=True), None
    try:
        dead.kill()
        while dead.poll() is None:  # reaped, as a look at a dead server reaps it
            time.sleep(0.01)
        stranger = _with_pid(dead.pid, new_session=True)
        assert os.getpgid(stranger.pid) == dead.pid  # the dead server's group ID, taken
        terminate_group(dead, 1)
        time.sleep(0.2)
        assert stranger.poll() is None, "stopping a dead server killed another group"
    finally:
        _end(dead, stranger)


GROUP = """
import subprocess, sys, time
# its child stays in its process group and ignores SIGTERM, as a server's helper may;
# the child prints its PID (to the test, through this stdout) once it ignores it
subprocess.Popen([sys.executable, "-c", "import os, signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); "
    "time.sleep(120)"])
time.sleep(120)
"""


def test_terminate_group_kills_what_outlives_the_leader_and_reaps_it() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", GROUP], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    # held by pidfd: signals reach it only; read once it ignores SIGTERM
    child = os.pidfd_open(int(leader.stdout.readline()))
    try:
        terminate_group(leader, 5)  # SIGTERM ends the leader; the child ignores it
        assert leader.returncode == -signal.SIGTERM
        poll = select.poll()
        poll.register(child, select.POLLIN)  # readable once the child has ended
        assert poll.poll(5000), "the leader's child outlived the stop"  # a hang guard
    finally:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(child, signal.SIGKILL)
        os.close(child)
        _end(leader)
        leader.stdout.close()
