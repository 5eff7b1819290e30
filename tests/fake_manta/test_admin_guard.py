"""The admin surface (``/_fake/``) cannot be driven by a web page in a developer's browser:
every request needs ``X-Fake-Manta-Admin: 1``, writes need a JSON content type, a foreign
``Origin`` or a DNS name in ``Host`` is refused, and only loopback (or ``--admin-from``) peers
are admitted. Refused requests change nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from fake_manta import ADMIN_HEADERS

ROOT = Path(__file__).resolve().parents[2]
JSON = {"Content-Type": "application/json"}


async def state(manta) -> dict:
    async with manta.session.get(f"{manta.url}/_fake/state", headers=ADMIN_HEADERS) as r:
        assert r.status == 200
        return await r.json()


@pytest.mark.parametrize("method, path", [
    ("GET", "/_fake/state"), ("GET", "/_fake/faults"), ("GET", "/_fake/requests"),
    ("POST", "/_fake/reset"), ("DELETE", "/_fake/faults"), ("OPTIONS", "/_fake/reset"),
])
async def test_every_admin_request_needs_the_header(manta, method: str, path: str) -> None:
    await manta.put(f"{manta.stor}/keep", b"x")
    msg = await manta.error(method, manta.url + path, 403, "AuthorizationFailed", headers=JSON)
    assert "X-Fake-Manta-Admin" in msg
    assert (await state(manta))["objects"] == 1


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
])
async def test_admin_writes_need_a_json_content_type(manta, content_type: str | None) -> None:
    """The content types a cross-site form or ``fetch`` can send without a preflight."""
    await manta.put(f"{manta.stor}/keep", b"x")
    headers = dict(ADMIN_HEADERS)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"login": "mallory", "keys": []}'
    for path in ("/_fake/reset", "/_fake/accounts", "/_fake/faults"):
        await manta.error("POST", manta.url + path, 415, "UnsupportedMediaType",
                          headers=headers, data=body)
    current = await state(manta)
    assert current["objects"] == 1
    assert "mallory" not in {a["login"] for a in current["accounts"]}
    assert manta.server.faults.rules() == []


async def test_foreign_origin_is_refused(manta) -> None:
    for origin in ("https://evil.example", "null", "http://localhost:1"):
        await manta.error("POST", f"{manta.url}/_fake/accounts", 403, "AuthorizationFailed",
                          headers={**ADMIN_HEADERS, "Origin": origin},
                          json={"login": "mallory", "keys": []})
    assert "mallory" not in {a["login"] for a in (await state(manta))["accounts"]}
    own = manta.url  # http://127.0.0.1:PORT, the page the fake itself would serve
    async with manta.session.get(f"{manta.url}/_fake/state",
                                 headers={**ADMIN_HEADERS, "Origin": own}) as r:
        assert r.status == 200


async def test_dns_rebinding_host_is_refused(manta) -> None:
    port = manta.url.rsplit(":", 1)[1]
    await manta.error("GET", f"{manta.url}/_fake/state", 403, "AuthorizationFailed",
                      headers={**ADMIN_HEADERS, "Host": f"rebind.evil.example:{port}"})
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        async with manta.session.get(f"{manta.url}/_fake/state",
                                     headers={**ADMIN_HEADERS, "Host": host}) as r:
            assert r.status == 200, host


async def test_deeply_nested_admin_json_is_400(manta) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    for path, code in (("/_fake/accounts", "BadRequest"), ("/_fake/users", "BadRequest"),
                       ("/_fake/faults", "InvalidArgumentError")):
        await manta.error("POST", manta.url + path, 400, code,
                          headers={**ADMIN_HEADERS, **JSON}, data=nested)


_PEER_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import aiohttp
    from fake_manta import ADMIN_HEADERS, FakeMantaServer

    async def main(admin_from):
        async with FakeMantaServer(host="10.9.9.9", no_auth=True, admin_from=admin_from) as s:
            async with aiohttp.ClientSession() as http, http.get(
                    f"{s.url}/_fake/state", headers=ADMIN_HEADERS) as r:
                return r.status, (await r.json())

    print(json.dumps([asyncio.run(main(())), asyncio.run(main(["10.9.9.0/24"]))]))
""")


def test_non_loopback_peers_need_admin_from(tmp_path: Path) -> None:
    """A private network namespace where 10.9.9.9 is a local, non-loopback address."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("NOTICE: needs unshare and ip to make a private network namespace")
    script = tmp_path / "peer.py"
    script.write_text(_PEER_SCRIPT)
    setup = "ip link set lo up && ip addr add 10.9.9.9/32 dev lo"
    for prefix in (["unshare", "-n"], ["unshare", "-r", "-n"]):
        proc = subprocess.run([*prefix, "sh", "-c", f"{setup} && {sys.executable} {script}"],
                              capture_output=True, text=True, cwd=str(ROOT), timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode == 0:
            break
    else:
        pytest.skip(f"NOTICE: no private network namespace here: {proc.stderr[-300:]}")
    (refused_status, refused), (admitted_status, admitted) = json.loads(proc.stdout)
    assert (refused_status, refused["code"]) == (403, "AuthorizationFailed")
    assert "--admin-from" in refused["message"]
    assert admitted_status == 200 and admitted["backend"] == "memory"


def test_cli_rejects_a_bad_admin_from() -> None:
    proc = subprocess.run([sys.executable, "-m", "fake_manta", "--admin-from", "nonsense"],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert proc.returncode != 0
    assert "--admin-from" in proc.stderr and "Traceback" not in proc.stderr


async def test_python_helpers_send_what_is_needed(manta) -> None:
    """``ADMIN_HEADERS`` plus aiohttp's ``json=`` is all a test needs."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{manta.url}/_fake/accounts", headers=ADMIN_HEADERS,
            json={"login": "carol", "keys": []}) as r:
        assert r.status == 201
