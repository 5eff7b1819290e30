"""The ``s3`` storage target: Manta-style paths written into one S3 bucket with aiobotocore.

A path ``/login/stor/a/b`` is the key ``login/stor/a/b``. S3 has no directories, so this target
emulates them: a path is a directory when a zero-byte ``path/`` marker exists (``mkdir`` writes
one) or when any key exists under ``path/``. There are no missing-parent errors in S3; see
``docs/storage.md`` for every difference from the Manta target.

Uploads never hold more than ``max(multipart_threshold, part_size * (max_concurrency + 1))``
bytes: below the threshold one PUT with Content-MD5, above it a multipart upload whose parts each
carry their Content-MD5 and which is aborted on any failure, so that no orphaned parts remain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp

try:
    from aiobotocore.config import AioConfig
    from aiobotocore.httpsession import AIOHTTPSession
    from aiobotocore.session import AioSession, get_session
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
except ImportError:  # the optional extra is missing: the kind still exists, create() says so
    HAVE_AIOBOTOCORE = False
else:
    HAVE_AIOBOTOCORE = True

    class _NoResendSession(AIOHTTPSession):
        """aiobotocore's HTTP session without aiohttp's silent resend.

        aiohttp resends an idempotent request (PUT, GET, HEAD, DELETE) once when the server
        drops the connection; with botocore's retries off that still doubled the attempts of
        ``_call`` on cut connections. Only our retry loop retries (``tests/plugins/test_s3.py``
        counts the attempts, so an aiohttp or aiobotocore upgrade that breaks this shows).
        """

        async def _get_session(self, proxy_url: Any) -> aiohttp.ClientSession:
            session: aiohttp.ClientSession = await super()._get_session(proxy_url)
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            return session


from gateway import hookimpl
from gateway.plugin_kit import SectionReader, backoff_delay
from gateway.storage import (
    AccessDenied,
    BodyFactory,
    ChecksumMismatch,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
#: S3's limits on multipart uploads.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * 1024 * MiB
#: Hash big buffers in a thread: hashlib releases the GIL, and the loop stays responsive.
THREAD_HASH_THRESHOLD = 256 * 1024
#: The top-level trees of a Manta account: always directories, as they are in Manta.
ROOT_TREES = frozenset({"stor", "public", "reports", "uploads"})
#: User metadata carrying the whole object's base64 MD5 (a multipart ETag is not an MD5).
MD5_METADATA = "content-md5"

ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "InvalidSecurity",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "503",
        "500",
    }
)

KNOWN_KEYS = frozenset(
    {
        "kind",
        "bucket",
        "endpoint_url",
        "region",
        "access_key",
        "secret_key",
        "session_token",
        "profile",
        "addressing_style",
        "public_url",
        "multipart_threshold",
        "part_size",
        "max_concurrency",
        "retries",
        "retry_delay",
        "retry_max_delay",
        "connect_timeout",
        "read_timeout",
        "sign_payload",
    }
)


@dataclass(frozen=True)
class S3Config:
    """The validated ``[storage]`` section of an ``s3`` target."""

    bucket: str
    public_url: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    multipart_threshold: int = 16 * MiB
    part_size: int = 16 * MiB
    max_concurrency: int = 4
    retries: int = 4
    retry_delay: float = 0.2
    retry_max_delay: float = 5.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    #: SigV4-sign the body's SHA-256 (botocore hashes it on the event loop). Off: the body is
    #: sent as UNSIGNED-PAYLOAD and protected by its Content-MD5, which S3 verifies.
    sign_payload: bool = False

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> S3Config:
        """Check every key and value, and say which one is wrong."""
        read = SectionReader("s3", config, set(KNOWN_KEYS))
        bucket = read.string("bucket")
        endpoint = read.optional_string("endpoint_url")
        region = read.optional_string("region")
        style = read.string("addressing_style", "auto")
        if style not in ("auto", "path", "virtual"):
            raise ValueError("[storage] kind=s3: addressing_style must be auto, path or virtual")
        access_key = read.optional_string("access_key")
        secret_key = read.optional_string("secret_key")
        if bool(access_key) != bool(secret_key):
            raise ValueError("[storage] kind=s3: give both access_key and secret_key, or neither")
        public_url = read.optional_string("public_url") or _default_public_url(
            bucket, endpoint, region
        )
        return cls(
            bucket=bucket,
            public_url=public_url.rstrip("/"),
            endpoint_url=endpoint,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            session_token=read.optional_string("session_token"),
            profile=read.optional_string("profile"),
            addressing_style=style,  # type: ignore[arg-type]
            multipart_threshold=_threshold(read),
            part_size=read.integer("part_size", cls.part_size, MIN_PART_SIZE),
            max_concurrency=read.integer("max_concurrency", cls.max_concurrency, 1),
            retries=read.integer("retries", cls.retries, 0),
            retry_delay=read.number("retry_delay", cls.retry_delay),
            retry_max_delay=read.number("retry_max_delay", cls.retry_max_delay),
            connect_timeout=read.number("connect_timeout", cls.connect_timeout),
            read_timeout=read.number("read_timeout", cls.read_timeout),
            sign_payload=read.boolean("sign_payload", cls.sign_payload),
        )


def _threshold(read: SectionReader) -> int:
    """Objects below it are buffered whole for one PUT: S3 takes at most 5 GiB that way."""
    value = read.integer("multipart_threshold", S3Config.multipart_threshold, 1)
    if value > MAX_SINGLE_PUT:
        raise ValueError("[storage] kind=s3: multipart_threshold must be at most 5 GiB")
    return value


_SESSIONS: dict[str | None, AioSession] = {}


def _session_for(profile: str | None) -> AioSession:
    """One botocore session per profile: loading the service model is the slow part of a client."""
    session = _SESSIONS.get(profile)
    if session is None:
        session = get_session()
        if profile:
            session.set_config_variable("profile", profile)
        _SESSIONS[profile] = session
    return session


def _default_public_url(bucket: str, endpoint: str | None, region: str | None) -> str:
    """Where a user finds the bucket: the endpoint (path style) or AWS's virtual-host URL."""
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}"
    return f"https://{bucket}.s3.{region or 'us-east-1'}.amazonaws.com"


def path_to_key(path: str) -> str:
    """``/login/stor/a/b`` -> ``login/stor/a/b`` (``.``/``..`` and empty segments refused)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid storage path: {path!r}")
    return "/".join(parts)


def _is_root(key: str) -> bool:
    """``login`` and ``login/stor`` (etc.) always exist, as Manta's root directories do."""
    parts = key.split("/")
    return len(parts) == 1 or (len(parts) == 2 and parts[1] in ROOT_TREES)


def _md5_b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # MD5 is the wire format


def _written(
    path: str, size: int, md5: str, etag: str | None, content_type: str
) -> ObjectInfo:
    """What a completed PUT (single or multipart) stored at ``path``."""
    return ObjectInfo(
        path=path,
        type="object",
        size=size,
        content_md5=md5,
        etag=etag.strip('"') if etag else None,
        content_type=content_type,
    )


def _etag_md5(etag: str | None) -> str | None:
    """A single-PUT ETag is the hex MD5; turn it into Content-MD5's base64 form."""
    if not etag:
        return None
    value = etag.strip('"')
    if len(value) != 32:
        return None
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return None


def map_error(exc: BaseException, path: str | None, bucket: str) -> StorageError:
    """Turn a botocore/aiohttp error into the gateway's StorageError of the same meaning."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = str(error.get("Message") or code or exc)
        if code == "NoSuchBucket":
            return StorageRequestFailed(
                f"the S3 bucket {bucket!r} does not exist", path=path, code=code
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{path} was not found", path=path)
        if code in ACCESS_CODES or status == 403:
            return AccessDenied(f"S3 refused access: {message}", path=path)
        if code == "BadDigest":
            return ChecksumMismatch(f"S3: {message}", path=path)
        if code in UNAVAILABLE_CODES or status in (429, 500, 502, 503, 504):
            return StorageUnavailable(f"S3 is unavailable: {code or status}", path=path)
        return StorageRequestFailed(
            f"S3 refused the request: {code}: {message}", path=path, code=code
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"no usable S3 credentials: {exc}", path=path)
    if isinstance(
        exc,
        ConnectionError | HTTPClientError | aiohttp.ClientError | asyncio.TimeoutError | OSError,
    ):
        return StorageUnavailable(f"S3 is unreachable: {exc}", path=path)
    if isinstance(exc, BotoCoreError):
        return StorageRequestFailed(f"S3 client error: {exc}", path=path)
    return StorageRequestFailed(f"S3 request failed: {exc!r}", path=path)


class _BodyError(Exception):
    """Carries an exception raised by the caller's body iterator past our own handlers."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class S3Target:
    """A StorageTarget over one S3 bucket (AWS, MinIO, Ceph RGW, moto, ...)."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.public_url = config.public_url
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pooled aiobotocore client (its own aiohttp connection pool)."""
        cfg = self.config
        session = _session_for(cfg.profile)
        aio_config = AioConfig(
            region_name=cfg.region,
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            max_pool_connections=max(10, cfg.max_concurrency * 2),
            # We retry ourselves (``_call``): no botocore retries, no aiohttp resends.
            retries={"total_max_attempts": 1, "mode": "standard"},
            http_session_cls=_NoResendSession,
            s3={
                "addressing_style": cfg.addressing_style,
                "payload_signing_enabled": cfg.sign_payload,
            },
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=cfg.endpoint_url,
                region_name=cfg.region,
                aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key,
                aws_session_token=cfg.session_token,
                config=aio_config,
            )
        )
        self._exit_stack = stack

    async def close(self) -> None:
        """Close the client and its connections."""
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
        self._exit_stack = None
        self._client = None

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (for tests and tools that need raw S3 calls)."""
        if self._client is None:
            raise RuntimeError("S3Target used before open()")
        return self._client

    # --- plumbing ----------------------------------------------------------------------------

    async def _call(self, path: str | None, make: Callable[[], Awaitable[T]]) -> T:
        """Run one idempotent S3 call, retrying throttling/5xx/connection errors with backoff."""
        attempt = 0
        while True:
            try:
                return await make()
            except _BodyError:
                raise
            except Exception as exc:
                error = map_error(exc, path, self.config.bucket)
                if not isinstance(error, StorageUnavailable) or attempt >= self.config.retries:
                    raise error from exc
                delay = backoff_delay(attempt, self.config.retry_delay, self.config.retry_max_delay)
                log.info("S3 %s: %s; retry %d in %.2fs", path, error.message, attempt + 1, delay)
                attempt += 1
                await asyncio.sleep(delay)

    # --- reads -------------------------------------------------------------------------------

    async def stat(self, path: str) -> ObjectInfo | None:
        """HEAD the key; failing that, the path is a directory if a marker or keys lie under it."""
        key = path_to_key(path)
        if _is_root(key):
            return ObjectInfo(path=path, type="directory")
        try:
            head = await self._call(
                path, lambda: self.client.head_object(Bucket=self.config.bucket, Key=key)
            )
        except ObjectNotFound:
            head = None
        if head is not None:
            return self._info_from_head(path, head)
        listing = await self._call(
            path,
            lambda: self.client.list_objects_v2(
                Bucket=self.config.bucket, Prefix=key + "/", MaxKeys=1
            ),
        )
        if listing.get("Contents") or listing.get("CommonPrefixes"):
            return ObjectInfo(path=path, type="directory")
        return None

    def _info_from_head(self, path: str, head: Mapping[str, Any]) -> ObjectInfo:
        metadata = head.get("Metadata") or {}
        etag = head.get("ETag")
        headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ObjectInfo(
            path=path,
            type="object",
            size=head.get("ContentLength"),
            content_md5=metadata.get(MD5_METADATA) or _etag_md5(etag),
            etag=etag.strip('"') if etag else None,
            content_type=head.get("ContentType"),
            headers=dict(headers),
        )

    async def get_object(self, path: str) -> AsyncIterator[bytes]:
        """Start the GET (a missing key raises here) and return the stream of its bytes."""
        key = path_to_key(path)
        response = await self._call(
            path, lambda: self.client.get_object(Bucket=self.config.bucket, Key=key)
        )
        return self._stream(path, response["Body"])

    async def _stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
        """Yield the body in chunks, closing the response however the caller stops."""
        try:
            async for chunk in body.iter_chunks(256 * 1024):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, BotoCoreError, OSError) as exc:
            raise map_error(exc, path, self.config.bucket) from exc
        finally:
            body.close()

    async def list_directory(self, path: str) -> AsyncIterator[ObjectInfo]:
        """Fetch the first page (a missing directory raises here); the rest stream on demand."""
        key = path_to_key(path)
        first = await self._list_page(path, key, None)
        empty = not first.get("Contents") and not first.get("CommonPrefixes")
        if empty and not _is_root(key):
            raise ObjectNotFound(f"{path} was not found", path=path)
        return self._iter_listing(path, key, first)

    async def _list_page(self, path: str, key: str, token: str | None) -> Mapping[str, Any]:
        kwargs: dict[str, Any] = {
            "Bucket": self.config.bucket,
            "Prefix": key + "/",
            "Delimiter": "/",
        }
        if token:
            kwargs["ContinuationToken"] = token
        page: Mapping[str, Any] = await self._call(
            path, lambda: self.client.list_objects_v2(**kwargs)
        )
        return page

    async def _iter_listing(
        self, path: str, key: str, page: Mapping[str, Any]
    ) -> AsyncIterator[ObjectInfo]:
        """One level under ``key/``: common prefixes are subdirectories, the marker is skipped."""
        prefix = key + "/"
        base = "/" + key
        while True:
            entries: list[ObjectInfo] = []
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if name:
                    entries.append(ObjectInfo(path=f"{base}/{name}", type="directory"))
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if not name:  # the directory's own marker
                    continue
                etag = item.get("ETag")
                entries.append(
                    ObjectInfo(
                        path=f"{base}/{name}",
                        type="object",
                        size=item.get("Size"),
                        etag=etag.strip('"') if etag else None,
                        content_md5=_etag_md5(etag),
                    )
                )
            for entry in sorted(entries, key=lambda e: e.path):
                yield entry
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            page = await self._list_page(path, key, token)

    # --- writes ------------------------------------------------------------------------------

    async def mkdir(self, path: str) -> None:
        """Write the zero-byte ``key/`` marker (parents are not checked: S3 has none)."""
        key = path_to_key(path)
        if _is_root(key):
            return
        empty_md5 = _md5_b64(b"")
        await self._call(
            path,
            lambda: self.client.put_object(
                Bucket=self.config.bucket,
                Key=key + "/",
                Body=b"",
                ContentMD5=empty_md5,
                ContentType="application/x-directory",
            ),
        )

    async def delete_object(self, path: str) -> None:
        """Delete the key; S3 answers success for a missing key, as the contract wants."""
        key = path_to_key(path)
        await self._call(
            path, lambda: self.client.delete_object(Bucket=self.config.bucket, Key=key)
        )

    async def put_object(
        self,
        path: str,
        body: BodyFactory,
        *,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> ObjectInfo:
        """One PUT below ``multipart_threshold``, a multipart upload above it."""
        key = path_to_key(path)
        try:
            if size < self.config.multipart_threshold:
                return await self._put_single(path, key, body, size, content_md5, content_type)
            return await self._put_multipart(path, key, body, size, content_md5, content_type)
        except _BodyError as exc:
            raise exc.original from None

    async def _put_single(
        self,
        path: str,
        key: str,
        body: BodyFactory,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> ObjectInfo:
        buffer = bytearray()
        async with _opened(body) as chunks:
            async for chunk in _guarded(chunks, size):
                buffer.extend(chunk)
        data = bytes(buffer)
        del buffer
        md5 = await _hash(data)
        if content_md5 is not None and md5 != content_md5:
            raise ChecksumMismatch(
                f"Content-MD5 expected {content_md5}, but the body has {md5}", path=path
            )
        response = await self._call(
            path,
            lambda: self.client.put_object(
                Bucket=self.config.bucket,
                Key=key,
                Body=data,
                ContentLength=size,
                ContentMD5=md5,
                ContentType=content_type,
                Metadata={MD5_METADATA: md5},
            ),
        )
        return _written(path, size, md5, response.get("ETag"), content_type)

    async def _put_multipart(
        self,
        path: str,
        key: str,
        body: BodyFactory,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> ObjectInfo:
        cfg = self.config
        part_size = max(cfg.part_size, -(-size // MAX_PARTS))
        metadata = {MD5_METADATA: content_md5} if content_md5 else {}
        created = await self._call(
            path,
            lambda: self.client.create_multipart_upload(
                Bucket=cfg.bucket, Key=key, ContentType=content_type, Metadata=metadata
            ),
        )
        upload_id: str = created["UploadId"]
        try:
            whole, parts = await self._upload_parts(path, key, upload_id, body, size, part_size)
            md5 = base64.b64encode(whole).decode()
            if content_md5 is not None and md5 != content_md5:
                raise ChecksumMismatch(
                    f"Content-MD5 expected {content_md5}, but the body has {md5}", path=path
                )
            done = await self._call(
                path,
                lambda: self.client.complete_multipart_upload(
                    Bucket=cfg.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            await self._abort(path, key, upload_id)
            raise
        return _written(path, size, md5, done.get("ETag"), content_type)

    async def _upload_parts(
        self,
        path: str,
        key: str,
        upload_id: str,
        body: BodyFactory,
        size: int,
        part_size: int,
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """Read parts into bounded buffers and upload up to ``max_concurrency`` at once."""
        cfg = self.config
        whole = hashlib.md5()  # MD5 is the wire format
        slots = asyncio.Semaphore(cfg.max_concurrency)
        results: dict[int, str] = {}

        async def send(number: int, data: bytes, md5: str) -> None:
            try:
                response = await self._call(
                    path,
                    lambda: self.client.upload_part(
                        Bucket=cfg.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentLength=len(data),
                        ContentMD5=md5,
                    ),
                )
                results[number] = response["ETag"]
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                await self._feed_parts(group, send, slots, whole, body, size, part_size)
        except BaseExceptionGroup as failures:
            raise _most_telling(failures) from None
        parts = [{"PartNumber": n, "ETag": results[n]} for n in sorted(results)]
        return whole.digest(), parts

    async def _feed_parts(
        self,
        group: asyncio.TaskGroup,
        send: Callable[[int, bytes, str], Coroutine[Any, Any, None]],
        slots: asyncio.Semaphore,
        whole: Any,
        body: BodyFactory,
        size: int,
        part_size: int,
    ) -> None:
        """Cut the body into parts; a slot is taken before a buffer is filled, bounding memory."""
        number = 0
        buffer = bytearray()
        await slots.acquire()
        async with _opened(body) as chunks:
            async for chunk in _guarded(chunks, size):
                view = memoryview(chunk)
                while view:
                    take = part_size - len(buffer)
                    buffer.extend(view[:take])
                    view = view[take:]
                    if len(buffer) == part_size:
                        number += 1
                        data = bytes(buffer)
                        buffer.clear()
                        md5 = await _hash(data, whole)
                        group.create_task(send(number, data, md5))
                        await slots.acquire()
        if buffer or number == 0:
            number += 1
            data = bytes(buffer)
            md5 = await _hash(data, whole)
            group.create_task(send(number, data, md5))
        else:
            slots.release()

    async def _abort(self, path: str, key: str, upload_id: str) -> None:
        """Abort the upload (even while being cancelled), so that S3 keeps no orphaned parts."""
        try:
            await asyncio.shield(
                self._call(
                    path,
                    lambda: self.client.abort_multipart_upload(
                        Bucket=self.config.bucket, Key=key, UploadId=upload_id
                    ),
                )
            )
        except Exception as exc:  # the original failure matters more; say that this one happened
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, path, exc)


def _most_telling(failures: BaseExceptionGroup) -> BaseException:
    """The exception to re-raise from a failed part group: the body's own, else a StorageError."""
    flat: list[BaseException] = []

    def walk(group: BaseExceptionGroup) -> None:
        for exc in group.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)

    walk(failures)
    for kind in (_BodyError, StorageError, Exception):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0]


async def _hash(data: bytes, whole: Any = None) -> str:
    """Base64 MD5 of ``data`` (and feed ``whole``), in a thread when the buffer is big."""

    def work() -> str:
        if whole is not None:
            whole.update(data)
        return _md5_b64(data)

    if len(data) >= THREAD_HASH_THRESHOLD:
        return await asyncio.to_thread(work)
    return work()


@contextlib.asynccontextmanager
async def _opened(body: BodyFactory) -> AsyncIterator[AsyncIterator[bytes]]:
    """A fresh body iterator, closed afterwards (it may hold an open source file)."""
    chunks = body()
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(RuntimeError):
                await close()


async def _guarded(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Pass the body through, wrapping its own exceptions and checking its length is ``size``."""
    total = 0
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except Exception as exc:
            raise _BodyError(exc) from exc
        total += len(chunk)
        if total > size:
            raise StorageRequestFailed(f"the body is longer than its declared size {size}")
        yield chunk
    if total != size:
        raise StorageRequestFailed(f"the body ended after {total} of {size} bytes")


class S3TargetFactory:
    """Builds ``S3Target``s from ``[storage] kind = "s3"``."""

    name = "s3"

    def create(self, config: Mapping[str, Any], settings: Settings) -> StorageTarget:
        """Validate the section and build the target (nothing is contacted yet)."""
        if not HAVE_AIOBOTOCORE:
            raise ValueError(
                "[storage] kind=s3 needs aiobotocore: pip install 'cloudapi-gateway[s3]'"
            )
        return S3Target(S3Config.from_mapping(config))


@hookimpl
def gateway_register_storage_targets() -> list[S3TargetFactory]:
    """Provide the ``s3`` storage kind."""
    return [S3TargetFactory()]
