"""The plugin kit's section reader: one JSON Schema per section, one wording for every mistake."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.plugin_kit import SectionReader, read_section

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "minLength": 1},
        "retries": {"type": "integer", "minimum": 0, "default": 3},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 1.5},
        "verbose": {"type": "boolean", "default": False},
        "style": {"enum": ["path", "virtual"], "default": "path"},
        "names": {"type": "array", "items": {"type": "string"}},
    },
}
WHERE = "[storage] kind=demo"


def test_defaults_fill_in_and_typed_values_pass() -> None:
    got = read_section({"url": "http://x", "retries": 5}, SCHEMA, where=WHERE)
    assert got == {
        "url": "http://x",
        "retries": 5,
        "timeout": 1.5,
        "verbose": False,
        "style": "path",
    }


def test_strings_from_the_environment_take_the_declared_type() -> None:
    config = {"url": "u", "retries": " 7 ", "timeout": "2.5", "verbose": "yes", "names": "a, b,"}
    got = read_section(config, SCHEMA)
    assert (got["retries"], got["timeout"], got["verbose"]) == (7, 2.5, True)
    assert got["names"] == ["a", "b"]


def test_strict_mode_keeps_strings_as_strings() -> None:
    with pytest.raises(ValueError, match="retries must be an integer >= 0, got '7'"):
        read_section({"url": "u", "retries": "7"}, SCHEMA, convert_strings=False)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, f"{WHERE}: url is required (a non-empty string)"),
        ({"url": ""}, f"{WHERE}: url is required (a non-empty string)"),
        ({"url": None}, f"{WHERE}: url is required (a non-empty string)"),
        ({"url": "u", "retries": -1}, f"{WHERE}: retries must be an integer >= 0, got -1"),
        ({"url": "u", "retries": "many"}, "retries must be an integer >= 0, got 'many'"),
        ({"url": "u", "retries": True}, "retries must be an integer >= 0, got True"),
        ({"url": "u", "timeout": 0}, "timeout must be a number > 0, got 0"),
        ({"url": "u", "verbose": "maybe"}, "verbose must be true or false, got 'maybe'"),
        ({"url": "u", "style": "sideways"}, "style must be one of path, virtual, got 'sideways'"),
        ({"url": "u", "colour": 1, "shape": 2}, f"{WHERE}: unknown setting(s) colour, shape"),
        ({"colour": 1}, "unknown setting(s) colour"),  # a typo is reported before what it hides
    ],
)
def test_each_mistake_is_one_value_error_naming_the_setting(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        read_section(config, SCHEMA, where=WHERE)
    assert message in str(info.value)


def test_a_broken_schema_is_refused() -> None:
    with pytest.raises(Exception, match="strin"):
        read_section({}, {"type": "object", "properties": {"x": {"type": "strin"}}})


def test_the_old_reader_still_works_and_warns() -> None:
    with pytest.warns(DeprecationWarning, match="read_section"):
        reader = SectionReader("demo", {"url": "u", "retries": "4"}, {"url", "retries"})
    assert reader.string("url") == "u"
    assert reader.integer("retries", 3, 0) == 4
    assert reader.number("timeout", 1.5) == 1.5
    assert reader.boolean("verbose", False) is False
    assert reader.optional_string("token") is None
    with pytest.raises(ValueError, match=r"\[storage\] kind=demo: retries must be an integer >= 9"):
        reader.integer("retries", 3, 9)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="unknown setting"):
        SectionReader("demo", {"colour": "blue"}, {"url"})
