"""A virtualenv holding Joyent's Python SDK (PyPI ``manta``), for the python-manta tests.

python-manta 3.0.0 (2019, the last release) pins ``httplib2==0.11.3`` and is an sdist only, so it
must not go into the test environment: it gets a venv of its own under
``<repo>/.cache/python-manta/``, as node-manta gets ``.cache/npm``. A file lock serialises
builds across pytest processes and a marker written after a successful install makes a
half-built venv look absent.

Where it cannot be installed (no PyPI, no ``venv`` module) the test is skipped with a notice
in pytest's warnings summary, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

from tests.support.npm_tools import in_ci

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON_MANTA = ("manta", "3.0.0")
VENV_ROOT = REPO_ROOT / ".cache" / "python-manta"
_MARKER = ".installed"
#: creating a venv and building the sdist and its dependencies on a cold cache
INSTALL_TIMEOUT = 600.0


class PythonMantaMissing(UserWarning):
    """Shown in pytest's warnings summary when the python-manta tests are skipped."""


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    warnings.warn(f"skipping python-manta tests: {reason}", PythonMantaMissing, stacklevel=3)
    pytest.skip(reason)


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        _missing(f"{what} timed out")
        raise  # unreachable: _missing always raises
    if proc.returncode != 0:
        _missing(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _see_this_environment(python: Path) -> None:
    """Let the venv import this environment's packages too (pytest, aiohttp, fake_manta and
    its pytest11 entry point), after its own: a ``.pth`` line that runs ``site.addsitedir``,
    so this environment's own ``.pth`` files (the editable install's finder) apply as well.
    Rewritten on every call: tox envs differ in their site-packages."""
    proc = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    own = Path(proc.stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    lines = [f"import site; site.addsitedir({path!r})" for path in ours]
    (own / "zz_test_environment.pth").write_text("\n".join(lines) + "\n")


def ensure_python_manta() -> Path:
    """The ``python`` of a venv where ``import manta`` works (built once per cache) and this
    environment's packages are importable after the venv's own."""
    name, version = PYTHON_MANTA
    venv = VENV_ROOT / f"{name}-{version}-py{sys.version_info.major}.{sys.version_info.minor}"
    python = venv / "bin" / "python"
    if (venv / _MARKER).exists():
        _see_this_environment(python)
        return python
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (venv / _MARKER).exists():  # another process finished while we waited
                _see_this_environment(python)
                return python
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], "creating a venv")
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  f"{name}=={version}"], f"pip install {name}=={version}")
            _run([str(python), "-c", "import manta"], "import manta")
            (venv / _MARKER).write_text(f"{name}=={version}\n")
            _see_this_environment(python)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return python
