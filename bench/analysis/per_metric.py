"""BD-rate per metric, as JPEG AI reports it: one BD-rate per codec and metric against an anchor
(per image, then averaged over images: JPEG AI CTC style), each with its 95 % interval, and the
average over a set of metrics with an interval from resampling the images jointly for all metrics.

``per_metric_set`` chooses the metrics (the JPEG AI CTC set where stored, else every stored metric),
``per_metric_bd`` computes the tidy table from per-image results only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .. import metrics as metric_registry
from ..metrics import METRICS
from . import BOOTSTRAP, bd_metrics, bd_rate, image_curves, stats
from .table import ImageValues, per_image_interval, per_image_values

AVERAGE = "average"  # the metric name of each codec's row "average over metrics"
COLUMNS = ["codec", "anchor", "metric", "bd_rate_pct", "ci_low", "ci_high", "in_average", "method", "n_images",
           "note"]


def choose_metric_set(stored: Iterable[str], ctc: Sequence[str], ctc_averaged: Sequence[str]) -> tuple[list[str],
                                                                                                     list[str]]:
    """(columns, averaged): the metrics of ``ctc`` that are stored (in ``ctc``'s order) when any are, else
    every stored metric in registry order (raw MS-SSIM left out: it is compared in dB, as ``ms-ssim-db``);
    averaged: the columns in ``ctc_averaged`` when any are, else every column."""
    present = {m for m in stored if not metric_registry.is_task_metric(m)}  # machine tasks have their own section
    columns = [m for m in ctc if m in present and m in METRICS] or bd_metrics(present)
    return columns, [m for m in columns if m in ctc_averaged] or list(columns)


def per_metric_set(stored: Iterable[str]) -> tuple[list[str], list[str]]:
    """(columns, averaged) of the per-metric table for the ``stored`` metrics (``choose_metric_set`` with the
    JPEG AI CTC sets ``bench.metrics.CTC_METRICS`` and ``CTC_AVERAGED``)."""
    return choose_metric_set(stored, metric_registry.CTC_METRICS, metric_registry.CTC_AVERAGED)


def stored_metrics(per_image: pd.DataFrame) -> list[str]:
    """Metrics of the registry with at least one finite value in ``per_image``, in registry order."""
    return [m for m in METRICS if m in per_image.columns and np.isfinite(per_image[m].to_numpy(float)).any()]


def per_metric_bd(per_image: pd.DataFrame, anchor: str, metrics: Sequence[str], averaged: Sequence[str],
                  method: str = "pchip", bootstrap: int = BOOTSTRAP) -> pd.DataFrame:
    """Tidy table: per codec (all measured codecs but ``anchor``) one row per metric of ``metrics`` and a
    row ``metric == "average"``.

    bd_rate_pct: the mean over images of the per-image BD-rates (``method`` interpolation, equal quality,
    lower-is-better metrics oriented as in ``bd_rate``), exactly ``table.bd_table``'s ``per-image``
    ``bd-rate`` value; ci_low/ci_high: its 95 % interval (the same), in_average: whether the metric enters
    the average. The average is the mean of the row's BD-rates over ``averaged``; its interval resamples
    the images jointly for all those metrics (``average_interval``). Empty when the anchor has no
    per-image data (a published curve).
    """
    if anchor not in set(per_image["codec"]) or not metrics:
        return pd.DataFrame(columns=COLUMNS)
    values = {metric: _image_values(per_image, anchor, metric, method) for metric in metrics}
    rows = []
    for codec in sorted(set(per_image["codec"]) - {anchor}):
        common = {"codec": codec, "anchor": anchor, "method": method}
        for metric in metrics:
            rows.append({**common, **_metric_cell(values[metric][codec], bootstrap), "metric": metric,
                         "in_average": metric in averaged})
        by_metric = {metric: values[metric][codec] for metric in averaged}
        rows.append({**common, **_average_cell(by_metric, bootstrap), "metric": AVERAGE, "in_average": None})
    return pd.DataFrame(rows, columns=COLUMNS)


def _image_values(per_image: pd.DataFrame, anchor: str, metric: str, method: str) -> dict[str, ImageValues]:
    """codec -> its per-image BD-rates against ``anchor`` on ``metric``."""
    curves = image_curves(per_image, metric)
    higher = METRICS[metric].higher_is_better
    return {codec: per_image_values(curves, anchor, codec, method, higher, bd_rate) for codec in curves}


def _metric_cell(images: ImageValues, bootstrap: int) -> dict:
    delta = images.mean_delta()
    value = math.nan if delta.value is None else delta.value
    return {"bd_rate_pct": value, **per_image_interval(images, delta, bootstrap), "n_images": len(images.values),
            "note": delta.note}


def _average_cell(by_metric: dict[str, ImageValues], bootstrap: int) -> dict:
    """Mean of the per-metric BD-rates and its joint interval; no value when a metric has none."""
    means = {metric: images.mean_delta().value for metric, images in by_metric.items()}
    lacking = [metric for metric, value in means.items() if value is None]
    if lacking:
        return {"bd_rate_pct": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_images": 0,
                "note": f"no average: no BD-rate for {', '.join(lacking)}"}
    images = sorted({i for v in by_metric.values() for i in [*v.values, *v.missing]})
    matrix = np.array([[v.values.get(i, math.nan) for v in by_metric.values()] for i in images], float)
    low, high, note = average_interval(matrix, bootstrap)
    return {"bd_rate_pct": float(np.mean([v for v in means.values() if v is not None])), "ci_low": low,
            "ci_high": high, "n_images": len(images), "note": note}


def average_interval(values: np.ndarray, bootstrap: int) -> tuple[float, float, str]:
    """95 % interval of the average over metrics (columns) of the per-metric mean over images (rows; NaN =
    no value for that image): each resample of the images (``stats.bootstrap_weights``, the same resample
    for every metric) gives each metric's mean over its resampled images with a value, then their mean;
    the expanded percentile interval of those averages. Returns (low, high, note)."""
    n = values.shape[0]
    if not bootstrap or n < 2:
        return math.nan, math.nan, ""
    weights = stats.bootstrap_weights(n, bootstrap)
    valid = np.isfinite(values).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.where(valid > 0, values, 0.0)) / (weights @ valid)  # resamples x metrics
    averages = means.mean(axis=1)
    finite = averages[np.isfinite(averages)]
    if finite.size < 0.5 * bootstrap:
        return math.nan, math.nan, f"no interval: {bootstrap - finite.size} of {bootstrap} resamples left a metric " \
                                   "without an image"
    low, high = stats.percentile_interval(finite, n)
    lost = bootstrap - finite.size
    return low, high, (f"interval over {finite.size} of {bootstrap} resamples (the others left a metric without an "
                       "image)" if lost else "")
