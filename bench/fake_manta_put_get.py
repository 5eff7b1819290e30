"""PUT and GET of a large object with ``curl`` against the on-disk fake Manta, with baselines.

One run, all on loopback and on the same disk, each server in its own process:

- **fake Manta** (``python -m fake_manta --data-dir D --no-auth``, plus ``--fsync`` with
  ``--fsync``): ``curl -T file`` (PUT) and ``curl -o /dev/null`` (GET) of one object, and the
  server's peak RSS (``VmHWM`` from ``/proc/PID/status``) after start-up and after all transfers;
- **minimal aiohttp**: a server that only discards a PUT body, and serves a GET by reading the
  same file in 1 MiB blocks (what any aiohttp server must at least do);
- **cp** of the file on the same disk, without and with ``sync`` of the copy (``cp`` is the fair
  disk baseline for the default server, ``cp+sync`` for ``--fsync``, which fsyncs every object
  before it answers);
- **md5**: hashlib's MD5 speed over the object's size (at most 512 MiB) in this process, once per
  repetition between the transfers (the fake hashes every byte it stores on one thread, so this
  is the PUT ceiling on the machine; the goal is fake PUT >= 0.85 x md5).

Repetitions alternate the contenders, each timed after a ``sync``; the table shows medians in
MB/s (10^6 bytes/s) and the fake's ratio to each baseline. The test file lives in a temporary
directory that is removed at the end (``--keep`` keeps it).

    python3 bench/fake_manta_put_get.py                  # 1 GiB, 3 repetitions
    python3 bench/fake_manta_put_get.py --reps 5 --fsync          # power-loss durable server
    python3 bench/fake_manta_put_get.py --size-mib 64 --reps 1   # quick check that it runs
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 1024 * 1024

DISCARD_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    SOURCE = sys.argv[1]

    async def put(request):
        async for _ in request.content.iter_chunked(1 << 20):
            pass
        return web.Response(status=204)

    async def get(request):
        resp = web.StreamResponse()
        resp.content_length = __import__("os").path.getsize(SOURCE)
        await resp.prepare(request)
        with open(SOURCE, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=0)
    app.router.add_put("/{tail:.*}", put)
    app.router.add_get("/{tail:.*}", get)
    runner = web.AppRunner(app, access_log=None)

    async def main():
        import asyncio
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print("listening on http://127.0.0.1:%d" % runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    __import__("asyncio").run(main())
    """
)


def make_file(path: Path, size: int) -> None:
    """Incompressible content (a random 4 MiB block, rotated), written once."""
    block = os.urandom(4 * MIB)
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            rot = (i * 4099) % len(block)
            chunk = (block[rot:] + block[:rot])[: size - written]
            f.write(chunk)
            written += len(chunk)
            i += 1


@contextmanager
def server_process(cmd: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a server that prints ``listening on http://...``; yields (process, url)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{cmd[:3]} exited before listening")
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        if not url:
            raise RuntimeError("server did not start")
        # Keep the pipe drained in a thread-free way: it only prints a banner.
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the peak resident set size of the process so far."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def timed(fn: Callable[[], None]) -> float:
    """Seconds ``fn`` takes, after a ``sync``: no contender pays for an earlier one's dirty
    pages (a 1 GiB PUT without fsync leaves 1 GiB for the kernel to write back later)."""
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def curl(*args: str) -> None:
    proc = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{http_code}", *args],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or proc.stdout not in {"200", "204"}:
        raise RuntimeError(f"curl {' '.join(args)}: {proc.returncode} {proc.stdout} {proc.stderr}")


def curl_put(url: str, path: Path) -> None:
    curl("-T", str(path), "-H", "Content-Type: application/octet-stream", url)


def curl_get(url: str) -> None:
    curl(url)


def md5_speed(size: int = 256 * MIB) -> float:
    block = os.urandom(MIB)
    digest = hashlib.md5()
    start = time.perf_counter()
    for _ in range(max(size // MIB, 1)):
        digest.update(block)
    return max(size // MIB, 1) * MIB / (time.perf_counter() - start) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="object size (default 1024)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--fsync", action="store_true",
                        help="run the fake with --fsync (fsync every object before answering)")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        print("curl is required", file=sys.stderr)
        return 2

    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="fake-manta-bench-", dir=args.tmp_dir))
    results: dict[str, list[float]] = {k: [] for k in (
        "fake PUT", "md5 (hashlib, 1 core)", "aiohttp PUT (discard)", "cp", "cp+sync",
        "fake GET", "aiohttp GET (file)")}
    try:
        source = work / "object.bin"
        print(f"writing a {args.size_mib} MiB test file in {work} ...", flush=True)
        make_file(source, size)
        data_dir = work / "manta"
        fake_cmd = [sys.executable, "-m", "fake_manta", "--data-dir", str(data_dir),
                    "--host", "127.0.0.1", "--port", "0", "--no-auth", "--account", "bench"]
        if args.fsync:
            fake_cmd.append("--fsync")
        base_cmd = [sys.executable, "-c", DISCARD_SERVER, str(source)]
        with server_process(fake_cmd) as (fake, fake_url), \
                server_process(base_cmd) as (_base, base_url):
            rss_start = peak_rss_mib(fake.pid)
            obj = f"{fake_url}/bench/stor/object.bin"
            copy = work / "copy.bin"
            for rep in range(args.reps):
                print(f"repetition {rep + 1}/{args.reps}", flush=True)
                results["fake PUT"].append(size / timed(lambda: curl_put(obj, source)) / 1e6)
                os.sync()
                results["md5 (hashlib, 1 core)"].append(md5_speed(min(size, 512 * MIB)))
                results["aiohttp PUT (discard)"].append(
                    size / timed(lambda: curl_put(f"{base_url}/x", source)) / 1e6)
                copy.unlink(missing_ok=True)
                results["cp"].append(
                    size / timed(lambda: subprocess.run(["cp", str(source), str(copy)],
                                                        check=True)) / 1e6)
                copy.unlink()
                results["cp+sync"].append(size / timed(lambda: subprocess.run(
                    f"cp '{source}' '{copy}' && sync '{copy}'", shell=True, check=True)) / 1e6)
                copy.unlink()
                results["fake GET"].append(size / timed(lambda: curl_get(obj)) / 1e6)
                results["aiohttp GET (file)"].append(
                    size / timed(lambda: curl_get(f"{base_url}/x")) / 1e6)
            rss_end = peak_rss_mib(fake.pid)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print()
    mode = "--fsync" if args.fsync else "default (no fsync)"
    print(f"object {args.size_mib} MiB, {args.reps} repetitions, fake Manta {mode}, "
          "medians in MB/s (10^6 B/s)")
    print(f"{'contender':<24}{'MB/s':>10}   all runs")
    for name, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<24}{med[name]:>10.0f}   {runs}")
    print()
    print("ratios")
    ratios = [
        ("fake PUT / aiohttp PUT (discard)", med["fake PUT"] / med["aiohttp PUT (discard)"]),
        ("fake PUT / cp+sync", med["fake PUT"] / med["cp+sync"]),
        ("fake PUT / cp", med["fake PUT"] / med["cp"]),
        ("fake PUT / md5 (goal >= 0.85)", med["fake PUT"] / med["md5 (hashlib, 1 core)"]),
        ("fake GET / aiohttp GET (file)", med["fake GET"] / med["aiohttp GET (file)"]),
    ]
    for name, ratio in ratios:
        print(f"  {name:<34}{ratio:.2f}")
    print()
    print(f"fake Manta peak RSS (VmHWM): {rss_start:.0f} MiB after start-up, "
          f"{rss_end:.0f} MiB after {2 * args.reps} transfers of {args.size_mib} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
