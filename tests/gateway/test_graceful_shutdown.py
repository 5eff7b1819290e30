"""A stopping server lets an in-flight action finish (exports can take an hour).

The server runs in a child process through ``gateway.cli.main.serve`` (what ``cloudapi-gateway
serve`` uses) with a plugin whose action blocks until the test releases it through a file. The
test sends SIGINT while the action is running, then releases it: the client must still get its
200, and the process must exit cleanly. Nothing here depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import uuid
from pathlib import Path

import aiohttp

from gateway.httpsig import RequestSigner, ssh_public_key_line
from gateway.server.accounts import AccountStore
from tests.support.helpers import new_key, signed_headers

SERVER = r"""
import asyncio, logging, sys
from pathlib import Path

from gateway import hookimpl
from gateway.catalog import Image
from gateway.cli.main import serve
from gateway.server.app import create_app
from gateway.settings import Settings

port, data_dir, owner, image_id = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]


class SlowAction:
    name = "slow"
    schema = {"type": "object"}

    async def run(self, ctx, params):
        (data_dir / "started").touch()
        while not (data_dir / "release").exists():
            await asyncio.sleep(0.01)
        return {"finished": True, "image": ctx.image.uuid}


class OneImageCatalog:
    async def open(self): pass
    async def close(self): (data_dir / "catalog-closed").touch()
    async def list_images(self): return []
    async def get_image(self, uuid):
        if uuid != image_id:
            return None
        return Image({"uuid": image_id, "owner": owner, "state": "active"}, ())
    async def delete_image(self, uuid): return False
    async def import_image(self, manifest, body): raise NotImplementedError
    async def open_file(self, uuid, index=0):
        yield b""


class Factory:
    name = "one-image"
    def create(self, config, settings): return OneImageCatalog()


class Plugin:
    @hookimpl
    def gateway_register_image_actions(self): return [SlowAction()]
    @hookimpl
    def gateway_register_image_catalogs(self): return [Factory()]


settings = Settings(host="127.0.0.1", port=int(port), data_dir=data_dir,
                    catalog={"kind": "one-image"}, load_entrypoints=False,
                    metrics={"listen": "127.0.0.1:0"})
logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # serve() logs "Running on ..."
serve(create_app(settings, plugins=(Plugin(),)), settings)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(path: Path) -> None:
    """The child signals through files; poll (no timing is asserted)."""
    while not path.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.01)


async def _wait_until_refused(port: int) -> None:
    """Return once the server has closed its listening socket."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.01)


async def test_in_flight_action_finishes_after_sigint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = new_key()
    store = AccountStore(data_dir / "accounts.sqlite")
    account = await store.add_account("dora")
    await store.add_key("dora", ssh_public_key_line(key))
    await store.close()
    signer = RequestSigner.for_login(key, "dora")
    image_id = str(uuid.uuid4())
    port = _free_port()

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        str(port),
        str(data_dir),
        account.uuid,
        image_id,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        while True:  # the "Running on" line says the socket is listening
            line = await proc.stderr.readline()
            assert line, "server exited before listening"
            if b"Running on" in line:
                break
        path = f"/my/images/{image_id}?action=slow"
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(
                session.post(
                    f"http://127.0.0.1:{port}{path}", headers=signed_headers(signer, "POST", path)
                )
            )
            await _wait_for(data_dir / "started")
            proc.send_signal(signal.SIGINT)
            await _wait_until_refused(port)  # shutting down: no longer listening
            (data_dir / "release").touch()
            resp = await request
            assert resp.status == 200
            assert await resp.json() == {"finished": True, "image": image_id}
        assert await proc.wait() == 0
        assert (data_dir / "catalog-closed").exists()  # cleanup ran after the request finished
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
