"""``cloudapi-gateway dev``: the gateway and an on-disk fake Manta in one process, ready to try.

A newcomer's first command. It makes (once; later runs reuse the data dir) an account ``dev``
with a fresh SSH key known to both the gateway and the fake Manta, an operator account the
gateway writes into Manta with, and a demo image owned by ``dev``; prints the environment for
``triton``, ``sdc-*``, node-manta and the bundled ``cloudapi-gateway export``; then serves until
Ctrl-C. ``--smoke`` exports the demo image over HTTP instead, reads both objects back from the
fake Manta, checks them and exits: the one-line proof that the whole chain works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import random
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli import log_options

if TYPE_CHECKING:
    from aiohttp import web

    from fake_manta import FakeMantaServer
    from gateway.httpsig import PrivateKey

# aiohttp, cryptography and the servers are imported where they are used: every command's
# start (``--help`` included) imports this module.

DEV_LOGIN = "dev"
OPERATOR_LOGIN = "operator"
#: ``--catalog``: where the demo image and every imported one live.
CATALOG_KINDS = ("embedded", "objectstore")
IMAGES_PREFIX = f"/{OPERATOR_LOGIN}/stor/imgapi"
DEMO_NAME = "demo"
DEMO_VERSION = "1.0.0"
#: Uncompressed size of the demo image; about half of it is incompressible, so the gzip file
#: is a few MiB.
DEMO_RAW_SIZE = 8 * 1024 * 1024
CHUNK = 256 * 1024


class DevError(Exception):
    """A failure dev mode reports in one line, without a traceback."""


@dataclass(frozen=True)
class DevKey:
    """One SSH key pair under the data dir."""

    path: Path
    key: PrivateKey

    @property
    def public_line(self) -> str:
        from gateway.httpsig import ssh_public_key_line

        return ssh_public_key_line(self.key, self.path.stem)

    @property
    def fingerprint(self) -> str:
        from gateway.httpsig import md5_fingerprint

        return md5_fingerprint(self.key)


@dataclass(frozen=True)
class DemoImage:
    """The demo image's file on disk and its manifest."""

    file: Path
    manifest: dict[str, Any]

    @property
    def uuid(self) -> str:
        return str(self.manifest["uuid"])


# --- files under the data dir (run in a thread: they do disk I/O and RSA key generation) -------


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def ensure_key(path: Path) -> DevKey:
    """Load the key at ``path``, or make an RSA key there (PEM, which every client parses).

    RSA rather than Ed25519 because node-smartdc's bundled sshpk and ``openssl dgst`` (the curl
    recipe) read PKCS#1 PEM RSA keys, while newer key formats trip the older node clients.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.httpsig import load_private_key, ssh_public_key_line

    if path.exists():
        key = load_private_key(path)
    else:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
        key = rsa_key
    pub = path.with_name(path.name + ".pub")
    line = ssh_public_key_line(key, path.stem)
    if not pub.exists() or pub.read_text().split()[:2] != line.split()[:2]:
        pub.write_text(line + "\n")
    return DevKey(path=path, key=key)


def _demo_chunks(seed: int = 20131231) -> Iterator[bytes]:
    """Deterministic raw content: random bytes interleaved with text (so gzip has work to do)."""
    rng = random.Random(seed)
    text = b"cloudapi-gateway demo image; not a real zfs stream. " * 64
    half = CHUNK // 2
    filler = (text * (half // len(text) + 1))[:half]
    for _ in range(DEMO_RAW_SIZE // CHUNK):
        yield rng.randbytes(half) + filler


def ensure_demo_file(path: Path) -> tuple[str, int]:
    """Make the gzip demo file (deterministic bytes: mtime 0) if missing; return (sha1, size)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for block in _demo_chunks():
                gz.write(block)
        tmp.replace(path)
    sha1 = hashlib.sha1()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            sha1.update(block)
            size += len(block)
    return sha1.hexdigest(), size


def load_state(data_dir: Path) -> dict[str, Any]:
    """``dev.json``: what must stay the same across runs (the demo image's uuid and date)."""
    path = data_dir / "dev.json"
    if path.exists():
        state: dict[str, Any] = json.loads(path.read_text())
    else:
        now = datetime.now(UTC)
        state = {
            "image_uuid": str(uuid.uuid4()),
            "published_at": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        }
        path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def demo_manifest(
    state: Mapping[str, Any], owner_uuid: str, sha1: str, size: int
) -> dict[str, Any]:
    """A valid IMGAPI v2 manifest for the demo image."""
    return {
        "v": 2,
        "uuid": state["image_uuid"],
        "owner": owner_uuid,
        "name": DEMO_NAME,
        "version": DEMO_VERSION,
        "state": "active",
        "disabled": False,
        "public": False,
        "published_at": state["published_at"],
        "type": "zone-dataset",
        "os": "smartos",
        "files": [{"sha1": sha1, "size": size, "compression": "gzip"}],
        "requirements": {},
        "description": "Demo image made by `cloudapi-gateway dev` (not a real zfs stream).",
    }


def ensure_gateway_account(accounts_db: Path, login: str, key: DevKey) -> str:
    """Create ``login`` with this key in the gateway's account store if needed; its uuid.

    Blocking (callers run it in a thread): the store is async, so it gets a loop of its own.
    """
    from gateway.server.accounts import AccountStore

    async def ensure() -> str:
        store = AccountStore(accounts_db)
        try:
            account = await store.get_account(login)
            if account is None:
                account = await store.add_account(login)
            if await store.find_key(login, key.fingerprint) is None:
                await store.add_key(login, key.public_line)  # named by its fingerprint
            return str(account.uuid)
        finally:
            await store.close()

    accounts_db.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(ensure())


# --- the running pieces ------------------------------------------------------------------------


@dataclass
class DevEnvironment:
    """What ``prepare`` made and ``serve`` started, for printing and for the smoke test."""

    data_dir: Path
    gateway_url: str
    manta_url: str
    dev_key: DevKey
    operator_key: DevKey
    image: DemoImage


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """Stream a file without blocking the loop (reads run in a thread)."""
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while block := await asyncio.to_thread(fh.read, CHUNK):
            yield block
    finally:
        await asyncio.to_thread(fh.close)


def env_lines(env: DevEnvironment) -> list[str]:
    """The block dev mode prints: comments and ``export`` lines, all safe to paste."""
    key = env.dev_key
    q = shlex.quote
    image_uuid = env.image.uuid
    body = json.dumps({"action": "export", "manta_path": f"/{DEV_LOGIN}/stor/demo"})
    return [
        f"# cloudapi-gateway dev: gateway {env.gateway_url}, fake Manta {env.manta_url}",
        f"# data dir {env.data_dir} (kept: run again to reuse it)",
        "# Paste these into your shell:",
        f"export SDC_URL={q(env.gateway_url)}",
        f"export SDC_ACCOUNT={DEV_LOGIN}",
        f"export SDC_KEY_ID={key.fingerprint}",
        f"export SDC_KEY_PATH={q(str(key.path))}",
        f"export MANTA_URL={q(env.manta_url)}",
        f"export MANTA_USER={DEV_LOGIN}",
        f"export MANTA_KEY_ID={key.fingerprint}",
        "# triton, sdc-* and node-manta's m* commands find keys only through ssh-agent or ~/.ssh:",
        f"#   ssh-add {q(str(key.path))}",
        f"#   (or: cp {q(str(key.path))} {q(str(key.path))}.pub ~/.ssh/)",
        "# Export the demo image (name demo, version 1.0.0, uuid " + image_uuid + "):",
        f"cloudapi-gateway export {DEMO_NAME}@{DEMO_VERSION} /{DEV_LOGIN}/stor/demo",
        f"# triton image export {DEMO_NAME}@{DEMO_VERSION} /{DEV_LOGIN}/stor/demo",
        f"# sdc-exportimage --mantaPath=/{DEV_LOGIN}/stor/demo {image_uuid}",
        "# or with curl, signing the Date header with openssl:",
        '#   now=$(LC_ALL=C date -u "+%a, %d %b %Y %H:%M:%S GMT")',
        '#   sig=$(printf "date: %s" "$now" | openssl dgst -sha256 -sign "$SDC_KEY_PATH"'
        " | openssl enc -e -a | tr -d '\\n')",
        '#   curl -sS -X POST -H "Date: $now" -H "Content-Type: application/json" \\',
        '#     -H "Authorization: Signature keyId=\\"/$SDC_ACCOUNT/keys/$SDC_KEY_ID\\",'
        'algorithm=\\"rsa-sha256\\",headers=\\"date\\",signature=\\"$sig\\"" \\',
        f'#     -d {q(body)} "$SDC_URL/$SDC_ACCOUNT/images/{image_uuid}"',
        "# Then read it back: mls /dev/stor; mget /dev/stor/demo.imgmanifest",
    ]


async def prepare(data_dir: Path) -> tuple[DevKey, DevKey, dict[str, Any], Path, str, int]:
    """Make or reuse keys, the state file and the demo file (in a thread: disk and RSA work)."""

    def work() -> tuple[DevKey, DevKey, dict[str, Any], Path, str, int]:
        data_dir.mkdir(parents=True, exist_ok=True)
        dev_key = ensure_key(data_dir / "keys" / "dev_id_rsa")
        operator_key = ensure_key(data_dir / "keys" / "operator_id_rsa")
        state = load_state(data_dir)
        demo_file = data_dir / "demo" / f"{DEMO_NAME}-{DEMO_VERSION}.zfs.gz"
        sha1, size = ensure_demo_file(demo_file)
        return dev_key, operator_key, state, demo_file, sha1, size

    return await asyncio.to_thread(work)


async def import_demo(app: web.Application, image: DemoImage) -> None:
    """Put the demo image into the app's catalog unless it is already there."""
    from gateway.server.appkeys import CATALOG

    catalog = app[CATALOG]
    if await catalog.get_image(image.uuid) is not None:
        return
    await catalog.import_image(image.manifest, _file_chunks(image.file))


async def smoke(env: DevEnvironment) -> dict[str, Any]:
    """Export the demo image as a user would and check both objects in the fake Manta."""
    import aiohttp

    from gateway.cli.export import ClientConfig, export
    from gateway.httpsig import RequestSigner

    config = ClientConfig(
        url=env.gateway_url,
        account=DEV_LOGIN,
        key=env.dev_key.key,
        key_id=env.dev_key.fingerprint,
    )
    manta_path = f"/{DEV_LOGIN}/stor/demo"
    answer = await export(config, f"{DEMO_NAME}@{DEMO_VERSION}", manta_path)
    expected = {
        "manifest_path": f"{manta_path}.imgmanifest",
        "image_path": f"{manta_path}.zfs.gz",
    }
    for field, value in expected.items():
        if answer.get(field) != value:
            raise DevError(f"ExportImage answered {field}={answer.get(field)!r}, not {value!r}")
    signer = RequestSigner.for_login(env.dev_key.key, DEV_LOGIN)
    file_meta = env.image.manifest["files"][0]
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> AsyncIterator[bytes]:
            headers = signer.sign("GET", path, {"Accept": "*/*"})
            async with session.get(env.manta_url + path, headers=headers) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    raise DevError(f"GET {path} from the fake Manta: {resp.status} {text}")
                async for block in resp.content.iter_chunked(CHUNK):
                    yield block

        sha1 = hashlib.sha1()
        size = 0
        async for block in get(answer["image_path"]):
            sha1.update(block)
            size += len(block)
        if sha1.hexdigest() != file_meta["sha1"] or size != file_meta["size"]:
            raise DevError(
                f"exported file is {size} bytes, sha1 {sha1.hexdigest()}; "
                f"expected {file_meta['size']} bytes, sha1 {file_meta['sha1']}"
            )
        manifest_bytes = b"".join([b async for b in get(answer["manifest_path"])])
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise DevError(f"exported manifest is not JSON: {exc}") from exc
    for field in ("uuid", "owner", "name", "version", "type", "os"):
        if manifest.get(field) != env.image.manifest[field]:
            raise DevError(
                f"exported manifest has {field}={manifest.get(field)!r}, "
                f"expected {env.image.manifest[field]!r}"
            )
    files = manifest.get("files") or [{}]
    if files[0].get("sha1") != file_meta["sha1"] or files[0].get("size") != file_meta["size"]:
        raise DevError(f"exported manifest's files[0] is {files[0]!r}, expected {file_meta!r}")
    return answer


@contextlib.asynccontextmanager
async def running(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    manta_port: int = 8081,
    catalog: str = "embedded",
) -> AsyncIterator[tuple[DevEnvironment, web.Application]]:
    """Both servers on one loop, with the dev account and the demo image; stops them on exit.

    ``data_dir`` must be absolute: the printed key paths must work from any directory. Tests
    use this directly to run the same setup in-process.
    """
    from aiohttp import web

    from gateway.server.app import create_app
    from gateway.settings import METRICS_LISTEN, Settings

    dev_key, operator_key, state, demo_file, sha1, size = await prepare(data_dir)
    gateway_dir = data_dir / "gateway"
    owner_uuid = await asyncio.to_thread(
        ensure_gateway_account, Settings(data_dir=gateway_dir).accounts_db, DEV_LOGIN, dev_key
    )
    image = DemoImage(demo_file, demo_manifest(state, owner_uuid, sha1, size))
    # Beside the file, for `cloudapi-gateway images import` into another gateway (README).
    manifest_text = json.dumps(image.manifest, indent=2) + "\n"
    await asyncio.to_thread(
        demo_file.with_name(f"{DEMO_NAME}-{DEMO_VERSION}.imgmanifest").write_text, manifest_text
    )

    async with _fake_manta_on(host, manta_port, data_dir / "manta") as fm:
        fm.add_account(OPERATOR_LOGIN, public_keys=[operator_key.public_line], operator=True)
        fm.add_account(DEV_LOGIN, public_keys=[dev_key.public_line])
        manta_url = str(fm.url).rstrip("/")
        settings = Settings(
            host=host,
            port=port,
            data_dir=gateway_dir,
            storage={
                "kind": "manta",
                "url": manta_url,
                "public_url": manta_url,
                "user": OPERATOR_LOGIN,
                "key_file": str(operator_key.path),
            },
            catalog=catalog_section(catalog),
            # --port 0 (tests, scripts): a free port for the metrics too, not the fixed 8881.
            metrics={"listen": f"{host}:0" if port == 0 else METRICS_LISTEN},
        )
        app = create_app(settings)
        runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise _cannot_listen(host, port, "--port", exc) from exc
            bound_port = runner.addresses[0][1]
            gateway_url = f"http://{host}:{bound_port}"
            await import_demo(app, image)
            yield (
                DevEnvironment(data_dir, gateway_url, manta_url, dev_key, operator_key, image),
                app,
            )
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def _fake_manta_on(host: str, port: int, data_dir: Path) -> AsyncIterator[FakeMantaServer]:
    """The fake Manta, listening (a ``DevError`` that says why if it cannot), then stopped."""
    from fake_manta import FakeMantaServer

    server = FakeMantaServer(host=host, port=port, data_dir=data_dir)
    try:
        await server.start()  # which lets go of everything it took when the listen fails
    except OSError as exc:
        raise _cannot_listen(host, port, "--manta-port", exc) from exc
    try:
        yield server
    finally:
        await server.stop()


def _cannot_listen(host: str, port: int, option: str, exc: OSError) -> DevError:
    why = exc.strerror or str(exc)
    return DevError(f"cannot listen on {host}:{port}: {why} ({option} chooses another port)")


def catalog_section(kind: str) -> dict[str, Any]:
    """The ``[catalog]`` section for ``--catalog``: the object-store one keeps the files in the
    fake Manta, in the operator's tree, as IMGAPI does."""
    if kind == "objectstore":
        return {"kind": "objectstore", "prefix": IMAGES_PREFIX}
    return {"kind": "embedded"}


async def run_dev(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    manta_port: int = 8081,
    do_smoke: bool = False,
    out: Any = None,
    catalog: str = "embedded",
) -> int:
    """Start both servers, print the environment, then serve (or smoke) and stop cleanly."""
    out = out or sys.stdout
    async with running(
        data_dir, host=host, port=port, manta_port=manta_port, catalog=catalog
    ) as (env, _app):
        print("\n".join(env_lines(env)), file=out, flush=True)
        if do_smoke:
            answer = await smoke(env)
            print("# smoke: exported and verified both objects; ExportImage said:", file=out)
            print(json.dumps(answer, indent=2), file=out)
            print("# smoke: OK", file=out, flush=True)
            return 0
        print("# Serving; Ctrl-C stops.", file=out, flush=True)
        await _wait_for_stop()
        print("# Stopping (waiting for exports in flight).", file=out, flush=True)
        return 0


async def _wait_for_stop() -> None:
    """Return on SIGINT or SIGTERM, so that shutdown is graceful rather than a traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cloudapi-gateway dev``."""
    from gateway.cli.export import ClientError
    from gateway.server.plugin_manager import ConfigurationError, PluginError
    from gateway.settings import SettingsError

    log_options.configure(args)
    label = "smoke: FAILED" if args.smoke else "dev: error"
    try:
        return asyncio.run(
            run_dev(
                Path(args.data_dir).resolve(),
                host=args.host,
                port=args.port,
                manta_port=args.manta_port,
                do_smoke=args.smoke,
                catalog=args.catalog,
            )
        )
    except (DevError, ClientError) as exc:
        print(f"cloudapi-gateway {label}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (SettingsError, PluginError, ConfigurationError):
        raise  # said once, by ``cloudapi-gateway``'s own handler (gateway.cli.main)
    except Exception as exc:
        # Unexpected: one clear line first, then the traceback for whoever debugs it.
        print(f"cloudapi-gateway {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default="dev-data",
        help="where keys, the demo image, the accounts, the catalog and Manta's objects live "
        "(default: ./dev-data; reused by later runs)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address both servers listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8080,
        help="gateway port (default: %(default)s; 0: any free one)",
    )
    parser.add_argument(
        "--manta-port",
        type=int,
        default=8081,
        help="fake Manta port (default: %(default)s; 0: any free one)",
    )
    parser.add_argument(
        "--catalog",
        choices=CATALOG_KINDS,
        default="embedded",
        help="where images live: the gateway's disk (embedded, default) or the fake Manta "
        f"under {IMAGES_PREFIX} (objectstore: exports are SnapLinks)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="export the demo image, check it in the fake Manta, and exit 0 (or 1 on failure)",
    )
    log_options.add_arguments(parser, default_format="text")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev`` to the ``cloudapi-gateway`` command (called by ``gateway.cli.main.main``)."""
    parser = subparsers.add_parser(
        "dev",
        help="run the gateway and a fake Manta with a demo account and image",
        description="Start an on-disk fake Manta and the gateway in one process, with an account "
        "`dev`, its SSH key and a demo image, and print the environment to use them.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.cli.dev``: the same command without the main CLI."""
    parser = argparse.ArgumentParser(prog="cloudapi-gateway dev")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
