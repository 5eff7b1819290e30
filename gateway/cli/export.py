"""The bundled CloudAPI client: ``cloudapi-gateway export [-j] IMAGE MANTA_PATH``.

It sends what ``triton image export`` sends (GetImage or ListImages to resolve IMAGE, then
``POST /:login/images/:uuid`` with the JSON body ``{"action":"export","manta_path":...}``) and
prints what it prints, so that a newcomer without node can try the gateway, and so that dev
mode's smoke test goes over the same code path as a user would. One difference: with ``-j``
stdout carries only the JSON answer, and the ``Exporting image`` line goes to stderr.

Keys are found as node-triton finds them: the unencrypted key in ``~/.ssh`` that ``SDC_KEY_ID``
names, else the key with that fingerprint in ssh-agent (``SSH_AUTH_SOCK``; the optional
``agent`` extra, see ``gateway.cli.agent``). Unlike the Node clients it also takes a key file
(``--key-file`` or ``SDC_KEY_PATH``), since dev mode has no agent.

aiohttp, ``cryptography`` and asyncssh are imported where they are used, so that the command
line starts fast (``bench/cli_startup.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import quote, urlencode

from gateway import __version__

if TYPE_CHECKING:
    import aiohttp

    from gateway.cli.agent import AgentKey
    from gateway.httpsig import PrivateKey

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
#: What node-triton sends; the gateway serves images at 9.0.0.
ACCEPT_VERSION = "~9||~8"
USER_AGENT = f"cloudapi-gateway-client/{__version__}"
#: Seconds to connect when ``--timeout`` is not given (reads then wait without limit).
CONNECT_TIMEOUT = 30.0
#: What the elapsed time is shown with while the command waits (stderr, a terminal only).
WAITING = "waiting for CloudAPI:"


class ClientError(Exception):
    """A failure to report as ``error (CODE): message``; ``code`` is CloudAPI's when it gave one."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ClientConfig:
    """Where and as whom to talk: SDC_URL, SDC_ACCOUNT, the key and its keyId."""

    url: str
    account: str
    key: PrivateKey | AgentKey  # a key loaded from a file, or one that ssh-agent holds
    key_id: str  # the md5 fingerprint sent in keyId


class Signer(Protocol):
    """Signs a request's signing string: returns (http-signature algorithm, base64 signature)."""

    async def sign(self, data: bytes) -> tuple[str, str]: ...


class KeySigner:
    """Signs with a private key loaded from a file."""

    def __init__(self, key: PrivateKey) -> None:
        from gateway.httpsig import default_algorithm

        self.key = key
        self.algorithm = default_algorithm(key)

    async def sign(self, data: bytes) -> tuple[str, str]:
        from gateway.httpsig import sign_bytes

        return self.algorithm, sign_bytes(self.key, self.algorithm, data)


def _normalize_fingerprint(text: str) -> str:
    """``MD5:aa:bb...`` or ``aa:bb...`` -> ``aa:bb...``; SHA256 forms are kept as they are."""
    text = text.strip()
    if text.upper().startswith("MD5:"):
        text = text[4:]
    return text.lower() if not text.upper().startswith("SHA256:") else text


def blob_matches(blob: bytes, fingerprint: str) -> bool:
    """Whether ``fingerprint`` (md5 colon-hex, or ``SHA256:base64``) names the SSH public
    key ``blob``."""
    fp = _normalize_fingerprint(fingerprint)
    if fp.upper().startswith("SHA256:"):
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return fp[7:].rstrip("=") == digest
    md5 = hashlib.md5(blob).hexdigest()  # MD5: the wire format of keyIds
    return ":".join(md5[i : i + 2] for i in range(0, len(md5), 2)) == fp


def key_matches(key: PrivateKey, fingerprint: str) -> bool:
    """Whether ``fingerprint`` (md5 colon-hex, or ``SHA256:base64``) names ``key``."""
    from gateway.httpsig import ssh_public_key_line

    return blob_matches(base64.b64decode(ssh_public_key_line(key).split()[1]), fingerprint)


def find_key_in_dir(directory: Path, fingerprint: str) -> PrivateKey | None:
    """Look in ``directory`` (``~/.ssh``) for an unencrypted private key with ``fingerprint``."""
    from gateway.httpsig import load_private_key

    if not directory.is_dir():
        return None
    for path in sorted(directory.iterdir()):
        if path.suffix == ".pub" or not path.is_file() or path.stat().st_size > 131072:
            continue
        try:
            key = load_private_key(path)
        except (ValueError, TypeError, OSError):
            continue
        if key_matches(key, fingerprint):
            return key
    return None


def find_key_in_agent(socket: str, fingerprint: str) -> AgentKey | None:
    """The key with ``fingerprint`` that the ssh-agent at ``socket`` holds, if any."""
    try:
        from gateway.cli import agent
    except ImportError as exc:  # the optional extra is not installed
        raise ClientError(
            "KeyNotFound",
            f"no private key matching {fingerprint} in ~/.ssh, and keys from ssh-agent "
            f"need asyncssh: pip install 'cloudapi-gateway[agent]' ({exc})",
        ) from exc
    try:
        keys = asyncio.run(agent.list_keys(socket))
    except agent.AgentError as exc:
        raise ClientError("AgentError", str(exc)) from exc
    return next((k for k in keys if blob_matches(k.public_blob, fingerprint)), None)


def resolve_config(
    url: str | None,
    account: str | None,
    key_id: str | None,
    key_file: str | None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Flags win over TRITON_*/SDC_* variables, as in node-triton's env profile.

    The key: ``key_file`` (or ``SDC_KEY_PATH``) if given; else the key ``key_id`` names,
    looked for as node-triton looks (an unencrypted key in ``~/.ssh``, then ssh-agent).
    """
    from gateway.httpsig import load_private_key, md5_fingerprint

    env = os.environ if env is None else env
    url = url or env.get("TRITON_URL") or env.get("SDC_URL")
    account = account or env.get("TRITON_ACCOUNT") or env.get("SDC_ACCOUNT")
    key_id = key_id or env.get("TRITON_KEY_ID") or env.get("SDC_KEY_ID")
    key_file = key_file or env.get("SDC_KEY_PATH")
    if not url:
        raise ClientError("UsageError", "no CloudAPI URL: use --url or set SDC_URL")
    if not account:
        raise ClientError("UsageError", "no account: use --account or set SDC_ACCOUNT")
    if key_file:
        try:
            key = load_private_key(Path(key_file).expanduser())
        except (OSError, ValueError, TypeError) as exc:
            raise ClientError("UsageError", f"cannot load key file {key_file}: {exc}") from exc
        if key_id and not key_matches(key, key_id):
            raise ClientError("UsageError", f"key file {key_file} does not match key id {key_id}")
        return ClientConfig(url.rstrip("/"), account, key, md5_fingerprint(key))
    if not key_id:
        raise ClientError("UsageError", "no key: use --key-file/SDC_KEY_PATH or SDC_KEY_ID")
    home = Path(env.get("HOME") or Path.home())
    found = find_key_in_dir(home / ".ssh", key_id)
    if found is not None:
        return ClientConfig(url.rstrip("/"), account, found, md5_fingerprint(found))
    socket = env.get("SSH_AUTH_SOCK")
    in_agent = find_key_in_agent(socket, key_id) if socket else None
    if in_agent is None:
        where = f"{home / '.ssh'} or ssh-agent" if socket else f"{home / '.ssh'} (no SSH_AUTH_SOCK)"
        raise ClientError(
            "KeyNotFound",
            f"no private key matching {key_id} in {where} "
            "(give one with --key-file or SDC_KEY_PATH)",
        )
    return ClientConfig(url.rstrip("/"), account, in_agent, in_agent.md5_fingerprint)


class CloudApiClient:
    """A small signed CloudAPI client over one aiohttp session (the caller owns the session)."""

    def __init__(
        self,
        config: ClientConfig,
        session: aiohttp.ClientSession,
        signer: Signer | None = None,
    ) -> None:
        """A key from a file signs by itself; an ssh-agent key needs ``signer``
        (``gateway.cli.agent.open_signer``)."""
        from gateway.httpsig import PrivateKey

        self.config = config
        self.session = session
        if signer is None:
            if not isinstance(config.key, PrivateKey):
                raise TypeError("an ssh-agent key signs through a signer: pass signer=")
            signer = KeySigner(config.key)
        self.signer = signer
        self.key_id = f"/{config.account}/keys/{config.key_id}"

    async def _authorization(self, date: str) -> str:
        """The ``Authorization`` header: an HTTP Signature over the ``date`` header."""
        algorithm, signature = await self.signer.sign(f"date: {date}".encode())
        return (
            f'Signature keyId="{self.key_id}",algorithm="{algorithm}",'
            f'headers="date",signature="{signature}"'
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """Send a signed request and return the decoded JSON; raise ``ClientError`` on 4xx/5xx
        and on a timeout (the session's ``--timeout``)."""
        import aiohttp
        import yarl

        headers = {
            "Accept": "application/json",
            "Accept-Version": ACCEPT_VERSION,
            "User-Agent": USER_AGENT,
            "Date": formatdate(usegmt=True),
        }
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        headers["Authorization"] = await self._authorization(headers["Date"])
        url = self.config.url + path + (("?" + urlencode(query)) if query else "")
        try:
            async with self.session.request(
                method, yarl.URL(url, encoded=True), data=data, headers=headers
            ) as resp:
                text = await resp.text()
                status, reason = resp.status, resp.reason
        except TimeoutError as exc:  # aiohttp's are TimeoutErrors too: before ClientError
            message = _timeout_message(exc, self.session, method)
            raise ClientError("Timeout", f"{method} {url}: {message}") from exc
        except aiohttp.ClientError as exc:
            raise ClientError("ConnectionError", f"{method} {url}: {exc}") from exc
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        if status >= 400:
            if isinstance(payload, dict) and "code" in payload:
                message = str(payload.get("message", ""))
                errors = payload.get("errors")
                if isinstance(errors, list) and errors:
                    message += " (" + ", ".join(json.dumps(e) for e in errors) + ")"
                raise ClientError(str(payload["code"]), message, status)
            raise ClientError(f"HTTP{status}", text.strip()[:200] or reason or "", status)
        return payload

    def _login_path(self, *parts: str) -> str:
        return "/" + "/".join(quote(p, safe="") for p in (self.config.account, *parts))

    async def get_image(self, image_id: str) -> dict[str, Any]:
        """GetImage."""
        result = await self.request("GET", self._login_path("images", image_id))
        return dict(result)

    async def list_images(self, **filters: str) -> list[dict[str, Any]]:
        """ListImages with CloudAPI's query filters."""
        result = await self.request("GET", self._login_path("images"), query=filters or None)
        return list(result or [])

    async def resolve_image(self, spec: str) -> dict[str, Any]:
        """Resolve IMAGE as node-triton's ``getImage`` does: uuid, name@version, name, short id."""
        if UUID_RE.match(spec):
            try:
                return await self.get_image(spec)
            except ClientError as exc:
                if exc.code == "ResourceNotFound":
                    raise ClientError(
                        "ResourceNotFound", f"image with id {spec} was not found", exc.status
                    ) from exc
                raise
        name, _, version = spec.partition("@")
        filters = {"state": "all"}
        selector = name
        if version:
            filters.update(name=name, version=version)
            selector = f"{name}@{version}"
        images = await self.list_images(**filters)
        by_name = [img for img in images if img.get("name") == name]
        by_short = [img for img in images if str(img.get("id", "")).split("-")[0] == name]
        if by_name:
            # tabula's sort: by published_at, the latest last; a stable sort keeps ties in order.
            return sorted(by_name, key=lambda img: str(img.get("published_at") or ""))[-1]
        if len(by_short) == 1:
            return by_short[0]
        if not by_short:
            raise ClientError(
                "ResourceNotFound", f'no image with {selector} or short id "{name}" was found'
            )
        raise ClientError(
            "ResourceNotFound",
            f'no image with {selector} "{name}" was found and "{name}" is an ambiguous short id',
        )

    async def export_image(self, image_id: str, manta_path: str) -> dict[str, Any]:
        """ExportImage, with the parameters in the JSON body as node-triton sends them."""
        result = await self.request(
            "POST",
            self._login_path("images", image_id),
            body={"action": "export", "manta_path": manta_path},
        )
        if not isinstance(result, dict):
            raise ClientError("InvalidResponse", f"ExportImage answered {result!r}")
        return result


def format_export(info: Mapping[str, Any], as_json: bool) -> str:
    """The lines ``triton image export`` prints after its ``Exporting image`` line."""
    if as_json:
        return json.dumps(dict(info), separators=(",", ":"))
    return (
        f"    Manta URL: {info.get('manta_url')}\n"
        f"Manifest path: {info.get('manifest_path')}\n"
        f"   Image path: {info.get('image_path')}"
    )


def _timeout_message(exc: BaseException, session: aiohttp.ClientSession, method: str) -> str:
    """Which timeout struck, in words (aiohttp's own message is often empty)."""
    import aiohttp

    timeout = session.timeout
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"could not connect within {timeout.sock_connect:g} s"
    message = f"no answer within {timeout.sock_read:g} s"
    if method == "POST":  # ExportImage: CloudAPI goes on without the client
        message += " (the export goes on in CloudAPI; a longer --timeout waits for its answer)"
    return message


def client_timeout(timeout: float | None) -> aiohttp.ClientTimeout:
    """``--timeout``: seconds to connect and to wait for each read of an answer.

    Without it: ``CONNECT_TIMEOUT`` to connect, and reads without limit, since ExportImage
    answers only when the export is done. Never a total bound: big exports take long.
    """
    import aiohttp

    return aiohttp.ClientTimeout(
        total=None, sock_connect=timeout or CONNECT_TIMEOUT, sock_read=timeout
    )


@contextlib.asynccontextmanager
async def elapsed_time(stream: TextIO | None, interval: float = 1.0) -> AsyncIterator[None]:
    """While the block runs, show ``waiting for CloudAPI: 12s`` on ``stream`` if it is a
    terminal: one line rewritten in place every ``interval`` seconds, erased at the end."""
    isatty = getattr(stream, "isatty", None)
    if stream is None or isatty is None or not isatty():
        yield
        return
    out: TextIO = stream
    start = time.monotonic()
    width = 0

    async def tick() -> None:
        nonlocal width
        while True:
            await asyncio.sleep(interval)
            line = f"{WAITING} {time.monotonic() - start:.0f}s"
            width = max(width, len(line))
            out.write("\r" + line)
            out.flush()

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if width:
            out.write("\r" + " " * width + "\r")
            out.flush()


@contextlib.asynccontextmanager
async def _signer(config: ClientConfig) -> AsyncIterator[Signer | None]:
    """The signer of an ssh-agent key, connected while the block runs; None for a key file."""
    from gateway.httpsig import PrivateKey

    if isinstance(config.key, PrivateKey):
        yield None
        return
    from gateway.cli import agent

    try:
        async with agent.open_signer(config.key) as signer:
            yield signer
    except agent.AgentError as exc:
        raise ClientError("AgentError", str(exc)) from exc


async def export(
    config: ClientConfig,
    image: str,
    manta_path: str,
    *,
    network_timeout: float | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Resolve ``image`` and export it.

    :param network_timeout: seconds to connect and to wait for each read (``client_timeout``).
    :param progress: where to show the elapsed time while waiting, if it is a terminal.
    """
    import aiohttp

    async with (
        _signer(config) as signer,
        aiohttp.ClientSession(timeout=client_timeout(network_timeout)) as session,
        elapsed_time(progress),
    ):
        client = CloudApiClient(config, session, signer)
        img = await client.resolve_image(image)
        return await client.export_image(str(img["id"]), manta_path)


def _seconds(text: str) -> float:
    """``--timeout``'s value: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``export``; also used by dev mode's own tests."""
    parser.add_argument(
        "-j",
        "--json",
        action="store_true",
        help="print only the answer, as JSON on one line, on stdout "
        "(the 'Exporting image' line goes to stderr; triton prints both on stdout)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be exported, send nothing"
    )
    parser.add_argument("-U", "--url", help="CloudAPI URL (env SDC_URL or TRITON_URL)")
    parser.add_argument("-a", "--account", help="account login (env SDC_ACCOUNT)")
    parser.add_argument(
        "-k",
        "--key-id",
        help="fingerprint of the key (env SDC_KEY_ID); found in ~/.ssh or ssh-agent",
    )
    parser.add_argument("--key-file", help="private key file (env SDC_KEY_PATH)")
    parser.add_argument(
        "-t",
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"seconds to connect and to wait for each read of an answer (default: "
        f"{CONNECT_TIMEOUT:g} to connect, reads without limit: ExportImage answers only when "
        "the export is done)",
    )
    parser.add_argument("image", metavar="IMAGE", help="image uuid, name, name@version or short id")
    parser.add_argument("manta_path", metavar="MANTA_PATH", help="e.g. /LOGIN/stor/my-image")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cloudapi-gateway export``: prints as triton does, exit 0 or 1."""
    try:
        config = resolve_config(args.url, args.account, args.key_id, args.key_file)
    except ClientError as exc:
        print(f"cloudapi-gateway export: error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    announce = f"Exporting image {args.image} to {args.manta_path}"
    print(announce, file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.dry_run:
        return 0
    try:
        info = asyncio.run(
            export(
                config,
                args.image,
                args.manta_path,
                network_timeout=args.timeout,
                progress=sys.stderr,
            )
        )
    except ClientError as exc:
        print(f"cloudapi-gateway export: error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    print(format_export(info, args.json))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` to the ``cloudapi-gateway`` command (called by ``gateway.cli.main.main``)."""
    parser = subparsers.add_parser(
        "export",
        help="export an image to Manta, as `triton image export` does",
        description="Export an image to Manta through CloudAPI's ExportImage. "
        "Only images owned by the account can be exported.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.cli.export IMAGE MANTA_PATH``: the same command without the main CLI."""
    parser = argparse.ArgumentParser(prog="cloudapi-gateway export")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
