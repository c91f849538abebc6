"""The store's schema version (PRAGMA user_version) and its migrations, on stores written the old way."""

from __future__ import annotations

import sqlite3

import pytest

from bench.store import DB_NAME, Store, StoreError
from bench.store.schema import SCHEMA_VERSION

# The first store's shape (before sweeps, targets, probes, notes, cross-device decodes, codec info,
# per-metric timing, host provenance and untimed stages), with no user_version.
FIRST_SCHEMA = """
CREATE TABLE images (dataset TEXT NOT NULL, name TEXT NOT NULL, image_hash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, path TEXT, conversions TEXT, PRIMARY KEY (dataset, name));
CREATE TABLE codecs (label TEXT PRIMARY KEY, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    family TEXT NOT NULL, description TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE measurements (image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL,
    version TEXT NOT NULL, quality REAL NOT NULL, bytes INTEGER NOT NULL, bpp REAL NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, encode_s REAL NOT NULL, decode_s REAL NOT NULL,
    metric_s REAL NOT NULL, device TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE metrics (image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (image_hash, codec, options, version, quality, metric));
CREATE TABLE failures (image_hash TEXT NOT NULL, codec TEXT NOT NULL, options TEXT NOT NULL, version TEXT NOT NULL,
    quality REAL NOT NULL, image_name TEXT NOT NULL, stage TEXT NOT NULL, error TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (image_hash, codec, options, version, quality));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO images VALUES ('sample', 'a', 'h1', 4, 2, NULL, '[]');
INSERT INTO codecs VALUES ('jpeg', 'jpeg', '{}', 'v1', 'conventional', 'JPEG', '2024-01-01');
INSERT INTO measurements VALUES ('h1', 'jpeg', '{}', 'v1', 50, 10, 10.0, 4, 2, 0.1, 0.1, 0.1, 'cpu', '2024-01-01');
INSERT INTO metrics VALUES ('h1', 'jpeg', '{}', 'v1', 50, 'psnr-rgb', 30.5);
"""


def first_store(folder):
    folder.mkdir()
    with sqlite3.connect(folder / DB_NAME) as conn:
        conn.executescript(FIRST_SCHEMA)
    return folder


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_a_new_store_has_the_current_schema_version(tmp_path):
    Store(tmp_path / "out").close()
    with sqlite3.connect(tmp_path / "out" / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("writer", [True, False])
def test_the_first_stores_shape_is_migrated_keeping_its_rows(tmp_path, writer):
    """A reader migrates too (through a writer, when no run holds the folder)."""
    out = first_store(tmp_path / "old")
    with Store(out, writer=writer) as store:
        rows = store.conn.execute("SELECT codec, quality, bytes, host, untimed FROM measurements").fetchall()
        assert rows == [("jpeg", 50.0, 10, "", "")]
        assert store.conn.execute("SELECT value, seconds FROM metrics").fetchall() == [(30.5, None)]
    with sqlite3.connect(out / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {"host", "machine", "metric_device", "untimed"} <= columns(conn, "measurements")
        assert "info" in columns(conn, "codecs") and "seconds" in columns(conn, "metrics")
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"sweeps", "targets", "probes", "notes", "cross_device"} <= tables
        assert conn.execute("SELECT codec, quality FROM sweeps").fetchall() == [("jpeg", 50.0)], \
            "the measured qualities of a store without sweeps are its sweep"


def test_a_store_of_a_newer_version_is_refused_by_a_writer(tmp_path):
    Store(tmp_path / "out").close()
    with sqlite3.connect(tmp_path / "out" / DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="written by a newer codec-bench"):
        Store(tmp_path / "out")
