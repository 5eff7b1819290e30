#!/usr/bin/env python3
"""ExportImage benchmarks, on loopback, with every server in its own process.

(a) a big export through the gateway vs ``curl -T`` of the same file (Content-MD5, signed) to
    the same on-disk fake Manta: median MB/s over repetitions and their ratio (goal >= 0.85);
(b) the gateway's peak RSS (VmHWM, a fresh ``cloudapi-gateway serve`` per size) after exporting
    images of each size: it must not grow with the image;
(c) N concurrent exports of one image: total MB/s;
(d) GetImage latency, median and p95, idle and while a big export runs;
(e) ``--target s3``: a big export to a moto server vs the same multipart upload done directly
    with aiobotocore (same part size and concurrency as the plugin's defaults);
(f) ``--wan``: through a long fat link (``bench/wan_proxy.py``: 25 ms each way, 4 MiB in flight
    per connection), an export as a parallel multipart upload (the Manta target's defaults) vs
    the same export as one streamed PUT, and ``curl -T`` through the same link (goal >= 3x).

Temporary files live in a fresh directory under ``--tmp-dir`` and are removed at the end; the
free space there is checked first. ``--quick`` runs small sizes in about a minute. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.cli.dev import DevKey, ensure_gateway_account, ensure_key
from gateway.httpsig import RequestSigner

MiB = 1024 * 1024
CHUNK = 1024 * 1024
PYTHON = sys.executable
GiB = 1024 * MiB
WAN_PROXY = Path(__file__).with_name("wan_proxy.py")

FAKE_MANTA_RUNNER = """
import asyncio, inspect, json, sys
from fake_manta import FakeMantaServer

async def main() -> None:
    cfg = json.loads(sys.argv[1])
    async with FakeMantaServer(host="127.0.0.1", port=cfg["port"], data_dir=cfg["data_dir"]) as fm:
        for login, line, operator in cfg["accounts"]:
            result = fm.add_account(login, public_keys=[line], operator=operator)
            if inspect.isawaitable(result):
                await result
        print(fm.url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a server process (a quick fork/exec, fine to call from the loop)."""
    return subprocess.Popen(cmd, **kwargs)


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` (Linux ``VmHWM``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM (not Linux?)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_file(path: Path, size: int) -> tuple[str, str]:
    """Write ``size`` bytes (a random block repeated with a counter); return (sha1, md5 b64)."""
    block = bytearray(os.urandom(CHUNK))
    sha1, md5 = hashlib.sha1(), hashlib.md5()  # IMGAPI's checksums
    with open(path, "wb") as fh:
        written, n = 0, 0
        while written < size:
            block[:8] = n.to_bytes(8, "big")
            part = memoryview(block)[: min(CHUNK, size - written)]
            fh.write(part)
            sha1.update(part)
            md5.update(part)
            written += len(part)
            n += 1
    return sha1.hexdigest(), base64.b64encode(md5.digest()).decode()


@dataclass
class Proc:
    """A server subprocess and where it listens."""

    popen: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Bench:
    """The shared state of one run: temp dir, keys, the fake Manta, images in the catalog."""

    root: Path
    args: argparse.Namespace
    dev: DevKey = field(init=False)
    operator: DevKey = field(init=False)
    manta: Proc | None = None
    images: dict[int, dict[str, Any]] = field(default_factory=dict)  # size -> manifest
    files: dict[int, Path] = field(default_factory=dict)
    md5s: dict[int, str] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dev = ensure_key(self.root / "keys" / "dev_id_rsa")
        self.operator = ensure_key(self.root / "keys" / "operator_id_rsa")
        self.dev_signer = RequestSigner.for_login(self.dev.key, "dev")

    @property
    def gateway_dir(self) -> Path:
        return self.root / "gateway"

    def report(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name}: {value}", flush=True)

    # --- servers ----------------------------------------------------------------------------

    def start_manta(self) -> None:
        cfg = {
            "port": free_port(),
            "data_dir": str(self.root / "manta"),
            "accounts": [
                ["operator", self.operator.public_line, True],
                ["dev", self.dev.public_line, False],
            ],
        }
        popen = subprocess.Popen(
            [PYTHON, "-c", FAKE_MANTA_RUNNER, json.dumps(cfg)], stdout=subprocess.PIPE
        )
        assert popen.stdout is not None
        url = popen.stdout.readline().decode().strip()
        if not url:
            raise SystemExit("the fake Manta did not start")
        self.manta = Proc(popen, url.rstrip("/"))

    def storage_config(self, target: str, s3: dict[str, Any] | None = None) -> dict[str, Any]:
        if target == "s3":
            assert s3 is not None
            return {"kind": "s3", **s3}
        assert self.manta is not None
        return {
            "kind": "manta",
            "url": self.manta.url,
            "public_url": self.manta.url,
            "user": "operator",
            "key_file": str(self.operator.path),
        }

    def write_config(self, storage: dict[str, Any], name: str | None = None) -> Path:
        lines = [
            f'data_dir = "{self.gateway_dir}"',
            "",
            "[metrics]",
            'listen = ""',
            "",
            "[storage]",
        ]
        lines += [f"{k} = {json.dumps(v)}" for k, v in storage.items()]
        path = self.root / f"gateway-{name or storage['kind']}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def start_gateway(self, storage: dict[str, Any], name: str | None = None) -> Proc:
        """``cloudapi-gateway serve`` in its own process, ready when ListImages answers."""
        config = self.write_config(storage, name)
        port = free_port()
        popen = spawn(
            [
                PYTHON,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
        )
        proc = Proc(popen, f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if popen.poll() is not None:
                    raise SystemExit(f"cloudapi-gateway serve exited with {popen.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(
                        proc.url + "/dev/images", headers=self.signed("GET", "/dev/images")
                    ) as resp:
                        if resp.status == 200:
                            return proc
                await asyncio.sleep(0.1)
        proc.stop()
        raise SystemExit("cloudapi-gateway serve did not answer")

    def signed(self, method: str, path: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "Accept-Version": "~9||~8", **(extra or {})}
        return self.dev_signer.sign(method, path, headers)

    # --- images -----------------------------------------------------------------------------

    async def import_images(self, sizes: list[int]) -> None:
        """Make the files and import them through the catalog (in this process, before serving)."""
        from gateway.server.app import create_app
        from gateway.server.appkeys import CATALOG
        from gateway.settings import Settings

        settings = Settings(data_dir=self.gateway_dir, metrics={"listen": ""})
        owner = await asyncio.to_thread(
            ensure_gateway_account, settings.accounts_db, "dev", self.dev
        )
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            for size in sorted(set(sizes) - set(self.images)):
                path = self.root / f"image-{size // MiB}m.zfs.gz"
                print(f"  making and importing a {size // MiB} MiB image", flush=True)
                sha1, md5 = await asyncio.to_thread(make_file, path, size)
                manifest = {
                    "v": 2,
                    "uuid": str(uuid.uuid4()),
                    "owner": owner,
                    "name": f"bench{size // MiB}m",
                    "version": "1.0.0",
                    "state": "active",
                    "disabled": False,
                    "public": False,
                    "published_at": "2026-01-01T00:00:00.000Z",
                    "type": "zone-dataset",
                    "os": "smartos",
                    "requirements": {},
                    "files": [{"sha1": sha1, "size": size, "compression": "gzip"}],
                }
                await app[CATALOG].import_image(manifest, file_chunks(path))
                self.images[size] = manifest
                self.files[size] = path
                self.md5s[size] = md5
        finally:
            await runner.cleanup()

    async def export(
        self, session: aiohttp.ClientSession, gateway: Proc, size: int, dest: str
    ) -> float:
        """One ExportImage; returns its wall time in seconds."""
        image = self.images[size]
        path = f"/dev/images/{image['uuid']}"
        body = json.dumps({"action": "export", "manta_path": dest}).encode()
        headers = self.signed("POST", path, {"Content-Type": "application/json"})
        start = time.perf_counter()
        async with session.post(gateway.url + path, data=body, headers=headers) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise SystemExit(f"export failed: {resp.status} {text}")
        return time.perf_counter() - start

    def curl_put(self, size: int, dest: str, base_url: str | None = None) -> float:
        """``curl -T`` of the same file to the same fake Manta (or ``base_url``, a proxy in
        front of it), signed as dev; wall seconds."""
        assert self.manta is not None
        headers = self.dev_signer.sign(
            "PUT",
            dest,
            {
                "Content-MD5": self.md5s[size],
                "Content-Type": "application/octet-stream",
            },
        )
        cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(self.files[size])]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append((base_url or self.manta.url) + dest)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0 or not proc.stdout.startswith("20"):
            raise SystemExit(f"curl failed: {proc.returncode} {proc.stdout} {proc.stderr}")
        return elapsed

    async def get_image_latencies(
        self, session: aiohttp.ClientSession, gateway: Proc, size: int, until: Callable[[], bool]
    ) -> list[float]:
        """GetImage repeatedly until ``until()``; each latency in milliseconds."""
        path = f"/dev/images/{self.images[size]['uuid']}"
        out: list[float] = []
        while not until():
            start = time.perf_counter()
            async with session.get(gateway.url + path, headers=self.signed("GET", path)) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.01)
        return out


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while block := await asyncio.to_thread(fh.read, CHUNK):
            yield block
    finally:
        fh.close()


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def samples(size: int, seconds: list[float]) -> str:
    """Every repetition's MB/s, to see the spread behind a median."""
    return "[" + " ".join(f"{mbps(size, t):.0f}" for t in seconds) + "]"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def gateway_process(
    bench: Bench, storage: dict[str, Any], name: str | None = None
) -> Iterator[Callable[[], Awaitable[Proc]]]:
    procs: list[Proc] = []

    async def start() -> Proc:
        proc = await bench.start_gateway(storage, name)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.stop()


async def bench_throughput(bench: Bench, size: int, reps: int) -> None:
    """(a) gateway export vs curl -T, alternating, median of ``reps``."""
    print(f"(a) {size // MiB} MiB export vs curl -T, {reps} repetitions", flush=True)
    # The streaming export: one PUT, as curl's (multipart is (f)'s subject).
    storage = {**bench.storage_config("manta"), "multipart_threshold": size + 1}
    with gateway_process(bench, storage, "one-put") as start:
        gateway = await start()
        timeout = aiohttp.ClientTimeout(total=None)
        gw, cu = [], []
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # One warm-up of each, so that both read the file from the page cache.
            await bench.export(session, gateway, size, "/dev/stor/bench-gw")
            await asyncio.to_thread(bench.curl_put, size, "/dev/stor/bench-curl")
            gw_cpu, manta_gw, manta_cu, curl_cpu = [], [], [], []
            assert bench.manta is not None
            manta_pid = bench.manta.popen.pid
            for _ in range(reps):
                cpu0, m0 = cpu_seconds(gateway.popen.pid), cpu_seconds(manta_pid)
                gw.append(await bench.export(session, gateway, size, "/dev/stor/bench-gw"))
                cpu1, m1 = cpu_seconds(gateway.popen.pid), cpu_seconds(manta_pid)
                gw_cpu.append(cpu1 - cpu0)
                manta_gw.append(m1 - m0)
                c0 = children_cpu_seconds()
                cu.append(await asyncio.to_thread(bench.curl_put, size, "/dev/stor/bench-curl"))
                curl_cpu.append(children_cpu_seconds() - c0)  # curl is the only child reaped
                manta_cu.append(cpu_seconds(manta_pid) - m1)
        peak = vm_hwm_kib(gateway.popen.pid)
    g, c = mbps(size, statistics.median(gw)), mbps(size, statistics.median(cu))
    gib = size / 2**30
    bench.report(
        f"(a) gateway export {size // MiB} MiB, median MB/s", f"{g:.0f} {samples(size, gw)}"
    )
    bench.report(f"(a) curl -T {size // MiB} MiB, median MB/s", f"{c:.0f} {samples(size, cu)}")
    bench.report("(a) ratio gateway/curl (goal >= 0.85)", f"{g / c:.2f}")
    # CPU is steadier than MB/s on a shared machine: where the two paths differ.
    bench.report(
        "(a) CPU s/GiB: gateway | curl; fake Manta (export | curl)",
        f"{statistics.median(gw_cpu) / gib:.2f} | {statistics.median(curl_cpu) / gib:.2f}; "
        f"{statistics.median(manta_gw) / gib:.2f} | {statistics.median(manta_cu) / gib:.2f}",
    )
    bench.report(f"(a) gateway VmHWM after {reps + 1} exports", f"{peak / 1024:.0f} MiB")


async def bench_rss(bench: Bench, sizes: list[int]) -> None:
    """(b) VmHWM of a fresh gateway process after one export of each size."""
    print(f"(b) peak RSS for {', '.join(str(s // MiB) for s in sizes)} MiB", flush=True)
    timeout = aiohttp.ClientTimeout(total=None)
    for size in sizes:
        with gateway_process(bench, bench.storage_config("manta")) as start:
            gateway = await start()
            idle = vm_hwm_kib(gateway.popen.pid)
            cpu0 = cpu_seconds(gateway.popen.pid)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                seconds = await bench.export(session, gateway, size, "/dev/stor/bench-rss")
            peak = vm_hwm_kib(gateway.popen.pid)
            cpu = cpu_seconds(gateway.popen.pid) - cpu0
        bench.report(
            f"(b) gateway VmHWM, {size // MiB} MiB export",
            f"{peak / 1024:.0f} MiB (after start {idle / 1024:.0f} MiB; "
            f"{mbps(size, seconds):.0f} MB/s; gateway CPU {cpu / (size / 2**30):.1f} s/GiB)",
        )


async def bench_concurrent(bench: Bench, size: int, count: int) -> None:
    """(c) ``count`` concurrent exports of one image to different paths."""
    print(f"(c) {count} concurrent {size // MiB} MiB exports", flush=True)
    with gateway_process(bench, bench.storage_config("manta")) as start:
        gateway = await start()
        timeout = aiohttp.ClientTimeout(total=None)
        conn = aiohttp.TCPConnector(limit=count * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    bench.export(session, gateway, size, f"/dev/stor/bench-c{i}")
                    for i in range(count)
                )
            )
            wall = time.perf_counter() - t0
    bench.report(
        f"(c) {count} x {size // MiB} MiB concurrent, total MB/s",
        f"{mbps(size * count, wall):.0f} ({wall:.1f} s)",
    )


async def bench_latency(bench: Bench, size: int) -> None:
    """(d) GetImage latency idle, then while an export of ``size`` runs."""
    print(f"(d) GetImage latency, idle and during a {size // MiB} MiB export", flush=True)
    with gateway_process(bench, bench.storage_config("manta")) as start:
        gateway = await start()
        timeout = aiohttp.ClientTimeout(total=None)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            aiohttp.ClientSession(timeout=timeout) as probe,
        ):
            count = 0

            def enough() -> bool:
                nonlocal count
                count += 1
                return count > 100

            idle = await bench.get_image_latencies(probe, gateway, size, enough)
            task = asyncio.create_task(bench.export(session, gateway, size, "/dev/stor/bench-lat"))
            await asyncio.sleep(0.05)
            busy = await bench.get_image_latencies(probe, gateway, size, task.done)
            await task
    bench.report(
        "(d) GetImage idle, median / p95 ms",
        f"{statistics.median(idle):.1f} / {pct(idle, 0.95):.1f} (n={len(idle)})",
    )
    if busy:
        bench.report(
            "(d) GetImage during export, median / p95 ms",
            f"{statistics.median(busy):.1f} / {pct(busy, 0.95):.1f} (n={len(busy)})",
        )
    else:
        bench.report("(d) GetImage during export", "export finished before the first probe")


async def s3_baseline(endpoint: str, bucket: str, path: Path, size: int) -> float:
    """The same multipart upload done directly with aiobotocore (16 MiB parts, 4 at a time)."""
    from aiobotocore.session import get_session

    part_size, concurrency = 16 * MiB, 4
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ) as s3:
        start = time.perf_counter()
        key = "baseline/bench.zfs.gz"
        mpu = await s3.create_multipart_upload(Bucket=bucket, Key=key)
        sem = asyncio.Semaphore(concurrency)

        async def part(number: int, offset: int) -> dict[str, Any]:
            async with sem:

                def read() -> bytes:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        return fh.read(part_size)

                data = await asyncio.to_thread(read)
                md5 = base64.b64encode(
                    await asyncio.to_thread(lambda: hashlib.md5(data).digest())
                ).decode()
                resp = await s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    PartNumber=number,
                    UploadId=mpu["UploadId"],
                    Body=data,
                    ContentMD5=md5,
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}

        parts = await asyncio.gather(
            *(part(i + 1, off) for i, off in enumerate(range(0, size, part_size)))
        )
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts}
        )
        return time.perf_counter() - start


@contextlib.asynccontextmanager
async def moto_bucket(bucket: str) -> AsyncIterator[dict[str, Any]]:
    """moto's server in its own process with ``bucket`` made: the S3 target's section."""
    from aiobotocore.session import get_session

    port = free_port()
    moto = spawn(
        [PYTHON, "-c", "from moto.server import main; main()", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            await asyncio.sleep(0.1)
        async with get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ) as s3:
            await s3.create_bucket(Bucket=bucket)
        yield {
            "endpoint_url": endpoint,
            "bucket": bucket,
            "region": "us-east-1",
            "access_key": "bench",
            "secret_key": "bench",
            "addressing_style": "path",
        }
    finally:
        moto.terminate()
        moto.wait(30)


async def bench_s3(bench: Bench, size: int, reps: int) -> None:
    """(e) export to moto's server vs aiobotocore directly, same server, same run."""
    print(f"(e) {size // MiB} MiB export to S3 (moto server) vs aiobotocore", flush=True)
    async with moto_bucket("bench") as section:
        storage = bench.storage_config("s3", section)
        gw, base = [], []
        with gateway_process(bench, storage) as start:
            gateway = await start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as s:
                for _ in range(reps):
                    gw.append(await bench.export(s, gateway, size, "/dev/stor/bench-s3"))
                    base.append(
                        await s3_baseline(
                            section["endpoint_url"], "bench", bench.files[size], size
                        )
                    )
    g, b = mbps(size, statistics.median(gw)), mbps(size, statistics.median(base))
    bench.report(
        f"(e) gateway export to S3 {size // MiB} MiB, median MB/s", f"{g:.0f} {samples(size, gw)}"
    )
    bench.report(
        f"(e) aiobotocore multipart {size // MiB} MiB, median MB/s",
        f"{b:.0f} {samples(size, base)}",
    )
    bench.report("(e) ratio gateway/aiobotocore", f"{g / b:.2f}")


@contextlib.contextmanager
def wan_link(upstream: str, delay_ms: float, window_mib: float) -> Iterator[Proc]:
    """``bench/wan_proxy.py`` in its own process in front of ``upstream``."""
    popen = subprocess.Popen(
        [
            PYTHON,
            str(WAN_PROXY),
            "--upstream",
            upstream.removeprefix("http://"),
            "--delay-ms",
            str(delay_ms),
            "--window-mib",
            str(window_mib),
        ],
        stdout=subprocess.PIPE,
    )
    assert popen.stdout is not None
    url = popen.stdout.readline().decode().strip()
    proc = Proc(popen, url)
    try:
        if not url:
            raise SystemExit("the WAN proxy did not start")
        yield proc
    finally:
        proc.stop()


def wan_multipart_settings(size: int) -> dict[str, int]:
    """The Manta target's defaults (256 MiB threshold, 32 MiB parts, 6 in flight), scaled down
    for an image smaller than the threshold (``--quick``) so that it still goes in parts."""
    if size >= 256 * MiB:
        return {}
    return {"multipart_threshold": size, "part_size": min(32 * MiB, max(5 * MiB, size // 4))}


async def bench_wan(bench: Bench, size: int, reps: int, delay_ms: float, window_mib: float) -> None:
    """(f) through a window-limited long fat link: a parallel multipart export vs the same
    export as one streamed PUT, and ``curl -T`` over the same link; alternating, medians."""
    print(
        f"(f) {size // MiB} MiB over a {2 * delay_ms:.0f} ms, {window_mib:g} MiB-window link: "
        f"multipart vs one PUT, {reps} repetitions",
        flush=True,
    )
    assert bench.manta is not None
    with wan_link(bench.manta.url, delay_ms, window_mib) as link:
        base = {**bench.storage_config("manta"), "url": link.url}
        multipart = {**base, **wan_multipart_settings(size)}
        single = {**base, "multipart_threshold": size + 1}
        mp, one, cu = [], [], []
        with (
            gateway_process(bench, multipart, "wan-multipart") as start_mp,
            gateway_process(bench, single, "wan-single") as start_one,
        ):
            mp_gateway, one_gateway = await start_mp(), await start_one()
            timeout = aiohttp.ClientTimeout(total=None)
            # CPU seconds of (gateway, link, fake Manta) during each kind of export: on a
            # small machine the multipart side runs out of cores before it runs out of links.
            cpu: dict[str, list[tuple[float, float, float]]] = {"mp": [], "one": []}

            def cpu_now(gateway: Proc) -> tuple[float, float, float]:
                assert bench.manta is not None
                pids = (gateway.popen.pid, link.popen.pid, bench.manta.popen.pid)
                return cpu_seconds(pids[0]), cpu_seconds(pids[1]), cpu_seconds(pids[2])

            async def timed(kind: str, gateway: Proc, dest: str) -> float:
                before = cpu_now(gateway)
                seconds = await bench.export(session, gateway, size, dest)
                after = cpu_now(gateway)
                cpu[kind].append((after[0] - before[0], after[1] - before[1], after[2] - before[2]))
                return seconds

            async with aiohttp.ClientSession(timeout=timeout) as session:
                for _ in range(reps):
                    mp.append(await timed("mp", mp_gateway, "/dev/stor/wan-mp"))
                    one.append(await timed("one", one_gateway, "/dev/stor/wan-1"))
                    cu.append(
                        await asyncio.to_thread(bench.curl_put, size, "/dev/stor/wan-c", link.url)
                    )
            peak = vm_hwm_kib(mp_gateway.popen.pid)
            commits = await commit_seconds(bench.manta.url)
    m, o, c = (mbps(size, statistics.median(t)) for t in (mp, one, cu))
    bench.report(
        f"(f) WAN multipart export {size // MiB} MiB, median MB/s", f"{m:.0f} {samples(size, mp)}"
    )
    bench.report(
        f"(f) WAN one-PUT export {size // MiB} MiB, median MB/s", f"{o:.0f} {samples(size, one)}"
    )
    bench.report(f"(f) WAN curl -T {size // MiB} MiB, median MB/s", f"{c:.0f} {samples(size, cu)}")
    bench.report("(f) ratio multipart/one PUT (goal >= 3)", f"{m / o:.2f}")
    # The first export hashes every part; later ones send the MD5s the target remembered from
    # it (plugins/storage/manta/part_digests.py): the first is reported on its own too.
    bench.report("(f) ratio first multipart export/one PUT", f"{mbps(size, mp[0]) / o:.2f}")
    bench.report("(f) ratio multipart/curl -T", f"{m / c:.2f}")
    bench.report("(f) multipart gateway VmHWM", f"{peak / 1024:.0f} MiB")
    gib = size / GiB
    for kind, name in (("mp", "multipart"), ("one", "one PUT")):
        spent = [statistics.median(column) / gib for column in zip(*cpu[kind], strict=True)]
        bench.report(
            f"(f) CPU s/GiB, {name}: gateway | link | fake Manta",
            " | ".join(f"{value:.2f}" for value in spent),
        )
    if commits:
        bench.report(
            "(f) fake Manta commit (joins the parts), median s",
            f"{statistics.median(commits):.2f} of {statistics.median(mp):.2f}",
        )


async def commit_seconds(manta_url: str) -> list[float]:
    """How long the fake Manta took over each multipart commit (its own request log)."""
    headers = {"X-Fake-Manta-Admin": "1"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(manta_url + "/_fake/requests", headers=headers) as r,
    ):
        records = await r.json() if r.status == 200 else []
    if isinstance(records, dict):
        records = records.get("requests", [])
    return [r["latency"] / 1000 for r in records if r.get("operation") == "CommitUpload"]


async def run_copy_part(bench: Bench, sizes: list[int], reps: int, with_s3: bool) -> None:
    """(g), with a moto server of its own for the S3 half."""
    from export_copy import bench_copy  # beside this script, on sys.path when it runs

    if not with_s3:
        await bench_copy(bench, PYTHON, free_port, sizes, reps, None)
        return
    async with moto_bucket("bench-copy") as section:
        await bench_copy(bench, PYTHON, free_port, sizes, reps, section)


def disk_needed(
    parts: set[str], images: set[int], size: int, rss: list[int], csize: int, count: int, wan: int
) -> int:
    """Bytes the run may hold at once: each image twice (the made file and the catalog's
    copy), each destination object, and the parts of one multipart upload beside its object."""
    needed = 2 * sum(images)
    if "a" in parts:
        needed += 3 * size
    if "b" in parts:
        needed += 2 * max(rss, default=0)
    if "c" in parts:
        needed += count * csize
    if "d" in parts:
        needed += 2 * size
    if "e" in parts:
        needed += 2 * size
    if "f" in parts:
        needed += 4 * wan
    return needed + needed // 4 + GiB  # room for the rest of the machine


def check_disk(root: Path, needed: int) -> None:
    """Say what the run needs, and stop before it starts if the disk has less."""
    free = shutil.disk_usage(root).free
    print(f"disk: this run needs about {needed / GiB:.1f} GiB, {free / GiB:.1f} GiB free in {root}")
    if free < needed:
        raise SystemExit(
            f"not enough free space in {root}: about {needed / GiB:.1f} GiB needed, "
            f"{free / GiB:.1f} GiB free (choose another place with --tmp-dir)"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, 2 repetitions: a check that everything runs",
    )
    p.add_argument("--size-mib", type=int, default=1024, help="(a), (d), (e) image size")
    p.add_argument("--rss-sizes-mib", default="1024,4096", help="(b) image sizes, comma-separated")
    p.add_argument("--concurrent", type=int, default=8, help="(c) number of exports")
    p.add_argument("--concurrent-size-mib", type=int, default=256, help="(c) image size")
    p.add_argument(
        "--reps", type=int, default=5, help="(a), (e) repetitions; (a) needs 5 for its goal"
    )
    p.add_argument(
        "--only",
        default=None,
        help="which parts to run, e.g. a,d (default: a-d for manta, e for s3)",
    )
    p.add_argument(
        "--target",
        choices=["manta", "s3", "both"],
        default="manta",
        help="s3 or both adds (e), the S3 export against moto's server",
    )
    p.add_argument(
        "--wan",
        action="store_true",
        help="add (f), multipart vs one PUT through bench/wan_proxy.py",
    )
    p.add_argument("--wan-size-mib", type=int, default=1024, help="(f) image size")
    p.add_argument("--wan-reps", type=int, default=3, help="(f) repetitions")
    p.add_argument("--wan-delay-ms", type=float, default=25.0, help="(f) one-way delay")
    p.add_argument("--wan-window-mib", type=float, default=4.0, help="(f) in flight per link")
    p.add_argument(
        "--copy",
        action="store_true",
        help="add (g), exports from the object-store catalog: SnapLink and S3 CopyObject",
    )
    p.add_argument("--copy-sizes-mib", default="64,1024,4096", help="(g) image sizes")
    p.add_argument("--copy-reps", type=int, default=5, help="(g) exports per size")
    p.add_argument("--no-copy-s3", action="store_true", help="(g) without the moto part")
    p.add_argument("--tmp-dir", default=None, help="where temporary files go (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.quick:
        args.size_mib, args.rss_sizes_mib = 64, "64,256"
        args.concurrent_size_mib, args.reps = 16, 2
        args.wan_size_mib, args.wan_reps = 64, 2
        args.copy_sizes_mib, args.copy_reps = "16,64", 3
    return args


async def main_async(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.only:
        parts = set(args.only.split(","))
    else:
        parts = {"manta": {"a", "b", "c", "d"}, "s3": {"e"}, "both": {"a", "b", "c", "d", "e"}}[
            args.target
        ]
        if args.wan:
            parts.add("f")
        if args.copy:
            parts.add("g")
    size = args.size_mib * MiB
    rss_sizes = [int(s) * MiB for s in args.rss_sizes_mib.split(",") if s]
    csize = args.concurrent_size_mib * MiB
    wan_size = args.wan_size_mib * MiB
    needed = set()
    if parts & {"a", "d", "e"}:
        needed.add(size)
    if "b" in parts:
        needed.update(rss_sizes)
    if "c" in parts:
        needed.add(csize)
    if "f" in parts:
        needed.add(wan_size)
    copy_sizes = [int(s) * MiB for s in args.copy_sizes_mib.split(",") if s]
    if "g" in parts:
        needed.update(copy_sizes)
    tmp = Path(args.tmp_dir or tempfile.gettempdir())
    # (g): each image once more in the store per target, plus the spool of the largest import.
    copy_needed = (3 * sum(copy_sizes) + max(copy_sizes, default=0)) if "g" in parts else 0
    check_disk(
        tmp,
        disk_needed(parts, needed, size, rss_sizes, csize, args.concurrent, wan_size) + copy_needed,
    )
    root = Path(tempfile.mkdtemp(prefix="cloudapi-bench-", dir=args.tmp_dir))
    bench = Bench(root, args)
    try:
        await bench.import_images(sorted(needed))
        if parts & {"a", "b", "c", "d", "f", "g"}:
            bench.start_manta()
        if "a" in parts:
            await bench_throughput(bench, size, args.reps)
        if "b" in parts:
            await bench_rss(bench, rss_sizes)
        if "c" in parts:
            await bench_concurrent(bench, csize, args.concurrent)
        if "d" in parts:
            await bench_latency(bench, size)
        if "e" in parts:
            await bench_s3(bench, size, args.reps)
        if "f" in parts:
            await bench_wan(bench, wan_size, args.wan_reps, args.wan_delay_ms, args.wan_window_mib)
        if "g" in parts:
            await run_copy_part(bench, copy_sizes, args.copy_reps, not args.no_copy_s3)
    finally:
        if bench.manta is not None:
            bench.manta.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return bench.rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = asyncio.run(main_async(args))
    width = max((len(name) for name, _ in rows), default=10)
    print()
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
