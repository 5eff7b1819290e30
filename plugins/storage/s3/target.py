"""``S3Target``: Manta-style paths written into one S3 bucket with aiobotocore.

A path ``/login/stor/a/b`` is the key ``login/stor/a/b``. S3 has no directories, so this target
emulates them: a path is a directory when a zero-byte ``path/`` marker exists (``mkdir`` writes
one) or when any key exists under ``path/``. There are no missing-parent errors in S3; see
``docs/storage.md`` for every difference from the Manta target.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import BotoCoreError

from gateway import telemetry
from gateway.plugin_kit import content_md5, with_retries
from gateway.plugin_kit.network import (
    ConnectionShares,
    ExchangeWatch,
    StorageTooSlow,
    body_allowance,
    rate_floored,
)
from gateway.storage import (
    BodyFactory,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageTarget,
)
from plugins.storage.s3.client import create_client, pool_size
from plugins.storage.s3.configuration import S3Config
from plugins.storage.s3.copy import Copy
from plugins.storage.s3.errors import map_error
from plugins.storage.s3.keys import is_root, path_to_key
from plugins.storage.s3.objects import etag_md5, from_head
from plugins.storage.s3.upload import Upload, abort_multipart

log = logging.getLogger(__package__)  # the plugin's logger, whichever module logs

T = TypeVar("T")


def _add_request_id(request: Any, **_: Any) -> None:
    """botocore's ``before-sign.s3`` handler: send the gateway request's id as
    ``x-request-id`` (any header that is not ``x-amz-*`` is allowed; S3 ignores it, proxies
    and S3-compatible stores may log it). Outside a request nothing is added."""
    request_id = telemetry.request_id.get()
    if request_id is not None:
        headers = request.headers  # an email Message: assigning again would add a second one
        del headers["x-request-id"]
        headers["x-request-id"] = request_id


class S3Target:
    """A ``CopyingTarget`` over one S3 bucket (AWS, MinIO, Ceph RGW, moto, ...)."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.public_url = config.public_url
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        #: No account's calls hold more than ``account_share`` of the pool.
        self.shares = ConnectionShares(pool_size(config), config.account_share)

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pooled aiobotocore client (its own aiohttp connection pool)."""
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(create_client(self.config))
        self._client.meta.events.register("before-sign.s3", _add_request_id)
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

    async def call(
        self,
        path: str | None,
        make: Callable[[], Awaitable[T]],
        *,
        operation: str,
        size: int = 0,
    ) -> T:
        """Run one idempotent S3 call, retrying throttling/5xx/connection errors with backoff.

        ``operation`` names it in the storage metrics (``head``, ``put``, ``copy``...). Each
        attempt must be answered within ``response_timeout``, plus the time its ``size`` body
        bytes take at the rate floor (botocore sends a bytes body whole, then reads the answer
        whole, streaming bodies of ``get_object`` excepted: ``_stream`` floors those).
        """
        allowance = body_allowance(self.config, size)

        async def attempt() -> T | StorageError:
            try:
                async with (
                    self.shares.slot(),
                    ExchangeWatch(self.config, what=f"S3 {operation} {path}") as watch,
                ):
                    watch.answer_due(allowance)
                    return await make()
            except StorageTooSlow as exc:
                return exc
            except Exception as exc:
                error = map_error(exc, path, self.config.bucket)
                error.__cause__ = exc  # as ``raise error from exc`` would
                return error

        return await with_retries(
            attempt, self.config, log=log, what=f"S3 {path}", target="s3", operation=operation
        )

    async def probe(self) -> None:
        """One ``HeadBucket``, never retried (``ProbedTarget``)."""
        try:
            await self.client.head_bucket(Bucket=self.config.bucket)
        except Exception as exc:
            raise map_error(exc, None, self.config.bucket) from exc

    # --- reads -------------------------------------------------------------------------------

    async def stat(self, path: str) -> ObjectInfo | None:
        """HEAD the key; failing that, the path is a directory if a marker or keys lie under it."""
        key = path_to_key(path)
        if is_root(key):
            return ObjectInfo(path=path, type="directory")
        head = await self.head(path, key)
        if head is not None:
            return from_head(path, head)
        if await self.is_directory(path, key):
            return ObjectInfo(path=path, type="directory")
        return None

    async def head(self, path: str, key: str) -> Mapping[str, Any] | None:
        """S3's ``HeadObject`` answer for ``key``, or ``None`` when there is no such key."""
        try:
            head: Mapping[str, Any] = await self.call(
                path,
                lambda: self.client.head_object(Bucket=self.config.bucket, Key=key),
                operation="head",
            )
        except ObjectNotFound:
            return None
        return head

    async def is_directory(self, path: str, key: str) -> bool:
        """Whether ``key`` is a directory as this target emulates them (a root, a marker, keys)."""
        if is_root(key):
            return True
        listing = await self.call(
            path,
            lambda: self.client.list_objects_v2(
                Bucket=self.config.bucket, Prefix=key + "/", MaxKeys=1
            ),
            operation="list",
        )
        return bool(listing.get("Contents") or listing.get("CommonPrefixes"))

    async def get_object(self, path: str) -> AsyncIterator[bytes]:
        """Start the GET (a missing key raises here) and return the stream of its bytes."""
        key = path_to_key(path)
        response = await self.call(
            path,
            lambda: self.client.get_object(Bucket=self.config.bucket, Key=key),
            operation="get",
        )
        return self._stream(path, response["Body"])

    async def _stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
        """Yield the body in chunks, closing the response however the caller stops."""
        try:
            chunks = body.iter_chunks(256 * 1024)
            async for chunk in rate_floored(chunks, self.config, what=f"S3 GET {path}"):
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
        if empty and not is_root(key):
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
        page: Mapping[str, Any] = await self.call(
            path, lambda: self.client.list_objects_v2(**kwargs), operation="list"
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
                        content_md5=etag_md5(etag),
                        modified=modified.timestamp() if (modified := item.get("LastModified"))
                        else None,
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
        if is_root(key):
            return
        await self.call(
            path,
            lambda: self.client.put_object(
                Bucket=self.config.bucket,
                Key=key + "/",
                Body=b"",
                ContentMD5=content_md5(b""),
                ContentType="application/x-directory",
            ),
            operation="mkdir",
        )

    async def delete_object(self, path: str) -> None:
        """Delete the key; S3 answers success for a missing key, as the contract wants."""
        key = path_to_key(path)
        await self.call(
            path,
            lambda: self.client.delete_object(Bucket=self.config.bucket, Key=key),
            operation="delete",
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
        return await Upload(self, path, key, body, size, content_md5, content_type).put()

    async def discard_partial_uploads(self, path: str) -> int:
        """Abort the multipart uploads to ``path``'s key that were never completed."""
        key = path_to_key(path)
        found = 0
        query: dict[str, str] = {"Bucket": self.config.bucket, "Prefix": key}
        while True:
            page = await self.call(
                path, lambda: self.client.list_multipart_uploads(**query), operation="list"
            )
            for upload in page.get("Uploads", []):
                if upload.get("Key") == key:
                    found += 1
                    await abort_multipart(self, path, key, upload["UploadId"])
            if not page.get("IsTruncated"):
                return found
            query["KeyMarker"] = page.get("NextKeyMarker", "")
            query["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def can_copy_from(self, source: StorageTarget) -> bool:
        """The same bucket at the same endpoint with the same credentials (copies name their
        source by key in this bucket)."""
        if source is self:
            return True
        if not isinstance(source, S3Target):
            return False
        mine, theirs = self.config, source.config
        return all(
            getattr(mine, name) == getattr(theirs, name)
            for name in ("bucket", "endpoint_url", "region", "access_key", "profile")
        )

    async def copy_object(self, source: str, destination: str) -> ObjectInfo:
        """One CopyObject up to ``copy_multipart_threshold``, UploadPartCopy parts above it."""
        return await Copy(
            self, source, path_to_key(source), destination, path_to_key(destination)
        ).run()
