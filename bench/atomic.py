"""Atomic file writing: a temporary file in the same folder, then ``os.replace``.

A reader (or a crash, a kill, a full disk) sees either the previous file or the complete new
one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING_PREFIX = ".staging-"  # folders of a multi-file export being written (bench.store.export)


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete what interrupted writes left in ``folder`` (``.NAME.XXXX.tmp*`` files of ``atomic_path``,
    staging folders of an export). Call it only while holding the folder's lock (a run's store)."""
    removed = [p for p in Path(folder).glob(".*.tmp*") if p.is_file()]
    removed += [p for p in Path(folder).glob(STAGING_PREFIX + "*") if p.is_dir()]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For libraries that write files themselves (``DataFrame.to_csv``, ``Figure.savefig``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # durable before it becomes visible
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
