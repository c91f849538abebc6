"""User-facing errors: one base class, printed by ``python -m bench`` as ``error: ...`` with exit status 2.

Each subsystem derives its own class (``AdapterError``, ``DatasetError``, ``ReportError``,
``CropsError``, ``TrainError``); the message says what is wrong and what to do, in plain words
(no exception type, no quotes from a ``KeyError``). ``--debug`` re-raises with the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error the user can fix (a bad name, option, file or setting); exit status 2, unless the
    subclass says otherwise (1: the run could not measure everything it was asked for)."""

    exit_status = 2


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'jpeg'?"`` for the closest known names (difflib), or ``""``."""
    matches = difflib.get_close_matches(word, list(known), n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def printable(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (undecodable bytes of a file name, or an adapter's
    exception text) escaped as ``\\udce9``, so it can be stored and printed without crashing."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
