"""argparse types for numeric options: each refuses what it cannot mean (negative, NaN, infinite)
with an argparse error (one line, exit status 2)."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number, 1 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A positive finite number (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def timeout(text: str) -> float:
    """Seconds per job: a positive finite number, or 0 for no limit (argparse type)."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return positive_float(text)


def count(text: str) -> int:
    """A whole number, 0 or more (argparse type)."""
    return 0 if text.strip() == "0" else positive_int(text)
