"""``Accept`` as restify 4's ``acceptParser`` judges it (node ``negotiator`` 0.6 semantics).

CloudAPI refuses a request whose ``Accept`` admits none of restify's formatters with
``406 NotAcceptableError "Server accepts: ..."``, before authentication. The rules kept
here: no header (or an empty one) means ``*/*``; one with no parsable range admits nothing;
for each type the most specific matching range decides, and ``q=0`` refuses; a range with
parameters matches only a type with the same parameters (restify's types have none).
"""

from __future__ import annotations

import functools
import re

from gateway.errors import GatewayError

#: restify 4's formatters, by falling quality: what ``Server accepts:`` lists.
ACCEPTABLE = (
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/javascript",
)
NOT_ACCEPTABLE_MESSAGE = "Server accepts: " + ",".join(ACCEPTABLE)

_RANGE = re.compile(r"^\s*([^\s/;]+)/([^;\s]+)\s*(?:;(.*))?$")
_SPLIT = re.compile(r',(?=(?:[^"]*"[^"]*")*[^"]*$)')
_PARAM_SPLIT = re.compile(r';(?=(?:[^"]*"[^"]*")*[^"]*$)')


def _ranges(header: str) -> list[tuple[str, str, dict[str, str], float]]:
    """The header's parsable ranges as (type, subtype, params, q); unparsable ones dropped."""
    found = []
    for part in _SPLIT.split(header):
        match = _RANGE.match(part)
        if match is None:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for param in _PARAM_SPLIT.split(match.group(3) or ""):
            key, sep, value = param.strip().partition("=")
            if not sep:
                continue
            value = value.strip().strip('"')
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                break  # what follows q are accept-extensions
            params[key.strip().lower()] = value
        found.append((match.group(1).lower(), match.group(2).lower(), params, q))
    return found


def _quality(media_type: str, ranges: list[tuple[str, str, dict[str, str], float]]) -> float:
    """The q of the most specific range matching ``media_type`` (0 when none matches)."""
    kind, _, subtype = media_type.partition("/")
    best: tuple[int, float] | None = None
    for r_kind, r_subtype, params, q in ranges:
        score = 0
        if r_kind == kind:
            score |= 4
        elif r_kind != "*":
            continue
        if r_subtype == subtype:
            score |= 2
        elif r_subtype != "*":
            continue
        if params:
            if not all(value == "*" for value in params.values()):
                continue
            score |= 1
        if best is None or (score, q) > best:
            best = (score, q)
    return 0.0 if best is None else best[1]


@functools.lru_cache(maxsize=512)
def acceptable(header: str | None) -> bool:
    """Whether ``Accept: header`` admits one of restify's types (``None``: no header)."""
    if header is None or not header.strip():
        return True
    ranges = _ranges(header)
    return any(_quality(media_type, ranges) > 0 for media_type in ACCEPTABLE)


class NotAcceptable(GatewayError):
    """restify's ``NotAcceptableError``: its code is the status text plus ``Error``."""

    status, code = 406, "NotAcceptableError"
