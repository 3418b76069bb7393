"""Installing the package enables both halves of the JupyterLab integration.

A wheel is built from this source tree (as ``pip install`` would: the build hook
builds the labextension unless it is already built) and installed, without
dependencies, into a fresh virtual environment that borrows this environment's
packages. There, ``jupyter labextension list`` and ``jupyter server extension list``
(their console-script entry points, run by the new environment's Python so they look
in its prefix) must show jupyter-volume enabled and OK, with no config step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import jupyter_volume

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")

LABEXTENSION_LIST = (
    "import sys; from jupyterlab.labextensions import main; "
    "sys.argv = ['jupyter-labextension', 'list']; main()"
)
SERVER_EXTENSION_LIST = (
    "import sys; from jupyter_server.extension.serverextension import main; "
    "sys.argv = ['jupyter-server-extension', 'list']; main()"
)


def _run(args: list[str], **kw: object) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    out = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A venv with the wheel built from this tree installed; returns its python and env."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)])
    (wheel,) = wheels.glob("jupyter_volume-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    )
    # Borrow jupyterlab & co. from this environment (after the venv's own packages).
    (site / "zz_borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_DATA_DIR=str(base / "data"))
    return {"wheel": wheel, "venv": venv, "python": str(python), "env": env}


def test_wheel_ships_the_prebuilt_labextension_and_the_server_config(
    installed: dict[str, object],
) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()  # type: ignore[arg-type]
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    assert "etc/jupyter/jupyter_server_config.d/jupyter_volume.json" in data
    assert "share/jupyter/labextensions/jupyter-volume/package.json" in data
    assert "share/jupyter/labextensions/jupyter-volume/install.json" in data
    assert any(
        re.fullmatch(r"share/jupyter/labextensions/jupyter-volume/static/remoteEntry\..*\.js", n)
        for n in data
    )
    assert "jupyter_volume/server/handlers.py" in names


def test_jupyter_labextension_list_shows_it_enabled_and_ok(installed: dict[str, object]) -> None:
    out = _run([installed["python"], "-c", LABEXTENSION_LIST], env=installed["env"])  # type: ignore[list-item]
    prefix = str(installed["venv"])
    assert f"{prefix}/share/jupyter/labextensions" in out, out
    line = next((x for x in out.splitlines() if "jupyter-volume" in x and "v" in x), "")
    assert re.search(
        rf"jupyter-volume v{re.escape(jupyter_volume.__version__)} enabled\s+OK", line
    ), out
    assert "(python, jupyter-volume)" in line, out


def test_jupyter_server_extension_list_shows_it_enabled_and_ok(
    installed: dict[str, object],
) -> None:
    out = _run([installed["python"], "-c", SERVER_EXTENSION_LIST], env=installed["env"])  # type: ignore[list-item]
    section = out.split(f"Config dir: {installed['venv']}/etc/jupyter", 1)
    assert len(section) == 2, f"the install's own config dir enables nothing:\n{out}"
    body = section[1].split("Config dir:", 1)[0]
    assert re.search(r"jupyter_volume\.server\s+enabled", body), out
    assert re.search(
        rf"jupyter_volume\.server\s+{re.escape(jupyter_volume.__version__)}\s+OK", body
    ), out


def test_versions_of_python_package_and_labextension_agree() -> None:
    package = json.loads((REPO / "package.json").read_text())
    assert package["version"] == jupyter_volume.__version__
    assert package["name"] == "jupyter-volume"
    assert package["jupyterlab"]["extension"] is True
    assert package["jupyterlab"]["outputDir"] == "jupyter_volume/labextension"
    conf = json.loads(
        (REPO / "jupyter-config/jupyter_server_config.d/jupyter_volume.json").read_text()
    )
    assert conf == {"ServerApp": {"jpserver_extensions": {"jupyter_volume.server": True}}}
