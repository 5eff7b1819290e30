"""(g) of ``bench/export.py``: exports from the object-store catalog, where the store copies.

For each image size the image is imported into an object-store catalog kept in the same
store as the exports, then exported ``reps`` times through ``cloudapi-gateway serve``:

- Manta (the on-disk fake Manta): the export is a SnapLink, so its time should not depend on
  the size (goal: median under 100 ms, flat from 64 MiB to 4 GiB);
- S3 (moto's server): one CopyObject up to 5 GiB. moto copies the bytes itself, so these times
  are reported, not held to a goal; real S3 copies inside its own storage.

Every export's log record says ``method: copy``; the bench checks it through the export's
answer time only, so it also reads back one exported object's size and MD5 from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import aiohttp

MiB = 1024 * 1024
IMAGES_PREFIX = "/operator/stor/imgapi"


class ExportBench(Protocol):
    """What (g) uses of ``bench/export.py``'s ``Bench`` (kept structural: no import cycle)."""

    root: Path
    gateway_dir: Path
    images: dict[int, dict[str, Any]]
    files: dict[int, Path]
    md5s: dict[int, str]

    def storage_config(self, target: str, s3: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def report(self, name: str, value: str) -> None: ...

    def signed(
        self, method: str, path: str, extra: dict[str, str] | None = None
    ) -> dict[str, str]: ...


def write_config(bench: ExportBench, data_dir: Path, storage: dict[str, Any], name: str) -> Path:
    lines = [f'data_dir = "{data_dir}"', "", "[metrics]", 'listen = ""', "", "[storage]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in storage.items()]
    lines += ["", "[catalog]", 'kind = "objectstore"', f'prefix = "{IMAGES_PREFIX}"']
    path = bench.root / f"gateway-copy-{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def import_into_store(bench: ExportBench, config: Path, sizes: list[int]) -> None:
    """The bench's images (same manifests) into the object-store catalog of ``config``."""
    from gateway.cli.images import catalog_for
    from gateway.settings import load_settings

    settings = load_settings(config)
    async with catalog_for(settings).opened() as catalog:
        for size in sizes:
            if await catalog.get_image(bench.images[size]["uuid"]) is not None:
                continue
            print(f"  importing the {size // MiB} MiB image into the store", flush=True)
            await catalog.import_image(bench.images[size], _chunks(bench.files[size]))


async def _chunks(path: Path) -> Any:
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, 4 * MiB):
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)


def start_serve(python: str, config: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [python, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen([*cmd, "--log-level", "warning"])


async def serve(
    python: str, config: Path, port: int, bench: ExportBench
) -> subprocess.Popen[bytes]:
    popen = start_serve(python, config, port)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if popen.poll() is not None:
                raise SystemExit(f"cloudapi-gateway serve exited with {popen.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                headers = bench.signed("GET", "/dev/images")
                async with session.get(url + "/dev/images", headers=headers) as resp:
                    if resp.status == 200:
                        return popen
            await asyncio.sleep(0.1)
    popen.terminate()
    raise SystemExit("cloudapi-gateway serve did not answer")


async def export_times(
    bench: ExportBench, url: str, size: int, reps: int, dest: str
) -> list[float]:
    image = bench.images[size]
    path = f"/dev/images/{image['uuid']}"
    body = json.dumps({"action": "export", "manta_path": dest}).encode()
    times = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        for _ in range(reps + 1):  # the first is a warm-up (connections, the journal's pages)
            headers = bench.signed("POST", path, {"Content-Type": "application/json"})
            start = time.perf_counter()
            async with session.post(url + path, data=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise SystemExit(f"export failed: {resp.status} {text}")
            times.append(time.perf_counter() - start)
    return times[1:]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (n={len(values)}, " + ", ".join(
        f"{v * 1000:.0f}" for v in values
    ) + ")"


async def bench_copy(
    bench: ExportBench,
    python: str,
    free_port: Any,
    sizes: list[int],
    reps: int,
    s3: dict[str, Any] | None,
) -> None:
    """(g) SnapLink export times by size on the fake Manta; CopyObject times on moto."""
    print(f"(g) copy exports of {', '.join(f'{s // MiB} MiB' for s in sizes)}", flush=True)
    targets: list[tuple[str, dict[str, Any]]] = [("manta", bench.storage_config("manta"))]
    if s3 is not None:
        targets.append(("s3", bench.storage_config("s3", s3)))
    for name, storage in targets:
        data_dir = bench.root / f"gateway-copy-{name}"
        data_dir.mkdir(exist_ok=True)
        # The accounts of the bench's gateway (the images' owner), another catalog's records.
        shutil.copy(bench.gateway_dir / "accounts.sqlite", data_dir / "accounts.sqlite")
        config = write_config(bench, data_dir, storage, name)
        await import_into_store(bench, config, sizes)
        port = free_port()
        popen = await serve(python, config, port, bench)
        try:
            medians = []
            for size in sizes:
                times = await export_times(
                    bench, f"http://127.0.0.1:{port}", size, reps, f"/dev/stor/copy-{size // MiB}m"
                )
                medians.append(statistics.median(times))
                what = "SnapLink" if name == "manta" else "S3 CopyObject (moto copies the bytes)"
                bench.report(f"(g) {what} export of {size // MiB} MiB, median", ms(times))
            if name == "manta":
                spread = max(medians) / min(medians)
                bench.report(
                    "(g) SnapLink: slowest/fastest median across sizes (flat: ~1; goal < 100 ms)",
                    f"{spread:.2f}",
                )
        finally:
            popen.terminate()
            popen.wait(30)


def moto_ready(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False
