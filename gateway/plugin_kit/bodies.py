"""Checking that one attempt's body yields exactly its declared size."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gateway.storage import BodyFactory, StorageRequestFailed


class ExactSizeBody:
    """One attempt's body iterator, passed through only if it yields exactly ``size`` bytes.

    ``stream()`` yields the non-empty chunks as ``memoryview``s (no copy of what a socket does
    not take at once) and holds back the chunk that completes the body until the iterator has
    ended cleanly: when the iterator fails, even at its very end (a checksum over the whole
    body), the receiver never gets the last bytes, so it cannot commit the object. A body of the
    wrong size raises ``StorageRequestFailed``.

    A transport may wrap what the stream raises (aiohttp does), so the stream also records it:
    ``own_error`` is the iterator's own exception, ``error`` that or the size refusal.
    """

    def __init__(self, chunks: AsyncIterator[bytes], size: int) -> None:
        self.chunks = chunks
        self.size = size
        self.own_error: Exception | None = None
        self.error: Exception | None = None

    async def _next(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end; records the iterator's error."""
        while True:
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                return None
            except Exception as exc:
                self.own_error = self.error = exc
                raise
            if chunk:
                # bytes are immutable: a view is safe; anything else is copied once.
                return chunk if isinstance(chunk, bytes) else bytes(chunk)

    def _refuse(self, message: str) -> StorageRequestFailed:
        error = StorageRequestFailed(message)
        self.error = error
        return error

    async def stream(self) -> AsyncIterator[memoryview]:
        """The body's bytes, checked against ``size``."""
        total = 0
        while True:
            chunk = await self._next()
            if chunk is None:
                if total != self.size:
                    raise self._refuse(f"the body ended after {total} of {self.size} bytes")
                return
            total += len(chunk)
            if total > self.size:
                raise self._refuse(f"the body is longer than its declared size {self.size}")
            if total == self.size:
                # The last bytes: only once the iterator has ended without an error.
                if await self._next() is not None:
                    raise self._refuse(f"the body is longer than its declared size {self.size}")
                yield memoryview(chunk)
                return
            yield memoryview(chunk)

    async def aclose(self) -> None:
        """Close the caller's iterator (it may hold an open file), even if it was never read."""
        close = getattr(self.chunks, "aclose", None)  # an AsyncIterator need not have one
        if close is not None:
            with contextlib.suppress(RuntimeError):  # still running in an abandoned writer
                await close()


@contextlib.asynccontextmanager
async def exact_size_body(body: BodyFactory, size: int) -> AsyncIterator[ExactSizeBody]:
    """A fresh iterator from ``body``, checked against ``size`` and closed on the way out."""
    checked = ExactSizeBody(body(), size)
    try:
        yield checked
    finally:
        await checked.aclose()
