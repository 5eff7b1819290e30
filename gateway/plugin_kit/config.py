"""Reading a settings section against its JSON Schema: one reader for the settings and plugins.

A section (the top-level settings, ``[storage]``, ``[catalog]``, a plugin's own table) is
described by a JSON Schema (2020-12) of ``"type": "object"`` with ``properties`` and
``"additionalProperties": false``. ``read_section`` converts strings from environment variables
and flags to the types the schema declares, validates, fills in the schema's defaults and
reports the first mistake as one ``ValueError`` that names the setting, so every plugin
(first- or third-party) reports configuration mistakes alike.
"""

from __future__ import annotations

import functools
import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

#: Words a string setting may use for a boolean.
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


@functools.lru_cache(maxsize=128)
def _validator(schema_text: str) -> Draft202012Validator:
    """Checked against the metaschema and compiled once per distinct schema."""
    schema = json.loads(schema_text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _bound(prop: Mapping[str, Any]) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if prop.get("exclusiveMinimum") is not None:
        return f" > {prop['exclusiveMinimum']}"
    return f" <= {high}" if high is not None else ""


def describe(prop: Mapping[str, Any]) -> str:
    """What a value of ``prop`` must be, in words: ``an integer >= 0``, ``true or false``."""
    if "x-must-be" in prop:
        return str(prop["x-must-be"])
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "integer":
        return "an integer" + _bound(prop)
    if kind == "number":
        return "a number" + _bound(prop)
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        return "a list of strings"
    if kind == "object":
        return "a table"
    if kind == "string":
        return "a non-empty string" if prop.get("minLength", 0) >= 1 else "a string"
    return "valid"


def _from_text(value: str, prop: Mapping[str, Any]) -> Any:
    """A string from the environment or a flag, as the type ``prop`` declares (else unchanged)."""
    kind = prop.get("type")
    text = value.strip()
    if kind == "integer" and text.lstrip("-").isdigit():
        return int(text)
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return value
    if kind == "boolean" and text.lower() in TRUE_WORDS | FALSE_WORDS:
        return text.lower() in TRUE_WORDS
    if kind == "array":
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _prepared(
    config: Mapping[str, Any], schema: Mapping[str, Any], convert: bool
) -> dict[str, Any]:
    """Absent, ``None`` and ``""`` are all "not given"; strings may take the declared type."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for name, value in config.items():
        if value is None or value == "":
            continue
        prop = properties.get(name, {})
        out[name] = _from_text(value, prop) if convert and isinstance(value, str) else value
    return out


def _message(error: ValidationError, schema: Mapping[str, Any]) -> str:
    """One sentence naming the setting: unknown, missing, or not what it must be."""
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        present = error.instance if isinstance(error.instance, Mapping) else {}
        missing = next(n for n in error.validator_value if n not in present)
        prop = _property(schema, [*error.absolute_path, missing]) or {}
        return f"{'.'.join([*path, missing])} is required ({describe(prop)})"
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        where = ".".join(path)
        return f"unknown setting(s) {', '.join(unknown)}" + (f" in {where}" if where else "")
    # The setting is the run of names in the path: an array item's mistake is its array's.
    names = list(itertools.takewhile(lambda part: isinstance(part, str), error.absolute_path))
    setting = _property(schema, names) or {}
    return f"{'.'.join(names) or 'the section'} must be {describe(setting)}, got {error.instance!r}"


def _property(schema: Mapping[str, Any], path: Sequence[Any]) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = schema
    for part in path:
        if node is None or not isinstance(part, str):
            break
        node = node.get("properties", {}).get(part)
    return node


def read_section(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    where: str = "",
    convert_strings: bool = True,
) -> dict[str, Any]:
    """``config`` validated against ``schema``, with the schema's defaults filled in.

    :param config: the section as given (TOML values, or strings from the environment).
    :param schema: a JSON Schema object; ``x-must-be`` on a property overrides the words its
        mistakes are reported with.
    :param where: prefixed to every message, e.g. ``"[storage] kind=manta"``.
    :param convert_strings: take string values as text to convert (environment variables, and
        TOML sections that environment variables may extend); ``False`` keeps TOML strict.
    :raises ValueError: ``"<where>: <name> must be <what>, got <value>"``, ``"... is
        required"`` or ``"... unknown setting(s) a, b"``.
    """
    values = _prepared(config, schema, convert_strings)
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = best_match(validator.iter_errors(values), key=_relevance)
    if error is not None:
        prefix = f"{where}: " if where else ""
        raise ValueError(prefix + _message(error, schema))
    for name, prop in schema.get("properties", {}).items():
        if name not in values and "default" in prop:
            values[name] = prop["default"]
    return values


def _relevance(error: ValidationError) -> int:
    """Unknown keys first (a typo explains what follows), then missing ones, then the rest."""
    return -{"additionalProperties": 0, "required": 1}.get(str(error.validator), 2)


class SectionReader:
    """Deprecated (plugin API 1.1): declare a JSON Schema and call ``read_section`` instead.

    Kept for one release so that plugins written against plugin API 1.0 still load; each
    accessor is one ``read_section`` call on a one-property schema, so the wording matches.
    """

    def __init__(
        self, kind: str, config: Mapping[str, Any], known: set[str], *, section: str = "storage"
    ) -> None:
        warnings.warn(
            "gateway.plugin_kit.SectionReader is deprecated and will be removed in "
            "cloudapi-gateway 0.3; declare a JSON Schema and use gateway.plugin_kit.read_section",
            DeprecationWarning,
            stacklevel=2,
        )
        self.where = f"[{section}] kind={kind}"
        self.config = config
        properties: dict[str, Any] = {name: {} for name in known | {"kind"}}
        read_section(
            {name: True for name in config},
            {"type": "object", "properties": properties, "additionalProperties": False},
            where=self.where,
        )

    def _one(self, name: str, prop: dict[str, Any], *, required: bool = True) -> Any:
        schema = {"type": "object", "properties": {name: prop}, "required": [name][:required]}
        return read_section({name: self.config.get(name)}, schema, where=self.where).get(name)

    def string(self, name: str, default: str | None = None) -> str:
        """A required non-empty string (or ``default`` when given)."""
        prop: dict[str, Any] = {"type": "string", "minLength": 1}
        if default is not None:
            prop["default"] = default
        return str(self._one(name, prop, required=default is None))

    def optional_string(self, name: str) -> str | None:
        value = self._one(name, {"type": "string"}, required=False)
        return None if value is None else str(value)

    def integer(self, name: str, default: int, minimum: int) -> int:
        prop = {"type": "integer", "minimum": minimum, "default": default}
        return int(self._one(name, prop, required=False))

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        prop = {"type": "number", "minimum": minimum, "default": default}
        return float(self._one(name, prop, required=False))

    def boolean(self, name: str, default: bool) -> bool:
        return bool(self._one(name, {"type": "boolean", "default": default}, required=False))
