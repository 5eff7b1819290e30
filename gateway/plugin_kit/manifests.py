"""IMGAPI v2 manifest validation and serialization, for every catalog plugin.

Validation is the JSON Schema ``gateway/plugin_kit/manifest.schema.json`` (node-imgmanifest's
field rules) plus the few rules a schema cannot state. Errors come out as IMGAPI reports them:
``[{field, code, message}]`` with ``code`` ``MissingParameter`` or ``Invalid``.
Serialization follows IMGAPI's ``Image.prototype.serialize`` (key order, truthiness rules), so
the stored manifest is exactly what IMGAPI's GetImage would answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from gateway.catalog import InvalidManifest

#: The order IMGAPI validates fields in (imgmanifest.js ``fields``); errors are sorted by it.
FIELD_ORDER = (
    "v uuid owner name version description homepage eula disabled activated published_at "
    "state public type os origin error files icon acl requirements users billing_tags traits "
    "tags generate_passwords inherited_directories nic_driver disk_driver cpu_type image_size "
    "channels urn"
).split()

#: imgmanifest.js MAX_TAGS_LENGTH, of JSON.stringify(tags): 100 KiB since IMGAPI-451, which also
#: raised name/version/description/URL lengths to 1024/512/10240/1024 (manifest.schema.json).
MAX_TAGS_LENGTH = 100 * 1024
_MAX_MESSAGE = 200

ManifestError = dict[str, str]


@lru_cache(maxsize=1)
def manifest_validator() -> Draft202012Validator:
    """The compiled schema, checked against the 2020-12 metaschema once per process."""
    text = resources.files("gateway.plugin_kit").joinpath("manifest.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _reason(error: ValidationError) -> str:
    """Why a value failed, without echoing the (possibly huge) value itself."""
    value = error.validator_value
    reasons = {
        "maxLength": f"longer than {value} characters",
        "minLength": "empty" if value == 1 else f"shorter than {value} characters",
        "pattern": f"does not match {value}",
        "type": f"not of type {value}",
        "enum": "not one of: " + ", ".join(str(v) for v in value)
        if isinstance(value, list)
        else "",
        "const": f"must be {json.dumps(value)}",
        "format": f"not a valid {value}",
        "minimum": f"less than {value}",
        "maximum": f"greater than {value}",
        "minItems": f"fewer than {value} item(s)",
        "maxItems": f"more than {value} item(s)",
        "minProperties": "empty",
    }
    return reasons.get(str(error.validator)) or error.message


def _field_of(path: list[Any]) -> str:
    """IMGAPI names nested requirement errors ``requirements.<key>``; others by top field."""
    if len(path) > 1 and path[0] == "requirements":
        return f"requirements.{path[1]}"
    return str(path[0])


def _errors_of(error: ValidationError, manifest: Mapping[str, Any]) -> list[ManifestError]:
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [n for n in error.validator_value if n not in instance]
        if not path:
            return [
                {"field": n, "code": "MissingParameter", "message": f'"{n}" is required'}
                for n in missing
            ]
        where = ".".join(str(p) for p in path)
        return [
            {
                "field": _field_of(path),
                "code": "Invalid",
                "message": f'invalid "{where}": missing "{n}" field',
            }
            for n in missing
        ]
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {})
        extras = [k for k in instance if k not in known]
        if not path:
            return [
                {"field": str(k), "code": "Invalid", "message": f'unsupported field "{k}"'}
                for k in extras
            ]
        if path == ["requirements"]:
            return [
                {
                    "field": f"requirements.{k}",
                    "code": "Invalid",
                    "message": f'unsupported requirement "{k}"',
                }
                for k in extras
            ]
    if not path:
        return [{"field": "manifest", "code": "Invalid", "message": _short(error.message)}]
    where = ".".join(str(p) for p in path)
    if error.validator == "not" and error.validator_value == {}:
        message = f'"{where}" is not allowed for an image of type {manifest.get("type")!r}'
    elif error.validator == "not":
        message = f'invalid image {where}, "null" (only for a creating or failed placeholder)'
    else:
        message = f'invalid "{where}": {_reason(error)}'
    return [{"field": _field_of(path), "code": "Invalid", "message": _short(message)}]


def _extra_checks(manifest: Mapping[str, Any]) -> list[ManifestError]:
    """The rules of imgmanifest.js that JSON Schema cannot express."""
    errs: list[ManifestError] = []
    reqs = manifest.get("requirements")
    if isinstance(reqs, Mapping):
        lo, hi = reqs.get("min_ram"), reqs.get("max_ram")
        if isinstance(lo, int) and isinstance(hi, int) and hi < lo:
            errs.append(
                {
                    "field": "requirements.max_ram",
                    "code": "Invalid",
                    "message": f"min_ram must be <= max_ram, but: min_ram={lo}, max_ram={hi}",
                }
            )
    tags = manifest.get("tags")
    if isinstance(tags, Mapping) and len(json.dumps(tags, separators=(",", ":"))) > MAX_TAGS_LENGTH:
        errs.append(
            {
                "field": "tags",
                "code": "Invalid",
                "message": f'image "tags" string length is too long, max {MAX_TAGS_LENGTH}'
                " characters",
            }
        )
    return errs


def calc_state(activated: bool, disabled: bool) -> str:
    """IMGAPI's ``Image._calcState``."""
    if not activated:
        return "unactivated"
    return "disabled" if disabled else "active"


def _state_checks(manifest: Mapping[str, Any]) -> list[ManifestError]:
    """An import carries a file, so it is never a placeholder; state must agree with its flags."""
    state = manifest.get("state")
    if not isinstance(state, str):
        return []
    if state in ("creating", "failed"):
        return [
            {
                "field": "state",
                "code": "Invalid",
                "message": f'cannot import a placeholder image (state "{state}")',
            }
        ]
    activated = manifest.get("activated", state != "unactivated")
    disabled = manifest.get("disabled", state == "disabled")
    if isinstance(activated, bool) and isinstance(disabled, bool):
        if calc_state(activated, disabled) != state:
            return [
                {
                    "field": "state",
                    "code": "Invalid",
                    "message": f'state "{state}" contradicts activated={str(activated).lower()}'
                    f" and disabled={str(disabled).lower()}",
                }
            ]
    return []


def validate_manifest(manifest: object) -> list[ManifestError]:
    """Every problem with ``manifest`` as IMGAPI names it; an empty list when it is valid."""
    if not isinstance(manifest, Mapping):
        return [{"field": "manifest", "code": "Invalid", "message": "manifest is not an object"}]
    errs: list[ManifestError] = []
    for error in manifest_validator().iter_errors(manifest):
        errs.extend(_errors_of(error, manifest))
    errs.extend(_extra_checks(manifest))
    errs.extend(_state_checks(manifest))
    seen: set[tuple[str, str]] = set()
    unique = []
    for err in errs:
        key = (err["field"], err["code"])
        if key not in seen:
            seen.add(key)
            unique.append(err)
    rank = {name: i for i, name in enumerate(FIELD_ORDER)}
    unique.sort(key=lambda e: rank.get(e["field"].split(".")[0], len(rank)))
    return unique


#: Fields a change never touches: the uuid and files are the image's identity and bytes.
FIXED_FIELDS = ("uuid", "files")


def changed_manifest(stored: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` (a manifest ``serialize_manifest`` made) with ``fields`` set; not yet checked.

    A value of ``None`` removes the field. Changing ``disabled`` alone moves an activated image's
    ``state`` with it, as IMGAPI's ``Image.prototype.disable``/``enable`` do. The caller passes
    the result through ``validate_manifest`` and then ``serialize_manifest``, which puts every
    key where IMGAPI's ``serialize`` puts it (a stored manifest is already in that order, so its
    keys keep their places) and applies IMGAPI's truthiness: an empty ``acl`` or ``description``
    is dropped, not stored.
    """
    merged = dict(stored)
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    activated = stored.get("state") in ("active", "disabled")
    if "disabled" in fields and "state" not in fields and activated:
        merged["state"] = calc_state(True, bool(merged.get("disabled")))
    return merged


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serialize_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The public manifest IMGAPI would store and serve for a validated import.

    ``state`` comes from ``activated``/``disabled`` when absent (an import is activated unless
    it says otherwise, and activation stamps ``published_at``). Admin fields, ``icon`` (no icon
    file is stored), ``channels`` (dropped on import, as AdminImportImage does) and ``error``
    (only kept for failed placeholders) are left out.
    """
    state = manifest.get("state")
    if state is None:
        activated = bool(manifest.get("activated", True))
        disabled = bool(manifest.get("disabled", False))
        state = calc_state(activated, disabled)
    else:
        activated = state != "unactivated"
        disabled = bool(manifest.get("disabled", state == "disabled"))
    published_at = manifest.get("published_at")
    if activated and not published_at:
        published_at = _now()

    out: dict[str, Any] = {
        "v": manifest["v"],
        "uuid": manifest["uuid"],
        "owner": manifest["owner"],
        "name": manifest["name"],
        "version": manifest["version"],
        "state": state,
        "disabled": disabled,
        "public": bool(manifest.get("public", False)),
    }
    if published_at:
        out["published_at"] = published_at
    out["type"] = manifest["type"]
    out["os"] = manifest["os"]
    files = []
    for f in manifest.get("files") or ():
        entry = {"sha1": f["sha1"], "size": f["size"], "compression": f["compression"]}
        if f.get("dataset_guid"):
            entry["dataset_guid"] = f["dataset_guid"]
        files.append(entry)
    out["files"] = files
    if manifest.get("acl"):
        out["acl"] = list(manifest["acl"])
    for key in ("description", "homepage", "eula", "urn"):
        if manifest.get(key):
            out[key] = manifest[key]
    # JS truthiness: an empty object or array is truthy, so these stay even when empty.
    for key in ("requirements", "users"):
        if manifest.get(key) is not None:
            out[key] = manifest[key]
    if "generate_passwords" in manifest:
        out["generate_passwords"] = manifest["generate_passwords"]
    for key in ("inherited_directories",):
        if manifest.get(key) is not None:
            out[key] = manifest[key]
    for key in ("origin", "nic_driver", "disk_driver", "cpu_type"):
        if manifest.get(key):
            out[key] = manifest[key]
    if manifest["type"] == "zvol" and manifest.get("image_size") is not None:
        out["image_size"] = manifest["image_size"]
    if manifest.get("tags") is not None:
        out["tags"] = manifest["tags"]
    if manifest.get("billing_tags"):
        out["billing_tags"] = manifest["billing_tags"]
    if manifest.get("traits"):
        out["traits"] = manifest["traits"]
    if out["type"] == "null":
        del out["type"]
    if out["os"] == "null":
        del out["os"]
    return out


def invalid_manifest(errors: list[ManifestError]) -> InvalidManifest:
    """The catalog error for ``validate_manifest``'s errors, naming the fields."""
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return InvalidManifest(f"invalid image manifest: {fields}", errors)


def valid_changed_manifest(stored: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with ``fields`` applied, validated (``InvalidManifest``) and serialized as
    IMGAPI stores it: what UpdateImage and CloneImage store."""
    merged = changed_manifest(stored, fields)
    errors = validate_manifest(merged)
    if errors:
        raise invalid_manifest(errors)
    return serialize_manifest(merged)
