"""A mixed CloudAPI workload against one gateway instance and against three.

Each setup starts real processes, like production: an on-disk fake Manta (``python -m
fake_manta``) holding the object-store catalog's files and every export, and N
``cloudapi-gateway serve`` instances sharing one database (PostgreSQL for several instances;
``sqlite-1`` is one instance on its embedded SQLite files). Accounts, keys and images are put
in place through the CLI (``accounts add``, ``keys add``, ``images import``), as an operator
would. Then 16 closed-loop clients (each sends its next request when the last one answered)
send a fixed number of requests, spread round-robin over the instances (no load balancer
needed on loopback): mostly GetImage and ListImages, and some ExportImage of small images to
a handful of shared destinations (so exports contend for destinations across instances, as the
journal must serialize them). All clients sign as one account, whose export cap
(``[limits] max_exports_per_account``) is raised to 64 so that it never refuses them.

The report gives, per setup: throughput, p50/p99 latency per request type, errors (anything
but the expected 200), and the instances' own CPU time per request (``/proc/<pid>/stat``; the
load generator shares the machine's cores). For one-instance setups it also measures item 5 of
the scale-out issue: signed GetImage vs unauthenticated ``/--ping``, alternating rounds.

Clients sign once per (request, Date second) and reuse that header within the second (as
``bench/auth_rps.py`` does): a real client signs every request, but here the load generator
shares two cores with the servers, and its RSA signing would dominate the machine. The
servers verify every request in full.

    python3 bench/load.py [--requests 4000] [--clients 16] [--setups sqlite-1,pg-1,pg-3]
                          [--database-url postgresql://...] [--json]

Without ``--database-url`` the PostgreSQL setups run on a throwaway cluster started with
``tests/support/postgres.py`` (Debian's PostgreSQL binaries; as root it runs as ``postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.httpsig import RequestSigner, ssh_public_key_line

REPO = Path(__file__).resolve().parent.parent
LOGIN = "bench"
OPERATOR = "operator"
IMAGES_PREFIX = f"/{OPERATOR}/stor/imgapi"
SETUPS = ("sqlite-1", "pg-1", "pg-3")
#: Default share of each request type in the mix (percent).
MIX = {"GetImage": 60, "ListImages": 37, "ExportImage": 3}
#: Distinct export destinations: few, so that exports meet at one across instances.
DESTINATIONS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- the pieces: keys, PostgreSQL, fake Manta, gateways -----------------------------------------


@dataclass
class Workspace:
    """Keys and the environment every process of one setup shares."""

    root: Path
    user_key: rsa.RSAPrivateKey
    operator_key_file: Path
    user_pub: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> Workspace:
        keys = root / "keys"
        keys.mkdir(parents=True)
        operator = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        operator_file = keys / "operator_id_rsa"
        operator_file.write_bytes(
            operator.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        operator_file.chmod(0o600)
        (keys / "operator.pub").write_text(ssh_public_key_line(operator, OPERATOR) + "\n")
        user = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        user_pub = keys / "bench.pub"
        user_pub.write_text(ssh_public_key_line(user, LOGIN) + "\n")
        return cls(root, user, operator_file, user_pub)


def postgres_url_from_test_support() -> tuple[str, Any]:
    """A throwaway cluster (``tests/support/postgres.py``) and a migrated database in it."""
    sys.path.insert(0, str(REPO))
    from tests.support.postgres import PostgresCluster, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"cannot start PostgreSQL: {reason} (or pass --database-url)")
    cluster = PostgresCluster().start()
    cluster.create_template()
    return cluster.new_database(), cluster


def run_cli(ws: Workspace, *args: str, data_dir: Path) -> str:
    """``cloudapi-gateway ARGS`` with the setup's environment; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--data-dir", str(data_dir)],
        env=ws.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"cloudapi-gateway {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


async def wait_ready(url: str, process: asyncio.subprocess.Process, log: Path, ping: str) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 120
        while True:
            if process.returncode is not None:
                tail = await asyncio.to_thread(log.read_text, errors="replace")
                raise SystemExit(f"{url} exited:\n{tail[-2000:]}")
            try:
                async with session.get(url + ping) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within 120 s")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def process(
    argv: list[str], env: dict[str, str], log: Path, url: str, ping: str = "/--ping"
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, once ``url + ping`` answers 200; terminated on exit."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out)
    try:
        await wait_ready(url, proc, log, ping)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextmanager
def image_files(root: Path, count: int, size: int) -> Iterator[list[tuple[Path, Path]]]:
    """``count`` small images (manifest file, data file), owner filled in at import."""
    rng = random.Random(7)
    out = []
    for n in range(count):
        data = rng.randbytes(size)
        file = root / f"image{n}.zfs"
        file.write_bytes(data)
        manifest = {
            "v": 2,
            "uuid": str(uuid.uuid4()),
            "owner": "00000000-0000-0000-0000-000000000000",
            "name": f"load{n}",
            "version": "1.0.0",
            "state": "active",
            "disabled": False,
            "public": False,
            "published_at": f"2024-01-{n % 28 + 1:02d}T00:00:00Z",
            "type": "zone-dataset",
            "os": "smartos",
            "files": [
                {"sha1": hashlib.sha1(data).hexdigest(), "size": size, "compression": "none"}
            ],
            "requirements": {},
        }
        path = root / f"image{n}.imgmanifest"
        path.write_text(json.dumps(manifest))
        out.append((path, file))
    yield out


@dataclass
class Cluster:
    """A running setup: the instances' URLs and processes."""

    urls: list[str]
    pids: list[int]
    image_uuids: list[str]


@asynccontextmanager
async def cluster(
    ws: Workspace, instances: int, database_url: str | None, images: int, image_size: int
) -> AsyncIterator[Cluster]:
    """Fake Manta, the data through the CLI, then ``instances`` gateways; stopped on exit."""
    manta_port = free_port()
    manta_url = f"http://127.0.0.1:{manta_port}"
    ws.env = {
        **os.environ,
        "CLOUDAPI_GATEWAY_STORAGE__KIND": "manta",
        "CLOUDAPI_GATEWAY_STORAGE__URL": manta_url,
        "CLOUDAPI_GATEWAY_STORAGE__USER": OPERATOR,
        "CLOUDAPI_GATEWAY_STORAGE__KEY_FILE": str(ws.operator_key_file),
        "CLOUDAPI_GATEWAY_CATALOG__KIND": "objectstore",
        "CLOUDAPI_GATEWAY_CATALOG__PREFIX": IMAGES_PREFIX,
        "CLOUDAPI_GATEWAY_METRICS__LISTEN": "",
        "CLOUDAPI_GATEWAY_DRAIN_SECONDS": "0",
        # One account stands for every client here: its cap must let each client export.
        "CLOUDAPI_GATEWAY_LIMITS__MAX_EXPORTS_PER_ACCOUNT": "64",
    }
    if database_url:
        ws.env["CLOUDAPI_GATEWAY_DATABASE_URL"] = database_url
    manta_argv = [
        sys.executable, "-m", "fake_manta", "--port", str(manta_port),
        "--data-dir", str(ws.root / "manta"), "--operator", OPERATOR,
        "--account", f"{OPERATOR}={ws.root / 'keys' / 'operator.pub'}",
        "--account", f"{LOGIN}={ws.user_pub}",
    ]  # fmt: skip
    manta_log = ws.root / "manta.log"
    async with process(manta_argv, dict(os.environ), manta_log, manta_url, "/ping"):
        setup_dir = ws.root / "gateway-0"
        await asyncio.to_thread(run_cli, ws, "accounts", "add", LOGIN, data_dir=setup_dir)
        await asyncio.to_thread(
            run_cli, ws, "keys", "add", LOGIN, str(ws.user_pub), data_dir=setup_dir
        )
        uuids = []
        with image_files(ws.root, images, image_size) as files:
            for manifest, file in files:
                await asyncio.to_thread(
                    run_cli, ws, "images", "import", "--owner", LOGIN, str(manifest), str(file),
                    data_dir=setup_dir,
                )  # fmt: skip
                uuids.append(json.loads(manifest.read_text())["uuid"])
        async with gateways(ws, instances) as (urls, pids):
            yield Cluster(urls, pids, uuids)


@asynccontextmanager
async def gateways(ws: Workspace, count: int) -> AsyncIterator[tuple[list[str], list[int]]]:
    """``count`` serve processes; instance 0 uses the data dir the CLI set up (SQLite)."""
    ports = [free_port() for _ in range(count)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    pids: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for n, (port, url) in enumerate(zip(ports, urls, strict=True)):
            argv = [
                sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--data-dir", str(ws.root / f"gateway-{n}"),
            ]  # fmt: skip
            log = ws.root / f"gateway-{n}.log"
            proc = await stack.enter_async_context(process(argv, ws.env, log, url))
            pids.append(proc.pid)
        yield urls, pids


# --- the load --------------------------------------------------------------------------------


class Signer:
    """Signed headers, made once per (method, path, Date second)."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._signer = RequestSigner.for_login(key, LOGIN)
        self._cache: dict[tuple[str, str], dict[str, str]] = {}
        self._date = ""

    def headers(self, method: str, path: str) -> dict[str, str]:
        date = formatdate(usegmt=True)
        if date != self._date:
            self._cache.clear()
            self._date = date
        key = (method, path)
        if key not in self._cache:
            self._cache[key] = self._signer.sign(
                method, path, {"Date": date, "Accept": "application/json"}
            )
        return self._cache[key]


@dataclass
class Sample:
    kind: str
    seconds: float
    ok: bool


def plan(
    requests: int, image_uuids: list[str], seed: int, mix: dict[str, int]
) -> list[tuple[str, str, str]]:
    """The fixed sequence of requests: (kind, method, path), drawn with ``mix``'s weights."""
    rng = random.Random(seed)
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=requests)
    out = []
    for kind in kinds:
        image = rng.choice(image_uuids)
        if kind == "ExportImage":
            dest = f"/{LOGIN}/stor/load-{rng.randrange(DESTINATIONS)}"
            path = f"/{LOGIN}/images/{image}?action=export&manta_path={dest}"
            out.append((kind, "POST", path))
        elif kind == "GetImage":
            out.append((kind, "GET", f"/{LOGIN}/images/{image}"))
        else:
            out.append((kind, "GET", f"/{LOGIN}/images"))
    return out


def parse_mix(text: str) -> dict[str, int]:
    """``get=60,list=37,export=3`` -> weights by request type."""
    names = {"get": "GetImage", "list": "ListImages", "export": "ExportImage"}
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in names or not weight.isdigit():
            raise argparse.ArgumentTypeError(f"expected get=N,list=N,export=N, not {text!r}")
        mix[names[name]] = int(weight)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the weights add up to 0")
    return mix


async def drive(
    urls: list[str], signer: Signer, work: list[tuple[str, str, str]], clients: int
) -> tuple[list[Sample], float, list[str]]:
    """Closed loop: ``clients`` workers take the next request off ``work`` until it is empty;
    request n goes to instance ``n % len(urls)``."""
    samples: list[Sample] = []
    problems: list[str] = []
    queue = list(enumerate(work))
    queue.reverse()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while queue:
                n, (kind, method, path) = queue.pop()
                url = urls[n % len(urls)] + path
                headers = signer.headers(method, path)
                started = time.perf_counter()
                ok = False
                try:
                    async with session.request(method, url, headers=headers) as resp:
                        body = await resp.read()
                        ok = resp.status == 200
                        if not ok and len(problems) < 20:
                            problems.append(f"{kind} {resp.status} {body[:200]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if len(problems) < 20:
                        problems.append(f"{kind} {type(exc).__name__}: {exc}")
                samples.append(Sample(kind, time.perf_counter() - started, ok))

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - started
    return samples, elapsed, problems


def summarize(samples: list[Sample], elapsed: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requests": len(samples),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(samples) / elapsed, 1),
        "errors": sum(not s.ok for s in samples),
        "by_type": {},
    }
    for kind in ("GetImage", "ListImages", "ExportImage"):
        times = [s.seconds * 1000 for s in samples if s.kind == kind]
        if times:
            out["by_type"][kind] = {
                "count": len(times),
                "p50_ms": round(percentile(times, 50), 1),
                "p99_ms": round(percentile(times, 99), 1),
                "errors": sum(not s.ok for s in samples if s.kind == kind),
            }
    return out


async def ratio(
    url: str, pid: int, signer: Signer, image: str, rounds: int, seconds: float, clients: int
) -> dict[str, Any]:
    """Signed GetImage vs ``/--ping`` on one instance: alternating rounds, medians."""
    targets = {"ping": ("/--ping", False), "getimage": (f"/{LOGIN}/images/{image}", True)}
    rates: dict[str, list[float]] = {"ping": [], "getimage": []}
    cpu: dict[str, list[float]] = {"ping": [], "getimage": []}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(rounds):
            for name in list(targets) if n % 2 == 0 else list(reversed(targets)):
                path, signed = targets[name]
                count = 0
                deadline = time.monotonic() + seconds

                async def worker(
                    path: str = path, signed: bool = signed, deadline: float = deadline
                ) -> None:
                    nonlocal count
                    while time.monotonic() < deadline:
                        headers = signer.headers("GET", path) if signed else {}
                        async with session.get(url + path, headers=headers) as resp:
                            await resp.read()
                            if resp.status != 200:
                                raise SystemExit(f"{path}: {resp.status}")
                            count += 1

                started, used = time.monotonic(), cpu_seconds(pid)
                await asyncio.gather(*(worker() for _ in range(clients)))
                elapsed, used = time.monotonic() - started, cpu_seconds(pid) - used
                rates[name].append(count / elapsed)
                cpu[name].append(used / max(count, 1) * 1e6)
    ping, get = statistics.median(rates["ping"]), statistics.median(rates["getimage"])
    ping_cpu, get_cpu = statistics.median(cpu["ping"]), statistics.median(cpu["getimage"])
    return {
        "ping_rps": round(ping),
        "signed_getimage_rps": round(get),
        "ratio": round(get / ping, 3),
        "server_cpu_us_ping": round(ping_cpu),
        "server_cpu_us_getimage": round(get_cpu),
        "cpu_ratio": round(ping_cpu / get_cpu, 3),
    }


async def run_setup(
    name: str, args: argparse.Namespace, database_url: str | None
) -> dict[str, Any]:
    engine, _, count = name.partition("-")
    instances = int(count)
    with tempfile.TemporaryDirectory(prefix=f"bench-load-{name}-") as tmp:
        ws = await asyncio.to_thread(Workspace.create, Path(tmp))
        url = database_url if engine == "pg" else None
        async with cluster(ws, instances, url, args.images, args.image_size) as running:
            signer = Signer(ws.user_key)
            work = plan(args.requests, running.image_uuids, 1, args.mix)
            # Warm-up: every instance sees every request type.
            warm = plan(10 * instances, running.image_uuids, 2, args.mix)
            await drive(running.urls, signer, warm, 4)
            cpu_before = sum(cpu_seconds(pid) for pid in running.pids)
            samples, elapsed, problems = await drive(running.urls, signer, work, args.clients)
            cpu_used = sum(cpu_seconds(pid) for pid in running.pids) - cpu_before
            result = {"setup": name, "instances": instances, **summarize(samples, elapsed)}
            result["server_cpu_us_per_request"] = round(cpu_used / len(samples) * 1e6)
            result["problems"] = problems
            if instances == 1 and args.ratio_rounds:
                result["auth_ratio"] = await ratio(
                    running.urls[0], running.pids[0], signer, running.image_uuids[0],
                    args.ratio_rounds, args.ratio_seconds, args.clients,
                )  # fmt: skip
    return result


def print_result(r: dict[str, Any]) -> None:
    print(
        f"\n{r['setup']}: {r['requests']} requests in {r['seconds']} s = "
        f"{r['throughput_rps']} req/s, errors {r['errors']}, "
        f"server CPU {r['server_cpu_us_per_request']} us/request (all instances)"
    )
    for kind, row in r["by_type"].items():
        print(
            f"  {kind:12s} n={row['count']:5d}  p50 {row['p50_ms']:7.1f} ms  "
            f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}"
        )
    for problem in r["problems"][:5]:
        print(f"  ! {problem}")
    if "auth_ratio" in r:
        a = r["auth_ratio"]
        print(
            f"  signed GetImage / ping: {a['signed_getimage_rps']} / {a['ping_rps']} req/s = "
            f"{a['ratio']}; server CPU {a['server_cpu_us_getimage']} / "
            f"{a['server_cpu_us_ping']} us per request = {a['cpu_ratio']}"
        )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    database_url = args.database_url
    pg_cluster = None
    try:
        if database_url is None and any(s.startswith("pg") for s in args.setups):
            database_url, pg_cluster = await asyncio.to_thread(postgres_url_from_test_support)
        results = []
        for name in args.setups:
            if database_url and name.startswith("pg"):
                await asyncio.to_thread(_reset, database_url)
            result = await run_setup(name, args, database_url)
            if not args.json:
                print_result(result)
            results.append(result)
        return results
    finally:
        if pg_cluster is not None:
            pg_cluster.stop()


def _reset(url: str) -> None:
    """Empty the shared database's tables between setups (each setup makes its own data)."""
    import asyncpg

    async def work() -> None:
        from gateway.server.database.postgres import PoolOptions, PostgresDatabase

        db = await PostgresDatabase.connect(PoolOptions(url=url, pool_size=1))
        try:
            await db.upgrade()
        finally:
            await db.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "TRUNCATE image_locations, image_records, journal, keys, accounts CASCADE"
            )
        finally:
            await conn.close()

    asyncio.run(work())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per setup")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument(
        "--setups",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(SETUPS),
        help="comma-separated, of " + ", ".join(SETUPS) + " (default: all)",
    )
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=dict(MIX),
        help="request weights, default get=60,list=37,export=3",
    )
    parser.add_argument("--images", type=int, default=20, help="images in the catalog")
    parser.add_argument("--image-size", type=int, default=64 * 1024, help="bytes per image")
    parser.add_argument("--ratio-rounds", type=int, default=4, help="0: skip the auth ratio")
    parser.add_argument("--ratio-seconds", type=float, default=3.0)
    parser.add_argument("--database-url", help="postgresql:// URL for the pg setups")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    args = parser.parse_args(argv)
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown or args.requests < 1 or args.clients < 1:
        parser.error(f"unknown setups {unknown}" if unknown else "counts must be positive")
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
