"""The dev setup and a workstation-like environment for the official Node.js export clients.

Shared by the ``triton`` and ``sdc-exportimage`` conformance tests: the dev pieces (fake Manta
on disk, gateway, account ``dev`` with an RSA key, demo image) run in the test's process, and
each client finds the key as on a workstation without an agent, in ``$HOME/.ssh``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from gateway.cli.dev import DevEnvironment
from tests.support.npm_tools import run_cli, workstation_environ

MANTA = ("manta", "5.4.2")


def node_env(env: DevEnvironment, home: Path) -> dict[str, str]:
    """A workstation's environment: SDC_* and MANTA_* set, the key in ~/.ssh, no agent."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    shutil.copy(env.dev_key.path, ssh / "id_rsa")
    shutil.copy(str(env.dev_key.path) + ".pub", ssh / "id_rsa.pub")
    os.chmod(ssh / "id_rsa", 0o600)
    return workstation_environ(
        home,
        SDC_URL=env.gateway_url,
        SDC_ACCOUNT="dev",
        SDC_KEY_ID=env.dev_key.fingerprint,
        MANTA_URL=env.manta_url,
        MANTA_USER="dev",
        MANTA_KEY_ID=env.dev_key.fingerprint,
    )


async def mget_sha1(manta_bin: Path, path: str, environ: Mapping[str, str], dest: Path) -> str:
    code, _out, err = await run_cli([str(manta_bin / "mget"), "-q", "-o", str(dest), path], environ)
    assert code == 0, err
    data = await asyncio.to_thread(dest.read_bytes)
    return hashlib.sha1(data).hexdigest()
