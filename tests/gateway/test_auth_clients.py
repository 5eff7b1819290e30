"""Conformance: the official ``triton`` and ``sdc-*`` clients sign requests our auth accepts,
with RSA, ECDSA and Ed25519 keys found in ``~/.ssh``, and see CloudAPI's refusals.

triton signs ``(request-target) date``; smartdc signs ``date``. Both find the key by its MD5
fingerprint in a temporary HOME (no agent), as on a workstation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import httpsig
from gateway.server.app import create_app
from gateway.server.appkeys import ACCOUNTS
from gateway.settings import Settings
from tests.support.helpers import import_image
from tests.support.npm_tools import ensure_npm_package, run_cli, workstation_environ

pytestmark = pytest.mark.clients

TRITON = ("triton", "7.17.0")
SMARTDC = ("smartdc", "9.0.1")


def write_key(ssh: Path, name: str, key: httpsig.PrivateKey) -> None:
    ssh.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    (ssh / name).write_bytes(pem)
    os.chmod(ssh / name, 0o600)
    (ssh / f"{name}.pub").write_text(httpsig.ssh_public_key_line(key, "test@host") + "\n")


def environ(home: Path, url: str, key: httpsig.PrivateKey) -> dict[str, str]:
    return workstation_environ(
        home, SDC_URL=url, SDC_ACCOUNT="user", SDC_KEY_ID=httpsig.md5_fingerprint(key)
    )


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
async def test_triton_and_smartdc_sign_with_every_key_type(
    aiohttp_server: Any, tmp_path: Path, kind: str
) -> None:
    triton = ensure_npm_package(*TRITON) / "triton"
    sdc_getimage = ensure_npm_package(*SMARTDC) / "sdc-getimage"
    key: httpsig.PrivateKey = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[kind]()
    stranger = ec.generate_private_key(ec.SECP256R1())
    app = create_app(Settings(data_dir=tmp_path / "data"))
    server = await aiohttp_server(app)
    store = app[ACCOUNTS]
    account = await store.add_account("user")
    await store.add_key("user", httpsig.ssh_public_key_line(key))
    image = await import_image(app, account, b"client image")
    url = f"http://{server.host}:{server.port}"

    home = tmp_path / "home"
    write_key(home / ".ssh", "id_test", key)
    env = environ(home, url, key)
    code, out, err = await run_cli([str(triton), "image", "get", image.uuid], env)
    assert code == 0, err
    assert json.loads(out)["id"] == image.uuid
    if kind != "ed25519":  # smartdc 9's smartdc-auth cannot read an Ed25519 key from ~/.ssh
        code, out, err = await run_cli([str(sdc_getimage), image.uuid], env)
        assert code == 0, err
        assert json.loads(out)["id"] == image.uuid

    # A key the gateway does not know: CloudAPI's 401, as each client reports it.
    other = tmp_path / "stranger"
    write_key(other / ".ssh", "id_test", stranger)
    env = environ(other, url, stranger)
    code, out, err = await run_cli([str(triton), "image", "get", image.uuid], env)
    assert code != 0 and "Invalid authorization credentials supplied" in err, (out, err)
    code, out, err = await run_cli([str(sdc_getimage), image.uuid], env)
    assert code != 0 and "InvalidCredentials" in err, (out, err)

    # Disabled while the server runs: 403 NotAuthorized.
    await store.set_disabled("user", True)
    env = environ(home, url, key)
    code, out, err = await run_cli([str(triton), "image", "get", image.uuid], env)
    assert code != 0 and "Account or user is disabled" in err, (out, err)
