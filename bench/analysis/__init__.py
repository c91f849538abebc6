"""Bjøntegaard deltas between RD curves, from stored results only.

The analysis layer reads stored results only (never encodes); its modules: this one (BD-rate, curves),
``table`` (the tidy BD table with intervals, wins and p-values), ``per_metric`` (BD-rate per
metric with the average over metrics, JPEG AI style), ``stats`` (bootstrap confidence
intervals, Wilcoxon), ``fairness`` (off-target and chroma checks), ``compressai_json`` (the one
reader of CompressAI-format result files) and ``cross_device`` (the cross-device decode table).

BD-rate: average bit-rate difference in % at equal quality (negative = saving), BD-quality:
average quality difference at equal rate (in the metric's unit), both computed with the
``bjontegaard`` package (interpolation ``pchip``, ``akima`` or ``cubic``, the VCEG-M33
polynomial) over the interval where both curves overlap. Curves whose overlap (in quality for BD-rate, in
log-rate for BD-quality) covers less than 75 % of the shorter curve's range give no value but a
stated reason, never an extrapolation; fewer than 4 points give a warning.

Two aggregations: ``mean-curve`` (BD between the curves of per-quality means, CompressAI style)
and ``per-image`` (BD per image, then the mean over images, JPEG AI CTC style).

``table.bd_table`` is the tidy table of all of them, with how sure each value is (see ``stats``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd

from ..metrics import METRICS, ms_ssim_db
from ..model import BDResult, Curve
from .compressai_json import read_result_file

METHODS = ("pchip", "akima", "cubic")
AGGREGATIONS = ("mean-curve", "per-image")
MIN_OVERLAP = 0.75
MIN_POINTS = 4
BOOTSTRAP = 10_000  # resamples for intervals and sign flips for p


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the intersection of two value ranges over the length of the shorter range.

    BD averages over the intersection; this says how much of the shorter curve it covers.
    """
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    shorter = min(a.max() - a.min(), b.max() - b.min())
    return max(hi - lo, 0.0) / shorter if shorter > 0 else 0.0


def _clean(curve: Curve, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Finite points with positive rate, quality oriented so that higher is better."""
    rate, quality = np.asarray(curve.bpp, float), np.asarray(curve.values, float)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    note = "" if keep.all() else f"{(~keep).sum()} non-finite point(s) of {curve.label} ignored"
    quality = quality if higher_is_better else -quality
    return rate[keep], quality[keep], note


def _bd(anchor: Curve, test: Curve, method: str, higher_is_better: bool, kind: str) -> BDResult:
    rate_a, q_a, note_a = _clean(anchor, higher_is_better)
    rate_t, q_t, note_t = _clean(test, higher_is_better)
    notes = [n for n in (note_a, note_t) if n]
    n_min = min(len(rate_a), len(rate_t))
    if n_min < 2 or (method == "cubic" and n_min < 4):
        return BDResult(None, "; ".join([*notes, f"too few points ({n_min}) for {method} interpolation"]))
    if kind == "rate":  # equal quality: overlap along the quality axis
        overlap = overlap_fraction(q_a, q_t)
        axis = "quality"
    else:
        overlap = overlap_fraction(np.log10(rate_a), np.log10(rate_t))
        axis = "rate"
    if overlap < MIN_OVERLAP:
        return BDResult(None, "; ".join([*notes, f"{axis} overlap {overlap * 100:.0f} % < {MIN_OVERLAP * 100:.0f} %"]))
    if n_min < MIN_POINTS:
        notes.append(f"only {n_min} points: unreliable")
    func = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = func(*_sorted(rate_a, q_a, kind), *_sorted(rate_t, q_t, kind), method,
                         require_matching_points=False, min_overlap=0)
        except ValueError as exc:
            return BDResult(None, "; ".join([*notes, f"not computable: {exc}"]))
    if not math.isfinite(value):
        return BDResult(None, "; ".join([*notes, "not computable (non-monotone curve?)"]))
    return BDResult(float(value), "; ".join(notes))


def _sorted(rate: np.ndarray, quality: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted along the interpolation axis (quality for BD-rate, rate for BD-quality).

    Points repeating a value of that axis (e.g. two settings giving the same bitstream) are
    dropped: interpolation needs strictly increasing values.
    """
    _, first = np.unique(quality if kind == "rate" else rate, return_index=True)
    return rate[first], quality[first]


def bd_rate(anchor: Curve, test: Curve, method: str = "pchip", higher_is_better: bool = True) -> BDResult:
    """BD-rate of ``test`` against ``anchor`` in % (negative = fewer bits at equal quality)."""
    return _bd(anchor, test, method, higher_is_better, "rate")


def bd_quality(anchor: Curve, test: Curve, method: str = "pchip", higher_is_better: bool = True) -> BDResult:
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
    file = read_result_file(path)
    results = file.results
    try:
        bpp = np.asarray(results["bpp"], float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a CompressAI-format result file ({type(exc).__name__}: {exc})") from None
    label = f"{file.name} (published)"
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
