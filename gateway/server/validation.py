"""Action parameters against each action's JSON Schema.

Schemas are checked against their metaschema when the app is built (a broken plugin stops the
start, not a request), compiled once with the format checker switched on (``format`` is only an
annotation otherwise), and a violation becomes one CloudAPI error whose message names the field:
``409 MissingParameter`` for a missing required parameter, ``409 InvalidArgument`` otherwise.

Two optional annotations on a property schema let an action keep CloudAPI's exact wording:
``x-missing-message`` (used when the property is required and absent) and
``x-invalid-message`` (used for any other violation of that property).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema import validators
from jsonschema.protocols import Validator

from gateway.errors import GatewayError, InvalidArgument, MissingParameter

log = logging.getLogger(__name__)


class SchemaProblem(ValueError):
    """An action ships a schema that is not valid against its metaschema."""


def compile_schema(schema: Mapping[str, Any], *, owner: str = "action") -> Validator:
    """Check ``schema`` against its metaschema and return a validator with format checking."""
    if not isinstance(schema, Mapping):
        raise SchemaProblem(f"{owner}: schema must be a JSON object, got {type(schema).__name__}")
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except js_exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaProblem(f"{owner}: invalid JSON Schema at {where}: {exc.message}") from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _property_schema(root: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    props = root.get("properties")
    if isinstance(props, Mapping):
        sub = props.get(field)
        if isinstance(sub, Mapping):
            return sub
    return {}


def to_gateway_error(
    error: js_exceptions.ValidationError, schema: Mapping[str, Any]
) -> GatewayError:
    """One jsonschema error -> MissingParameter / InvalidArgument naming the field."""
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [
            name
            for name in (error.validator_value or [])
            if isinstance(name, str) and name not in error.instance
        ]
        field = ".".join([*path, missing[0]]) if missing else ".".join(path)
        custom = _property_schema(schema, missing[0]).get("x-missing-message") if missing else None
        return MissingParameter(str(custom) if custom else f"{field} is a required argument")
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = _property_schema_names(error.schema)
        extras = sorted(str(k) for k in error.instance if k not in allowed)
        if extras:
            field = ".".join([*path, extras[0]])
            return InvalidArgument(f"{field} is not a valid argument")
    field = ".".join(path) or "(parameters)"
    if path:
        custom = _property_schema(schema, path[0]).get("x-invalid-message")
        if custom:
            return InvalidArgument(str(custom))
    return InvalidArgument(f"{field}: {_short(error.message)}")


def _property_schema_names(schema: Any) -> set[str]:
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        return set(schema["properties"])
    return set()


def _short(text: str, limit: int = 200) -> str:
    """jsonschema quotes whole instances in messages; keep error bodies small."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_params(validator: Validator, params: Mapping[str, Any]) -> None:
    """Raise the best-matching violation as a ``GatewayError``; return quietly when valid."""
    error = js_exceptions.best_match(validator.iter_errors(params))
    if error is None:
        return
    gateway_error = to_gateway_error(error, validator.schema)
    log.info("invalid parameters: %s (%s)", gateway_error.message, error.json_path)
    raise gateway_error
