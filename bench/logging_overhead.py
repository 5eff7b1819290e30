"""Request throughput of ``cloudapi-gateway serve`` with its JSON logs on and off.

Each run starts a gateway process, drives requests from ``--clients`` concurrent keep-alive
connections for ``--seconds``, and counts the answers: ``GET /--ping`` (the cheapest request,
so the worst case for logging's share) and a signed ``GET /bench/images`` (ListImages with
HTTP Signature auth, what clients mostly send). "On" is the default
(``--log-level info``: one JSON audit record per request, to a file); "off" is
``--log-level fatal`` (no record is written). Runs alternate on/off so that the machine's
drift hits both alike; the table gives medians and the ratio off/on (goal: on within 10%).

The load generator (signing each request) runs on the same two cores as the server, so the
answered requests per second understate what the server alone can do; the table therefore also
gives the server process's own CPU time per request (``/proc/<pid>/stat``, user + system), and
the throughput that CPU time allows, ``1 / (CPU s per request)``: the server's capacity, with
the client's share of the machine taken out.

    python3 bench/logging_overhead.py [--runs 5] [--seconds 5] [--clients 16] [--only ping]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.httpsig import RequestSigner, ssh_public_key_line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_account(workdir: Path) -> RequestSigner:
    """The account ``bench`` with a fresh ECDSA key, in the data directory the runs share."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = workdir / "bench.pub"
    public.write_text(ssh_public_key_line(key, "bench") + "\n")
    data = str(workdir / "data")
    for args in (["accounts", "add", "bench"], ["keys", "add", "bench", str(public)]):
        subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--data-dir", data],
            check=True,
            capture_output=True,
        )
    return RequestSigner.for_login(key, "bench")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_run(
    level: str,
    path: str,
    signer: RequestSigner | None,
    seconds: float,
    clients: int,
    workdir: Path,
    server_cpu: int | None = None,
) -> tuple[float, float]:
    """(requests per second answered, server CPU seconds per request) by a fresh gateway
    logging at ``level``."""
    port = free_port()
    env = {**os.environ, "CLOUDAPI_GATEWAY_METRICS__LISTEN": ""}
    log = workdir / f"gateway-{level}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--data-dir", str(workdir / "data"),
            "--port", str(port), "--log-level", level, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    if server_cpu is not None:
        os.sched_setaffinity(process.pid, {server_cpu})
    base = f"http://127.0.0.1:{port}"

    def headers() -> dict[str, str]:
        return signer.sign("GET", path, {"Accept": "application/json"}) if signer else {}

    try:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(600):
                try:
                    async with session.get(base + "/--ping") as resp:
                        await resp.read()
                        break
                except aiohttp.ClientConnectionError:
                    if process.returncode is not None:
                        tail = log.read_text(errors="replace")[-2000:]
                        raise SystemExit(f"the gateway exited at start-up:\n{tail}") from None
                    await asyncio.sleep(0.05)
            count = 0
            deadline = time.monotonic() + seconds

            async def client() -> None:
                nonlocal count
                while time.monotonic() < deadline:
                    async with session.get(base + path, headers=headers()) as resp:
                        await resp.read()
                        if resp.status == 200:
                            count += 1

            started, cpu = time.monotonic(), cpu_seconds(process.pid)
            await asyncio.gather(*(client() for _ in range(clients)))
            elapsed, cpu = time.monotonic() - started, cpu_seconds(process.pid) - cpu
            return count / elapsed, cpu / max(count, 1)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--only", choices=("ping", "ListImages"), help="measure one request (default: both)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler move the server and the load generator between cores",
    )
    args = parser.parse_args()
    # The server on one core, the load generator on the others: on a small machine the
    # scheduler otherwise moves both around, and that noise swamps a few microseconds.
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if not args.no_pin and len(cpus) >= 2 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus) - {server_cpu})
    print("not pinned" if server_cpu is None else f"server pinned to CPU {server_cpu}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        workdir = Path(tmp)
        signer = make_account(workdir)
        cases = (("ping", "/--ping", None), ("ListImages", "/bench/images", signer))
        for label, path, case_signer in cases:
            if args.only not in (None, label):
                continue
            results: dict[str, list[float]] = {"info": [], "fatal": []}
            capacity: dict[str, list[float]] = {"info": [], "fatal": []}
            for _ in range(args.runs):
                for level in ("info", "fatal"):
                    rate, cpu = await one_run(
                        level, path, case_signer, args.seconds, args.clients, workdir, server_cpu
                    )
                    results[level].append(rate)
                    capacity[level].append(1 / cpu)
                    print(
                        f"  {label} {level:5} {rate:8.0f} req/s answered,"
                        f" {cpu * 1e6:6.0f} us server CPU per request",
                        flush=True,
                    )
            on, off = statistics.median(results["info"]), statistics.median(results["fatal"])
            con, coff = statistics.median(capacity["info"]), statistics.median(capacity["fatal"])
            rows += [
                (f"{label} req/s, JSON logs on (median)", f"{on:.0f} {_rounded(results['info'])}"),
                (f"{label} req/s, logs off (median)", f"{off:.0f} {_rounded(results['fatal'])}"),
                (f"{label} answered ratio on/off", f"{on / off:.2f}"),
                (
                    f"{label} server capacity on, req/CPU-s",
                    f"{con:.0f} {_rounded(capacity['info'])}",
                ),
                (
                    f"{label} server capacity off, req/CPU-s",
                    f"{coff:.0f} {_rounded(capacity['fatal'])}",
                ),
                (f"{label} capacity ratio on/off (goal >= 0.90)", f"{con / coff:.2f}"),
            ]
    print()
    print(f"{'measure':42}  value")
    print(f"{'-' * 42}  {'-' * 30}")
    for name, value in rows:
        print(f"{name:42}  {value}")


def _rounded(values: list[float]) -> list[int]:
    return [round(v) for v in values]


if __name__ == "__main__":
    asyncio.run(main())
