"""``MantaTarget``: an asyncio Manta client on one pooled aiohttp session.

Every request is signed with the operator's SSH key (HTTP Signature over a fresh ``Date``):
the gateway writes into users' trees as the operator, as IMGAPI does. Bodies stream both
ways. Idempotent requests are retried with bounded exponential backoff on connection errors,
timeouts and 503s; an upload restarts from ``body()``. Manta's error bodies become the typed
``StorageError``s of ``gateway.storage``. There is no total timeout: a multi-gigabyte upload
is bounded by ``connect_timeout``, by ``read_timeout`` between two reads, by the rate floor
(``min_rate_bytes`` per ``min_rate_window``) on every body sent or received, and by
``response_timeout`` for each answer's head once the request is out (``ExchangeWatch``). An upload
waits at most ``continue_timeout`` for ``100 Continue`` and then sends its body anyway, as curl
does (aiohttp alone would wait forever: its read timeout starts only after the body is sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from gateway import __version__, telemetry
from gateway.httpsig import RequestSigner
from gateway.plugin_kit import with_retries
from gateway.plugin_kit.network import (
    ConnectionShares,
    ExchangeWatch,
    StorageTooSlow,
    rate_floored,
    watch_trace_config,
)
from gateway.storage import (
    BodyFactory,
    CopyUnsupported,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from plugins.storage.manta.aiohttp_internals import WriterPayload, continue_request_class
from plugins.storage.manta.configuration import MantaConfig, client_ssl
from plugins.storage.manta.errors import error_from
from plugins.storage.manta.mpu import MultipartUpload, discard_partial_uploads
from plugins.storage.manta.part_digests import PartDigests
from plugins.storage.manta.upload import FileSender, Sender, body_sender

log = logging.getLogger(__package__)  # the plugin's logger, whichever module logs

DIRECTORY_TYPE = "application/x-json-stream; type=directory"
PUT_DIRECTORY_TYPE = "application/json; type=directory"
#: The Content-Type of a SnapLink PUT (Manta v1; v2 answers 403 SnaplinksDisabledError).
PUT_LINK_TYPE = "application/json; type=link"
#: Read size of GET bodies.
CHUNK_SIZE = 1024 * 1024


def encode_path(path: str) -> str:
    """Percent-encode each segment of an absolute Manta path (``/`` separates, nothing else)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute Manta path: {path!r}")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError(f"not a Manta path: {path!r}")
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _request_id() -> str:
    """The id of the gateway request being handled (Manta logs it: one id ties both logs
    together), or a fresh one for work outside requests."""
    return telemetry.request_id.get() or str(uuid.uuid4())


def _is_directory_type(content_type: str | None) -> bool:
    """``application/x-json-stream; type=directory``, tolerating spacing and case."""
    if not content_type:
        return False
    main, _, params = content_type.partition(";")
    return main.strip().lower() == "application/x-json-stream" and "type=directory" in (
        params.replace(" ", "").lower()
    )


def iso_seconds(value: object) -> float | None:
    """A listing's ``mtime`` (ISO 8601, ``Z``) as epoch seconds; ``None`` if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MantaTarget:
    """A ``CopyingTarget`` over Manta's HTTP API (copies are SnapLinks)."""

    def __init__(self, config: MantaConfig, signer: RequestSigner) -> None:
        self.config = config
        self.signer = signer
        self.public_url = config.public_url
        self._session: aiohttp.ClientSession | None = None
        #: Local-file bodies go out with sendfile, which needs a plain TCP connection.
        self._sendfile = config.url.startswith("http://")
        #: No account's requests hold more than ``account_share`` of the pool.
        self.shares = ConnectionShares(config.max_connections, config.account_share)
        #: Manta v2's refusal of the first SnapLink: later copies are refused without asking.
        self._links_refused: CopyUnsupported | None = None
        #: Part MD5s of objects stored here, for uploads of the same bytes (``part_digests``).
        self.part_digests = PartDigests()

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """One pooled session; timeouts per connect and per read, never a total one."""
        cfg = self.config
        connector = aiohttp.TCPConnector(
            limit=cfg.max_connections, ssl=client_ssl(cfg)
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=cfg.connect_timeout, sock_read=cfg.read_timeout
            ),
            auto_decompress=False,
            headers={"User-Agent": f"cloudapi-gateway/{__version__}"},
            request_class=continue_request_class(cfg.continue_timeout),
            trace_configs=[watch_trace_config()],  # starts each request's ExchangeWatch
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
        operation: str,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        size: int = 0,
        allowance: float = 0.0,
        expect_continue: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send one request, retrying transient failures; return a response whose status is in
        ``ok`` (the caller releases it) or raise the matching StorageError. ``operation`` names
        it in the storage metrics (``head``, ``put``, ``copy``...). ``allowance``: seconds its
        answer may take beyond ``response_timeout`` (work Manta does before it answers).
        A body waits for ``100 Continue`` unless ``expect_continue`` is false (a round trip
        saved where a refusal is unlikely or the body small)."""
        url, signed_path = self._url(path, query)

        async def attempt() -> aiohttp.ClientResponse | StorageError:
            async with (
                self.shares.slot(),
                body_sender(
                    body, size, sendfile=self._sendfile, stall_timeout=self.config.read_timeout
                ) as sender,
            ):
                return await self._attempt(
                    method, url, signed_path, path, ok, headers, sender, allowance,
                    expect_continue,
                )

        return await with_retries(
            attempt,
            self.config,
            log=log,
            what=f"Manta {method} {path}",
            target="manta",
            operation=operation,
        )

    async def _attempt(
        self,
        method: str,
        url: URL,
        signed_path: str,
        path: str,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None,
        sender: Sender | None,
        allowance: float = 0.0,
        expect_continue: bool = True,
    ) -> aiohttp.ClientResponse | StorageError:
        """One signed request: the response if its status is in ``ok``, else the error to raise
        or retry. The body iterator's own exception is raised as it is."""
        watch = ExchangeWatch(
            self.config, what=f"Manta {method} {path}", body=sender is not None, allowance=allowance
        )
        data: Any = self._payload(sender, watch) if sender is not None else None
        if sender is None and method in ("PUT", "POST"):
            data = b""
        sent = self.signer.sign(
            method, signed_path, {**(headers or {}), "x-request-id": _request_id()}
        )
        try:
            async with watch:
                response = await self.session.request(
                    method,
                    url,
                    headers=sent,
                    data=data,
                    expect100=sender is not None and expect_continue,
                    trace_request_ctx=watch,
                )
        except StorageTooSlow as exc:
            if sender is not None and sender.error is not None:
                raise sender.error from None
            return exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            if sender is not None and sender.error is not None:
                raise sender.error from None
            return StorageUnavailable(f"Manta is unreachable: {exc!r}", path=path)
        if response.status in ok:
            if sender is not None and sender.error is not None:
                # Cannot happen (the last chunk is held back), but never keep such a write.
                response.release()
                await self._delete_quietly(path)
                raise sender.error
            return response
        try:
            async with asyncio.timeout(self.config.response_timeout):
                error = await error_from(response, method, path)
        except TimeoutError:
            error = StorageTooSlow(
                f"Manta {method} {path}: no whole error answer within "
                f"{self.config.response_timeout:g} s",
                path=path,
            )
        finally:
            response.release()
        if sender is not None and sender.error is not None:
            raise sender.error
        return error

    @staticmethod
    def _payload(sender: Sender, watch: ExchangeWatch) -> Any:
        """What aiohttp sends for ``sender``, telling ``watch`` how the body goes: an iterator's
        chunks are counted against the rate floor; a ``sendfile`` body (bounded per window by
        its own stall timeout) starts the answer's clock when it is out."""
        if isinstance(sender, FileSender):

            async def send_then_wait(writer: Any) -> None:
                await sender.send(writer)
                watch.answer_due()

            return WriterPayload(send_then_wait, sender.size)
        return watch.counting(sender.payload())

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
                "HEAD",
                path,
                operation="head",
                ok=(200, 204),
                headers={"Accept": "application/json, */*"},
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

    async def probe(self) -> None:
        """One HEAD of the operator's top directory, never retried (``ProbedTarget``)."""
        path = f"/{self.config.user}"
        url, signed_path = self._url(path)
        headers = {"Accept": "application/json, */*"}
        outcome = await self._attempt("HEAD", url, signed_path, path, (200, 204), headers, None)
        if isinstance(outcome, StorageError):
            raise outcome
        outcome.release()

    async def get_object(self, path: str) -> AsyncIterator[bytes]:
        """Start the GET (a missing object raises here) and return the stream of its bytes."""
        response = await self._request(
            "GET", path, operation="get", ok=(200,), headers={"Accept": "*/*"}
        )
        if _is_directory_type(response.headers.get("Content-Type")):
            response.release()
            raise StorageRequestFailed(
                f"{path} is a directory", path=path, code="OperationNotAllowedOnDirectory"
            )
        return self._stream(path, response)

    async def _stream(self, path: str, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            chunks = response.content.iter_chunked(CHUNK_SIZE)
            async for chunk in rate_floored(chunks, self.config, what=f"Manta GET {path}"):
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
            "GET",
            path,
            operation="list",
            ok=(200,),
            query=query,
            headers={"Accept": "application/x-json-stream"},
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
                lines = rate_floored(response.content, self.config, what=f"Manta list {path}")
                async for line in lines:
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
                        modified=iso_seconds(entry.get("mtime")),
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
        """Streaming PUT with Content-Length, Content-MD5 and ``Expect: 100-continue``; at or
        above ``multipart_threshold`` a multipart upload, parts in parallel (``mpu``)."""
        if size > 0 and size >= self.config.multipart_threshold:
            upload = MultipartUpload(
                self, path, body, size=size, content_md5=content_md5, content_type=content_type
            )
            return await upload.run()
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "Content-Length": str(size),
        }
        if content_md5:
            headers["Content-MD5"] = content_md5
        response = await self._request(
            "PUT", path, operation="put", ok=(200, 201, 204), headers=headers, body=body, size=size
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

    def can_copy_from(self, source: StorageTarget) -> bool:
        """This Manta as this account: a SnapLink's source must be readable by its writer."""
        if source is self:
            return True
        return isinstance(source, MantaTarget) and (source.config.url, source.config.user) == (
            self.config.url,
            self.config.user,
        )

    async def discard_partial_uploads(self, path: str) -> int:
        """Abort the multipart uploads to ``path`` that a dead writer left open
        (``PartialUploadsTarget``)."""
        return await discard_partial_uploads(self, path)

    async def copy_object(self, source: str, destination: str) -> ObjectInfo:
        """A SnapLink, as ``mln`` makes it: ``PUT destination`` with the link content type, the
        encoded source path in ``Location`` and no body; then a HEAD describes the new object.

        Manta v2 refuses every link (``CopyUnsupported``), and is not asked again once it has;
        a missing source is a 404 SourceObjectNotFound, a directory source a 400 LinkNotObject
        (``StorageRequestFailed``).
        """
        if self._links_refused is not None:
            raise CopyUnsupported(self._links_refused.message, path=destination)
        headers = {
            "Accept": "application/json",
            "Content-Type": PUT_LINK_TYPE,
            "Content-Length": "0",
            "Location": encode_path(source),
        }
        try:
            response = await self._request(
                "PUT", destination, operation="copy", ok=(200, 201, 204), headers=headers
            )
        except CopyUnsupported as exc:
            self._links_refused = exc
            raise
        except ObjectNotFound as exc:  # SourceObjectNotFound: the error is about the source
            raise ObjectNotFound(f"{source} was not found", path=source) from exc
        except StorageRequestFailed as exc:
            if exc.code != "LinkNotObject":
                raise
            raise StorageRequestFailed(
                f"{source} is a directory: only objects can be copied", path=source, code=exc.code
            ) from exc
        response.release()
        info = await self.stat(destination)
        if info is None or info.is_directory:  # replaced between the link and the HEAD
            raise StorageRequestFailed(
                f"{destination} changed while it was being copied to", path=destination
            )
        return info

    async def mkdir(self, path: str) -> None:
        """PUT with the directory content type; Manta keeps an existing directory as it is."""
        response = await self._request(
            "PUT",
            path,
            operation="mkdir",
            ok=(200, 201, 204),
            headers={"Accept": "application/json", "Content-Type": PUT_DIRECTORY_TYPE},
        )
        response.release()

    async def delete_object(self, path: str) -> None:
        """DELETE; a missing object is fine (a retried DELETE may find it already gone)."""
        try:
            response = await self._request(
                "DELETE",
                path,
                operation="delete",
                ok=(200, 204),
                headers={"Accept": "application/json"},
            )
        except ObjectNotFound:
            return
        response.release()
