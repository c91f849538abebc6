"""Which code measures: per-file SHA-256 digests of the harness and of each adapter.

Every task carries the client's ``CodeIdentity``: the harness's files (the ``bench`` package), the
adapter's files (its module and ``CODE_FILES``) and the codec's resolved version (library,
binaries, weights). The process that runs the task compares them with its own before it measures
(``bench.pipeline.worker.refusal``; a Dask worker also resolves the version itself, ``bench.execution.cluster``) and
refuses the task, naming the differing files, when they differ: no row is ever stored under a code
version other than the one that measured it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .errors import BenchError
from .model import Files

HARNESS_ROOT = Path(__file__).resolve().parent


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in blocks (weights and archives can be large)."""
    hashed = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hashed.update(block)
    return hashed.hexdigest()


@functools.lru_cache(maxsize=1)
def harness_files() -> Files:
    """The harness code of this process: every ``.py`` file of the ``bench`` package, read once (at the
    first call; a process runs the code it imported, not later edits on disk)."""
    return tuple((f"bench/{path.relative_to(HARNESS_ROOT).as_posix()}", digest(path.read_bytes()))
                 for path in sorted(HARNESS_ROOT.rglob("*.py")))


def differing(expected: Files, actual: Files) -> list[str]:
    """Names of the files whose digests differ, or that only one side has."""
    mine, theirs = dict(actual), dict(expected)
    return sorted(name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name))


class CodeMismatch(BenchError):
    """A task found different code than the client's, and no worker with the client's code can run it."""

    exit_status = 1


def mismatch(what: str, expected: Files, actual: Files) -> str:
    """The reason of a refusal for ``what`` (harness or adapter) files, or ``""`` when they are the same."""
    files = differing(expected, actual)
    if not files:
        return ""
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return f"its {what} file(s) {shown} differ from the client's"
