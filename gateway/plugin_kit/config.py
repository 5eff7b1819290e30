"""Reading a plugin's settings section, so every plugin reports config mistakes alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SectionReader:
    """Reads one plugin section (``[storage]``, ``[catalog]``), refusing unknown keys by name.

    Shared by the plugins so that every one reports config mistakes alike. Values may be
    strings (settings from the environment), which are converted.
    """

    def __init__(
        self, kind: str, config: Mapping[str, Any], known: set[str], *, section: str = "storage"
    ) -> None:
        self.kind = kind
        self.section = section
        self.config = config
        unknown = sorted(set(config) - known - {"kind"})
        if unknown:
            raise ValueError(f"{self._where()}: unknown setting(s) {', '.join(unknown)}")

    def _where(self) -> str:
        return f"[{self.section}] kind={self.kind}"

    def string(self, name: str, default: str | None = None) -> str:
        """A required string (or ``default`` when given)."""
        value = self.config.get(name, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{self._where()}: {name} is required (a non-empty string)")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.config.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError(f"{self._where()}: {name} must be a string")
        return value

    def _text(self, name: str, default: object) -> object:
        """The raw value; strings from ``CLOUDAPI_GATEWAY_STORAGE__*`` are stripped."""
        value = self.config.get(name, default)
        return value.strip() if isinstance(value, str) else value

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self._text(name, default)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{self._where()}: {name} must be an integer >= {minimum}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self._text(name, default)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{self._where()}: {name} must be a number >= {minimum}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._text(name, default)
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            value = True
        elif isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            value = False
        if not isinstance(value, bool):
            raise ValueError(f"{self._where()}: {name} must be true or false")
        return value
