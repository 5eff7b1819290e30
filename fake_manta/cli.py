"""``fake-manta``: parse arguments, start a FakeMantaServer, print how to point node-manta at it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from fake_manta.account_file import AccountFileError
from fake_manta.config import DEFAULT_MAX_CONTENT_LENGTH
from fake_manta.errors import MantaError
from fake_manta.logs import setup_logging
from fake_manta.server import FakeMantaServer
from fake_manta.version import package_version


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fake-manta",
        description="A fake Manta object store that node-manta (mput, mget, ...) works against.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8081, help="port to bind; 0 picks a free one")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="keep state on disk here (survives restarts)")
    where.add_argument("--memory", action="store_true", help="keep state in memory (default)")
    p.add_argument("--fsync", action="store_true",
                   help="with --data-dir: fsync every object before answering (power-loss "
                        "durability; slower). Writes are atomic without it")
    p.add_argument(
        "--account", action="append", default=[], metavar="LOGIN[=PUBKEY_FILE]",
        help="create LOGIN with the OpenSSH public key(s) in PUBKEY_FILE; repeatable",
    )
    p.add_argument(
        "--user", action="append", default=[], metavar="LOGIN/USER=PUBKEY_FILE",
        help="create sub-user USER of LOGIN (keyId /LOGIN/USER/keys/FP) with the key(s) in "
             "PUBKEY_FILE; LOGIN is created if absent; repeatable",
    )
    p.add_argument("--operator", action="append", default=[], metavar="LOGIN",
                   help="make LOGIN an operator (may read and write every tree); repeatable")
    p.add_argument("--no-auth", action="store_true",
                   help="accept unsigned requests (clients: MANTA_NO_AUTH=true)")
    p.add_argument("--snaplinks", choices=("v1", "v2"), default="v1",
                   help="v1: mln works (default); v2: 403 SnaplinksDisabledError, as Manta v2")
    p.add_argument("--max-content-length", type=int, default=DEFAULT_MAX_CONTENT_LENGTH,
                   metavar="BYTES", help="largest object accepted (default 5 GiB)")
    p.add_argument("--admin-from", action="append", default=[], metavar="CIDR",
                   help="also answer the admin surface (/_fake/) to clients in this network, "
                        "e.g. a container's host (default: loopback only); repeatable")
    p.add_argument("--tls-cert", type=Path, metavar="PEM",
                   help="serve HTTPS with this certificate chain (with --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: log every request (one audit record each, on stderr); "
                        "-vv: debug records too")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="json: bunyan records, one per line, as muskie logs (default); "
                        "text: one readable line per record")
    return p


def _read_keys(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def configure(server: FakeMantaServer, args: argparse.Namespace) -> dict[str, list[str]]:
    """Create the accounts named on the command line; returns login -> key fingerprints."""
    fingerprints: dict[str, list[str]] = {}
    for spec in args.account:
        login, _, key_file = spec.partition("=")
        keys = _read_keys(Path(key_file).expanduser()) if key_file else []
        fingerprints[login] = server.add_account(login, keys, operator=login in args.operator)
    for login in args.operator:
        if login not in fingerprints:
            fingerprints[login] = server.add_account(login, operator=True)
    for spec in args.user:
        owner, _, rest = spec.partition("/")
        user, _, key_file = rest.partition("=")
        if not owner or not user or not key_file:
            raise ValueError(f"--user {spec!r}: expected LOGIN/USER=PUBKEY_FILE")
        if owner not in fingerprints:
            fingerprints[owner] = server.add_account(owner, operator=owner in args.operator)
        server.add_user(owner, user, _read_keys(Path(key_file).expanduser()))
    for login in server.registry.logins():  # kept in --data-dir from an earlier start
        account = server.registry.get(login)
        if account is not None:
            fingerprints.setdefault(login, list(account.keys))
    return fingerprints


def banner(server: FakeMantaServer, fingerprints: dict[str, list[str]]) -> str:
    backend = f"on disk in {server.config.data_dir}" if server.config.data_dir else "in memory"
    lines = [f"fake Manta listening on {server.url} (state {backend})", "",
             "Point node-manta (npm install -g manta) at it:",
             f"  export MANTA_URL={server.url}"]
    login = next(iter(fingerprints), "LOGIN")
    lines.append(f"  export MANTA_USER={login}")
    fps = fingerprints.get(login) or []
    if server.config.no_auth:
        lines.append("  export MANTA_NO_AUTH=true")
    elif fps:
        lines.append(f"  export MANTA_KEY_ID={fps[0]}")
    else:
        lines.append("  export MANTA_KEY_ID=<md5 fingerprint of a key given with --account>")
    lines += ["", f"  mmkdir -p /{login}/stor/demo && echo hi | mput /{login}/stor/demo/hi.txt",
              f"  mls /{login}/stor/demo", "", "Ctrl-C to stop."]
    return "\n".join(lines)


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The HTTPS context of ``--tls-cert``/``--tls-key`` (HTTP/1.1, as Manta); None: HTTP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"--tls-cert {cert} with --tls-key {key}: {exc.reason}") from None
    return context


async def serve(args: argparse.Namespace, ssl_context: ssl.SSLContext | None = None) -> None:
    server = FakeMantaServer(
        host=args.host, port=args.port, data_dir=args.data_dir, no_auth=args.no_auth,
        snaplinks=args.snaplinks, max_content_length=args.max_content_length,
        fsync=args.fsync, log_requests=args.verbose > 0, admin_from=args.admin_from,
        ssl_context=ssl_context,
    )
    try:
        fingerprints = configure(server, args)
    except (ValueError, OSError, MantaError) as exc:
        sys.exit(f"fake-manta: {exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        print(banner(server, fingerprints), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.max_content_length < 0:
        sys.exit("fake-manta: --max-content-length must be >= 0")
    for network in args.admin_from:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            sys.exit(f"fake-manta: --admin-from: {exc}")
    try:
        ssl_context = tls_context(args.tls_cert, args.tls_key)
    except (ValueError, OSError) as exc:
        sys.exit(f"fake-manta: {exc}")
    setup_logging(args.verbose, args.log_format)
    try:
        asyncio.run(serve(args, ssl_context))
    except (OSError, AccountFileError) as exc:
        sys.exit(f"fake-manta: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
