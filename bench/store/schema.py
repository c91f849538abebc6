"""The store's SQLite schema (``SCHEMA``, always the newest shape), its version (``PRAGMA user_version``)
and the migrations that bring an older store up to it, each inside the opening writer's transaction
(``Store._migrate``); tests/test_store_schema.py checks every step on a store of the older shape."""

from __future__ import annotations

import sqlite3

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
    device TEXT NOT NULL, created TEXT NOT NULL, host TEXT NOT NULL DEFAULT '', machine TEXT NOT NULL DEFAULT '',
    metric_device TEXT NOT NULL DEFAULT 'cpu', untimed TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE IF NOT EXISTS metrics (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, metric TEXT NOT NULL, value REAL, seconds REAL,
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
CREATE TABLE IF NOT EXISTS notes (
    codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (codec, options, version, note));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cross_device (
    image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, decode_device TEXT NOT NULL, encode_device TEXT NOT NULL,
    identical INTEGER, max_abs_diff INTEGER, psnr_rgb REAL, error TEXT NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality, decode_device));
"""


SCHEMA_VERSION = 1  # PRAGMA user_version of a store of this version; MIGRATIONS bring older ones up to it


def _migrate_unversioned(conn: sqlite3.Connection) -> None:
    """0 -> 1: stores from before ``user_version`` get the tables and columns added since the first store."""
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    create_tables(conn)
    if "sweeps" not in have:  # stores written before sweeps were recorded: every non-target quality
        conn.execute("""INSERT OR IGNORE INTO sweeps SELECT DISTINCT m.codec, m.options, m.version, m.quality
                        FROM measurements m WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE
                        t.codec = m.codec AND t.options = m.options AND t.version = m.version
                        AND t.quality = m.quality)""")
    _add_column(conn, "codecs", "info", "TEXT NOT NULL DEFAULT '{}'")  # stores before codec metadata
    _add_column(conn, "metrics", "seconds", "REAL")  # stores before per-metric timing
    _add_column(conn, "measurements", "host", "TEXT NOT NULL DEFAULT ''")  # stores before host provenance
    _add_column(conn, "measurements", "machine", "TEXT NOT NULL DEFAULT ''")
    _add_column(conn, "measurements", "metric_device", "TEXT NOT NULL DEFAULT 'cpu'")
    _add_column(conn, "measurements", "untimed", "TEXT NOT NULL DEFAULT ''")  # stores before untimed stages


# version -> the step that brings a store of version - 1 to it, inside the opening writer's transaction.
# A schema change adds a step here and raises SCHEMA_VERSION; SCHEMA is always the newest shape.
MIGRATIONS = {1: _migrate_unversioned}


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _add_column(conn: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


# A measurement's identity (image, codec configuration) and key (plus quality), as columns and WHERE clauses.
IDENT_COLUMNS = ("image_hash", "codec", "options", "version")
KEY_COLUMNS = (*IDENT_COLUMNS, "quality")
WHERE_IDENT = " AND ".join(f"{c} = ?" for c in IDENT_COLUMNS)
WHERE_KEY = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
