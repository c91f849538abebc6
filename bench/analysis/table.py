"""The tidy BD table (``bd_table``): one row per (codec, metric, method, aggregation, kind) against an
anchor, with how sure each value is (see ``stats``): a 95 % paired bootstrap interval over images,
the images where the codec wins, a sign-flip p-value with Holm's correction per table, and the
spread over the interpolation methods."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import METRICS
from ..model import BDResult, Curve
from . import (
    BOOTSTRAP,
    METHODS,
    MIN_OVERLAP,
    MIN_POINTS,
    bd_metrics,
    bd_quality,
    bd_rate,
    image_curves,
    mean_curves,
    stats,
)

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
                    images = per_image_values(per_img, anchor, label, method, info.higher_is_better, func)
                    comparison = _image_comparison(images, kind, bootstrap)
                    wins_note = comparison.pop("note")
                    interval, ci_note = _mean_curve_interval(matrices, anchor, label, metric, method, kind, mean_d,
                                                             bootstrap)
                    rows.append({**common, **comparison, **interval, "aggregation": "mean-curve",
                                 "value": mean_d.value, "note": _join(mean_d.note, wins_note, ci_note)})
                    per_d = images.mean_delta()
                    rows.append({**common, **comparison, **per_image_interval(images, per_d, bootstrap),
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


def per_image_values(per_img: dict[str, dict[str, Curve]], anchor: str, label: str, method: str,
                     higher_is_better: bool, func) -> ImageValues:
    """BD (``func``: ``bd_rate`` or ``bd_quality``) of ``label`` against ``anchor`` on each image both have
    (``per_img``: ``image_curves``' codec -> image -> curve); the reason where an image gives none."""
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
    (log10(1 + BD-rate/100)) for BD-rate, the BD-quality itself for BD-quality. A BD-rate of -100 %
    (10^d - 1 underflows for an extreme curve, e.g. a task score that collapses) gives -inf."""
    if kind != "bd-rate":
        return values
    with np.errstate(divide="ignore"):
        return np.log10(1 + values / 100)


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


def per_image_interval(images: ImageValues, delta: BDResult, bootstrap: int) -> dict:
    """Expanded percentile bootstrap interval (``ci_low``, ``ci_high``) of the mean of the per-image values."""
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
