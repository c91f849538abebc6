"""Skipping an export that would write the same files again (a fully cached run answers fast).

``.export-state.json`` in the results folder holds the store's content fingerprint at the last
export and the files written then; if the fingerprint is unchanged and every file is still
there, the export is skipped (and pandas is never imported).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text_atomic

STATE_FILE = ".export-state.json"


def current_export(out: Path, fingerprint: str) -> list[Path] | None:
    """The files of the last export if it was made from the same store content, else None."""
    try:
        state = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    files = [out / name for name in state.get("files", [])]
    if state.get("fingerprint") != fingerprint or not files or not all(f.is_file() for f in files):
        return None
    return files


def record_export(out: Path, fingerprint: str, files: list[Path]) -> list[Path]:
    """Record an export; remove the files of the previous export that this one did not write again
    (e.g. the JSON of a codec whose current version has no result): no stale file looks current."""
    try:
        previous = json.loads((out / STATE_FILE).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        previous = []
    current = [f.name for f in files]
    stale = [out / name for name in previous if name not in current and Path(name).name == name]
    write_text_atomic(out / STATE_FILE, json.dumps({"fingerprint": fingerprint, "files": current}))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
