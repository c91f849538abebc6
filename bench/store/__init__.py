"""The result store: one SQLite database per results directory, source of truth and cache.

The store layer; its modules: this one (the ``Store``: opening, locking, migrating and the writes),
``queries`` (the reads), ``schema`` (tables, version, migrations), ``export`` (CSV/JSON files
written from the store) and ``export_state`` (skipping an export that would write the same files).

A measurement's key is (image content hash, codec name, options, codec library version,
quality). Each finished measurement is committed on its own (WAL journal, synchronous=NORMAL:
durable against a killed process), so an interrupted run (Ctrl-C, kill -9) loses no finished
row, and a re-run computes only missing rows. The ``codecs`` table holds each codec configuration's current
library version, family and description, so analysis never needs to import the adapters.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ..errors import BenchError, printable
from ..model import CrossDevice, Ident, ImageRecord, Key, Measurement
from .queries import Queries
from .schema import MIGRATIONS, SCHEMA_VERSION, WHERE_KEY, create_tables, schema_version

DB_NAME = "results.sqlite"



class StoreError(BenchError):
    """The result store cannot be used (damaged, locked, another dataset); the message says what to do."""


def _seconds(value: float) -> float:
    """A stored time: NaN (not measured) is kept as 0 in its NOT NULL column and named in ``untimed``."""
    return 0.0 if math.isnan(value) else value


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


_LOCK_FILES: set = set()  # lock files held by this process, closed in forked children


def _close_inherited_locks() -> None:
    """In a forked child: drop the parent's store locks, so that they end with the parent."""
    for f in list(_LOCK_FILES):
        try:
            f.close()
        except OSError:
            pass
    _LOCK_FILES.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


FULL_DISK_BYTES = 1 << 20  # less free space than this: a storage error is taken for a full disk


def storage_problem(exc: BaseException, path: Path) -> str:
    """One line for a storage error of the store at ``path``: full disk, read-only folder, or damage."""
    folder = path.parent
    text = str(exc)
    try:
        full = shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        full = False
    if full or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "full" in text:
        return (f"the disk holding {folder} is full ({text}): every measurement stored before is kept in {path}; "
                "free some space and run the same command again")
    if (folder.is_dir() and not os.access(folder, os.W_OK)) or "readonly" in text or "read-only" in text:
        return f"{folder} is read-only ({text}): make it writable, or use --out with another folder"
    return (f"{path} is damaged ({text}): move it away (finished results may be recoverable with "
            f"`sqlite3 {path} .recover | sqlite3 recovered.sqlite`), or use --out with another folder")


class Store(Queries):
    """SQLite result store in ``<results dir>/results.sqlite``.

    ``writer=True`` (a run): the folder is locked for this process (a second writer is refused
    with the pid holding it); a store left by a killed writer is integrity-checked first.
    ``writer=False`` (report, crops, export): never creates a store; every read of this Store
    object sees one consistent snapshot, also while a run is writing (``live_writer`` then
    holds that run's pid).
    """

    def __init__(self, directory: str | Path, writer: bool = True):
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.writer = writer
        self.live_writer: int | None = None
        self._lock_file: TextIO | None = None
        if not writer and not self.path.is_file():
            raise StoreError(f"no result store ({DB_NAME}) in {self.directory}: run `python -m bench run --out "
                             f"{self.directory}` first")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is empty (0 bytes), not a result store: move it away, or use --out "
                             "with another folder")
        read_only = self.directory.is_dir() and not os.access(self.directory, os.W_OK)
        if writer:
            if read_only:
                raise StoreError(f"results folder {self.directory} is read-only: a run stores its measurements "
                                 "there; make it writable, or use --out with another folder")
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock()
        else:
            self.live_writer = self._writer_pid()
            if self.live_writer is None and not read_only and self._outdated():
                Store(self.directory, writer=True).close()  # bring a store of an older version up to date
        try:
            # A read-only folder has no live writer and cannot hold SQLite's shared-memory file: read it as is.
            target = f"file:{self.path}?mode=ro&immutable=1" if read_only else str(self.path)
            self.conn = sqlite3.connect(target, timeout=60, uri=read_only)
            self._open()
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise StoreError(storage_problem(exc, self.path)) from None

    # --- opening and locking -------------------------------------------------------------
    def _lock(self) -> None:
        lock_path = self.directory / (DB_NAME + ".lock")
        self._lock_file = open(lock_path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            self._lock_file = None
            raise StoreError(f"another run (pid {holder}) is writing to {self.directory}: wait for it to finish, "
                             "or use --out with another folder") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        _LOCK_FILES.add(self._lock_file)

    def _unlock(self) -> None:
        if self._lock_file is not None:
            _LOCK_FILES.discard(self._lock_file)
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _outdated(self) -> bool:
        """Whether the store's schema is older than this version's (a writer migrates it when it opens)."""
        try:
            conn = sqlite3.connect(self.path, timeout=60)
            try:
                return schema_version(conn) < SCHEMA_VERSION
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return False  # reported by the normal open

    def _writer_pid(self) -> int | None:
        """The pid of a run writing to this folder now, if any."""
        lock_path = self.directory / (DB_NAME + ".lock")
        if not lock_path.is_file():
            return None
        with open(lock_path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
        return None

    def _open(self) -> None:
        if self.path.is_file():  # a damaged page is found now, as one line, not by a later query
            result = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                problems = [line for line in result.splitlines() if not line.startswith("***")]
                raise sqlite3.DatabaseError(f"quick check: {(problems or [result])[0]}")
        if not self.writer and not os.access(self.directory, os.W_OK):
            self.conn.execute("BEGIN")
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: commits survive a killed process
        if not self.writer:
            self.conn.execute("BEGIN")  # one read transaction: a consistent snapshot for this object's life
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return
        had_tables = self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
        if had_tables and self._unclean_writer():
            result = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"integrity check after a killed run: {result}")
        self._migrate(had_tables)
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('writer', ?)", (json.dumps(os.getpid()),))
        self.conn.commit()

    def _migrate(self, had_tables: bool) -> None:
        """A new store gets the newest schema; an older one each migration step after its version, in one
        transaction (a failed or killed upgrade leaves the store as it was)."""
        version = schema_version(self.conn) if had_tables else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer codec-bench (store schema {version}, this one "
                             f"reads up to {SCHEMA_VERSION}): upgrade codec-bench, or use --out with another folder")
        if version == SCHEMA_VERSION:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if had_tables:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[step](self.conn)
            else:
                create_tables(self.conn)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def _unclean_writer(self) -> bool:
        """Whether the last writer ended without closing the store (killed)."""
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            return False
        return self.conn.execute("SELECT 1 FROM meta WHERE key = 'writer'").fetchone() is not None

    def close(self) -> None:
        if getattr(self, "conn", None) is not None:
            if self.writer:
                with self.conn:
                    self.conn.execute("DELETE FROM meta WHERE key = 'writer'")
            self.conn.close()
            del self.conn  # closed: no connection (close() again does nothing)
        self._unlock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- datasets ------------------------------------------------------------------------
    def claim_dataset(self, name: str, description: str) -> None:
        """Record the folder's dataset; a folder holds one dataset, another one is refused."""
        current = self.get_meta("dataset")
        if current and current.get("name") != name:
            raise StoreError(f"{self.directory} holds results of dataset {current.get('name')!r}; a results folder "
                             f"holds one dataset: use --out with another folder for {name!r} "
                             f"(e.g. --out {self.directory.parent / Path(name).name})")
        self.set_meta("dataset", {"name": name, "description": description})

    # --- writing -------------------------------------------------------------------------
    def set_meta(self, key: str, value) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def register_images(self, dataset: str, images: Iterable[ImageRecord]) -> None:
        """Record the dataset's current images (replacing the previous list)."""
        with self.conn:
            self.conn.execute("DELETE FROM images WHERE dataset = ?", (dataset,))
            self.conn.executemany(
                "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(dataset, printable(i.name), i.image_hash, i.width, i.height, printable(str(i.path)),
                  json.dumps(list(i.conversions))) for i in images],
            )

    def register_codec(self, label: str, codec: str, options: str, version: str, family: str, description: str,
                       info: dict | None = None) -> None:
        """Record a codec configuration's current version; ``info``: e.g. weights, parameters, kMAC/pixel."""
        info = dict(info or {})
        notes = [r[0] for r in self.conn.execute("SELECT note FROM notes WHERE codec=? AND options=? AND version=?",
                                                 (codec, options, version))]
        if notes:
            info["notes"] = "; ".join(sorted(notes))
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO codecs (label, codec, options, version, family, description, info, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (label, codec, options, version, family, description, json.dumps(info, sort_keys=True), now_iso()),
            )

    def add_codec_note(self, ident: Ident, note: str) -> None:
        """A note about a codec configuration (e.g. non-deterministic encoder), kept and shown in its info."""
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO notes VALUES (?,?,?,?)", (*ident.as_tuple()[1:], printable(note)))
        for label, codec, options, version, family, description, info in self.conn.execute(
                "SELECT label, codec, options, version, family, description, info FROM codecs WHERE codec=? AND "
                "options=? AND version=?", ident.as_tuple()[1:]).fetchall():
            self.register_codec(label, codec, options, version, family, description,
                                {k: v for k, v in json.loads(info).items() if k != "notes"})

    def add_sweep(self, codec: str, options: str, version: str, qualities) -> None:
        """Qualities run as a quality sweep (RD curves use these; target-bpp points are kept apart)."""
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO sweeps VALUES (?,?,?,?)",
                                  [(codec, options, version, float(q)) for q in qualities])

    def add(self, m: Measurement) -> None:
        """Store one finished measurement and its metrics in one transaction.

        A time that was not measured (NaN) is stored as 0 with its stage named in ``untimed``, and
        read back as NaN.
        """
        k = m.key.as_tuple()
        untimed = ",".join(stage for stage, s in (("encode", m.encode_s), ("decode", m.decode_s)) if math.isnan(s))
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO measurements (image_hash, codec, options, version, quality, bytes, bpp, width, "
                "height, encode_s, decode_s, metric_s, device, created, host, machine, metric_device, untimed) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*k, m.bytes, m.bpp, m.width, m.height, _seconds(m.encode_s), _seconds(m.decode_s), m.metric_s,
                 m.device, now_iso(), m.host, m.machine, m.metric_device, untimed),
            )
            self._insert_metrics(m.key, m.metrics, m.metric_seconds)
            self._insert_cross_device(m.key, m.cross_device)
            self.conn.execute(f"DELETE FROM failures WHERE {WHERE_KEY}", k)

    def add_failure(self, key: Key, image_name: str, stage: str, error: str) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?,?)",
                (*key.as_tuple(), printable(image_name), stage, printable(error), now_iso()),
            )

    def discard_configuration(self, codec: str, options: str, version: str, stage: str, error: str) -> int:
        """Turn every stored measurement of one codec configuration into a failure (its results are wrong)."""
        ident = (codec, options, version)
        where = "codec = ? AND options = ? AND version = ?"
        with self.conn:
            self.conn.execute(f"""INSERT OR REPLACE INTO failures SELECT m.image_hash, m.codec, m.options, m.version,
                                  m.quality, COALESCE(i.name, m.image_hash), ?, ?, ? FROM measurements m
                                  LEFT JOIN images i ON i.image_hash = m.image_hash
                                  WHERE m.{where.replace(' AND ', ' AND m.')}
                                  GROUP BY m.image_hash, m.quality""", (stage, printable(error), now_iso(), *ident))
            count = self.conn.execute(f"DELETE FROM measurements WHERE {where}", ident).rowcount
            self.conn.execute(f"DELETE FROM metrics WHERE {where}", ident)
            self.conn.execute(f"DELETE FROM cross_device WHERE {where}", ident)
        return count

    def add_search(self, ident: Ident, probes: dict[float, int], chosen: dict[float, float]) -> None:
        """Sizes of the encodes a target-bpp search made, and the quality it chose per target."""
        values = ident.as_tuple()
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO probes VALUES (?,?,?,?,?,?)",
                                  [(*values, q, n) for q, n in probes.items()])
            self.conn.executemany("INSERT OR REPLACE INTO targets VALUES (?,?,?,?,?,?)",
                                  [(*values, t, q) for t, q in chosen.items()])

    def add_metrics(self, key: Key, metrics: dict[str, float], seconds: dict[str, float] | None = None,
                    cross_device: CrossDevice | None = None) -> None:
        """Add metrics (and a cross-device decode) to a stored measurement (its bytes and times stay as
        first measured)."""
        with self.conn:
            self._insert_metrics(key, metrics, seconds or {})
            self._insert_cross_device(key, cross_device)
            self.conn.execute(f"DELETE FROM failures WHERE {WHERE_KEY}", key.as_tuple())

    def _insert_metrics(self, key: Key, metrics: dict[str, float], seconds: dict[str, float]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO metrics (image_hash, codec, options, version, quality, metric, value, seconds) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [(*key.as_tuple(), name, value, seconds.get(name)) for name, value in metrics.items()])

    def _insert_cross_device(self, key: Key, c: CrossDevice | None) -> None:
        if c is not None:
            self.conn.execute("INSERT OR REPLACE INTO cross_device VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                              (*key.as_tuple(), c.decode_device, c.encode_device,
                               None if c.identical is None else int(c.identical), c.max_abs_diff, c.psnr_rgb, c.error))


@contextmanager
def open_results(directory: str | Path, error: type[BenchError] = StoreError) -> Iterator[tuple[Store, str]]:
    """A results folder's store, read only (one consistent snapshot, also while a run writes), and its
    dataset's name; ``error`` (the caller's class) when the folder has no store or no run yet."""
    out = Path(directory)
    if not (out / DB_NAME).is_file():
        raise error(f"no result store {out / DB_NAME}; run `python -m bench run --out {out}` first")
    with Store(out, writer=False) as store:
        dataset = (store.get_meta("dataset") or {}).get("name")
        if not dataset:
            raise error(f"{out / DB_NAME} holds no run yet")
        yield store, dataset
