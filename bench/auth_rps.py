"""What HTTP Signature auth costs: signed GetImage vs unauthenticated Ping, requests per second.

One run starts the real gateway (``create_app`` on a temporary data dir, one account with one
key, one imported image) in this process, and a load generator in a separate process: an
aiohttp client with N concurrent keep-alive workers on loopback. Rounds alternate ``GET
/--ping`` and a signed ``GET /<login>/images/<uuid>``; the report gives the median of each and
their ratio. The client signs once per Date second (a real client signs every request, but
with RSA the signature of one Date is the same bytes each time; this keeps the client's signing
cost out of the server's measurement). The server parses and checks every request (Date, clock
skew, keyId, key, the signing string), and verifies a signature it has not verified with that
key before (``gateway.server.key_cache``). ``--sign-each-request --key ecdsa`` makes every
signature new (ECDSA signatures are randomized), so every request pays a verification.

The load generator shares the machine's cores with the server, so each measurement also
records the server process's own CPU time (all its threads): requests per server CPU-second
is the capacity figure that other load on a shared machine disturbs least.

``--database-url postgresql://...`` puts accounts and keys in PostgreSQL instead of the
embedded SQLite file (the schema is migrated first; ``python -m tests.support.postgres``
starts a throwaway cluster and prints such a URL).

    python bench/auth_rps.py [--rounds 5] [--duration 3] [--concurrency 16] [--key rsa]
                             [--database-url URL] [--without-key-cache]
                             [--sign-each-request]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from email.utils import formatdate
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import httpsig
from gateway.server.app import create_app
from gateway.server.appkeys import ACCOUNTS, CATALOG
from gateway.server.key_cache import key_cache_ctx
from gateway.settings import Settings


def new_key(kind: str) -> httpsig.PrivateKey:
    """The caller's key: ``rsa`` (2048, the common case), ``ecdsa`` (P-256) or ``ed25519``."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the load generator (child process) -------------------------------------------------------


async def _load(
    url: str,
    path: str,
    signer: httpsig.RequestSigner | None,
    duration: float,
    concurrency: int,
    each: bool = False,
) -> dict[str, float]:
    """Hammer ``url + path`` with ``concurrency`` workers for ``duration`` seconds; ``each``:
    sign every request anew instead of once per Date second."""
    cache: dict[str, dict[str, str]] = {}

    def headers() -> dict[str, str]:
        if signer is None:
            return {}
        date = formatdate(usegmt=True)
        if each:
            return signer.sign("GET", path, {"Date": date})
        if date not in cache:
            cache.clear()
            cache[date] = signer.sign("GET", path, {"Date": date})
        return cache[date]

    ok = errors = total = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(deadline: float) -> None:
            nonlocal ok, errors, total
            while time.monotonic() < deadline:
                async with session.get(url + path, headers=headers()) as resp:
                    await resp.read()
                    total += 1
                    if resp.status == 200:
                        ok += 1
                    else:
                        errors += 1

        warm = time.monotonic() + min(1.0, duration / 3)
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        ok = errors = 0
        start = time.monotonic()
        await asyncio.gather(*(worker(start + duration) for _ in range(concurrency)))
        elapsed = time.monotonic() - start
    return {"rps": ok / elapsed, "ok": ok, "errors": errors, "seconds": elapsed, "total": total}


def loadgen_main(conn: Connection, key_pem: bytes, key_id: str) -> None:
    """Child process: run each measurement the parent asks for and send the result back."""
    key = httpsig.load_private_key(key_pem)
    while True:
        job = conn.recv()
        if job is None:
            return
        signer = httpsig.RequestSigner(key, key_id) if job["signed"] else None
        result = asyncio.run(
            _load(
                job["url"],
                job["path"],
                signer,
                job["duration"],
                job["concurrency"],
                job["sign_each_request"],
            )
        )
        conn.send(result)


# --- the gateway (this process) -------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def migrate(url: str) -> None:
    """Bring a PostgreSQL database to this code's schema (``cloudapi-gateway db upgrade``)."""
    from gateway.server.database.postgres import PoolOptions, PostgresDatabase

    db = await PostgresDatabase.connect(PoolOptions(url=url, pool_size=1))
    try:
        await db.upgrade()
    finally:
        await db.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    key = new_key(args.key)
    login = f"bench{uuid.uuid4().hex[:8]}"  # unique: a shared database may hold older runs
    database: dict[str, Any] = {}
    if args.database_url:
        await migrate(args.database_url)
        database = {"url": args.database_url}
    with tempfile.TemporaryDirectory(prefix="auth-rps-") as tmp:
        port = free_port()
        settings = Settings(
            data_dir=Path(tmp) / "data", host="127.0.0.1", port=port, database=database
        )
        app = create_app(settings)
        if args.without_key_cache:  # the A/B baseline: every request asks the account store
            app.cleanup_ctx.remove(key_cache_ctx)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            account = await app[ACCOUNTS].add_account(login)
            record = await app[ACCOUNTS].add_key(login, httpsig.ssh_public_key_line(key))
            data = b"bench image bytes\n" * 64
            manifest = {
                "v": 2,
                "uuid": str(uuid.uuid4()),
                "owner": account.uuid,
                "name": "bench",
                "version": "1.0.0",
                "state": "active",
                "disabled": False,
                "public": False,
                "published_at": "2024-01-01T00:00:00Z",
                "type": "zone-dataset",
                "os": "smartos",
                "files": [
                    {
                        "sha1": hashlib.sha1(data).hexdigest(),
                        "size": len(data),
                        "compression": "none",
                    }
                ],
                "requirements": {},
            }
            image = await app[CATALOG].import_image(manifest, _chunks(data))
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            parent, child = mp.get_context("spawn").Pipe()
            proc = mp.get_context("spawn").Process(
                target=loadgen_main,
                args=(child, key_pem, f"/{login}/keys/{record.fingerprint}"),
                daemon=True,
            )
            proc.start()
            url = f"http://127.0.0.1:{port}"
            targets = {
                "ping": ("/--ping", False),
                "getimage": (f"/{login}/images/{image.uuid}", True),
            }
            rounds: list[dict[str, Any]] = []
            try:
                for n in range(args.rounds):
                    row: dict[str, Any] = {"round": n + 1}
                    order = list(targets) if n % 2 == 0 else list(reversed(targets))
                    for name in order:
                        path, signed = targets[name]
                        parent.send(
                            {
                                "url": url,
                                "path": path,
                                "signed": signed,
                                "duration": args.duration,
                                "concurrency": args.concurrency,
                                "sign_each_request": args.sign_each_request,
                            }
                        )
                        cpu = time.process_time()
                        row[name] = await asyncio.to_thread(parent.recv)
                        cpu = time.process_time() - cpu
                        row[name]["cpu_us_per_request"] = cpu / max(1, row[name]["total"]) * 1e6
                    rounds.append(row)
                    print(
                        f"round {n + 1}: ping {row['ping']['rps']:8.0f} req/s   "
                        f"signed GetImage {row['getimage']['rps']:8.0f} req/s   "
                        f"server CPU {row['ping']['cpu_us_per_request']:.0f} / "
                        f"{row['getimage']['cpu_us_per_request']:.0f} us per request   "
                        f"errors {row['ping']['errors'] + row['getimage']['errors']}",
                        file=sys.stderr,
                    )
            finally:
                parent.send(None)
                proc.join(10)
        finally:
            await runner.cleanup()
    ping = statistics.median(r["ping"]["rps"] for r in rounds)
    get = statistics.median(r["getimage"]["rps"] for r in rounds)
    ping_cpu = statistics.median(r["ping"]["cpu_us_per_request"] for r in rounds)
    get_cpu = statistics.median(r["getimage"]["cpu_us_per_request"] for r in rounds)
    return {
        "database": "postgresql" if args.database_url else "sqlite",
        "key_cache": not args.without_key_cache,
        "sign_each_request": args.sign_each_request,
        "key": args.key,
        "algorithm": httpsig.default_algorithm(key),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "ping_rps_median": round(ping, 1),
        "signed_getimage_rps_median": round(get, 1),
        "ratio_getimage_to_ping": round(get / ping, 3) if ping else None,
        "server_cpu_us_ping": round(ping_cpu),
        "server_cpu_us_getimage": round(get_cpu),
        "cpu_ratio_getimage_to_ping": round(ping_cpu / get_cpu, 3) if get_cpu else None,
        "errors": sum(r["ping"]["errors"] + r["getimage"]["errors"] for r in rounds),
        "per_round": [
            {"ping": round(r["ping"]["rps"], 1), "getimage": round(r["getimage"]["rps"], 1)}
            for r in rounds
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent client workers")
    parser.add_argument("--key", choices=["rsa", "ecdsa", "ed25519"], default="rsa")
    parser.add_argument("--database-url", help="postgresql:// URL (default: embedded SQLite)")
    parser.add_argument(
        "--without-key-cache",
        action="store_true",
        help="A/B baseline: no verified-key cache (every request asks the account store)",
    )
    parser.add_argument(
        "--sign-each-request",
        action="store_true",
        help="the client signs every request anew (with --key ecdsa every signature differs, "
        "so the server verifies every one: no remembered signatures)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    summary = asyncio.run(run(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"unauthenticated GET /--ping : {summary['ping_rps_median']:.0f} req/s (median)\n"
            f"database                   : {summary['database']}\n"
            f"signed GetImage ({summary['algorithm']}): "
            f"{summary['signed_getimage_rps_median']:.0f} req/s (median)\n"
            f"ratio GetImage/Ping        : {summary['ratio_getimage_to_ping']}\n"
            f"server CPU per request     : ping {summary['server_cpu_us_ping']} us, "
            f"GetImage {summary['server_cpu_us_getimage']} us "
            f"(ratio {summary['cpu_ratio_getimage_to_ping']})\n"
            f"errors                     : {summary['errors']}"
        )
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
