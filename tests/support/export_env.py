"""The ExportImage suite's test environment: the real gateway in front of a real storage target.

Every test talks HTTP to ``gateway.server.app.create_app`` (signed requests, loopback), and the
gateway writes into a real server: the fake Manta (memory and on-disk backends) or moto's S3,
from ``tests/support/storage_targets.py``. What was written is read back through an independent
target instance (the harness's), never through the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.actions import Account
from gateway.catalog import Image, StoredFileCatalog
from gateway.httpsig import RequestSigner
from gateway.server.app import create_app
from gateway.server.appkeys import CATALOG, SETTINGS
from gateway.settings import Settings
from tests.support.helpers import _chunks, add_caller, make_manifest
from tests.support.storage_targets import TargetHarness

#: Targets without fault-free parents (S3) skip the tests that need Manta's directory rules.
MANTA_TARGETS = ("manta-memory", "manta-disk")
#: The catalogs every export HTTP test runs against: files on the gateway's disk, or in the
#: export's own store (where the export is a copy inside the store).
CATALOG_KINDS = ("embedded", "objectstore")
#: Where the object-store catalog keeps files: the operator's tree, as IMGAPI does.
IMAGES_PREFIX = "/operator/stor/imgapi"


def catalog_section(kind: str) -> dict[str, Any]:
    """The ``[catalog]`` section of ``kind`` (files in the gateway's own export target)."""
    if kind == "objectstore":
        return {"kind": "objectstore", "prefix": IMAGES_PREFIX}
    return {"kind": kind}


@dataclass
class Answer:
    """One HTTP answer of the gateway, decoded."""

    status: int
    body: Any
    raw: bytes


@dataclass
class ExportEnv:
    """A running gateway, its storage, and two callers (``bob`` and ``alice``)."""

    client: TestClient
    harness: TargetHarness
    bob: Account
    alice: Account
    signers: dict[str, RequestSigner]

    @property
    def app(self) -> web.Application:
        app: web.Application = self.client.app
        return app

    def path(self, *parts: str) -> str:
        """``/bob/stor/<parts>``."""
        return self.harness.path(*parts)

    async def image(
        self,
        data: bytes,
        *,
        owner: Account | None = None,
        compression: str = "none",
        **manifest: Any,
    ) -> Image:
        """Import an image (a single file holding ``data``) owned by bob unless told."""
        owner = owner or self.bob
        fields = make_manifest(owner.uuid, data, **manifest)
        fields["files"][0]["compression"] = compression
        return await self.app[CATALOG].import_image(fields, _chunks(data))

    async def post(
        self,
        uuid: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        login: str = "bob",
        url_login: str | None = None,
    ) -> Answer:
        """``POST /<login>/images/<uuid>?<query>`` with an optional JSON body, signed."""
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in (query or {}).items())
        path = f"/{url_login or login}/images/{uuid}" + (f"?{qs}" if qs else "")
        headers = self.signers[login].sign("POST", path, {"Accept": "application/json"})
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = await self.client.request(
            "POST", URL(path, encoded=True), headers=headers, **kwargs
        )
        raw = await response.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return Answer(response.status, decoded, raw)

    async def export(
        self, uuid: str, manta_path: str, *, style: str = "query", **kw: Any
    ) -> Answer:
        """Export the way ``sdc-exportimage`` (query) or ``triton image export`` (body) does."""
        if style == "query":
            return await self.post(uuid, query={"action": "export", "manta_path": manta_path}, **kw)
        return await self.post(uuid, body={"action": "export", "manta_path": manta_path}, **kw)

    async def read(self, path: str) -> bytes:
        """The bytes stored at ``path`` (through the harness's own target)."""
        chunks = []
        async for chunk in await self.harness.target.get_object(path):
            chunks.append(chunk)
        return b"".join(chunks)

    async def exists(self, path: str) -> bool:
        return await self.harness.target.stat(path) is not None

    async def put(self, path: str, data: bytes, content_type: str = "text/plain") -> None:
        async def body() -> AsyncIterator[bytes]:
            yield data

        md5 = hashlib.md5(data).digest()
        await self.harness.target.put_object(
            path,
            body,
            size=len(data),
            content_md5=base64.b64encode(md5).decode(),
            content_type=content_type,
        )

    async def mkdir(self, path: str) -> None:
        await self.harness.target.mkdir(path)

    @property
    def catalog_kind(self) -> str:
        return str(self.app[SETTINGS].catalog["kind"])

    def catalog_file(self, image: Image) -> Path:
        """Where the embedded catalog keeps the image's file (to corrupt it on purpose)."""
        if self.catalog_kind != "embedded":
            pytest.skip("the test changes the embedded catalog's local file")
        path: Path = self.app[CATALOG].file_path(image.uuid)  # type: ignore[attr-defined]
        return path

    async def stored_file(self, image: Image) -> str:
        """Where the object-store catalog keeps the image's file, in the harness's store."""
        catalog = self.app[CATALOG]
        assert isinstance(catalog, StoredFileCatalog), "the test needs the object-store catalog"
        return (await catalog.locate_file(image.uuid)).path


async def make_env(
    aiohttp_client: Any,
    harness: TargetHarness,
    data_dir: Path,
    *,
    server_kwargs: dict[str, Any] | None = None,
    plugins: tuple[object, ...] = (),
    catalog_kind: str = "embedded",
    **settings: Any,
) -> ExportEnv:
    """Start a gateway on ``harness`` and add the callers bob (the harness's login) and alice."""
    base = Settings(
        data_dir=data_dir,
        storage=harness.storage,
        catalog=catalog_section(catalog_kind),
        load_entrypoints=True,
    )
    values = {**base.__dict__, **settings}
    app = create_app(Settings(**values), plugins=plugins)
    client = await aiohttp_client(app, server_kwargs=server_kwargs or {})
    bob, bob_signer = await add_caller(app, harness.login)
    alice, alice_signer = await add_caller(app, "alice")
    return ExportEnv(client, harness, bob, alice, {"bob": bob_signer, "alice": alice_signer})
