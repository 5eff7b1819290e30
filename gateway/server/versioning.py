"""CloudAPI API versions: node-semver ranges as restify 4 negotiates them.

Clients send a range in ``Accept-Version`` (``~9||~8`` from triton, ``~7.2`` from smartdc,
``*``, ``7.0.0``, ``>=7.1`` ...); the request is served at the highest supported version the
range admits. Only the subset of node-semver that versions without prereleases need is here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping

from gateway.errors import InvalidVersion

Version = tuple[int, int, int]

#: Every API version this gateway serves, lowest first (CloudAPI's image routes).
SUPPORTED_VERSIONS: tuple[str, ...] = ("7.0.0", "7.1.0", "7.2.0", "7.3.0", "8.0.0", "9.0.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]

#: Request headers read for the range, in order, as restify 4's ``req.getVersion()`` reads them.
#: ``Api-Version`` is not one: CloudAPI ignores it (triton and smartdc send ``Accept-Version``
#: beside it), so a request carrying only ``Api-Version`` is served as ``*``.
VERSION_HEADERS = ("Accept-Version", "X-Api-Version")

_X = r"(?:[xX*]|0|[1-9]\d*)"
_PARTIAL = re.compile(rf"^v?({_X})(?:\.({_X})(?:\.({_X}))?)?$")
_COMPARATOR = re.compile(r"^(<=|>=|<|>|=|~>|~|\^)?\s*(\S+)$")
_HYPHEN = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")
_MAX = 10**9

Predicate = Callable[[Version], bool]


def parse_version(text: str) -> Version:
    """``"7.2.0"`` -> ``(7, 2, 0)``; raises ``ValueError`` for anything else."""
    parts = text.strip().lstrip("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _partial(text: str) -> tuple[int | None, int | None, int | None]:
    match = _PARTIAL.match(text)
    if match is None:
        raise ValueError(f"not a version: {text!r}")

    def num(group: str | None) -> int | None:
        return None if group is None or group in ("x", "X", "*") else int(group)

    major, minor, patch = (num(g) for g in match.groups())
    if major is None:
        minor = patch = None
    elif minor is None:
        patch = None
    return major, minor, patch


def _between(low: Version, high: Version | None) -> Predicate:
    """``low <= v < high`` (``high`` None: no upper bound)."""
    return lambda v: v >= low and (high is None or v < high)


def _comparator(op: str, text: str) -> Predicate:
    major, minor, patch = _partial(text)
    if major is None:  # *, x
        return lambda v: op not in ("<", ">")
    if op in ("~", "~>"):
        if minor is None:
            return _between((major, 0, 0), (major + 1, 0, 0))
        return _between((major, minor, patch or 0), (major, minor + 1, 0))
    if op == "^":
        lo = (major, minor or 0, patch or 0)
        if major > 0 or minor is None:
            return _between(lo, (major + 1, 0, 0))
        if minor > 0 or patch is None:
            return _between(lo, (0, minor + 1, 0))
        return _between(lo, (0, 0, patch + 1))
    lowest = (major, minor or 0, patch or 0)
    if minor is None:
        upper: Version = (major + 1, 0, 0)
    elif patch is None:
        upper = (major, minor + 1, 0)
    else:
        upper = (major, minor, patch + 1)
    if op in ("", "="):
        return _between(lowest, upper)
    if op == ">=":
        return lambda v: v >= lowest
    if op == ">":
        return lambda v: v >= upper
    if op == "<":
        return lambda v: v < lowest
    return lambda v: v < upper  # <=


def _comparator_set(text: str) -> list[Predicate]:
    hyphen = _HYPHEN.match(text)
    if hyphen:
        low = _comparator(">=", hyphen.group(1))
        high = _comparator("<=", hyphen.group(2))
        return [low, high]
    # "> 7.1" is one comparator: glue operators to the version that follows them.
    tokens = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", text).split()
    if not tokens:
        return [lambda v: True]
    preds = []
    for token in tokens:
        match = _COMPARATOR.match(token)
        if match is None:
            raise ValueError(f"not a comparator: {token!r}")
        preds.append(_comparator(match.group(1) or "", match.group(2)))
    return preds


def parse_range(text: str) -> Callable[[Version], bool]:
    """Compile a node-semver range; raises ``ValueError`` when it is not one."""
    if len(text) > 256:
        raise ValueError("range too long")
    alternatives = [_comparator_set(part.strip()) for part in text.split("||")]
    return lambda v: any(all(p(v) for p in preds) for preds in alternatives)


def max_satisfying(range_text: str, versions: Iterable[str] = SUPPORTED_VERSIONS) -> str | None:
    """The highest of ``versions`` inside ``range_text``; ``None`` if none (or not a range)."""
    return _max_satisfying(range_text, tuple(versions))


@functools.lru_cache(maxsize=1024)
def _max_satisfying(range_text: str, versions: tuple[str, ...]) -> str | None:
    """Cached: clients send the same few ranges on every request, and parsing is not free."""
    try:
        matches = parse_range(range_text)
    except ValueError:
        return None
    best: tuple[Version, str] | None = None
    for text in versions:
        version = parse_version(text)
        if matches(version) and (best is None or version > best[0]):
            best = (version, text)
    return None if best is None else best[1]


def requested_range(headers: Mapping[str, str]) -> str | None:
    """The range the client asked for: Accept-Version, then X-Api-Version (``None``: neither)."""
    for name in VERSION_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def negotiate(
    headers: Mapping[str, str],
    method: str,
    path: str,
    versions: Iterable[str] = SUPPORTED_VERSIONS,
) -> str:
    """The version to serve at, or ``InvalidVersion`` as restify words it."""
    wanted = requested_range(headers)
    if wanted is None:
        wanted = "*"
    served = max_satisfying(wanted, versions)
    if served is None:
        raise InvalidVersion(f"{wanted} is not supported by {method} {path}")
    return served


def versions_in(range_text: str, versions: Iterable[str] = SUPPORTED_VERSIONS) -> tuple[str, ...]:
    """The ``versions`` a range admits, lowest first; raises ``ValueError`` if not a range."""
    matches = parse_range(range_text)
    return tuple(v for v in versions if matches(parse_version(v)))
