"""The result store: one SQLite database per results directory, source of truth and cache.

A measurement's key is (image content hash, codec name, options, codec library version,
quality). Each finished measurement is committed on its own (WAL journal, synchronous=NORMAL:
durable against a killed process), so an interrupted run (Ctrl-C, kill -9) loses no finished
row, and a re-run computes only missing rows. The ``codecs`` table holds each codec configuration's current library version,
family and description, so analysis never needs to import the adapters.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

DB_NAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    dataset TEXT NOT NULL, name TEXT NOT NULL, image_hash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, path TEXT, conversions TEXT,
    PRIMARY KEY (dataset, name));
CREATE TABLE IF NOT EXISTS codecs (
    label TEXT PRIMARY KEY, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    family TEXT NOT NULL, description TEXT NOT NULL, info TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, bytes INTEGER NOT NULL, bpp REAL NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL,
    encode_s REAL NOT NULL, decode_s REAL NOT NULL, metric_s REAL NOT NULL,
    device TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE IF NOT EXISTS metrics (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (image_hash, codec, options, version, quality, metric));
CREATE TABLE IF NOT EXISTS failures (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, image_name TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE IF NOT EXISTS sweeps (
    codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL, quality REAL NOT NULL,
    PRIMARY KEY (codec, options, version, quality));
CREATE TABLE IF NOT EXISTS probes (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE IF NOT EXISTS targets (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    target_bpp REAL NOT NULL, quality REAL NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, target_bpp));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Key:
    """Identity of one measurement."""

    image_hash: str
    codec: str
    options: str  # canonical JSON
    version: str
    quality: float

    def as_tuple(self) -> tuple:
        return (self.image_hash, self.codec, self.options, self.version, float(self.quality))


@dataclass(frozen=True)
class Measurement:
    key: Key
    bytes: int
    bpp: float
    width: int
    height: int
    encode_s: float
    decode_s: float
    metric_s: float
    device: str
    metrics: dict[str, float]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """SQLite result store in ``<results dir>/results.sqlite``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: commits survive a killed process
        had_sweeps = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sweeps'").fetchone()
        self.conn.executescript(SCHEMA)
        if not had_sweeps:  # stores written before sweeps were recorded: every non-target quality
            self.conn.execute("""INSERT OR IGNORE INTO sweeps SELECT DISTINCT m.codec, m.options, m.version, m.quality
                                 FROM measurements m WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE
                                 t.codec = m.codec AND t.options = m.options AND t.version = m.version
                                 AND t.quality = m.quality)""")
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(codecs)")}
        if "info" not in columns:  # stores written before codec metadata existed
            self.conn.execute("ALTER TABLE codecs ADD COLUMN info TEXT NOT NULL DEFAULT '{}'")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------
    def set_meta(self, key: str, value) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def register_images(self, dataset: str, images: Iterable[tuple[str, str, int, int, str, list[str]]]) -> None:
        """Record the dataset's current images: (name, hash, width, height, path, conversions)."""
        with self.conn:
            self.conn.execute("DELETE FROM images WHERE dataset = ?", (dataset,))
            self.conn.executemany(
                "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(dataset, n, h, w, ht, p, json.dumps(c)) for n, h, w, ht, p, c in images],
            )

    def register_codec(self, label: str, codec: str, options: str, version: str, family: str, description: str,
                       info: dict | None = None) -> None:
        """Record a codec configuration's current version; ``info``: e.g. weights, parameters, kMAC/pixel."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO codecs (label, codec, options, version, family, description, info, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (label, codec, options, version, family, description, json.dumps(info or {}, sort_keys=True), now_iso()),
            )

    def add_sweep(self, codec: str, options: str, version: str, qualities) -> None:
        """Qualities run as a quality sweep (RD curves use these; target-bpp points are kept apart)."""
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO sweeps VALUES (?,?,?,?)",
                                  [(codec, options, version, float(q)) for q in qualities])

    def add(self, m: Measurement) -> None:
        """Store one finished measurement and its metrics in one transaction."""
        k = m.key.as_tuple()
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*k, m.bytes, m.bpp, m.width, m.height, m.encode_s, m.decode_s, m.metric_s, m.device, now_iso()),
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?)",
                [(*k, name, value) for name, value in m.metrics.items()],
            )
            self.conn.execute("DELETE FROM failures WHERE image_hash=? AND codec=? AND options=? AND version=? AND quality=?", k)

    def add_failure(self, key: Key, image_name: str, stage: str, error: str) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?,?)",
                (*key.as_tuple(), image_name, stage, error, now_iso()),
            )

    def add_search(self, image_hash: str, codec: str, options: str, version: str,
                   probes: dict[float, int], chosen: dict[float, float]) -> None:
        """Sizes of the encodes a target-bpp search made, and the quality it chose per target."""
        ident = (image_hash, codec, options, version)
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO probes VALUES (?,?,?,?,?,?)",
                                  [(*ident, q, n) for q, n in probes.items()])
            self.conn.executemany("INSERT OR REPLACE INTO targets VALUES (?,?,?,?,?,?)",
                                  [(*ident, t, q) for t, q in chosen.items()])

    # --- reading -------------------------------------------------------------------------
    def sizes(self, image_hash: str, codec: str, options: str, version: str) -> dict[float, int]:
        """quality -> bytes of every encode known for one image and codec (probes and measurements)."""
        ident = (image_hash, codec, options, version)
        where = "WHERE image_hash=? AND codec=? AND options=? AND version=?"
        out = dict(self.conn.execute(f"SELECT quality, bytes FROM probes {where}", ident).fetchall())
        out.update(self.conn.execute(f"SELECT quality, bytes FROM measurements {where}", ident).fetchall())
        return out

    def chosen_targets(self, image_hash: str, codec: str, options: str, version: str) -> dict[float, float]:
        cur = self.conn.execute("SELECT target_bpp, quality FROM targets WHERE image_hash=? AND codec=? AND options=? "
                                "AND version=?", (image_hash, codec, options, version))
        return dict(cur.fetchall())

    def target_rows(self, dataset: str) -> list[dict]:
        """(image, codec label, target, quality) of the dataset's images and codecs' current versions."""
        cur = self.conn.execute(
            """
            SELECT i.name, i.image_hash, c.label, t.options, t.version, t.quality, t.target_bpp
            FROM targets t
            JOIN images i ON i.image_hash = t.image_hash AND i.dataset = ?
            JOIN codecs c ON c.codec = t.codec AND c.options = t.options AND c.version = t.version
            ORDER BY c.label, t.target_bpp, i.name
            """, (dataset,))
        names = ("image", "image_hash", "codec", "options", "version", "quality", "target_bpp")
        return [dict(zip(names, r)) for r in cur]

    def stored_metrics(self) -> dict[tuple, set[str]]:
        """Key of every stored measurement -> names of the metrics stored for it."""
        out: dict[tuple, set[str]] = {
            tuple(r): set() for r in self.conn.execute("SELECT image_hash, codec, options, version, quality FROM measurements")
        }
        for *key, metric in self.conn.execute("SELECT image_hash, codec, options, version, quality, metric FROM metrics"):
            if tuple(key) in out:
                out[tuple(key)].add(metric)
        return out

    def add_metrics(self, key: Key, metrics: dict[str, float]) -> None:
        """Add metrics to a stored measurement (its bytes and times stay as first measured)."""
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?)",
                                  [(*key.as_tuple(), name, value) for name, value in metrics.items()])

    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def image_count(self, dataset: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images WHERE dataset = ?", (dataset,)).fetchone()[0]

    def images(self, dataset: str) -> list[dict]:
        cur = self.conn.execute("SELECT name, width, height, conversions FROM images WHERE dataset = ? ORDER BY name",
                                (dataset,))
        return [dict(name=n, width=w, height=h, conversions=json.loads(c)) for n, w, h, c in cur]

    def codecs(self) -> list[dict]:
        cur = self.conn.execute("SELECT label, codec, options, version, family, description, info FROM codecs "
                                "ORDER BY label")
        names = ("label", "codec", "options", "version", "family", "description", "info")
        return [dict(zip(names, r[:-1]), info=json.loads(r[-1])) for r in cur]

    def rows(self, dataset: str, sweep_only: bool = True) -> Iterator[dict]:
        """Tidy per-image rows for the dataset's current images and each codec's current version.

        ``sweep_only``: only qualities run as a sweep, not those added by target-bpp searches.
        """
        sweep = ("JOIN sweeps s ON s.codec = m.codec AND s.options = m.options AND s.version = m.version "
                 "AND s.quality = m.quality") if sweep_only else ""
        cur = self.conn.execute(
            f"""
            SELECT i.dataset, i.name, m.image_hash, c.label, c.codec, c.family, m.options, m.version, m.quality,
                   m.width, m.height, m.bytes, m.bpp, m.encode_s, m.decode_s, m.metric_s, m.device
            FROM measurements m
            JOIN images i ON i.image_hash = m.image_hash AND i.dataset = ?
            JOIN codecs c ON c.codec = m.codec AND c.options = m.options AND c.version = m.version
            {sweep}
            ORDER BY c.label, m.quality, i.name
            """,
            (dataset,),
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur]
        metric_rows = self.conn.execute("SELECT image_hash, codec, options, version, quality, metric, value FROM metrics")
        metrics: dict[tuple, dict[str, float]] = {}
        for h, codec, opts, ver, q, name, value in metric_rows:
            metrics.setdefault((h, codec, opts, ver, q), {})[name] = value
        for row in rows:
            key = (row["image_hash"], row["codec"], row["options"], row["version"], row["quality"])
            row.update({k: math.nan if v is None else v for k, v in metrics.get(key, {}).items()})
            yield row
