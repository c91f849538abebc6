"""The store's reads: every query the pipeline, analysis and the report ask of ``results.sqlite``.
``Store`` (``bench.store``) adds the connection, locking, migrations and the writes."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator

from ..model import Ident, ImageRecord, StoredCodec
from .schema import KEY_COLUMNS, WHERE_IDENT


class Queries:
    """Reads of an open store (``self.conn``)."""

    conn: sqlite3.Connection

    # --- reading -------------------------------------------------------------------------
    def sizes(self, ident: Ident) -> dict[float, int]:
        """quality -> bytes of every encode known for one image and codec (probes and measurements)."""
        out = dict(self.conn.execute(f"SELECT quality, bytes FROM probes WHERE {WHERE_IDENT}", ident.as_tuple()))
        out.update(self.conn.execute(f"SELECT quality, bytes FROM measurements WHERE {WHERE_IDENT}", ident.as_tuple()))
        return out

    def chosen_targets(self, ident: Ident) -> dict[float, float]:
        cur = self.conn.execute(f"SELECT target_bpp, quality FROM targets WHERE {WHERE_IDENT}", ident.as_tuple())
        return dict(cur.fetchall())

    def content_fingerprint(self, dataset: str) -> str:
        """A hash of everything the exported files are made of: equal fingerprints, equal exports."""
        queries = [
            "SELECT COUNT(*), MAX(created), SUM(bytes) FROM measurements",
            "SELECT COUNT(*), SUM(value), SUM(seconds) FROM metrics",
            "SELECT label, codec, options, version, family, description, info FROM codecs ORDER BY label",
            "SELECT COUNT(*), SUM(quality) FROM sweeps",
            "SELECT COUNT(*), SUM(quality), SUM(target_bpp) FROM targets",
        ]
        parts = [repr(self.conn.execute(q).fetchall()) for q in queries]
        parts.append(repr(self.conn.execute("SELECT * FROM images WHERE dataset = ? ORDER BY name", (dataset,))
                          .fetchall()))
        return hashlib.sha256("\n".join([dataset, *parts]).encode()).hexdigest()

    def seconds_per_megapixel(self) -> dict[tuple[str, str], float]:
        """(codec, options) -> stored seconds (encode + decode + metrics) per megapixel."""
        cur = self.conn.execute("SELECT codec, options, "
                                "SUM(encode_s + decode_s + metric_s) / SUM(width * height / 1e6) "
                                "FROM measurements GROUP BY codec, options")
        return {(codec, options): value for codec, options, value in cur}

    def failed_keys(self) -> set[tuple]:
        """Keys of the measurements whose last attempt failed."""
        return {tuple(r) for r in self.conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM failures")}

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
        return [dict(zip(names, r, strict=True)) for r in cur]

    def stored_metrics(self) -> dict[tuple, set[str]]:
        """Key of every stored measurement -> names of the metrics stored for it."""
        columns = ", ".join(KEY_COLUMNS)
        out: dict[tuple, set[str]] = {tuple(r): set() for r in self.conn.execute(f"SELECT {columns} FROM measurements")}
        for *key, metric in self.conn.execute(f"SELECT {columns}, metric FROM metrics"):
            if tuple(key) in out:
                out[tuple(key)].add(metric)
        return out

    def cross_device_keys(self, decode_device: str) -> set[tuple]:
        """Keys of the measurements whose bitstream was decoded on ``decode_device`` too."""
        return {tuple(r) for r in self.conn.execute(
            f"SELECT {', '.join(KEY_COLUMNS)} FROM cross_device WHERE decode_device = ?", (decode_device,))}

    def cross_device_rows(self, dataset: str) -> list[dict]:
        """Cross-device decodes of the dataset's images, for each codec's current version."""
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cross_device'").fetchone():
            return []  # a store written before cross-device decoding (opened read-only)
        cur = self.conn.execute(
            """
            SELECT i.name AS image, c.label AS codec, x.quality, x.encode_device, x.decode_device, x.identical,
                   x.max_abs_diff, p.value AS psnr_rgb_measured, x.psnr_rgb AS psnr_rgb_cross, x.error
            FROM cross_device x
            JOIN measurements m ON m.image_hash = x.image_hash AND m.codec = x.codec AND m.options = x.options
                 AND m.version = x.version AND m.quality = x.quality
            LEFT JOIN metrics p ON p.image_hash = x.image_hash AND p.codec = x.codec AND p.options = x.options
                 AND p.version = x.version AND p.quality = x.quality AND p.metric = 'psnr-rgb'
            JOIN images i ON i.image_hash = x.image_hash AND i.dataset = ?
            JOIN codecs c ON c.codec = x.codec AND c.options = x.options AND c.version = x.version
            ORDER BY c.label, x.decode_device, x.quality, i.name
            """, (dataset,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def image_count(self, dataset: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images WHERE dataset = ?", (dataset,)).fetchone()[0]

    def images(self, dataset: str) -> list[ImageRecord]:
        """The dataset's current images, by name."""
        cur = self.conn.execute("SELECT name, image_hash, width, height, path, conversions FROM images "
                                "WHERE dataset = ? ORDER BY name", (dataset,))
        return [ImageRecord(n, h, w, ht, p or "", tuple(json.loads(c or "[]"))) for n, h, w, ht, p, c in cur]

    def codecs(self) -> list[StoredCodec]:
        """Every codec configuration at its current version, by label."""
        cur = self.conn.execute("SELECT label, codec, options, version, family, description, info FROM codecs "
                                "ORDER BY label")
        return [StoredCodec(label, codec, options, version, family, description, json.loads(info))
                for label, codec, options, version, family, description, info in cur]

    def rows(self, dataset: str, sweep_only: bool = True) -> Iterator[dict]:
        """Tidy per-image rows for the dataset's current images and each codec's current version.

        ``sweep_only``: only qualities run as a sweep, not those added by target-bpp searches.
        """
        sweep = ("JOIN sweeps s ON s.codec = m.codec AND s.options = m.options AND s.version = m.version "
                 "AND s.quality = m.quality") if sweep_only else ""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(measurements)")}
        untimed = "m.untimed" if "untimed" in columns else "'' AS untimed"  # a store opened read-only while an
        # older version writes it
        cur = self.conn.execute(
            f"""
            SELECT i.dataset, i.name, m.image_hash, c.label, c.codec, c.family, m.options, m.version, m.quality,
                   m.width, m.height, m.bytes, m.bpp, m.encode_s, m.decode_s, m.metric_s, m.device, m.host, m.machine,
                   m.metric_device, {untimed}
            FROM measurements m
            JOIN images i ON i.image_hash = m.image_hash AND i.dataset = ?
            JOIN codecs c ON c.codec = m.codec AND c.options = m.options AND c.version = m.version
            {sweep}
            ORDER BY c.label, m.quality, i.name
            """,
            (dataset,),
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
        metric_rows = self.conn.execute(
            "SELECT image_hash, codec, options, version, quality, metric, value FROM metrics")
        metrics: dict[tuple, dict[str, float]] = {}
        for h, codec, opts, ver, q, name, value in metric_rows:
            metrics.setdefault((h, codec, opts, ver, q), {})[name] = value
        for row in rows:
            for stage in filter(None, row.pop("untimed").split(",")):
                row[f"{stage}_s"] = math.nan  # not measured
            key = (row["image_hash"], row["codec"], row["options"], row["version"], row["quality"])
            row.update({k: math.nan if v is None else v for k, v in metrics.get(key, {}).items()})
            yield row
