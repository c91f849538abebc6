"""The report's RD and speed figures, per metric: static (rd_<metric>, speed_<metric> .png/.svg,
drawn by ``plots``) and interactive (Plotly JSON for report.html, from ``interactive``), with the
hover text of every point and each image's own RD figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..analysis import mean_curves
from ..model import Curve
from .inputs import Basis
from .interactive import colours, hover_texts, rd_figure_json, speed_figure_json
from .plots import rd_figure, save_figure, speed_figure
from .summary import legend_bd, speed_points

HoverCurves = list[tuple[Curve, list[str]]]  # a mean curve and the hover text of each of its points


@dataclass
class Figures:
    """Per metric: the RD figure (PNG), the speed figure where there are speed points, their Plotly JSON."""

    rd_plots: list[tuple[str, Path]] = field(default_factory=list)  # (metric, PNG)
    speed_plots: list[tuple[str, Path]] = field(default_factory=list)  # (speed_<metric>, PNG)
    rd_curves: dict[str, HoverCurves] = field(default_factory=dict)
    rd: dict[str, dict] = field(default_factory=dict)
    per_image: dict[str, dict] = field(default_factory=dict)
    speed: dict[str, dict] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def hover_curves(summary: pd.DataFrame, metric: str, n_images: int,
                 refs: list[dict[str, Curve]], options: dict[str, str]) -> HoverCurves:
    """Mean curves (measured, then published) with one hover text per point."""
    out = []
    curves = mean_curves(summary, metric, n_images)
    complete = summary[summary["n_images"] == n_images]
    for label, curve in curves.items():
        rows = complete[complete["codec"] == label].sort_values("bpp")
        texts = hover_texts(label, options.get(label, ""), list(rows["quality"]), list(rows["bpp"]),
                            list(rows[metric]), metric, list(rows["n_images"]))
        out.append((curve, texts))
    for ref in refs:
        if metric in ref:
            c = ref[metric]
            out.append((c, hover_texts(c.label, "", [None] * len(c.bpp), list(c.bpp), list(c.values), metric,
                                       [0] * len(c.bpp))))
    return out


def image_figures(per_image: pd.DataFrame, metric: str, families: dict[str, str], palette: dict[str, str],
                  anchor: str, options: dict[str, str]) -> dict[str, dict]:
    """image -> Plotly figure of that image's RD points, one trace per codec."""
    figures = {}
    for image, g in per_image.groupby("image", sort=True):
        curves = []
        for label, rows in g.groupby("codec", sort=True):
            rows = rows.sort_values("bpp")
            curve = Curve(label, rows["bpp"].to_numpy(float), rows[metric].to_numpy(float))
            curves.append((curve, hover_texts(label, options.get(label, ""), list(rows["quality"]), list(rows["bpp"]),
                                              list(rows[metric]), metric, [1] * len(rows))))
        figures[image] = rd_figure_json(curves, families, palette, metric, f"{image}: {metric}", anchor, {})
    return figures


def _rd(basis: Basis, metric: str, palette: dict[str, str], figures: Figures) -> list[Path]:
    """The RD figure of one metric (mean curves, BD-rate in the legend) and its per-image figures."""
    stored, request = basis.stored, basis.request
    families, anchor = stored.families, request.anchor
    legend = legend_bd(basis.table, metric, request.method)
    curves = figures.rd_curves[metric] = hover_curves(stored.summary, metric, stored.n_images, request.refs,
                                                      basis.options)
    title = f"{stored.dataset} ({stored.n_images} images): {metric}"
    paths = save_figure(rd_figure([c for c, _ in curves], families, metric, title, anchor, legend),
                        stored.out / f"rd_{metric}")
    figures.rd_plots.append((metric, paths[0]))
    figures.rd[metric] = rd_figure_json(curves, families, palette, metric,
                                        f"{title}; anchor {anchor}, BD-rate ({request.method}) in the legend", anchor,
                                        legend)
    figures.per_image[metric] = image_figures(stored.per_image, metric, families, palette, anchor, basis.options)
    return paths


def _speed(basis: Basis, metric: str, palette: dict[str, str], figures: Figures) -> list[Path]:
    """BD-rate against encode/decode time for one metric; no figure (and []) without speed points."""
    stored, anchor = basis.stored, basis.request.anchor
    points = speed_points(stored.per_image, stored.codecs, basis.table, metric, basis.request.method, anchor)
    if not len(points):
        return []
    title = f"{stored.dataset}: BD-rate ({metric}) vs {anchor} against speed; host {basis.host}"
    paths = save_figure(speed_figure(points, metric, anchor, title), stored.out / f"speed_{metric}")
    figures.speed_plots.append((f"speed_{metric}", paths[0]))
    figures.speed[metric] = speed_figure_json(points, metric, anchor, title, palette)
    return paths


def rd_and_speed_figures(basis: Basis) -> Figures:
    """Every metric's RD and speed figures, saved beside the report and as Plotly JSON."""
    figures = Figures()
    palette = colours(basis.labels)
    for metric in basis.metrics:
        rd_paths = _rd(basis, metric, palette, figures)
        figures.written += _speed(basis, metric, palette, figures) + rd_paths
    return figures
