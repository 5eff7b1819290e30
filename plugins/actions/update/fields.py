"""Pure rules for UpdateImage's fields: which ones CloudAPI passes on, and IMGAPI's checks.

Kept free of I/O, like ``plugins/actions/export/paths.py``, so the rules read in one place and
every one is checked before the catalog is touched. Each rule cites the source it keeps, from
the snapshots read for it:

- sdc-cloudapi 10c39636 ``lib/datasets.js`` (``update``, 526-568);
- sdc-imgapi 15467c4a ``lib/images.js`` (``apiUpdateImage``, 4043-4236;
  ``Image.validateAndNormalize``, 929-1052; ``Image.prototype.serialize``, 200-240) and
  ``lib/errors.js``;
- node-imgmanifest 3.2.1 (cbe08ca5, what IMGAPI's ``"imgmanifest": "^3.2.0"`` resolves to)
  ``lib/imgmanifest.js``: the validators and their limits. Its docs (and IMGAPI's
  ``docs/index.md:89-90,182-216``) still say 512/128/512/128 characters; the code, which is
  what answers, allows 1024/512/10240/1024 since IMGAPI-451 (6fa438d).

Where IMGAPI would take a value only by JavaScript's coercion (``NAME_RE.test(5)`` is true, so
a JSON number 5 is stored as the name) or would crash (``url.parse`` of a number, ``tags`` a
string), the gateway answers the same 422 ``ValidationFailed`` shape with ``code: Invalid``
and a message saying what is wrong (``image name must be a string``, or the validator's own
words for a ``tags`` scalar).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import ValidationFailed
from gateway.plugin_kit.javascript import as_javascript

#: What CloudAPI passes on to IMGAPI, in its order: ``validAttributes`` (datasets.js:543-551).
#: Every other parameter (``public``, ``state``, ``owner``, ``as-role``...) is ignored there.
UPDATABLE = ("name", "version", "description", "homepage", "eula", "acl", "tags")

#: imgmanifest.js:30-33 (JavaScript ``$`` never matches before a final newline: use fullmatch).
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NAME_RE = re.compile(r"[A-Za-z0-9._/ -]+")
VERSION_RE = re.compile(r"[A-Za-z0-9._/+-]+")

#: imgmanifest.js:39-44. Lengths are JavaScript's: UTF-16 code units.
MAX_URL_LENGTH = 1024
MAX_NAME_LENGTH = 1024
MAX_VERSION_LENGTH = 512
MAX_DESCRIPTION_LENGTH = 10 * 1024
MAX_TAGS_LENGTH = 100 * 1024
#: The gateway's: tags nested deeper than this are refused (``check_tags``).
MAX_TAGS_DEPTH = 64

#: Node's legacy ``url.parse`` protocol: ``/^([a-z0-9.+-]+:)/i`` after ``trim()``, lowercased.
_PROTOCOL_RE = re.compile(r"[a-z0-9.+-]+:", re.IGNORECASE)
#: What JavaScript's ``String.prototype.trim`` removes (WhiteSpace and LineTerminator).
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501

FieldError = dict[str, str]


class UpdateValidationFailed(ValidationFailed):
    """IMGAPI's ``ValidationFailedError``: 422, and ``errors`` always in the body, even ``[]``.

    errors.js:41-66 builds the body ``{code, message, errors}`` whatever ``errors`` holds, and
    CloudAPI sends IMGAPI's body on unchanged (datasets.js:560-562, ``next(err)``).
    """

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "errors": list(self.errors or [])}


def requested(params: Mapping[str, Any]) -> dict[str, Any]:
    """The fields CloudAPI would send IMGAPI: those of ``UPDATABLE`` present, ``null`` included.

    datasets.js:552-556: ``if (req.params[k] !== undefined) data[k] = req.params[k]``.
    """
    return {key: params[key] for key in UPDATABLE if key in params}


def js_length(text: str) -> int:
    """``String.prototype.length``: UTF-16 code units, so an astral character counts 2."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def js_string(value: Any) -> str:
    """``String(value)``, as Node 6's ``util.format('%s', value)`` prints it (IMGAPI's node)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return _js_join(value)
    return "[object Object]"


_END = object()


def _js_join(array: list[Any] | tuple[Any, ...]) -> str:
    """``Array.prototype.join(",")`` all the way down (``null`` as ``""``), without recursion:
    a hostile body may nest arrays as deep as the JSON parser allows."""
    parts: list[str] = []
    stack: list[list[Any]] = [[iter(array), True]]
    while stack:
        frame = stack[-1]
        item = next(frame[0], _END)
        if item is _END:
            stack.pop()
            continue
        if not frame[1]:
            parts.append(",")
        frame[1] = False
        if isinstance(item, list | tuple):
            stack.append([iter(item), True])
        elif item is not None:
            parts.append(js_string(item))
    return "".join(parts)


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def js_json(value: Any) -> str:
    """``JSON.stringify(value)`` (``%j``): compact, non-ASCII as itself, ``1.0`` as ``1``."""
    return json.dumps(as_javascript(value), separators=(",", ":"), ensure_ascii=False)


def _js_number(value: float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value)) if abs(value) < 1e21 else repr(value)
    return str(value)


def _not_a_string(field: str, label: str) -> FieldError:
    """A JSON non-string where IMGAPI wants a string (it would coerce it or crash)."""
    return {"field": field, "code": "Invalid", "message": f"image {label} must be a string"}


# --- The validators, one per field (imgmanifest.js ``validators``) ------------------------
#
# ``None`` never reaches these: IMGAPI deletes a field sent as ``null`` before validating
# (images.js:4169-4170), and only the required ones then fail (``validate_fields``).


def check_name(value: Any) -> FieldError | None:
    """imgmanifest.js:643-664: at most 1024 characters, then ``NAME_RE``."""
    if not isinstance(value, str):
        return _not_a_string("name", "name")
    if js_length(value) > MAX_NAME_LENGTH:
        return {
            "field": "name",
            "code": "Invalid",
            "message": f"image name is too long, max {MAX_NAME_LENGTH} characters",
        }
    if not NAME_RE.fullmatch(value):
        return {
            "field": "name",
            "code": "Invalid",
            "message": 'image name has invalid characters (only alpha-numeric characters and " ", '
            '".", "-", "_" and "/" are allowed)',
        }
    return None


def check_version(value: Any) -> FieldError | None:
    """imgmanifest.js:666-686: at most 512 characters, then ``VERSION_RE`` (``+`` is allowed
    since OS-5798, though the message does not say so)."""
    if not isinstance(value, str):
        return _not_a_string("version", "version")
    if js_length(value) > MAX_VERSION_LENGTH:
        return {
            "field": "version",
            "code": "Invalid",
            "message": f"image version is too long, max {MAX_VERSION_LENGTH} characters",
        }
    if not VERSION_RE.fullmatch(value):
        return {
            "field": "version",
            "code": "Invalid",
            "message": "image version has invalid characters (only alpha-numeric characters and "
            '".", "-", "_" and "/" are allowed)',
        }
    return None


def check_description(value: Any) -> FieldError | None:
    """imgmanifest.js:688-701: at most 10240 characters; anything else goes (even ``""``)."""
    if not isinstance(value, str):
        return _not_a_string("description", "description")
    if js_length(value) > MAX_DESCRIPTION_LENGTH:
        return {
            "field": "description",
            "code": "Invalid",
            "message": f"image description is too long, max {MAX_DESCRIPTION_LENGTH} characters",
        }
    return None


def url_protocol(value: str) -> str | None:
    """The ``protocol`` Node's legacy ``url.parse`` finds: lowercased, with its colon."""
    found = _PROTOCOL_RE.match(value.strip(_JS_SPACE))
    return found.group(0).lower() if found else None


def _check_url(field: str, label: str) -> Callable[[Any], FieldError | None]:
    def check(value: Any) -> FieldError | None:
        """imgmanifest.js:703-752: ``http:``/``https:`` first, then at most 1024 characters."""
        if not isinstance(value, str):
            return _not_a_string(field, f"{label} URL")
        if url_protocol(value) not in ("http:", "https:"):
            return {
                "field": field,
                "code": "Invalid",
                "message": f"invalid image {label} URL protocol",
            }
        if js_length(value) > MAX_URL_LENGTH:
            return {
                "field": field,
                "code": "Invalid",
                "message": f"image {label} URL is too long (max {MAX_URL_LENGTH} characters)",
            }
        return None

    return check


check_homepage = _check_url("homepage", "homepage")
check_eula = _check_url("eula", "EULA")


def normalize_acl(value: Any) -> Any:
    """images.js:1007-1013: a lone string (a query's ``acl=UUID``) becomes ``[UUID]``."""
    return [value] if isinstance(value, str) else value


def check_acl(value: Any) -> FieldError | None:
    """imgmanifest.js:1202-1228: an array whose items all match ``UUID_RE`` (lowercase); the
    first bad item is reported."""
    acl = normalize_acl(value)
    if not isinstance(acl, list):
        return {
            "field": "acl",
            "code": "Invalid",
            "message": f'invalid image "acl" (not an array): {js_string(acl)}',
        }
    for i, item in enumerate(acl):
        if not isinstance(item, str) or not UUID_RE.fullmatch(item):
            return {
                "field": "acl",
                "code": "Invalid",
                "message": f'invalid image "acl" (item {i} is not a UUID): {js_string(item)}',
            }
    return None


def tags_change(value: Any) -> bool:
    """Whether IMGAPI changes the tags it shows: only when ``data.tags`` is truthy.

    images.js:4146-4150 turns a truthy ``tags`` into ``raw.tagsObj``, which is what IMGAPI
    shows (images.js:137, 974-975). A falsy one (``null``, ``""``, ``0``, ``false``) only
    deletes or overwrites the search array ``raw.tags``: the tags shown stay as they were.
    ``{}`` and ``[]`` are truthy in JavaScript.
    """
    if isinstance(value, Mapping | list):
        return True
    return bool(value)


def check_tags(value: Any) -> FieldError | None:
    """imgmanifest.js:1535-1575: an object (not an array) whose ``JSON.stringify`` is at most
    102400 characters. A scalar would crash IMGAPI (``assert.object`` in utils.js:223 before
    validation); it gets the validator's own message instead.

    The gateway's own rule: at most ``MAX_TAGS_DEPTH`` levels of nesting (IMGAPI's limit is
    V8's stack), so that rendering and storing tags never run out of Python's stack."""
    if json_depth(value) > MAX_TAGS_DEPTH:
        return {
            "field": "tags",
            "code": "Invalid",
            "message": f'invalid image "tags": nested more than {MAX_TAGS_DEPTH} levels deep',
        }
    if not isinstance(value, Mapping):
        return {
            "field": "tags",
            "code": "Invalid",
            "message": f'invalid image "tags" (not an object): {js_json(value)}',
        }
    size = js_length(js_json(value))
    if size > MAX_TAGS_LENGTH:
        return {
            "field": "tags",
            "code": "Invalid",
            "message": f'image "tags" object is too big: {size} characters (max {MAX_TAGS_LENGTH})',
        }
    return None


#: IMGAPI's validation order: the required fields first (validateDcManifest's list,
#: imgmanifest.js:345-365, 1666-1670), then the optional ones in ``fields`` order (1673-1682).
CHECKS: tuple[tuple[str, Callable[[Any], FieldError | None]], ...] = (
    ("name", check_name),
    ("version", check_version),
    ("description", check_description),
    ("homepage", check_homepage),
    ("eula", check_eula),
    ("acl", check_acl),
    ("tags", check_tags),
)

#: Required in every stored image (validateDcManifest): ``null`` deletes them, then it fails.
REQUIRED = ("name", "version")


def validate_fields(data: Mapping[str, Any]) -> list[FieldError]:
    """Every error IMGAPI's revalidation (``new Image(app, raw)``, images.js:4175-4181) reports
    for ``data`` merged into a valid image, in its order; ``[]`` when the update is valid."""
    errors: list[FieldError] = []
    for field, check in CHECKS:
        if field not in data:
            continue
        value = data[field]
        if value is None:
            if field in REQUIRED:  # imgmanifest.js:645-646, 668-669: no message
                errors.append({"field": field, "code": "MissingParameter"})
            continue
        if field == "tags" and not tags_change(value):
            continue
        error = check(value)
        if error is not None:
            errors.append(error)
    return errors


def changes(data: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest changes for a valid ``data``, as ``EditableCatalog.update_image`` takes them.

    The catalog keeps IMGAPI's *serialized* manifest, so what ``serialize`` would drop is
    removed (``None``) instead of stored (images.js:210-213): an empty ``acl`` (``null``
    becomes ``[]``, images.js:1008-1009) and a falsy ``description``. Tags that IMGAPI would
    leave as they were (``tags_change``) are not sent at all.
    """
    out: dict[str, Any] = {}
    for field, value in data.items():
        if field == "tags":
            if tags_change(value):
                out["tags"] = dict(value)
        elif field == "acl":
            acl = normalize_acl(value) if value is not None else []
            out["acl"] = list(acl) if acl else None
        elif field == "description":
            out["description"] = value or None
        else:
            out[field] = value
    return out


def check_update(data: Mapping[str, Any]) -> dict[str, Any]:
    """IMGAPI's checks of an update's fields in its order; the catalog changes when they pass.

    Raises 422 ``ValidationFailed``:

    - ``"invalid image update data: no parameters provided"`` with ``errors: []`` when no field
      is given (images.js:4078-4082; CloudAPI sends ``{}`` then, datasets.js:552-558);
    - ``"invalid image data: <fields>"`` with one ``{field, code[, message]}`` per bad field
      (images.js:1046-1049).
    """
    if not data:
        raise UpdateValidationFailed("invalid image update data: no parameters provided", errors=[])
    errors = validate_fields(data)
    if errors:
        raise UpdateValidationFailed(
            "invalid image data: " + ", ".join(e["field"] for e in errors), errors=errors
        )
    return changes(data)
