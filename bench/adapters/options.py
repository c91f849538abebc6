"""Declared adapter options: ``Option`` (default, type, choices, range, whether it is part of the cache
key) and the parsing of option values given as text (``NAME:key=value`` on the command line)."""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BenchError


class AdapterError(BenchError):
    """An adapter cannot be loaded or used, or a codec spec is invalid."""


# --- declared options --------------------------------------------------------------------------
def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


_PARSERS: dict[type, Callable[[str], Any]] = {str: str, int: _parse_int, float: _parse_float, bool: _parse_bool}


@dataclass(frozen=True)
class Option:
    """One declared adapter option.

    ``default`` and every value given on the command line are strings parsed by ``type`` (``str``,
    ``int``, ``float`` or ``bool``); ``choices`` lists the allowed values, ``minimum``/``maximum``
    bound numbers, and ``validate(value)`` may raise ``ValueError`` with what is wrong. ``key=False``
    marks a machine-local value (a binary's path) that is not part of the cache key or label.
    """

    default: Any
    type: builtins.type = str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    validate: Callable[[Any], Any] | None = field(default=None, compare=False)
    help: str = ""
    key: bool = True

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise AdapterError(f"option type must be one of str, int, float, bool, got {self.type!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self._convert(c) for c in self.choices))

    def _convert(self, value: Any) -> Any:
        if isinstance(value, self.type) and not (self.type is int and isinstance(value, bool)):
            return value
        return _PARSERS[self.type](str(value))

    def parse(self, text: Any) -> Any:
        """The typed value of ``text``; raises ValueError with what is wrong (without the name)."""
        value = self._convert(text)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.format(c) for c in self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.format(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.format(self.maximum)}")
        if self.validate is not None:
            self.validate(value)
        return value

    def format(self, value: Any) -> str:
        """Canonical text of a value (what the cache key and labels hold)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(value) if isinstance(value, float) else str(value)

    def canonical(self, text: Any) -> str:
        return self.format(self.parse(text))

    def describe(self) -> str:
        """Short text for listings: allowed values or type."""
        if self.choices is not None:
            return " | ".join(self.format(c) for c in self.choices)
        bounds = ""
        if self.minimum is not None or self.maximum is not None:
            lo = self.format(self.minimum) if self.minimum is not None else ""
            hi = self.format(self.maximum) if self.maximum is not None else ""
            bounds = f" {lo}..{hi}"
        return f"{self.type.__name__}{bounds}"


def option_specs(declared: Any) -> dict[str, Option]:
    """Normalise an ``OPTIONS`` declaration: plain values become ``str`` options."""
    specs: dict[str, Option] = {}
    for name, value in dict(declared or {}).items():
        specs[str(name)] = value if isinstance(value, Option) else Option(str(value))
    return specs


