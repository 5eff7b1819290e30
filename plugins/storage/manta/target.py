"""The ``manta`` storage target: an asyncio Manta client on one pooled aiohttp session.

Every request is signed with the operator's SSH key (HTTP Signature over a fresh ``Date``):
the gateway writes into users' trees as the operator, as IMGAPI does. Bodies stream both
ways. Idempotent requests are retried with bounded exponential backoff on connection errors,
timeouts and 503s; an upload restarts from ``body()``. Manta's error bodies become the typed
``StorageError``s of ``gateway.storage``. There is no total timeout: a multi-gigabyte upload
is bounded only by ``connect_timeout`` and by ``read_timeout`` between two reads. An upload
waits at most ``continue_timeout`` for ``100 Continue`` and then sends its body anyway, as curl
does (aiohttp alone would wait forever: its read timeout starts only after the body is sent).

A body that offers a local file (``LocalFileBody``, the export's image file) goes out with
``sendfile`` over plain HTTP: the kernel moves the bytes, the gateway neither copies nor touches
them. Its last byte waits for the producer's verdict, and every 8 MiB must leave within
``read_timeout``, so a Manta that stops reading mid-body fails the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp.payload import Payload
from yarl import URL

from gateway import __version__, hookimpl
from gateway.httpsig import PrivateKey, RequestSigner, load_private_key, md5_fingerprint
from gateway.plugin_kit import SectionReader, backoff_delay
from gateway.storage import (
    AccessDenied,
    BodyFactory,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    LocalFile,
    LocalFileBody,
    ObjectInfo,
    ObjectNotFound,
    ParentNotDirectory,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

DIRECTORY_TYPE = "application/x-json-stream; type=directory"
PUT_DIRECTORY_TYPE = "application/json; type=directory"
#: Largest page muskie allows; the marker row repeats at the top of the next page.
LIST_LIMIT = 1024
#: Read size of GET bodies.
CHUNK_SIZE = 1024 * 1024
#: A local-file body goes out in sendfile calls of this size, each bounded by ``read_timeout``.
SENDFILE_WINDOW = 8 * 1024 * 1024
#: Error bodies are small JSON; never read more than this of one.
MAX_ERROR_BODY = 64 * 1024

ACCESS_CODES = frozenset(
    {
        "AccountBlocked",
        "AccountDoesNotExist",
        "AuthorizationFailed",
        "AuthorizationRequired",
        "AuthorizationSchemeNotAllowed",
        "InvalidAlgorithm",
        "InvalidAuthenticationToken",
        "InvalidHttpAuthenticationToken",
        "InvalidKeyId",
        "InvalidSignature",
        "KeyDoesNotExist",
        "MissingPermission",
        "RequestExpired",
        "InvalidHeader",
    }
)
#: Statuses that mean "Manta (or the balancer in front of it) is down for now".
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class MantaConfig:
    """The validated ``[storage]`` section of a ``manta`` target."""

    url: str
    public_url: str
    user: str
    key_file: Path
    key_id: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    #: Seconds to wait for ``100 Continue`` (or a final answer) before sending the body anyway.
    continue_timeout: float = 1.0
    retries: int = 3
    retry_delay: float = 0.2
    retry_max_delay: float = 5.0
    max_connections: int = 64
    tls_insecure: bool = False
    #: Entries per listing request (muskie allows 1..1024).
    list_page_size: int = LIST_LIMIT

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> MantaConfig:
        """Check every key and value, and say which one is wrong."""
        known = {
            "url",
            "public_url",
            "user",
            "key_file",
            "key_id",
            "connect_timeout",
            "read_timeout",
            "continue_timeout",
            "retries",
            "retry_delay",
            "retry_max_delay",
            "max_connections",
            "tls_insecure",
            "list_page_size",
        }
        read = SectionReader("manta", config, known)
        url = read.string("url").rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError("[storage] kind=manta: url must start with http:// or https://")
        return cls(
            url=url,
            public_url=read.string("public_url", url).rstrip("/"),
            user=read.string("user"),
            key_file=Path(read.string("key_file")).expanduser(),
            key_id=read.optional_string("key_id"),
            connect_timeout=read.number("connect_timeout", cls.connect_timeout),
            read_timeout=read.number("read_timeout", cls.read_timeout),
            continue_timeout=read.number("continue_timeout", cls.continue_timeout),
            retries=read.integer("retries", cls.retries, 0),
            retry_delay=read.number("retry_delay", cls.retry_delay),
            retry_max_delay=read.number("retry_max_delay", cls.retry_max_delay),
            max_connections=read.integer("max_connections", cls.max_connections, 1),
            tls_insecure=read.boolean("tls_insecure", cls.tls_insecure),
            list_page_size=read.integer("list_page_size", cls.list_page_size, 2),
        )


def key_id_for(key: PrivateKey, user: str, key_id: str | None) -> str:
    """The keyId to sign with: ``key_id`` as given (``/login/keys/fp`` or an MD5 fingerprint),
    else ``/user/keys/<md5 fingerprint of key>``. Manta matches keys by MD5 fingerprint only."""
    fingerprint = md5_fingerprint(key)
    if key_id is None:
        return f"/{user}/keys/{fingerprint}"
    if key_id.startswith("/"):
        return key_id
    given = key_id.removeprefix("MD5:").lower()
    if given != fingerprint:
        raise ValueError(
            f"[storage] kind=manta: key_id {key_id} is not the MD5 fingerprint of key_file "
            f"({fingerprint})"
        )
    return f"/{user}/keys/{fingerprint}"


def encode_path(path: str) -> str:
    """Percent-encode each segment of an absolute Manta path (``/`` separates, nothing else)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute Manta path: {path!r}")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError(f"not a Manta path: {path!r}")
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _is_directory_type(content_type: str | None) -> bool:
    """``application/x-json-stream; type=directory``, tolerating spacing and case."""
    if not content_type:
        return False
    main, _, params = content_type.partition(";")
    return main.strip().lower() == "application/x-json-stream" and "type=directory" in (
        params.replace(" ", "").lower()
    )


def _release_waiter(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _ContinueRequest(aiohttp.ClientRequest):
    """A request that waits at most ``continue_timeout`` for ``100 Continue``.

    aiohttp sends the headers, then awaits the interim answer before writing the body, and only
    starts its read timeout once the body is written: a server that never answers would hold the
    upload forever. After ``continue_timeout`` the body goes out anyway (curl's behaviour, after
    1 s); a server that then still says nothing runs into ``read_timeout``. An early final
    answer (an auth error, say) ends the request as before: releasing it cancels the writer.
    """

    continue_timeout: float = 1.0

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        waiter = self._continue
        if waiter is not None and not waiter.done():
            timer = self.loop.call_later(self.continue_timeout, _release_waiter, waiter)
            waiter.add_done_callback(lambda _done: timer.cancel())
        await super().write_bytes(*args, **kwargs)


def _request_class(continue_timeout: float) -> type[aiohttp.ClientRequest]:
    """A ``_ContinueRequest`` bound to one target's ``continue_timeout``."""
    return type("ContinueRequest", (_ContinueRequest,), {"continue_timeout": continue_timeout})


class _BodyGuard:
    """Wraps one attempt's body iterator for aiohttp.

    It keeps the iterator's own exception (aiohttp would wrap it in a connection error), checks
    that exactly ``size`` bytes come out, and holds back only the chunk that completes the body
    until the iterator has ended cleanly: when the iterator fails, even at its very end (a sha1
    check), Manta never receives the last bytes, so it cannot commit the object. Every other
    chunk goes out as soon as it arrives, as a ``memoryview`` (no copy of what the socket does
    not take at once).
    """

    def __init__(self, chunks: AsyncIterator[bytes], size: int) -> None:
        self.chunks = chunks
        self.size = size
        self.error: BaseException | None = None

    async def _next(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end; records the iterator's error."""
        while True:
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                return None
            except Exception as exc:
                self.error = exc
                raise
            if chunk:
                # bytes are immutable: a view is safe; anything else is copied once.
                return chunk if isinstance(chunk, bytes) else bytes(chunk)

    def _fail(self, message: str) -> StorageRequestFailed:
        self.error = StorageRequestFailed(message)
        return self.error

    async def stream(self) -> AsyncIterator[memoryview]:
        total = 0
        while True:
            chunk = await self._next()
            if chunk is None:
                if total != self.size:
                    raise self._fail(f"the body ended after {total} of {self.size} bytes")
                return
            total += len(chunk)
            if total > self.size:
                raise self._fail(f"the body is longer than its declared size {self.size}")
            if total == self.size:
                # The last bytes: only once the iterator has ended without an error.
                if await self._next() is not None:
                    raise self._fail(f"the body is longer than its declared size {self.size}")
                yield memoryview(chunk)
                return
            yield memoryview(chunk)

    def payload(self) -> AsyncIterator[memoryview]:
        """What aiohttp sends."""
        return self.stream()

    async def aclose(self) -> None:
        """Close the caller's iterator (an open source file) even when it was never read."""
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(RuntimeError):  # still running in an abandoned writer
                await close()


class _FileSender:
    """Sends a ``LocalFile`` with ``sendfile``: no copy through Python, no per-chunk work.

    As ``_BodyGuard`` does, it holds back the last byte until the producer's check
    (``verified``) has passed, and keeps the producer's own exception in ``error``.
    """

    def __init__(self, local: LocalFile, size: int, stall_timeout: float) -> None:
        self.local = local
        self.size = size
        #: Longest wait for one ``SENDFILE_WINDOW`` to go out: a Manta that stops reading
        #: mid-body fails the attempt instead of holding it forever.
        self.stall_timeout = stall_timeout
        self.error: BaseException | None = None

    def _fail(self, error: BaseException) -> BaseException:
        self.error = error
        return error

    def payload(self) -> Payload:
        """What aiohttp sends."""
        return _SendfilePayload(self)

    async def send(self, writer: Any) -> None:
        """Write the body on the request's connection (headers are already out)."""
        if self.local.size != self.size:
            raise self._fail(
                StorageRequestFailed(f"the body has {self.local.size} bytes, not {self.size}")
            )
        send_headers = getattr(writer, "send_headers", None)
        if send_headers is not None:
            send_headers()
        await writer.drain()
        transport = writer.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection closed before the body was sent")
        head = max(self.size - 1, 0)
        sent = await self._sendfile(transport, 0, head)
        try:
            await self.local.verified()  # a short file is the producer's error first
        except Exception as exc:
            raise self._fail(exc) from None
        if sent != head:
            raise self._fail(
                StorageRequestFailed(f"the body ended after {sent} of {self.size} bytes")
            )
        if self.size:
            await self._sendfile(transport, head, 1)

    async def _sendfile(self, transport: asyncio.Transport, offset: int, count: int) -> int:
        """Send ``count`` bytes from ``offset`` in windows; returns how many the file had."""
        loop = asyncio.get_running_loop()
        sent = 0
        while sent < count:
            window = min(SENDFILE_WINDOW, count - sent)
            try:
                async with asyncio.timeout(self.stall_timeout):
                    done = await loop.sendfile(transport, self.local.file, offset + sent, window)
            except TimeoutError:
                raise TimeoutError(
                    f"Manta took in no {window} bytes of the body for {self.stall_timeout} s"
                ) from None
            sent += done
            if done < window:  # the file ended early
                break
        return sent


class _SendfilePayload(Payload):
    """An aiohttp payload whose writing is ``_FileSender.send``."""

    _value: _FileSender

    def __init__(self, sender: _FileSender) -> None:
        super().__init__(sender, content_type="application/octet-stream")
        self._size = sender.size

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file body has no text form")

    async def write(self, writer: Any) -> None:
        await self._value.send(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self._value.send(writer)


_Sender = _BodyGuard | _FileSender


class MantaTarget:
    """A StorageTarget over Manta's HTTP API."""

    def __init__(self, config: MantaConfig, signer: RequestSigner) -> None:
        self.config = config
        self.signer = signer
        self.public_url = config.public_url
        self._session: aiohttp.ClientSession | None = None
        #: Local-file bodies go out with sendfile, which needs a plain TCP connection.
        self._sendfile = config.url.startswith("http://")

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """One pooled session; timeouts per connect and per read, never a total one."""
        cfg = self.config
        connector = aiohttp.TCPConnector(
            limit=cfg.max_connections, ssl=False if cfg.tls_insecure else True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=cfg.connect_timeout, sock_read=cfg.read_timeout
            ),
            auto_decompress=False,
            headers={"User-Agent": f"cloudapi-gateway/{__version__}"},
            request_class=_request_class(cfg.continue_timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("MantaTarget used before open()")
        return self._session

    # --- plumbing ----------------------------------------------------------------------------

    def _url(self, path: str, query: Mapping[str, str] | None = None) -> tuple[URL, str]:
        """The request URL and the path-and-query that is signed."""
        target = encode_path(path)
        url = URL(self.config.url + target, encoded=True)
        if query:
            url = url.with_query(query)
        return url, url.raw_path_qs

    async def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        size: int = 0,
    ) -> aiohttp.ClientResponse:
        """Send one request, retrying transient failures; return a response whose status is in
        ``ok`` (the caller releases it) or raise the matching StorageError."""
        url, signed_path = self._url(path, query)
        attempt = 0
        while True:
            async with self._sender(body, size) as sender:
                outcome = await self._attempt(method, url, signed_path, path, ok, headers, sender)
            if isinstance(outcome, aiohttp.ClientResponse):
                return outcome
            if not isinstance(outcome, StorageUnavailable) or attempt >= self.config.retries:
                raise outcome
            delay = backoff_delay(attempt, self.config.retry_delay, self.config.retry_max_delay)
            log.info(
                "Manta %s %s: %s; retry %d in %.2fs", method, path, outcome, attempt + 1, delay
            )
            attempt += 1
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _sender(self, body: BodyFactory | None, size: int) -> AsyncIterator[_Sender | None]:
        """One attempt's body: sent from the local file when the body offers one and the
        connection is plain TCP (sendfile cannot go through TLS), else from its iterator."""
        if body is None:
            yield None
            return
        if self._sendfile and isinstance(body, LocalFileBody):
            async with body.local_file() as local:
                if local is not None:
                    yield _FileSender(local, size, self.config.read_timeout)
                    return
        guard = _BodyGuard(body(), size)
        try:
            yield guard
        finally:
            await guard.aclose()

    async def _attempt(
        self,
        method: str,
        url: URL,
        signed_path: str,
        path: str,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None,
        guard: _Sender | None,
    ) -> aiohttp.ClientResponse | StorageError:
        """One signed request: the response if its status is in ``ok``, else the error to raise
        or retry. The body iterator's own exception is raised as it is."""
        data: Any = guard.payload() if guard is not None else None
        if guard is None and method in ("PUT", "POST"):
            data = b""
        sent = self.signer.sign(
            method, signed_path, {**(headers or {}), "x-request-id": str(uuid.uuid4())}
        )
        try:
            response = await self.session.request(
                method, url, headers=sent, data=data, expect100=guard is not None
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            if guard is not None and guard.error is not None:
                raise guard.error from None
            return StorageUnavailable(f"Manta is unreachable: {exc!r}", path=path)
        if response.status in ok:
            if guard is not None and guard.error is not None:
                # Cannot happen (the last chunk is held back), but never keep such a write.
                response.release()
                await self._delete_quietly(path)
                raise guard.error
            return response
        try:
            error = await self._error_from(response, method, path)
        finally:
            response.release()
        if guard is not None and guard.error is not None:
            raise guard.error
        return error

    async def _error_from(
        self, response: aiohttp.ClientResponse, method: str, path: str
    ) -> StorageError:
        """Map a Manta error answer ({"code","message"}, or just a status for HEAD)."""
        code = ""
        message = ""
        if method != "HEAD":
            try:
                raw = await response.content.read(MAX_ERROR_BODY)
                doc = json.loads(raw) if raw else {}
                if isinstance(doc, dict):
                    code = str(doc.get("code") or "")
                    message = str(doc.get("message") or "")
            except (ValueError, aiohttp.ClientError, TimeoutError):
                pass
        status = response.status
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        text = message or f"Manta answered {status} {code}".strip()
        if status in UNAVAILABLE_STATUSES or code == "ServiceUnavailable":
            return StorageUnavailable(f"Manta is unavailable: {text}", path=path)
        if code == "DirectoryDoesNotExist":
            return DirectoryDoesNotExist(f"{parent} does not exist", path=parent)
        if code == "ParentNotDirectory":
            return ParentNotDirectory(f"{parent} is not a directory", path=parent)
        if code == "ContentMD5Mismatch":
            return ChecksumMismatch(text, path=path)
        if code == "ResourceNotFound" or (not code and status == 404):
            return ObjectNotFound(f"{path} was not found", path=path)
        if code in ACCESS_CODES or (not code and status in (401, 403)):
            return AccessDenied(f"Manta refused access: {text}", path=path)
        return StorageRequestFailed(text, path=path, code=code or str(status))

    async def _delete_quietly(self, path: str) -> None:
        """Best-effort removal of what a failed upload may have left."""
        try:
            await self.delete_object(path)
        except StorageError as exc:
            log.warning("could not remove %s after a failed upload: %s", path, exc)

    # --- reads -------------------------------------------------------------------------------

    async def stat(self, path: str) -> ObjectInfo | None:
        """HEAD the path: the directory content type means a directory; 404 means nothing."""
        try:
            response = await self._request(
                "HEAD", path, ok=(200, 204), headers={"Accept": "application/json, */*"}
            )
        except ObjectNotFound:
            return None
        response.release()
        headers = response.headers
        content_type = headers.get("Content-Type")
        if _is_directory_type(content_type):
            return ObjectInfo(
                path=path, type="directory", content_type=content_type, headers=dict(headers)
            )
        length = headers.get("Content-Length")
        return ObjectInfo(
            path=path,
            type="object",
            size=int(length) if length and length.isdigit() else None,
            content_md5=headers.get("Content-MD5"),
            etag=headers.get("Etag"),
            content_type=content_type,
            headers=dict(headers),
        )

    async def get_object(self, path: str) -> AsyncIterator[bytes]:
        """Start the GET (a missing object raises here) and return the stream of its bytes."""
        response = await self._request("GET", path, ok=(200,), headers={"Accept": "*/*"})
        if _is_directory_type(response.headers.get("Content-Type")):
            response.release()
            raise StorageRequestFailed(
                f"{path} is a directory", path=path, code="OperationNotAllowedOnDirectory"
            )
        return self._stream(path, response)

    async def _stream(self, path: str, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageUnavailable(f"Manta stopped sending {path}: {exc!r}", path=path) from exc
        finally:
            response.release()

    async def list_directory(self, path: str) -> AsyncIterator[ObjectInfo]:
        """Fetch the first page (a missing directory raises here); the rest stream on demand."""
        first = await self._list_page(path, None)
        return self._iter_listing(path, first)

    async def _list_page(self, path: str, marker: str | None) -> aiohttp.ClientResponse:
        query = {"limit": str(self.config.list_page_size)}
        if marker is not None:
            query["marker"] = marker
        response = await self._request(
            "GET", path, ok=(200,), query=query, headers={"Accept": "application/x-json-stream"}
        )
        if not _is_directory_type(response.headers.get("Content-Type")):
            response.release()
            raise StorageRequestFailed(
                f"{path} is not a directory", path=path, code="NotADirectory"
            )
        return response

    async def _iter_listing(
        self, path: str, response: aiohttp.ClientResponse
    ) -> AsyncIterator[ObjectInfo]:
        """Page with ``marker``: the marker row comes back first on the next page and is skipped;
        a page shorter than the limit is the last one."""
        base = path.rstrip("/")
        marker: str | None = None
        while True:
            rows = 0
            last: str | None = None
            try:
                async for line in response.content:
                    if not line.strip():
                        continue
                    rows += 1
                    entry = json.loads(line)
                    name = entry["name"]
                    last = name
                    if marker is not None and name == marker:
                        continue
                    is_dir = entry.get("type") == "directory"
                    yield ObjectInfo(
                        path=f"{base}/{name}",
                        type="directory" if is_dir else "object",
                        size=None if is_dir else entry.get("size"),
                        content_md5=entry.get("contentMD5"),
                        etag=entry.get("etag"),
                        content_type=entry.get("contentType"),
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise StorageUnavailable(f"Manta stopped listing {path}: {exc!r}") from exc
            finally:
                response.release()
            if rows < self.config.list_page_size or last is None:
                return
            marker = last
            response = await self._list_page(path, marker)

    # --- writes ------------------------------------------------------------------------------

    async def put_object(
        self,
        path: str,
        body: BodyFactory,
        *,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> ObjectInfo:
        """Streaming PUT with Content-Length, Content-MD5 and ``Expect: 100-continue``."""
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "Content-Length": str(size),
        }
        if content_md5:
            headers["Content-MD5"] = content_md5
        response = await self._request(
            "PUT", path, ok=(200, 201, 204), headers=headers, body=body, size=size
        )
        response.release()
        return ObjectInfo(
            path=path,
            type="object",
            size=size,
            content_md5=response.headers.get("Computed-MD5") or content_md5,
            etag=response.headers.get("Etag"),
            content_type=content_type,
            headers=dict(response.headers),
        )

    async def mkdir(self, path: str) -> None:
        """PUT with the directory content type; Manta keeps an existing directory as it is."""
        response = await self._request(
            "PUT",
            path,
            ok=(200, 201, 204),
            headers={"Accept": "application/json", "Content-Type": PUT_DIRECTORY_TYPE},
        )
        response.release()

    async def delete_object(self, path: str) -> None:
        """DELETE; a missing object is fine (a retried DELETE may find it already gone)."""
        try:
            response = await self._request(
                "DELETE", path, ok=(200, 204), headers={"Accept": "application/json"}
            )
        except ObjectNotFound:
            return
        response.release()


class MantaTargetFactory:
    """Builds ``MantaTarget``s from ``[storage] kind = "manta"``."""

    name = "manta"

    def create(self, config: Mapping[str, Any], settings: Settings) -> StorageTarget:
        """Validate the section and load the key now, so that a bad key stops the start."""
        cfg = MantaConfig.from_mapping(config)
        try:
            key = load_private_key(cfg.key_file)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(
                f"[storage] kind=manta: cannot load key_file {cfg.key_file}: {exc}"
            ) from exc
        signer = RequestSigner(key, key_id_for(key, cfg.user, cfg.key_id))
        return MantaTarget(cfg, signer)


@hookimpl
def gateway_register_storage_targets() -> list[MantaTargetFactory]:
    """Provide the ``manta`` storage kind."""
    return [MantaTargetFactory()]


__all__ = [
    "MantaConfig",
    "MantaTarget",
    "MantaTargetFactory",
    "SectionReader",
    "backoff_delay",
    "encode_path",
    "gateway_register_storage_targets",
]
