"""Bjøntegaard deltas between RD curves, from stored results only.

The analysis layer reads stored results only (never encodes); its modules: this one (BD-rate, curves),
``stats`` (bootstrap confidence intervals, Wilcoxon), ``fairness`` (off-target and chroma checks),
``compressai_json`` (the one reader of CompressAI-format result files) and ``cross_device`` (the
cross-device decode table).

BD-rate: average bit-rate difference in % at equal quality (negative = saving), BD-quality:
average quality difference at equal rate (in the metric's unit), both computed with the
``bjontegaard`` package (interpolation ``pchip``, ``akima`` or ``cubic``, the VCEG-M33
polynomial) over the interval where both curves overlap. Curves whose overlap (in quality for BD-rate, in
log-rate for BD-quality) covers less than 75 % of the shorter curve's range give no value but a
stated reason, never an extrapolation; fewer than 4 points give a warning.

Two aggregations: ``mean-curve`` (BD between the curves of per-quality means, CompressAI style)
and ``per-image`` (BD per image, then the mean over images, JPEG AI CTC style).

``bd_table`` adds how sure each value is (see ``stats``): a 95 % paired bootstrap interval over
images, the images where the codec wins, a sign-flip p-value with Holm's correction per table,
and the spread over the interpolation methods.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd

from ..metrics import METRICS, ms_ssim_db
from ..model import BDResult, Curve
from . import stats
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


COLUMNS = ["codec", "anchor", "metric", "method", "aggregation", "kind", "value", "unit", "source", "note",
           "ci_low", "ci_high", "wins", "p", "p_holm", "spread", "no_value_images"]
NO_IMAGES = "published curve: no per-image data, so no interval, wins or p"


def bd_table(
    per_image: pd.DataFrame,
    summary: pd.DataFrame,
    n_images: int,
    anchor: str,
    references: list[dict[str, Curve]] | None = None,
    methods: tuple[str, ...] = METHODS,
    bootstrap: int = BOOTSTRAP,
) -> pd.DataFrame:
    """Tidy BD table with uncertainty over images, one row per (codec, metric, method, aggregation, kind).

    Columns: codec, anchor, metric, method, aggregation, kind, value, unit, source, note, then
    ci_low/ci_high (95 % expanded percentile bootstrap over images, ``bootstrap`` resamples, seed
    ``stats.SEED``; 0 = none), wins ("k/n" images where the codec is better), p (paired
    sign-flip test on per-image differences), p_holm (Holm over each (method, aggregation, kind)
    table), spread (max - min over the interpolation methods) and no_value_images.
    """
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
        matrices = image_matrices(per_image, metric)
        for label, curve in curves.items():
            if label == anchor:
                continue
            source = "published" if curve.published else "measured"
            for method in methods:
                for kind, func, unit in (("bd-rate", bd_rate, "%"), ("bd-quality", bd_quality, info.unit)):
                    common = {"codec": label, "anchor": anchor, "metric": metric, "method": method, "kind": kind,
                              "unit": unit, "source": source}
                    mean_d = func(curves[anchor], curve, method, info.higher_is_better)
                    images = _per_image_values(per_img, anchor, label, method, info.higher_is_better, func)
                    comparison = _image_comparison(images, kind, bootstrap)
                    wins_note = comparison.pop("note")
                    interval, ci_note = _mean_curve_interval(matrices, anchor, label, metric, method, kind, mean_d,
                                                             bootstrap)
                    rows.append({**common, **comparison, **interval, "aggregation": "mean-curve",
                                 "value": mean_d.value, "note": _join(mean_d.note, wins_note, ci_note)})
                    per_d = images.mean_delta()
                    rows.append({**common, **comparison, **_per_image_interval(images, per_d, bootstrap),
                                 "aggregation": "per-image", "value": per_d.value, "note": per_d.note})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return _add_spread_and_holm(table)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# --- per-image BD values ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImageValues:
    """Per-image BD values of one (codec, metric, method, kind), and the images without one."""

    values: dict[str, float]
    missing: dict[str, str]  # image -> reason
    unavailable: str = ""  # why there is no per-image data at all

    def no_value_images(self) -> str:
        return "; ".join(f"{image} ({reason})" for image, reason in sorted(self.missing.items()))

    def mean_delta(self) -> BDResult:
        if self.unavailable:
            return BDResult(None, self.unavailable)
        total = len(self.values) + len(self.missing)
        if not self.values:
            reasons = list(self.missing.values())
            # the most frequent reason; a tie goes to the first image's (not to set order, which
            # changes with PYTHONHASHSEED and made rebuilt reports differ)
            common = max(reasons, key=reasons.count) if reasons else "no common images"
            return BDResult(None, f"no image gave a value ({common})")
        note = ""
        if self.missing:
            note = f"mean over {len(self.values)} of {total} images; no value for {self.no_value_images()}"
        return BDResult(float(np.mean(list(self.values.values()))), note)


def _per_image_values(per_img: dict[str, dict[str, Curve]], anchor: str, label: str, method: str,
                      higher_is_better: bool, func) -> ImageValues:
    if label not in per_img or anchor not in per_img:
        return ImageValues({}, {}, NO_IMAGES if label not in per_img else "anchor has no per-image data")
    images = [image for image in per_img[label] if image in per_img[anchor]]
    pairs = [(per_img[anchor][image], per_img[label][image]) for image in images]
    values, missing = {}, {}
    fast = _batch_values(pairs, method, higher_is_better, "rate" if func is bd_rate else "quality")
    for image, (anchor_curve, test), value in zip(images, pairs, fast, strict=True):
        if not np.isnan(value):
            values[image] = float(value)
            continue
        d = func(anchor_curve, test, method, higher_is_better)  # the package; gives the reason
        if d.value is None:
            missing[image] = d.note
        else:
            values[image] = d.value
    return ImageValues(values, missing)


def _batch_values(pairs: list[tuple[Curve, Curve]], method: str, higher_is_better: bool, kind: str) -> np.ndarray:
    """BD of many (anchor, test) curve pairs at once with stats.bd_batch where every curve has the
    same number of clean points (at least MIN_POINTS) and the overlap is enough; NaN elsewhere,
    for the package path to compute or explain."""
    out = np.full(len(pairs), np.nan)
    if not pairs:
        return out
    sizes = {(len(a.bpp), len(t.bpp)) for a, t in pairs}
    if len(sizes) != 1 or min(next(iter(sizes))) < MIN_POINTS:
        return out
    arrays = [np.array([getattr(c, f) for c in curves], float)
              for curves in zip(*pairs, strict=True) for f in ("bpp", "values")]
    clean = np.ones(len(pairs), bool)
    for rate, quality in (arrays[:2], arrays[2:]):
        clean &= (np.isfinite(rate) & (rate > 0) & np.isfinite(quality)).all(axis=1)
    if not clean.any():
        return out
    rate_a, q_a, rate_t, q_t = (a[clean] for a in arrays)
    sign = 1 if higher_is_better else -1
    with np.errstate(all="ignore"):
        values, overlap = stats.bd_batch(rate_a, sign * q_a, rate_t, sign * q_t, method, kind)
    out[clean] = np.where(overlap >= MIN_OVERLAP, values, np.nan)
    return out


def image_differences(values: np.ndarray, kind: str) -> np.ndarray:
    """Per-image differences the sign-flip test uses: mean log10-rate difference at equal quality
    (log10(1 + BD-rate/100)) for BD-rate, the BD-quality itself for BD-quality."""
    return np.log10(1 + values / 100) if kind == "bd-rate" else values


def _image_comparison(images: ImageValues, kind: str, bootstrap: int) -> dict:
    """wins, p and the images without a value (shared by both aggregations)."""
    if images.unavailable:
        return {"wins": None, "p": np.nan, "no_value_images": "", "note": images.unavailable}
    values = np.array(list(images.values.values()), float)
    better = values < 0 if kind == "bd-rate" else values > 0
    p = stats.sign_flip_p(image_differences(values, kind), bootstrap) if bootstrap and values.size else np.nan
    note = ""
    if images.missing:
        note = (f"wins and p over {len(values)} of {len(values) + len(images.missing)} images; "
                f"no per-image value for {', '.join(sorted(images.missing))}")
    return {"wins": f"{int(better.sum())}/{values.size}", "p": p, "no_value_images": images.no_value_images(),
            "note": note}


def _per_image_interval(images: ImageValues, delta: BDResult, bootstrap: int) -> dict:
    """Percentile bootstrap interval of the mean of the per-image values."""
    if delta.value is None or not bootstrap or len(images.values) < 2:
        return {"ci_low": np.nan, "ci_high": np.nan}
    values = np.array(list(images.values.values()), float)
    means = stats.bootstrap_weights(len(values), bootstrap) @ values
    low, high = stats.percentile_interval(means, len(values))
    return {"ci_low": low, "ci_high": high}


# --- mean-curve bootstrap --------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # hashed by identity (lru_cache key)
class Matrices:
    """One codec's per-image results for one metric: images x quality settings."""

    images: list[str]
    bpp: np.ndarray
    source: np.ndarray  # values averaged over images (MS-SSIM for ms-ssim-db)


def image_matrices(per_image: pd.DataFrame, metric: str) -> dict[str, Matrices]:
    """codec -> images x qualities matrices of bpp and of the averaged metric, only qualities with a
    finite value on every image (those of the mean curve)."""
    source = "ms-ssim-rgb" if metric == "ms-ssim-db" and "ms-ssim-rgb" in per_image.columns else metric
    out = {}
    for label, rows in per_image.groupby("codec", sort=True):
        bpp = rows.pivot_table(index="image", columns="quality", values="bpp", aggfunc="first", dropna=False)
        src = rows.pivot_table(index="image", columns="quality", values=source, aggfunc="first", dropna=False)
        src = src.reindex(index=bpp.index, columns=bpp.columns)
        b, v = bpp.to_numpy(float), src.to_numpy(float)
        keep = (np.isfinite(b) & (b > 0) & np.isfinite(v)).all(axis=0)
        out[label] = Matrices(list(bpp.index), b[:, keep], v[:, keep])
    return out


def _metric_of_means(metric: str, means: np.ndarray) -> np.ndarray:
    """Mean-curve metric values from resampled means (ms-ssim-db of the mean MS-SSIM)."""
    if metric != "ms-ssim-db":
        return means
    with np.errstate(divide="ignore"):
        return -10 * np.log10(1 - means)


@functools.lru_cache(maxsize=4)
def _resampled_mean_curves(a: Matrices, t: Matrices, images: tuple[str, ...], metric: str,
                           bootstrap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Anchor bpp, anchor quality, test bpp, test quality (oriented: higher is better) of the mean
    curves of every resample of ``images``: resamples x quality points each. Cached: shared by
    the methods and kinds of one (codec, metric)."""
    higher = METRICS[metric].higher_is_better
    weights = stats.bootstrap_weights(len(images), bootstrap)
    curves = []
    for m in (a, t):
        rows = [m.images.index(i) for i in images]
        with np.errstate(divide="ignore"):
            keep = np.isfinite(_metric_of_means(metric, m.source[rows].mean(axis=0)))  # as the mean curve
            quality = _metric_of_means(metric, weights @ m.source[rows][:, keep])
        curves += [weights @ m.bpp[rows][:, keep], quality if higher else -quality]
    rate_a, q_a, rate_t, q_t = curves
    return rate_a, q_a, rate_t, q_t


def _mean_curve_interval(matrices: dict[str, Matrices], anchor: str, label: str, metric: str, method: str,
                         kind: str, delta: BDResult, bootstrap: int) -> tuple[dict, str]:
    """Percentile bootstrap interval of the mean-curve BD: resample images, recompute both mean
    curves, recompute BD (vectorised, see stats.bd_batch). Returns (ci columns, note)."""
    none = {"ci_low": np.nan, "ci_high": np.nan}
    if delta.value is None or not bootstrap or anchor not in matrices or label not in matrices:
        return none, ""
    images = sorted(set(matrices[anchor].images) & set(matrices[label].images))
    if len(images) < 2:
        return none, "fewer than 2 common images: no interval"
    curves = _resampled_mean_curves(matrices[anchor], matrices[label], tuple(images), metric, bootstrap)
    finite_inputs = np.isfinite(curves[1]).all(axis=1) & np.isfinite(curves[3]).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        values, overlap = stats.bd_batch(*curves, method, "rate" if kind == "bd-rate" else "quality")
    usable = (overlap >= MIN_OVERLAP) & finite_inputs
    values = np.where(usable, values, np.nan)
    func = bd_rate if kind == "bd-rate" else bd_quality
    for row in np.flatnonzero(np.isnan(values) & usable):  # repeated points: the package path drops them
        d = func(Curve(anchor, curves[0][row], curves[1][row]), Curve(label, curves[2][row], curves[3][row]), method)
        values[row] = np.nan if d.value is None else d.value
    finite = values[np.isfinite(values)]
    lost = bootstrap - finite.size
    if finite.size < 0.5 * bootstrap:
        return none, f"no interval: {lost} of {bootstrap} resamples gave no value"
    low, high = stats.percentile_interval(finite, len(images))
    return {"ci_low": low, "ci_high": high}, (f"interval over {finite.size} of {bootstrap} resamples "
                                              f"(the others gave no value)" if lost else "")


def _add_spread_and_holm(table: pd.DataFrame) -> pd.DataFrame:
    """spread: max - min over interpolation methods of each cell; p_holm: Holm within each
    (anchor, method, aggregation, kind) table."""
    if table.empty:
        return table
    cell = ["codec", "anchor", "metric", "aggregation", "kind"]
    values = table["value"].astype(float)
    grouped = values.groupby([table[c] for c in cell])
    counts = grouped.transform("count")
    table["spread"] = (grouped.transform("max") - grouped.transform("min")).where(counts >= 2)
    family = ["anchor", "method", "aggregation", "kind"]
    table["p_holm"] = table.groupby(family, sort=False)["p"].transform(lambda p: stats.holm(p.to_numpy(float)))
    return table
