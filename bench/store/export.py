"""Result files written from the store: per_image.csv, summary.csv and CompressAI-format JSONs."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..adapters import native_quality
from ..atomic import STAGING_PREFIX, atomic_path, write_text_atomic
from ..metrics import METRICS, ms_ssim_db, register_stored
from ..model import StoredCodec
from . import Store

ID_COLUMNS = ["dataset", "image", "image_hash", "codec", "codec_name", "family", "options", "version", "quality"]
VALUE_COLUMNS = ["width", "height", "bytes", "bpp", "encode_s", "decode_s", "device", "host", "machine",
                 "metric_device"]
# CompressAI's result-file keys, plus our extra metrics.
JSON_KEYS = {"bpp": "bpp", "psnr-rgb": "psnr-rgb", "ms-ssim-rgb": "ms-ssim-rgb", "psnr-y": "psnr-y",
             "ms-ssim-db": "ms-ssim-db", "encoding_time": "encode_s", "decoding_time": "decode_s"}


def per_image_frame(store: Store, dataset: str, sweep_only: bool = True) -> pd.DataFrame:
    """Tidy table: one row per (image, codec configuration, quality) of the quality sweeps."""
    rows = list(store.rows(dataset, sweep_only))
    register_stored({name for r in rows for name in r})  # own task models' metrics (task-*@<digest>), by name
    metric_names = [m for m in METRICS if any(m in r for r in rows)]
    if not rows:
        return pd.DataFrame(columns=ID_COLUMNS + VALUE_COLUMNS + list(METRICS))
    frame = pd.DataFrame(rows).rename(columns={"name": "image", "label": "codec", "codec": "codec_name"})
    return frame[ID_COLUMNS + VALUE_COLUMNS + metric_names]


def summary_frame(per_image: pd.DataFrame) -> pd.DataFrame:
    """Arithmetic means over images per codec configuration and quality (CompressAI's convention).

    ``ms-ssim-db`` is that of the mean MS-SSIM, so it matches published CompressAI curves.
    """
    metric_names = [m for m in METRICS if m in per_image.columns]
    value_cols = ["bpp", "bytes", *metric_names, "encode_s", "decode_s"]
    if per_image.empty:
        return pd.DataFrame(columns=["codec", "family", "quality", "n_images", *value_cols])
    grouped = per_image.groupby(["codec", "family", "quality"], sort=True)
    summary = grouped[value_cols].agg(_mean_all)
    summary.insert(0, "n_images", grouped.size())
    _ms_ssim_db_of_mean(summary)
    return summary.reset_index().sort_values(["codec", "bpp"]).reset_index(drop=True)


def _ms_ssim_db_of_mean(means: pd.DataFrame) -> None:
    """Replace a mean of per-image ms-ssim-db by that of the mean MS-SSIM, as in CompressAI's plots."""
    if "ms-ssim-db" in means:
        means["ms-ssim-db"] = [ms_ssim_db(v) for v in means["ms-ssim-rgb"]]


def _mean_all(values: pd.Series) -> float:
    """Mean over every image: NaN if any image has none, so no point mixes image sets."""
    return values.mean(skipna=False)


def file_stem(label: str) -> str:
    """A codec label made safe as a file name (option values may hold paths)."""
    return re.sub(r"[^\w.,:=+-]", "_", label)


def _json_value(value: float) -> float | None:
    """Floats for JSON; NaN and infinities (e.g. PSNR of a lossless result) become null."""
    return float(value) if value is not None and math.isfinite(value) else None


def compressai_json(summary: pd.DataFrame, codec: StoredCodec, n_images: int, dataset: str | None = None) -> dict:
    """CompressAI's result format; only quality points measured on all ``n_images`` images.

    Top level also names the ``dataset`` and its image count, so a file used later as a
    ``--reference`` can be checked against the run it is compared with. ``ms-ssim-db`` stays
    out: CompressAI's plot tool converts every key containing "ms-ssim" to dB itself (it plots
    ``ms-ssim-rgb`` in dB with ``-m ms-ssim``), so a dB value there would be converted twice.
    """
    rows = summary[(summary["codec"] == codec.label) & (summary["n_images"] == n_images)].sort_values("bpp")
    results = {key: [_json_value(v) for v in rows[col]] for key, col in JSON_KEYS.items()
               if col in rows and key != "ms-ssim-db"}
    results["quality"] = [native_quality(q) for q in rows["quality"]]
    return {
        "name": codec.label,
        "description": codec.description,
        "dataset": dataset,
        "n_images": n_images,
        "family": codec.family,
        "version": codec.version,
        "options": json.loads(codec.options),
        "results": results,
    }


def target_frames(store: Store, dataset: str, per_image: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per image and mean tables at each target bpp: the measurement at the chosen quality."""
    chosen = pd.DataFrame(store.target_rows(dataset))
    if chosen.empty or per_image.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = chosen[["image", "codec", "target_bpp", "quality"]].merge(per_image, on=["image", "codec", "quality"])
    metric_names = [m for m in METRICS if m in rows.columns]
    rows = rows[["target_bpp", "codec", "family", "image", "quality", "bpp", *metric_names]]
    rows = rows.sort_values(["target_bpp", "codec", "image"]).reset_index(drop=True)
    grouped = rows.groupby(["target_bpp", "codec", "family"], sort=True)
    means = grouped[["bpp", *metric_names]].agg(_mean_all)
    means.insert(0, "n_images", grouped.size())
    means = means.rename(columns={"bpp": "mean_bpp"}).reset_index()
    _ms_ssim_db_of_mean(means)
    return rows, means


@dataclass(frozen=True)
class Exported:
    per_image: pd.DataFrame
    summary: pd.DataFrame
    n_images: int
    paths: list[Path]
    targets: pd.DataFrame  # means at each target bpp (empty without a target-bpp run)


def export_results(store: Store, dataset: str, out_dir: str | Path) -> Exported:
    """Write per_image.csv, summary.csv and one ``<codec>.json`` per codec, all or nothing.

    Every file is written into a staging folder first and moved into place only when all of them
    were written: a failure (full disk, an error) leaves the previous files untouched.
    """
    out = Path(out_dir)
    per_image = per_image_frame(store, dataset)
    summary = summary_frame(per_image)
    n_images = store.image_count(dataset)
    target_rows, target_means = target_frames(store, dataset, per_image_frame(store, dataset, sweep_only=False))
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        staged = [write_csv(per_image, stage / "per_image.csv"), write_csv(summary, stage / "summary.csv")]
        for codec in store.codecs():
            if codec.label not in set(summary["codec"]):
                continue
            path = stage / f"{file_stem(codec.label)}.json"
            write_text_atomic(path, json.dumps(compressai_json(summary, codec, n_images, dataset), indent=2) + "\n")
            staged.append(path)
        if not target_rows.empty:
            staged += [write_csv(target_rows, stage / "target_bpp.csv"),
                       write_csv(target_means, stage / "target_bpp_summary.csv")]
        for path in staged:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Exported(per_image, summary, n_images, [out / p.name for p in staged], target_means)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically; returns its path."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
