"""The bundled CloudAPI client: ``cloudapi-gateway export [-j] IMAGE MANTA_PATH``.

It sends what ``triton image export`` sends (GetImage or ListImages to resolve IMAGE, then
``POST /:login/images/:uuid`` with the JSON body ``{"action":"export","manta_path":...}``) and
prints what it prints, so that a newcomer without node can try the gateway, and so that dev
mode's smoke test goes over the same code path as a user would.

Node clients find keys through ssh-agent or ``~/.ssh`` only; this one also takes a key file
(``--key-file`` or ``SDC_KEY_PATH``), since dev mode has no agent.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import yarl

from gateway import __version__
from gateway.httpsig import PrivateKey, RequestSigner, load_private_key, md5_fingerprint

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
#: What node-triton sends; the gateway serves images at 9.0.0.
ACCEPT_VERSION = "~9||~8"
USER_AGENT = f"cloudapi-gateway-client/{__version__}"


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
    key: PrivateKey
    key_id: str  # the md5 fingerprint sent in keyId


def _normalize_fingerprint(text: str) -> str:
    """``MD5:aa:bb...`` or ``aa:bb...`` -> ``aa:bb...``; SHA256 forms are kept as they are."""
    text = text.strip()
    if text.upper().startswith("MD5:"):
        text = text[4:]
    return text.lower() if not text.upper().startswith("SHA256:") else text


def key_matches(key: PrivateKey, fingerprint: str) -> bool:
    """Whether ``fingerprint`` (md5 colon-hex, or ``SHA256:base64``) names ``key``."""
    fp = _normalize_fingerprint(fingerprint)
    if fp.upper().startswith("SHA256:"):
        from gateway.httpsig import ssh_public_key_line

        blob = base64.b64decode(ssh_public_key_line(key).split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return fp[7:].rstrip("=") == digest
    return md5_fingerprint(key) == fp


def find_key_in_dir(directory: Path, fingerprint: str) -> PrivateKey | None:
    """Look in ``directory`` (``~/.ssh``) for an unencrypted private key with ``fingerprint``."""
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


def resolve_config(
    url: str | None,
    account: str | None,
    key_id: str | None,
    key_file: str | None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Flags win over TRITON_*/SDC_* variables, as in node-triton's env profile."""
    env = os.environ if env is None else env
    url = url or env.get("TRITON_URL") or env.get("SDC_URL")
    account = account or env.get("TRITON_ACCOUNT") or env.get("SDC_ACCOUNT")
    key_id = key_id or env.get("TRITON_KEY_ID") or env.get("SDC_KEY_ID")
    key_file = key_file or env.get("SDC_KEY_PATH")
    if not url:
        raise ClientError("UsageError", "no CloudAPI URL: use --url or set SDC_URL")
    if not account:
        raise ClientError("UsageError", "no account: use --account or set SDC_ACCOUNT")
    key: PrivateKey | None = None
    if key_file:
        try:
            key = load_private_key(Path(key_file).expanduser())
        except (OSError, ValueError, TypeError) as exc:
            raise ClientError("UsageError", f"cannot load key file {key_file}: {exc}") from exc
        if key_id and not key_matches(key, key_id):
            raise ClientError("UsageError", f"key file {key_file} does not match key id {key_id}")
    elif key_id:
        home = Path(env.get("HOME") or Path.home())
        key = find_key_in_dir(home / ".ssh", key_id)
        if key is None:
            raise ClientError(
                "KeyNotFound",
                f"no private key matching {key_id} in {home / '.ssh'} "
                "(give one with --key-file or SDC_KEY_PATH)",
            )
    else:
        raise ClientError("UsageError", "no key: use --key-file/SDC_KEY_PATH or SDC_KEY_ID")
    return ClientConfig(url=url.rstrip("/"), account=account, key=key, key_id=md5_fingerprint(key))


class CloudApiClient:
    """A small signed CloudAPI client over one aiohttp session (the caller owns the session)."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.signer = RequestSigner(config.key, f"/{config.account}/keys/{config.key_id}")
        self._base_path = urlsplit(config.url).path.rstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """Send a signed request and return the decoded JSON; raise ``ClientError`` on 4xx/5xx."""
        target = self._base_path + path + (("?" + urlencode(query)) if query else "")
        headers = {
            "Accept": "application/json",
            "Accept-Version": ACCEPT_VERSION,
            "User-Agent": USER_AGENT,
        }
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        headers = self.signer.sign(method, target, headers)
        url = self.config.url + path + (("?" + urlencode(query)) if query else "")
        try:
            async with self.session.request(
                method, yarl.URL(url, encoded=True), data=data, headers=headers
            ) as resp:
                text = await resp.text()
                status = resp.status
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
            raise ClientError(f"HTTP{status}", text.strip()[:200] or resp.reason or "", status)
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


async def export(config: ClientConfig, image: str, manta_path: str) -> dict[str, Any]:
    """Resolve ``image`` and export it; no total timeout, since big exports take long."""
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        client = CloudApiClient(config, session)
        img = await client.resolve_image(image)
        return await client.export_image(str(img["id"]), manta_path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``export``; also used by dev mode's own tests."""
    parser.add_argument("-j", "--json", action="store_true", help="JSON output, on one line")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be exported, send nothing"
    )
    parser.add_argument("-U", "--url", help="CloudAPI URL (env SDC_URL or TRITON_URL)")
    parser.add_argument("-a", "--account", help="account login (env SDC_ACCOUNT)")
    parser.add_argument(
        "-k", "--key-id", help="md5 fingerprint of the key (env SDC_KEY_ID); found in ~/.ssh"
    )
    parser.add_argument("--key-file", help="private key file (env SDC_KEY_PATH)")
    parser.add_argument("image", metavar="IMAGE", help="image uuid, name, name@version or short id")
    parser.add_argument("manta_path", metavar="MANTA_PATH", help="e.g. /LOGIN/stor/my-image")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cloudapi-gateway export``: prints as triton does, exit 0 or 1."""
    try:
        config = resolve_config(args.url, args.account, args.key_id, args.key_file)
    except ClientError as exc:
        print(f"cloudapi-gateway export: error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    print(f"Exporting image {args.image} to {args.manta_path}", flush=True)
    if args.dry_run:
        return 0
    try:
        info = asyncio.run(export(config, args.image, args.manta_path))
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
