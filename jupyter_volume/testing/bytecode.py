"""Compile jupyter-volume's own modules to bytecode, as installing its wheel does.

pip compiles what it installs, so boto3, IPython and every other dependency come with
bytecode. An editable install of this package does not: with ``PYTHONDONTWRITEBYTECODE``
set (as on the project's test and bench machines) every process compiles each of our
modules from source as it imports it: 0.37 s of CPU in one ``jupyter volume list``
(cProfile: 109 compiles). The test suite starts many such processes (CLI calls,
kernels, killed writers, Jupyter servers), and the bench times steps that import a
module first. Both call :func:`compile_package` once, before anything starts.
"""

from __future__ import annotations

import compileall
from pathlib import Path


def compile_package(pkg: Path | None = None) -> Path:
    """Write the bytecode of every module of the ``jupyter_volume`` package (the one
    imported, unless ``pkg`` names another copy's folder) beside its source
    (``__pycache__``), whatever ``PYTHONDONTWRITEBYTECODE`` says; return the folder.
    Up-to-date files are left as they are.

    Raises:
        RuntimeError: a module could not be compiled (compileall printed why).
    """
    if pkg is None:
        import jupyter_volume

        pkg = Path(jupyter_volume.__file__).parent
    if not compileall.compile_dir(pkg, quiet=1, workers=1):
        raise RuntimeError(f"could not compile {pkg} to bytecode (see the errors above)")
    return pkg
