"""``%volume`` in a real IPython shell, on a local store and on SeaweedFS.

The shell is IPython's own test shell (``start_ipython``) with the HTML formatter on, as
in a notebook; results are captured with ``capture_output`` and checked as HTML, text and
``--json`` data. User mistakes must raise ``UsageError`` (one line, no traceback).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output
from traitlets.config import Config

from jupyter_volume import Volume
from jupyter_volume.mount import mounts


@pytest.fixture
def env(kernel_store: str) -> str:
    """The store of each kind as the kernel's default store; cwd in a fresh folder."""
    return kernel_store


def _private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jupyter-config").mkdir(exist_ok=True)
    (tmp_path / "work").mkdir(exist_ok=True)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("JUPYTER_VOLUME_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path / "work")


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    _private(tmp_path, monkeypatch)
    url = (tmp_path / "store").as_uri()
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", url)
    yield url
    for m in mounts():
        m.unmount()


def magic(shell: Any, line: str) -> tuple[Any, CapturedIO]:
    """Run ``%volume line``; return what it returned and what it printed/displayed."""
    with capture_output() as cap:
        result = shell.run_line_magic("volume", line)
    return result, cap


def say(shell: Any, line: str) -> str:
    """Run a command that prints one message; return it."""
    result, cap = magic(shell, line)
    assert result is None and not cap.outputs, (result, cap.outputs)
    return cap.stdout


def table(shell: Any, line: str) -> tuple[str, str]:
    """Run a command that displays a table; return its (html, text) forms."""
    result, cap = magic(shell, line)
    assert result is None
    assert len(cap.outputs) >= 1, cap.stdout
    data = cap.outputs[0].data
    return data["text/html"], data["text/plain"]


def refused(shell: Any, line: str) -> str:
    """Run a command that must be refused with a UsageError; return its message."""
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("volume", line)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_help(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%volume?")
    out = capsys.readouterr().out
    assert "usage: %volume" in out and "usage of each command:" in out
    for name in ("mount", "unmount", "commit", "reload", "status", "browse", "ls", "put", "get"):
        assert f"%volume {name} " in out
    assert "%volume shell" not in out  # CLI-only
    assert magic(shell, "ls --help")[1].stdout.startswith("usage: %volume ls")
    assert "--interval SECONDS" in magic(shell, "mount --help")[1].stdout
    assert "usage: %volume" in magic(shell, "")[1].stdout


def test_subcommand_help_is_the_same_in_both_front_ends(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """One grammar: `%volume CMD --help` and `jupyter volume CMD --help` print the same
    text, apart from the program name in the usage lines (whose wrapping follows its
    length)."""
    from jupyter_volume import commands
    from jupyter_volume.cli import main

    both = [c.name for c in commands.COMMANDS.values() if set(c.where) == {"cli", "magic"}]
    assert {"ls", "put", "get", "history", "gc", "retention", "create"} <= set(both)
    for name in both:
        capsys.readouterr()
        assert main([name, "--help"]) == 0
        cli_text = capsys.readouterr().out
        magic_text = magic(shell, f"{name} --help")[1].stdout
        cli_usage, cli_rest = cli_text.split("\n\n", 1)
        magic_usage, magic_rest = magic_text.split("\n\n", 1)
        assert cli_usage.split()[:3] == ["usage:", "jupyter", "volume"], cli_usage
        assert magic_usage.split()[:2] == ["usage:", "%volume"], magic_usage
        assert cli_usage.split()[3:] == magic_usage.split()[2:], name
        assert cli_rest == magic_rest, name
        assert "exit codes:" in cli_rest


def test_every_file_and_volume_command(shell: Any, env: str) -> None:
    work = Path.cwd()
    (work / "notes.txt").write_text("hello\n")
    (work / "data" / "sub").mkdir(parents=True)
    (work / "data" / "sub" / "b.txt").write_text("bee")
    (work / "data" / "a.csv").write_text("1,2\n")

    assert "Created volume 'vol'" in say(shell, "create vol")
    assert "Created volume 'volume-" in say(shell, "create")
    html, text = table(shell, "list")
    assert "<table" in html and "<td" in html and ">vol<" in html
    assert "Name" in text and "vol" in text
    assert "vol" in [v["name"] for v in magic(shell, "list --json")[0]]  # newest first

    assert "as commit 1" in say(shell, "put vol notes.txt")
    assert "--force" in refused(shell, "put vol notes.txt")
    (work / "notes.txt").write_text("hello again\n")
    say(shell, "put vol notes.txt --force")
    say(shell, "put vol data")
    say(shell, "put vol notes.txt docs/")

    html, text = table(shell, "ls vol")
    assert "<th" in html and "notes.txt" in html and "docs" in text
    rows = magic(shell, "ls vol / -r --json")[0]
    assert {r["path"]: r["type"] for r in rows} == {
        "data": "dir",
        "data/a.csv": "file",
        "data/sub": "dir",
        "data/sub/b.txt": "file",
        "docs": "dir",
        "docs/notes.txt": "file",
        "notes.txt": "file",
    }

    assert say(shell, "get vol notes.txt -") == "hello again\n"
    (work / "out").mkdir()
    say(shell, "get vol data out")
    assert (work / "out" / "data" / "sub" / "b.txt").read_text() == "bee"
    assert "--force" in refused(shell, "get vol data out")
    say(shell, "get vol data out --force")

    say(shell, "cp vol notes.txt data/sub/copy.txt")
    say(shell, "cp vol data copy -r")
    assert "use -r" in refused(shell, "rm vol copy")
    say(shell, "rm vol copy -r")
    assert "copy" not in {r["path"] for r in magic(shell, "ls vol --json")[0]}

    history = magic(shell, "history vol --json")[0]
    head = history[0]["seq"]
    assert [c["seq"] for c in history] == list(range(head, -1, -1))
    html, _ = table(shell, "history vol -n 3")
    assert html.count("<tr>") == 4  # header + 3 commits
    diff = magic(shell, "diff vol 1 2 --json")[0]
    assert [(d["change"], d["path"]) for d in diff] == [("modified", "notes.txt")]
    html, _ = table(shell, "diff vol 1 2")
    assert "modified" in html
    assert f"new commit {head + 1}" in say(shell, "restore vol 1 notes.txt")
    assert say(shell, "get vol notes.txt -") == "hello\n"

    assert magic(shell, "verify vol --json")[0]["ok"] is True
    html, text = table(shell, "verify vol")
    assert "no damage found" in html and "no damage found" in text
    du = magic(shell, "du vol data --json")[0]
    assert du == {"path": "data", "files": 3, "bytes": 4 + 3 + len("hello again\n")}
    info = magic(shell, "info vol --json")[0]
    assert info["name"] == "vol" and info["head"] == head + 1

    say(shell, "rename vol vol2 -y")
    assert "not found" in refused(shell, "ls vol")
    assert "--yes" in refused(shell, "delete vol2")  # no stdin to ask on in this shell
    assert "Deleted volume 'vol2'" in say(shell, "delete vol2 --yes")
    assert "nothing to delete" in say(shell, "delete vol2 --yes --allow-missing")


def test_user_mistakes_are_usage_errors(shell: Any, env: str) -> None:
    Path("f.txt").write_text("x")
    assert "create nope" in refused(shell, "ls nope")
    assert "volume names are" in refused(shell, "create 'bad name'")
    assert "volume names are" in refused(shell, "mount ..")  # '.hidden' is valid, as in Modal
    say(shell, "create vol")
    assert "escapes the volume" in refused(shell, "put vol f.txt ../x.txt")
    assert "escapes the volume" in refused(shell, "ls vol ../..")
    assert "escapes the volume" in refused(shell, "get vol ../../etc/passwd")
    assert "no such file" in refused(shell, "get vol missing.txt")
    assert "does not exist" in refused(shell, "put vol missing-local.txt")
    assert "required: NAME" in refused(shell, "ls")
    assert "invalid choice" in refused(shell, "frobnicate")
    assert "jupyter volume shell" in refused(shell, "shell vol")
    assert "cannot split" in refused(shell, 'ls "unclosed')
    assert "positive number" in refused(shell, "mount vol --interval 0")
    for endless in ("inf", "nan", "1e400"):  # no thread can wait that long
        assert "not a finite number" in refused(shell, f"mount vol --interval {endless}")
    # in a cell: one line on stderr, no traceback
    with capture_output() as cap:
        result = shell.run_cell("%volume ls nope")
    assert isinstance(result.error_in_exec, UsageError)
    assert cap.stderr.startswith("UsageError:") and "Traceback" not in cap.stderr


def test_mount_status_commit_reload_unmount(shell: Any, env: str) -> None:
    assert "No volume is mounted" in table(shell, "status")[1]
    assert magic(shell, "status --json")[0] == []
    assert "no volume is mounted" in refused(shell, "commit")
    assert "not found" in refused(shell, "mount vol")

    msg = say(shell, "mount vol mnt --create --no-background")
    mnt = Path.cwd() / "mnt"
    assert f"Mounted volume 'vol' at {mnt}" in msg and "commit 0" in msg
    (mnt / "new.txt").write_text("new")
    st = magic(shell, "status --json")[0]
    assert st[0]["added"] == ["new.txt"] and st[0]["volume"] == "vol" and st[0]["behind"] == 0
    html, text = table(shell, "status vol")
    assert "Uncommitted changes" in html and "new.txt" in text
    assert "commit 1" in say(shell, "commit -m 'first words'")
    assert magic(shell, "history vol --json")[0][0]["message"] == "first words"
    assert "Nothing to commit" in say(shell, "commit vol")

    # another writer commits; status shows we are behind; reload brings it in
    other = Volume.from_name("vol", store=env)
    with other.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"theirs"), "theirs.txt")
    assert magic(shell, "status --json")[0][0]["behind"] == 1
    with open(mnt / "new.txt"):  # a file open under the mount: reload is refused
        assert "cannot reload" in refused(shell, "reload")
    assert "now at commit 2" in say(shell, "reload")
    assert (mnt / "theirs.txt").read_text() == "theirs"

    # two mounts: NAME may no longer be left out
    say(shell, "mount other ro-mnt --create --read-only")
    assert "several volumes are mounted" in refused(shell, "commit")
    assert len(magic(shell, "status --json")[0]) == 2
    assert "read-only" in refused(shell, "commit other")
    assert "not mounted" in refused(shell, "unmount third")
    assert "Unmounted volume 'other'" in say(shell, "unmount other")
    (mnt / "late.txt").write_text("late")
    assert "committed as commit 3" in say(shell, "unmount")
    assert magic(shell, "status --json")[0] == []
    assert "late.txt" in {r["path"] for r in magic(shell, "ls vol --json")[0]}


def test_a_mounted_folder_removed_or_not_creatable_is_a_one_line_error(
    shell: Any, env: str, tmp_path: Path
) -> None:
    """The folder errors of a mount (it cannot be made; it was removed while mounted)
    say what to do in one line: they used to reach the notebook as a chained traceback."""
    import shutil

    (tmp_path / "file").write_text("x")
    assert "cannot" in refused(shell, f"mount vol {tmp_path / 'file' / 'below'} --create")
    say(shell, "mount vol data --create --no-background")
    shutil.rmtree("data")
    assert "was removed" in refused(shell, "commit")
    assert "was removed" in refused(shell, "reload")
    with pytest.warns(UserWarning, match="was removed"):
        say(shell, "unmount vol")


def test_status_shows_every_mount_when_one_folder_was_removed(shell: Any, env: str) -> None:
    """A removed mounted folder is one row with its error; the other mounts show as usual."""
    import shutil

    say(shell, "mount data data --create --no-background")
    say(shell, "mount models models --create --no-background")
    Path("models", "w.bin").write_text("w")
    shutil.rmtree("data")  # e.g. `rm -rf data` to free the disk
    html, text = table(shell, "status")
    assert "models" in text and "data" in text
    assert "was removed" in text and "was removed" in html
    by_name = {r["volume"]: r for r in magic(shell, "status --json")[0]}
    assert by_name["models"]["added"] == ["w.bin"] and by_name["models"]["last_error"] is None
    broken = by_name["data"]
    assert "was removed while mounted" in broken["last_error"]
    assert "\n" not in broken["last_error"]
    assert broken["added"] == [] and broken["behind"] is None and broken["commit"] == 0
    assert "was removed" in table(shell, "status data")[1]
    with pytest.warns(UserWarning, match="was removed"):
        say(shell, "unmount data")
    say(shell, "unmount models")


def test_nothing_to_commit_names_an_earlier_commit_only_if_another_one_took_the_changes(
    shell: Any, local_env: str
) -> None:
    """After the user's own `%volume commit`, a second one with nothing changed says just
    that; after a commit that ran after a cell took the changes, it names that commit
    and how to tag it (-m can no longer label it)."""
    import time

    say(shell, "mount vol data --create --no-background")
    Path("data", "a.csv").write_text("1,2")
    assert "commit 1" in say(shell, "commit -m 'first results'")
    assert say(shell, "commit -m 'second try'").strip() == "Nothing to commit in 'vol'."
    say(shell, "unmount")
    say(shell, "mount vol data --interval 3600")  # commits after each cell
    m = mounts()[0]
    shell.run_cell("open('data/b.csv', 'w').write('3,4')")
    deadline = time.time() + 60  # a hang guard only
    while m.last_commit is None and time.time() < deadline:
        time.sleep(0.05)
    assert m.last_commit is not None and m.last_commit.kind == "auto"
    seq = m.last_commit.seq
    msg = say(shell, "commit -m 'more results'")
    assert f"already committed as commit {seq}" in msg and f"tag vol {seq} TAG" in msg
    say(shell, "unmount")


def test_mount_settings_come_from_config(
    shell: Any, local_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jupyter-config" / "jupyter_volume_config.py").write_text(
        "c.VolumeConfig.commit_interval = 7.5\nc.VolumeConfig.ignore_patterns = ['*.tmp']\n"
    )
    assert "every 7.5 s" in say(shell, "mount vol m1 --create")
    Path("m1", "scratch.tmp").write_text("x")
    Path("m1", "keep.txt").write_text("x")
    assert magic(shell, "status --json")[0][0]["added"] == ["keep.txt"]
    say(shell, "unmount")
    assert "every 2 s" in say(shell, "mount vol m2 --interval 2")
    say(shell, "unmount")
    # c.VolumeConfig in the IPython config wins over the config file
    monkeypatch.setitem(shell.config, "VolumeConfig", Config(commit_interval=9.0))
    assert "every 9 s" in say(shell, "mount vol m3")
    say(shell, "unmount")
    # the store URL from the config file, when JUPYTER_VOLUME_STORE is not set
    other = tmp_path / "configured-store"
    (tmp_path / "jupyter-config" / "jupyter_volume_config.json").write_text(
        json.dumps({"VolumeConfig": {"store_url": other.as_uri()}})
    )
    monkeypatch.delenv("JUPYTER_VOLUME_STORE")
    assert other.as_uri() in say(shell, "create elsewhere")
    assert (other / "names" / "elsewhere").is_file()
    assert "--store" in magic(shell, "list --help")[1].stdout
    assert [v["name"] for v in magic(shell, f"list --store {local_env} --json")[0]] == ["vol"]


def test_browse(shell: Any, local_env: str) -> None:
    say(shell, "create vol")
    try:
        from jupyter_volume.widgets import VolumeBrowser  # noqa: F401
    except ImportError:
        assert "not available yet" in refused(shell, "browse vol")
    else:
        result, cap = magic(shell, "browse vol")
        assert result is None and cap.outputs
    assert "not found" in refused(shell, "browse nope")


def test_progress_bar_choice(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.notebook import tqdm as notebook_tqdm
    from tqdm.std import tqdm as std_tqdm

    from jupyter_volume.config import VolumeConfig
    from jupyter_volume.progress import NullProgress, in_kernel, transfer_progress

    cfg = VolumeConfig(progress_threshold_bytes=100, progress_threshold_files=10)
    assert not in_kernel()
    small = transfer_progress("x", total_bytes=100, total_files=10, config=cfg)
    assert isinstance(small, NullProgress)
    bar = transfer_progress("x", total_bytes=101, total_files=1, config=cfg, file=io.StringIO())
    assert isinstance(bar, std_tqdm) and not isinstance(bar, notebook_tqdm)
    bar.close()
    many = transfer_progress("x", total_bytes=1, total_files=11, config=cfg, file=io.StringIO())
    assert not isinstance(many, NullProgress)
    many.close()
    monkeypatch.setattr(shell, "kernel", object(), raising=False)  # as in ipykernel
    assert in_kernel()
    with capture_output():
        nb = transfer_progress("x", total_bytes=101, config=cfg)
        assert isinstance(nb, notebook_tqdm)
        nb.update(101)
        nb.close()


def test_unload_and_reload_extension(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "jupyter_volume")
    assert "volume" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "jupyter_volume")
    assert "volume" in shell.magics_manager.magics["line"]
    assert "usage: %volume" in magic(shell, "--help")[1].stdout


def test_gc_through_the_magic(shell: Any, env: str) -> None:
    vol = Volume.lookup("gcm", create_if_missing=True)
    for i in range(3):
        with vol.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(bytes([i]) * 100_000), "f.bin")
    say(shell, "tag gcm 1 first")
    html, _ = table(shell, "retention gcm --keep-last 1 --grace 0")
    assert "keep last 1" in html
    report = shell.run_line_magic("volume", "gc gcm --json")
    assert report["expired"] == [2]
    html, text = table(shell, "history gcm")
    assert "first" in html and "gc: expired 1 commit (2)" in text
    assert "not found" in refused(shell, "gc nosuchvolume --dry-run")


def test_a_fresh_user_shell_is_not_the_shared_one(shell: Any, user_shell: Any) -> None:
    # the next test checks that the shared shell is back once this one is over
    from IPython import get_ipython

    assert user_shell is not shell
    assert get_ipython() is user_shell


def test_the_shared_shell_is_back_after_a_test_with_a_fresh_one(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython import get_ipython

    from jupyter_volume.progress import in_kernel

    assert get_ipython() is shell
    monkeypatch.setattr(shell, "kernel", object(), raising=False)  # as in ipykernel
    assert in_kernel()
