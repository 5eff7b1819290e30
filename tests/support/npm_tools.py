"""Install pinned npm packages (node-manta, triton, smartdc) for the client conformance tests.

Packages go into ``<repo>/.cache/npm/<name>@<version>/`` so that several versions and several
pytest processes can share the cache: a file lock serialises installs, and a marker file written
only after a successful ``npm install`` makes a half-finished install look absent.

Without node or npm the caller's test is skipped with a visible notice (a warning in pytest's
summary plus the skip reason), except under ``CI=true`` where a missing toolchain is a failure:
CI must never go green by silently skipping the conformance suite.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NPM_CACHE = REPO_ROOT / ".cache" / "npm"
_MARKER = ".installed"
#: npm install of a package with a few dozen dependencies; generous for a cold cache.
INSTALL_TIMEOUT = 600.0


class NodeToolchainMissing(UserWarning):
    """Shown in pytest's warnings summary when client conformance tests are skipped."""


def in_ci() -> bool:
    """CI sets CI=true; there a skipped conformance suite would hide a broken install step."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _missing(reason: str) -> None:
    """Fail under CI, otherwise skip with a notice that survives pytest's default output."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    warnings.warn(f"skipping Node.js client tests: {reason}", NodeToolchainMissing, stacklevel=3)
    pytest.skip(reason)


def require_node() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``, or skip/fail as the module docstring says."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are required (install Node.js >= 18)")
    assert node is not None and npm is not None
    return node, npm


def package_dir(name: str, version: str) -> Path:
    """The private npm prefix for ``name@version`` (scoped names keep their scope)."""
    return NPM_CACHE / f"{name.replace('/', '+')}@{version}"


def _link_directories_bin(package: Path, bin_dir: Path) -> None:
    """Link commands of packages that declare ``directories.bin`` (npm >= 7 no longer does)."""
    manifest = json.loads((package / "package.json").read_text())
    if manifest.get("bin"):
        return
    rel = (manifest.get("directories") or {}).get("bin")
    if not rel:
        return
    bin_dir.mkdir(parents=True, exist_ok=True)
    for script in sorted((package / rel).iterdir()):
        link = bin_dir / script.name
        if script.is_file() and not link.exists():
            link.symlink_to(os.path.relpath(script, bin_dir))


def ensure_npm_package(name: str, version: str) -> Path:
    """Install ``name@version`` once and return its ``node_modules/.bin`` directory."""
    _node, npm = require_node()
    prefix = package_dir(name, version)
    bin_dir = prefix / "node_modules" / ".bin"
    if (prefix / _MARKER).exists():
        return bin_dir
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with open(NPM_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (prefix / _MARKER).exists():  # another process finished while we waited
                return bin_dir
            prefix.mkdir(parents=True, exist_ok=True)
            # A package.json of our own stops npm from walking up into the repository, and
            # declaring the package as a dependency makes npm link its bins (``directories.bin``
            # packages such as node-manta get no links when installed with --no-save).
            manifest = {"name": "npm-tools-cache", "private": True,
                        "dependencies": {name: version}}
            (prefix / "package.json").write_text(json.dumps(manifest) + "\n")
            cmd = [
                npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                "--no-package-lock", "--loglevel=error",
            ]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
            except subprocess.TimeoutExpired:
                _missing(f"npm install {name}@{version} timed out")
                raise  # unreachable: _missing always raises
            if proc.returncode != 0:
                _missing(
                    f"npm install {name}@{version} failed ({proc.returncode}): "
                    f"{proc.stderr.strip()[-2000:]}"
                )
            _link_directories_bin(prefix / "node_modules" / name, bin_dir)
            (prefix / _MARKER).write_text(f"{name}@{version}\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return bin_dir


def workstation_environ(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment as a clean workstation's: HOME set, no agent, no SDC_*,
    TRITON_* or MANTA_* leaking in from the machine, then ``settings`` on top."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SDC_", "TRITON_", "MANTA_")) and k != "SSH_AUTH_SOCK"
    }
    return {**keep, "HOME": str(home), **settings}


#: Longest a client command may take (the CLIs answer in seconds; this only stops a hang).
CLI_TIMEOUT = 180.0


async def run_cli(cmd: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run a Node.js CLI without blocking the loop that serves it: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
