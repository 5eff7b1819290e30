"""Plain helpers shared by the test suites: keys, signed headers, manifests, image imports.

Importable as ``from tests.helpers import ...`` (no fixtures here; those live in conftest files).
"""

from __future__ import annotations

import hashlib
import uuid as uuid_mod
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import hookimpl
from gateway.actions import Account
from gateway.catalog import Image
from gateway.httpsig import PrivateKey, RequestSigner, ssh_public_key_line
from gateway.server.appkeys import ACCOUNTS, CATALOG
from tests.support import secrets


def new_key(kind: str = "ecdsa") -> PrivateKey:
    """A fresh private key: ``ecdsa`` (P-256, fast), ``ed25519`` or ``rsa`` (2048).

    Recorded as a secret (``tests/support/secrets.py``): no log may ever show it.
    """
    key: PrivateKey
    if kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(kind)
    secrets.REGISTRY.add_key(key)
    return key


async def add_caller(
    app: web.Application, login: str, *, key: PrivateKey | None = None, **signer_kwargs: Any
) -> tuple[Account, RequestSigner]:
    """Add ``login`` with a key to a *started* app's account store; return it and a signer."""
    key = key or new_key()
    store = app[ACCOUNTS]
    account = await store.get_account(login) or await store.add_account(login)
    await store.add_key(login, ssh_public_key_line(key, f"{login}@test"))
    return account, RequestSigner.for_login(key, login, **signer_kwargs)


def signed_headers(
    signer: RequestSigner,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``headers`` plus Date and Authorization for ``method path`` (path includes the query)."""
    return signer.sign(method, path, headers)


def make_manifest(owner: str, data: bytes, **overrides: Any) -> dict[str, Any]:
    """A valid active IMGAPI v2 manifest for an image whose single file holds ``data``."""
    manifest: dict[str, Any] = {
        "v": 2,
        "uuid": str(uuid_mod.uuid4()),
        "owner": owner,
        "name": "base64",
        "version": "1.0.0",
        "state": "active",
        "disabled": False,
        "public": False,
        "published_at": "2024-01-01T00:00:00Z",
        "type": "zone-dataset",
        "os": "smartos",
        "files": [
            {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "compression": "none"}
        ],
        "requirements": {},
    }
    manifest.update(overrides)
    return manifest


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def import_image(
    app: web.Application, owner: Account, data: bytes, **overrides: Any
) -> Image:
    """Import an image owned by ``owner`` into a *started* app's catalog."""
    manifest = make_manifest(owner.uuid, data, **overrides)
    return await app[CATALOG].import_image(manifest, _chunks(data))


# --- plugins for tests: registered with create_app(settings, plugins=(...)) -----------------------


class EchoAction:
    """``action=echo``: returns what the gateway handed it, in a deliberate key order."""

    name = "echo"
    schema: Mapping[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "action": {"const": "echo"},
            "word": {"type": "string", "maxLength": 10},
            "when": {"type": "string", "format": "date"},  # checked with no extra package
            "mode": {"enum": ["a", "b"], "x-invalid-message": "mode must be a or b"},
            "secret": {"type": "string", "x-missing-message": "Echo secret is a required argument"},
        },
        "required": ["action", "word"],
        "additionalProperties": False,
    }

    async def run(self, ctx: Any, params: Mapping[str, Any]) -> Mapping[str, Any]:
        if params.get("word") == "boom":
            raise RuntimeError("secret internals /etc/passwd")
        return {
            "zeta": 1,
            "alpha": 2,
            "params": dict(params),
            "api_version": ctx.api_version,
            "image": ctx.image.uuid,
            "login": ctx.account.login,
            "storage": ctx.storage is not None,
        }


class EchoPlugin:
    """Provides ``EchoAction``."""

    @hookimpl
    def gateway_register_image_actions(self) -> list[Any]:
        return [EchoAction()]
