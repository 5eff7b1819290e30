"""The gateway's log, piped through the npm ``bunyan`` CLI as Triton operators read it.

A real ``cloudapi-gateway serve`` writes JSON records (stderr); after a few requests its log is
fed to ``bunyan``: pretty-printed, filtered by level and by a condition on the audit records.
If a record were not bunyan's format, the CLI would echo the raw line instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.npm_tools import ensure_npm_package, run_cli

pytestmark = pytest.mark.clients

BUNYAN = ("bunyan", "1.8.15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def gateway_log(tmp_path: Path) -> Path:
    """Serve, answer a ping, a refused request and a 404, stop; the log file it wrote."""
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {**os.environ, "CLOUDAPI_GATEWAY_METRICS__LISTEN": ""}
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "data"),
            "--port", str(port), env=env, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(300):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/--ping") as resp:
                            assert resp.status == 200
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                async with session.get(f"http://127.0.0.1:{port}/alice/images") as resp:
                    assert resp.status == 401
                async with session.get(f"http://127.0.0.1:{port}/no/such/route/here") as resp:
                    assert resp.status == 404
        finally:
            process.terminate()
            await process.wait()
    return log


async def bunyan(bin_dir: Path, log: Path, *args: str) -> list[str]:
    code, out, err = await run_cli(
        [str(bin_dir / "bunyan"), "--no-color", *args, str(log)], {**os.environ}
    )
    assert code == 0, err
    return out.splitlines()


async def test_the_log_reads_in_the_bunyan_cli(tmp_path: Path) -> None:
    bin_dir = ensure_npm_package(*BUNYAN)
    log = await gateway_log(tmp_path)
    raw = [line for line in log.read_text().splitlines() if line.strip()]
    assert raw and all(line.startswith("{") for line in raw), raw[:3]

    short = await bunyan(bin_dir, log, "-o", "short")
    assert len(short) >= len(raw)  # every record printed (some span two lines)
    assert not any(line.startswith("{") for line in short), "bunyan echoed a raw line"
    assert any(" INFO " in line and "cloudapi-gateway" in line for line in short)

    audits = await bunyan(bin_dir, log, "-o", "short", "-c", "this.audit === true")
    routes = " ".join(audits)
    assert "ping" in routes and "listimages" in routes
    assert any("401" in line for line in audits)

    refused = "\n".join(
        await bunyan(bin_dir, log, "-o", "json", "-c", "this.res && this.res.statusCode == 401")
    )
    assert '"statusCode": 401' in refused and '"statusCode": 200' not in refused

    warnings_only = await bunyan(bin_dir, log, "-l", "warn", "-o", "short")
    assert not any(" INFO " in line for line in warnings_only)
