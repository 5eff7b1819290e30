"""The parts' MD5s of objects a Manta target has stored, for the next upload of the same bytes.

A multipart upload sends each part with its Content-MD5, which the gateway works out by reading
and hashing the part first: 1.5 CPU seconds a GiB on top of the export's own sha1 check. An
image is often exported more than once (to several paths, again after a failure elsewhere), and
its bytes, so its parts' MD5s, do not change. Once Manta has confirmed a commit (the MD5 it
computed for the whole object is the one the catalog recorded), the target keeps the parts'
MD5s under that whole-object MD5, the size and the part size; an upload of an object with the
same three sends them without hashing.

Nothing is trusted blindly: Manta still checks every part against the MD5 sent with it and the
whole object at commit, and the export still checks the file's sha1 before the last byte goes.
A file that changed on disk therefore fails its export as it would have anyway, and its entry
is dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

__all__ = ["PartDigests"]

#: Objects remembered (an entry is one short string per part: a few KiB for a 64 GiB image).
LIMIT = 1024

Key = tuple[str, int, int]


class PartDigests:
    """Part MD5s by (whole-object MD5, size, part size); the least recently used go first."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._known: collections.OrderedDict[Key, tuple[str, ...]] = collections.OrderedDict()

    def get(self, content_md5: str | None, size: int, part_size: int) -> tuple[str, ...] | None:
        if content_md5 is None:
            return None
        key = (content_md5, size, part_size)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        return known

    def remember(self, content_md5: str, size: int, part_size: int, md5s: Sequence[str]) -> None:
        """After Manta confirmed the whole object's MD5 at commit."""
        if len(md5s) != -(-size // part_size):
            return  # not one MD5 per part: nothing to reuse
        self._known[(content_md5, size, part_size)] = tuple(md5s)
        self._known.move_to_end((content_md5, size, part_size))
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    def forget(self, content_md5: str | None, size: int, part_size: int) -> None:
        """A part sent with a remembered MD5 was refused: the file is not what it was."""
        if content_md5 is not None:
            self._known.pop((content_md5, size, part_size), None)
