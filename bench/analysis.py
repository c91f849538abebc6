"""Bjøntegaard deltas between RD curves, from stored results only.

BD-rate: average bit-rate difference in % at equal quality (negative = saving), BD-quality:
average quality difference at equal rate (in the metric's unit), both computed with the
``bjontegaard`` package (interpolation ``pchip``, ``akima`` or ``cubic``, the VCEG-M33
polynomial) over the interval where both curves overlap. Curves whose overlap (in quality for BD-rate, in
log-rate for BD-quality) covers less than 75 % of the shorter curve's range give no value but a
stated reason, never an extrapolation; fewer than 4 points give a warning.

Two aggregations: ``mean-curve`` (BD between the curves of per-quality means, CompressAI style)
and ``per-image`` (BD per image, then the mean over images, JPEG AI CTC style).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd

from .metrics import METRICS, ms_ssim_db

METHODS = ("pchip", "akima", "cubic")
AGGREGATIONS = ("mean-curve", "per-image")
MIN_OVERLAP = 0.75
MIN_POINTS = 4


@dataclass(frozen=True)
class Curve:
    """One RD curve: rate in bpp and quality values, as measured (not sorted)."""

    label: str
    bpp: np.ndarray
    quality: np.ndarray
    published: bool = False


@dataclass(frozen=True)
class Delta:
    value: float | None
    note: str = ""


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the intersection of two value ranges over the length of the shorter range.

    BD averages over the intersection; this says how much of the shorter curve it covers.
    """
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    shorter = min(a.max() - a.min(), b.max() - b.min())
    return max(hi - lo, 0.0) / shorter if shorter > 0 else 0.0


def _clean(curve: Curve, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Finite points with positive rate, quality oriented so that higher is better."""
    rate, quality = np.asarray(curve.bpp, float), np.asarray(curve.quality, float)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    note = "" if keep.all() else f"{(~keep).sum()} non-finite point(s) of {curve.label} ignored"
    quality = quality if higher_is_better else -quality
    return rate[keep], quality[keep], note


def _bd(anchor: Curve, test: Curve, method: str, higher_is_better: bool, kind: str) -> Delta:
    rate_a, q_a, note_a = _clean(anchor, higher_is_better)
    rate_t, q_t, note_t = _clean(test, higher_is_better)
    notes = [n for n in (note_a, note_t) if n]
    n_min = min(len(rate_a), len(rate_t))
    if n_min < 2 or (method == "cubic" and n_min < 4):
        return Delta(None, "; ".join(notes + [f"too few points ({n_min}) for {method} interpolation"]))
    if kind == "rate":  # equal quality: overlap along the quality axis
        overlap = overlap_fraction(q_a, q_t)
        axis = "quality"
    else:
        overlap = overlap_fraction(np.log10(rate_a), np.log10(rate_t))
        axis = "rate"
    if overlap < MIN_OVERLAP:
        return Delta(None, "; ".join(notes + [f"{axis} overlap {overlap * 100:.0f} % < {MIN_OVERLAP * 100:.0f} %"]))
    if n_min < MIN_POINTS:
        notes.append(f"only {n_min} points: unreliable")
    func = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = func(*_sorted(rate_a, q_a, kind), *_sorted(rate_t, q_t, kind), method,
                         require_matching_points=False, min_overlap=0)
        except ValueError as exc:
            return Delta(None, "; ".join(notes + [f"not computable: {exc}"]))
    if not math.isfinite(value):
        return Delta(None, "; ".join(notes + ["not computable (non-monotone curve?)"]))
    return Delta(float(value), "; ".join(notes))


def _sorted(rate: np.ndarray, quality: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted along the interpolation axis (quality for BD-rate, rate for BD-quality).

    Points repeating a value of that axis (e.g. two settings giving the same bitstream) are
    dropped: interpolation needs strictly increasing values.
    """
    _, first = np.unique(quality if kind == "rate" else rate, return_index=True)
    return rate[first], quality[first]


def bd_rate(anchor: Curve, test: Curve, method: str = "pchip", higher_is_better: bool = True) -> Delta:
    """BD-rate of ``test`` against ``anchor`` in % (negative = fewer bits at equal quality)."""
    return _bd(anchor, test, method, higher_is_better, "rate")


def bd_quality(anchor: Curve, test: Curve, method: str = "pchip", higher_is_better: bool = True) -> Delta:
    """BD-quality of ``test`` against ``anchor`` in the metric's unit; positive = better at equal rate
    (for a lower-is-better metric, a positive value is a decrease)."""
    return _bd(anchor, test, method, higher_is_better, "quality")


# --- curves from stored results ----------------------------------------------------------
def bd_metrics(columns) -> list[str]:
    """Metrics to compare: every known metric present, except raw MS-SSIM (compared in dB)."""
    return [m for m in METRICS if m in columns and m != "ms-ssim-rgb"]


def mean_curves(summary: pd.DataFrame, metric: str, n_images: int) -> dict[str, Curve]:
    """Per-codec curves of per-quality means, only quality points measured on every image."""
    curves = {}
    complete = summary[summary["n_images"] == n_images]
    for label, rows in complete.groupby("codec", sort=True):
        rows = rows.sort_values("bpp")
        curves[label] = Curve(label, rows["bpp"].to_numpy(float), rows[metric].to_numpy(float))
    return curves


def image_curves(per_image: pd.DataFrame, metric: str) -> dict[str, dict[str, Curve]]:
    """codec -> image -> that image's curve."""
    out: dict[str, dict[str, Curve]] = {}
    for (label, image), rows in per_image.groupby(["codec", "image"], sort=True):
        rows = rows.sort_values("bpp")
        out.setdefault(label, {})[image] = Curve(label, rows["bpp"].to_numpy(float), rows[metric].to_numpy(float))
    return out


def load_reference(path: str | Path) -> dict[str, Curve]:
    """metric -> published curve, from a CompressAI-format JSON result file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        results = doc["results"]
        bpp = np.asarray(results["bpp"], float)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a CompressAI-format result file ({type(exc).__name__}: {exc})") from None
    label = f"{doc.get('name') or path.stem} (published)"
    curves = {}
    for metric in METRICS:
        if metric == "ms-ssim-db" and "ms-ssim-rgb" in results:
            values = np.array([ms_ssim_db(float(v)) for v in results["ms-ssim-rgb"]])
        elif metric in results:
            values = np.asarray(results[metric], float)
        else:
            continue
        if len(values) == len(bpp):
            curves[metric] = Curve(label, bpp, values, published=True)
    return curves


def bd_table(
    per_image: pd.DataFrame,
    summary: pd.DataFrame,
    n_images: int,
    anchor: str,
    references: list[dict[str, Curve]] | None = None,
    methods: tuple[str, ...] = METHODS,
) -> pd.DataFrame:
    """Tidy BD table: codec, anchor, metric, method, aggregation, kind, value, unit, source, note."""
    rows = []
    references = references or []
    for metric in bd_metrics(per_image.columns):
        info = METRICS[metric]
        curves = mean_curves(summary, metric, n_images)
        for ref in references:
            if metric in ref:
                curves[ref[metric].label] = ref[metric]
        if anchor not in curves:
            raise KeyError(f"anchor {anchor!r} has no complete {metric} curve (codecs: {', '.join(sorted(curves))})")
        per_img = image_curves(per_image, metric) if anchor in set(per_image["codec"]) else {}
        for label, curve in curves.items():
            if label == anchor:
                continue
            source = "published" if curve.published else "measured"
            for method in methods:
                for kind, func, unit in (("bd-rate", bd_rate, "%"), ("bd-quality", bd_quality, info.unit)):
                    d = func(curves[anchor], curve, method, info.higher_is_better)
                    rows.append((label, anchor, metric, method, "mean-curve", kind, d.value, unit, source, d.note))
                    d = _per_image_mean(per_img, anchor, label, method, info.higher_is_better, func)
                    rows.append((label, anchor, metric, method, "per-image", kind, d.value, unit, source, d.note))
    columns = ["codec", "anchor", "metric", "method", "aggregation", "kind", "value", "unit", "source", "note"]
    return pd.DataFrame(rows, columns=columns)


def _per_image_mean(per_img: dict[str, dict[str, Curve]], anchor: str, label: str, method: str,
                    higher_is_better: bool, func) -> Delta:
    if label not in per_img or anchor not in per_img:
        return Delta(None, "published curve: per-image data not available" if label not in per_img
                     else "anchor has no per-image data")
    values, reasons = [], []
    for image, test in per_img[label].items():
        if image not in per_img[anchor]:
            continue
        d = func(per_img[anchor][image], test, method, higher_is_better)
        if d.value is None:
            reasons.append(d.note)
        else:
            values.append(d.value)
    total = len(values) + len(reasons)
    if not values:
        common = max(set(reasons), key=reasons.count) if reasons else "no common images"
        return Delta(None, f"no image gave a value ({common})")
    note = ""
    if reasons:
        common = max(set(reasons), key=reasons.count)
        note = f"mean over {len(values)} of {total} images; others: {common}"
    return Delta(float(np.mean(values)), note)
