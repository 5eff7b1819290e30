"""Pure rules for ``manta_path``: normalization, ownership, writable trees, export file names.

Kept free of I/O so that every rule is checked before anything is sent to storage, and so the
rules read in one place. The action decides the mode (directory or template) from ``stat``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from gateway.errors import InvalidParameter, NotMantaPathOwner

#: The trees under ``/:login`` a user may write into (Manta's ``jobs``/``uploads`` are not for us).
WRITABLE_TREES = ("stor", "public", "reports")

#: File extension by ``files[0].compression`` (IMGAPI ``apiExportImage``; ``xz`` from OS-4690).
EXTENSIONS = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "none": ""}


def invalid_path(message: str, code: str = "Invalid") -> InvalidParameter:
    """IMGAPI's shape for a bad ``manta_path``: 422 InvalidParameter with one field error."""
    return InvalidParameter(message, errors=[{"field": "manta_path", "code": code}])


@dataclass(frozen=True)
class MantaPath:
    """A checked ``manta_path``: normalized, owned by the caller, inside a writable tree."""

    #: POSIX-normalized, no trailing ``/`` (``/bob/stor/a``).
    path: str
    #: The caller asked for a directory: the raw path ended in ``/``, ``/.`` or ``/..``.
    wants_directory: bool

    @property
    def depth(self) -> int:
        """Components after the root: 2 for ``/bob/stor``, 3 for ``/bob/stor/a``."""
        return len(self.path.strip("/").split("/"))

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)


#: Characters no Manta object name may hold: C0 and C1 controls, DEL, and lone surrogates
#: (what JSON's ``"\\ud800"`` or an undecodable query byte becomes). They would end as a 500
#: when the path is encoded for storage, or as storage's own refusal (a 502).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _forbidden_character(raw: str) -> str | None:
    """Name the first character ``raw`` may not hold (``NUL character``, ``U+000A``), if any."""
    found = _FORBIDDEN.search(raw)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "NUL character"
    kind = "lone surrogate" if "\ud800" <= char <= "\udfff" else "control character"
    return f"{kind} U+{ord(char):04X}"


def normalize(raw: str) -> MantaPath:
    """Normalize ``raw`` as Node's ``path.normalize`` does and say whether it names a directory.

    Raises 422 InvalidParameter for a relative or empty path, or one holding a control
    character or a lone surrogate. A trailing ``/`` is recorded before normalizing, since
    ``normpath`` drops it but the caller meant "a directory".
    """
    bad = _forbidden_character(raw)
    if bad is not None:
        raise invalid_path(f"invalid manta_path prefix, not a valid manta path ({bad})")
    if not raw.startswith("/"):
        raise invalid_path(
            f"invalid manta_path prefix, not a valid manta path: {raw!r} is not absolute"
        )
    last = raw.rsplit("/", 1)[1]
    wants_directory = last in ("", ".", "..")
    # posixpath keeps a leading "//" (POSIX allows it to be special); Node and Manta do not.
    path = "/" + posixpath.normpath(raw).lstrip("/")
    if path == "/":
        raise invalid_path("invalid manta_path prefix, not a valid manta path")
    return MantaPath(path=path, wants_directory=wants_directory)


def check_owner(mpath: MantaPath, login: str, account_uuid: str) -> None:
    """The first component must be the caller's login, exactly (IMGAPI: case-sensitive)."""
    if mpath.path.split("/")[1] != login:
        raise NotMantaPathOwner(
            f"account {account_uuid} is not the owner of Manta path {mpath.path}"
        )


def check_tree(mpath: MantaPath) -> None:
    """The second component must be a tree the user can write into."""
    parts = mpath.path.split("/")
    if len(parts) < 3 or parts[2] not in WRITABLE_TREES:
        trees = ", ".join(f"/{parts[1]}/{tree}" for tree in WRITABLE_TREES)
        raise invalid_path(f"manta_path {mpath.path} is not under {trees}")


def file_stem(name: str, version: str) -> str:
    """``NAME-VER`` with every ``/`` replaced by ``_``, so the objects stay in the directory.

    IMGAPI allows ``/`` in names and versions; ``path.resolve`` would then write into
    sub-directories (or outside the directory with ``..``). Replacing ``/`` leaves a single
    path component that can never be ``.`` or ``..`` since it always contains ``-``.
    """
    return f"{name}-{version}".replace("/", "_")


def export_paths(base: str, extension: str) -> tuple[str, str]:
    """``(manifest_path, file_path)`` for a template ``base`` (directory mode passes dir/stem)."""
    return f"{base}.imgmanifest", f"{base}.zfs{extension}"
