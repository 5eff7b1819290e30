"""``GET /ping`` answers as muskie's load-balancer check (lib/other.js ``GetPing``), and
``fake-manta --version`` names the installed distribution's version.

muskie mounts ``/ping`` before its handler chain (restify 6 copies ``use()`` handlers only into
routes mounted after them), so the answer carries only what restify and node add: ``Server``
(restify, from the server's name), ``Date``, ``Connection: close`` and ``Content-Length: 0``;
no request id, no auth, no audit record.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import aiohttp

from fake_manta import FakeMantaServer


async def test_ping_is_an_empty_200_that_closes_the_connection() -> None:
    # auth on, and no account named "ping": the check must not depend on either
    async with FakeMantaServer(port=0) as server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/ping") as resp:
            body = await resp.read()
            assert resp.status == 200
            headers = {k.lower(): v for k, v in resp.headers.items()}
        assert body == b""
        assert headers.pop("date")
        assert headers == {"server": "Manta/2", "connection": "close", "content-length": "0"}
        assert server.requests == []  # muskie's audit logger skips /ping


async def test_ping_ignores_faults_and_head_ping_is_the_account_ping() -> None:
    async with FakeMantaServer(port=0) as server, aiohttp.ClientSession() as http:
        server.faults.add(None, "", status=503, times=None)
        async with http.get(f"{server.url}/ping") as resp:
            assert resp.status == 200
        server.faults.reset()
        # muskie has no HEAD /ping route: HEAD /ping is HeadRootDir of the login "ping"
        async with http.head(f"{server.url}/ping") as resp:
            assert resp.status == 403
        assert [r["route"] for r in server.requests] == ["HeadRootDir"]


def test_version_names_the_installed_distribution() -> None:
    proc = subprocess.run([sys.executable, "-m", "fake_manta", "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"fake-manta {metadata.version('cloudapi-gateway')}\n"
