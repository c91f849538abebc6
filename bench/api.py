"""Python API for notebooks: stored results as pandas DataFrames, RD curves and BD-rates.

    import bench
    r = bench.load("results/kodak")          # reads the store only; never encodes
    r.summary.query("codec == 'webp'")        # tidy tables
    r.bd.query("metric == 'psnr-rgb' and method == 'pchip'")
    bench.bd_rate(r.curves("psnr-rgb")["jpeg"], r.curves("psnr-rgb")["webp"])   # % bits, < 0 = saving
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis
from .analysis.table import bd_table
from .errors import BenchError
from .metrics import METRICS
from .model import Curve
from .store import open_results
from .store.export import per_image_frame, summary_frame


class ResultsError(BenchError):
    """A results folder cannot be loaded."""


@dataclass
class Results:
    """Stored results of one results folder.

    - ``per_image``: one row per image × codec configuration × quality of the sweeps: ``dataset,
      image, image_hash, codec`` (label), ``codec_name, family, options`` (JSON), ``version, quality,
      width, height, bytes, bpp, encode_s, decode_s`` (wall seconds; NaN = not measured, e.g. published
      bitstreams), ``device`` and one column per
      metric (``psnr-rgb`` in dB, ...).
    - ``summary``: arithmetic means over images per ``codec, family, quality`` with ``n_images``
      (``ms-ssim-db`` there is that of the mean MS-SSIM).
    - ``bd``: ``codec, anchor, metric, method, aggregation, kind, value, unit, source, note`` against
      ``anchor`` (see ``analysis.table.bd_table``); computed on first access.
    """

    directory: Path
    dataset: str
    n_images: int
    per_image: pd.DataFrame
    summary: pd.DataFrame
    anchor: str = "jpeg"
    references: list[dict[str, Curve]] = field(default_factory=list)

    @property
    def codecs(self) -> list[str]:
        return sorted(set(self.per_image["codec"]))

    @property
    def metrics(self) -> list[str]:
        return [m for m in METRICS if m in self.per_image.columns]

    @cached_property
    def bd(self) -> pd.DataFrame:
        if self.anchor not in self.curves(analysis.bd_metrics(self.per_image.columns)[0]):
            raise ResultsError(f"anchor {self.anchor!r} not among the curves ({', '.join(self.codecs)}); "
                               "load(..., anchor=...) chooses another")
        return bd_table(self.per_image, self.summary, self.n_images, self.anchor, self.references)

    def curves(self, metric: str = "psnr-rgb") -> dict[str, Curve]:
        """label -> mean RD curve (bpp, metric) of each codec, and of the published references."""
        if metric not in self.summary.columns:
            raise ResultsError(f"metric {metric!r} not measured in {self.directory} ({', '.join(self.metrics)})")
        out = analysis.mean_curves(self.summary, metric, self.n_images)
        out.update({r[metric].label: r[metric] for r in self.references if metric in r})
        return out

    def bd_rate(self, anchor: str, test: str, metric: str = "psnr-rgb", method: str = "pchip") -> float:
        """BD-rate (%) of codec ``test`` against codec ``anchor`` on the mean curves."""
        curves = self.curves(metric)
        for name in (anchor, test):
            if name not in curves:
                raise ResultsError(f"no {metric} curve named {name!r} (curves: {', '.join(curves)})")
        return bd_rate(curves[anchor], curves[test], metric=metric, method=method)


def load(directory: str | Path, anchor: str = "jpeg", references: Sequence[str | Path] = ()) -> Results:
    """Results of the run stored in ``directory`` (its ``results.sqlite``); reads, never encodes.

    ``references``: CompressAI-format JSON files added as published curves (as ``report --reference``).
    """
    directory = Path(directory)
    with open_results(directory, ResultsError) as (store, dataset):
        per_image = per_image_frame(store, dataset)
        n_images = store.image_count(dataset)
    try:
        refs = [analysis.load_reference(p) for p in references]
    except ValueError as exc:
        raise ResultsError(str(exc)) from None
    return Results(directory, dataset, n_images, per_image, summary_frame(per_image), anchor, refs)


def _as_curve(curve, metric: str, name: str) -> Curve:
    """A Curve from a Curve, a DataFrame with ``bpp`` and ``metric`` columns, or a (bpp, values) pair."""
    if isinstance(curve, Curve):
        return curve
    if isinstance(curve, pd.DataFrame):
        if "bpp" not in curve or metric not in curve:
            raise ResultsError(f"{name}: a DataFrame needs 'bpp' and {metric!r} columns")
        return Curve(name, curve["bpp"].to_numpy(float), curve[metric].to_numpy(float))
    bpp, values = curve
    return Curve(name, np.asarray(bpp, float), np.asarray(values, float))


def bd_rate(anchor, test, metric: str = "psnr-rgb", method: str = "pchip") -> float:
    """BD-rate in % of ``test`` against ``anchor`` (negative = fewer bits at equal quality).

    Each curve is a ``model.Curve`` (e.g. from ``Results.curves``), a DataFrame with ``bpp``
    and ``metric`` columns (e.g. rows of ``Results.summary``) or a ``(bpp, values)`` pair. The
    metric's direction (``gmsd``: lower is better) is respected. Raises ``ValueError`` with the
    reason when there is no value (too little overlap, too few points).
    """
    if method not in analysis.METHODS:
        raise ValueError(f"unknown method {method!r} (choose from {', '.join(analysis.METHODS)})")
    info = METRICS.get(metric)
    delta = analysis.bd_rate(_as_curve(anchor, metric, "anchor"), _as_curve(test, metric, "test"), method,
                             info.higher_is_better if info else True)
    if delta.value is None:
        raise ValueError(f"no BD-rate: {delta.note}")
    return delta.value
