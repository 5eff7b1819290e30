"""The MD5 of a multipart upload's parts in order, worked out while later parts still arrive.

A commit must report the whole object's MD5, which no part's MD5 gives: the parts' bytes have
to be hashed back to back. Done at commit, that is a pass over the whole object after the last
part (1.5 s a GiB on a core), while the client waits. ``RunningDigest`` hashes each part as
soon as it and every part before it are stored, so the commit has at most the last parts left.

It only ever hashes blobs, which never change once named. Every result is tied to the blob it
came from: when a part is uploaded again, or the commit names other parts than those hashed,
the hashes that no longer apply are dropped and redone, so the digest is always that of the
parts the commit names, in its order.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["BlobHasher", "RunningDigest"]


class BlobHasher(Protocol):
    """What a backend offers to hash a blob off the event loop."""

    async def hash_blob(self, blob: str, md5: _Hash, stop: threading.Event) -> int:
        """Feed ``blob``'s bytes to ``md5``; the number fed. Stops early once ``stop`` is set
        (the result is then incomplete and thrown away). Raises as ``read_blob`` would for a
        blob that is gone."""
        ...


class RunningDigest:
    """The MD5 of one upload's parts ``0..k-1`` back to back, advanced in the background.

    ``offer`` each part as it is stored (``None`` for an empty part); ``finish`` with the parts
    a commit names gives their digest, reusing whatever was already hashed in that order.
    """

    def __init__(self, hasher: BlobHasher) -> None:
        self._hasher = hasher
        self._md5 = hashlib.md5()
        self._size = 0
        #: The blobs already fed to ``_md5``, by part number from 0.
        self._hashed: list[str | None] = []
        #: The latest blob stored for each part number.
        self._offered: dict[int, str | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        #: A commit is taking over: no background run starts meanwhile.
        self._finishing = False

    def offer(self, number: int, blob: str | None) -> None:
        """Part ``number`` now holds ``blob``: hash it once every part before it is hashed."""
        self._offered[number] = blob
        if number < len(self._hashed) and self._hashed[number] != blob:
            self._restart()  # a part hashed already was uploaded again
        if self._finishing or self._stop.is_set():
            return
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._advance(self._offered, strict=False))
            self._task.add_done_callback(_quiet)

    def close(self) -> None:
        """The upload ended: stop hashing for it."""
        self._stop.set()
        self._offered.clear()

    async def finish(self, blobs: Sequence[str | None]) -> tuple[bytes, int]:
        """The MD5 digest and length of ``blobs`` (a commit's parts, in order) back to back."""
        plan = dict(enumerate(blobs))
        self._finishing = True
        try:
            if self._task is not None:
                # It may be hashing one of ``blobs``: cheaper to wait than to start over.
                await asyncio.shield(self._task)
            if self._stop.is_set():  # closed: start from nothing
                self._stop = threading.Event()
                self._restart()
            if self._hashed != list(blobs[: len(self._hashed)]):
                self._restart()
            await self._advance(plan, strict=True)
            if self._hashed != list(blobs):
                raise RuntimeError("the parts changed while their digest was computed")
            return self._md5.digest(), self._size
        finally:
            self._finishing = False

    def _restart(self) -> None:
        self._md5 = hashlib.md5()
        self._size = 0
        self._hashed = []

    async def _advance(self, plan: Mapping[int, str | None], *, strict: bool) -> None:
        """Hash ``plan``'s next parts in order. ``strict`` (a commit waiting) raises when a
        blob cannot be read; in the background that only ends the run."""
        stop = self._stop
        while not stop.is_set():
            number = len(self._hashed)
            if number not in plan:
                return
            blob = plan[number]
            state, fed = self._md5.copy(), 0
            if blob is not None:
                try:
                    fed = await self._hasher.hash_blob(blob, state, stop)
                except (OSError, KeyError):
                    if strict:
                        raise
                    return  # dropped meanwhile (the part was replaced): the commit decides
            if stop.is_set() or plan.get(number, blob) != blob or len(self._hashed) != number:
                continue  # replaced or restarted while it was hashed: that result is stale
            self._md5, self._size = state, self._size + fed
            self._hashed.append(blob)


def _quiet(task: asyncio.Task[None]) -> None:
    """Background runs end on their own; a failure only means the commit hashes more."""
    if not task.cancelled():
        task.exception()
