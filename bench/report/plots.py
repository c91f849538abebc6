"""Static figures (PNG and SVG, for papers): RD curves and speed against coding efficiency.

RD: one figure per metric, bpp on x, quality on y, full range and a 0-2 bpp zoom; each legend
entry carries the codec's BD-rate against the anchor. Per metric: small multiples, one panel per
metric of the BD-rate-per-metric table. Speed: BD-rate against encode
and decode time per megapixel (log scale, one panel), and for learned codecs against kMAC per pixel.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ..atomic import atomic_path
from ..metrics import METRICS
from ..model import Curve

ZOOM_MAX_BPP = 2.0
LINESTYLES = {"conventional": "--", "learned": "-"}
TIMELINE_CAP = 150.0  # % BD-rate: the timeline's y axis ends here; points above sit on it, labelled with their value
METRIC_LABELS = {"ms-ssim-db": "MS-SSIM (dB) = −10·log10(1 − MS-SSIM)"}

plt.rcParams["svg.hashsalt"] = "codec-bench"  # deterministic SVG ids


def axis_label(metric: str) -> str:
    info = METRICS.get(metric)
    unit = f" ({info.unit})" if info and info.unit else ""
    return METRIC_LABELS.get(metric, f"{metric.upper()}{unit}")


def legend_label(label: str, anchor: str | None, bd: dict[str, str] | None) -> str:
    """``label`` plus ``(anchor)`` or its BD-rate text against the anchor, e.g. ``webp: BD-rate −25.3 %``."""
    if label == anchor:
        return f"{label} (anchor)"
    if bd is not None and label in bd:
        return f"{label}: BD-rate {bd[label]}"
    return label


def rd_figure(curves: list[Curve], families: dict[str, str], metric: str, title: str,
              anchor: str | None = None, bd: dict[str, str] | None = None) -> Figure:
    """Two panels (all rates; 0-2 bpp) with one line per codec.

    Conventional codecs are dashed, learned codecs solid, published reference curves dotted
    with hollow markers and labelled "(published)"; the anchor is drawn thicker. ``bd`` maps a
    label to its BD-rate text against ``anchor``, shown in the legend.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    colours = matplotlib.color_sequences["tab10"]  # the tab10 colormap's colours, typed as a list
    for i, curve in enumerate(curves):
        order = curve.bpp.argsort()
        style: dict[str, Any] = dict(color=colours[i % len(colours)], label=legend_label(curve.label, anchor, bd),
                                     linewidth=3.0 if curve.label == anchor else 1.6, markersize=4.5)
        if curve.published:
            style.update(linestyle=":", marker="s", markerfacecolor="none")
        else:
            style.update(linestyle=LINESTYLES.get(families.get(curve.label, ""), "-."), marker="o")
        for ax in axes:
            ax.plot(curve.bpp[order], curve.values[order], **style)
    zoomed = [c for c in curves if (c.bpp <= ZOOM_MAX_BPP).any()]
    for ax, name in zip(axes, ("all rates", f"zoom: 0–{ZOOM_MAX_BPP:g} bpp"), strict=True):
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel(axis_label(metric))
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[1].set_xlim(0, ZOOM_MAX_BPP)
    y_range = zoom_range(zoomed)
    if y_range:
        axes[1].set_ylim(*y_range)
    axes[0].set_xlim(left=0)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return fig


def per_metric_figure(panels: list[tuple[str, list[Curve]]], families: dict[str, str], anchor: str,
                      title: str, ncols: int = 3) -> Figure:
    """Small multiples: one panel per (metric, curves), bpp on x, the metric on y, one line per codec in the
    same colour on every panel, the anchor thick and black; lower-is-better metrics on an inverted y axis,
    so that up is better on every panel. One legend for the figure."""
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.3 * nrows + 0.9), layout="constrained",
                             squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    labels = sorted({c.label for _, curves in panels for c in curves})
    colours = matplotlib.color_sequences["tab10"]
    colour = {label: colours[i % len(colours)] for i, label in enumerate(x for x in labels if x != anchor)}
    for ax, (metric, curves) in zip(axes, panels, strict=False):
        for curve in curves:
            order = curve.bpp.argsort()
            is_anchor = curve.label == anchor
            ax.plot(curve.bpp[order], curve.values[order], marker="o", markersize=3,
                    color="black" if is_anchor else colour[curve.label], linewidth=2.8 if is_anchor else 1.4,
                    linestyle=LINESTYLES.get(families.get(curve.label, ""), "-."), zorder=3 if is_anchor else 2,
                    label=legend_label(curve.label, anchor, None))
        higher = METRICS[metric].higher_is_better if metric in METRICS else True
        if not higher:
            ax.invert_yaxis()
        ax.set_title(metric + ("" if higher else " (lower is better: axis inverted)"), fontsize=9)
        ax.set_xlabel("bits per pixel (bpp)", fontsize=8)
        ax.set_ylabel(axis_label(metric), fontsize=8)
        ax.set_xlim(left=0)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    entries: dict[str, Any] = {}  # one entry per codec, whichever panels it is on
    for ax in axes[:len(panels)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(name, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 6) or 1,
               fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def zoom_range(curves: list[Curve], max_bpp: float = ZOOM_MAX_BPP) -> tuple[float, float] | None:
    """Quality range (with 3 % padding) of the finite points at or below ``max_bpp``; None if there are none."""
    values = [q for c in curves for b, q in zip(c.bpp, c.values, strict=True)
              if b <= max_bpp and q == q and abs(q) != float("inf")]
    if not values:
        return None
    pad = 0.03 * (max(values) - min(values) or 1.0)
    return float(min(values) - pad), float(max(values) + pad)


def speed_figure(points: pd.DataFrame, metric: str, anchor: str, title: str) -> Figure:
    """BD-rate against encode and decode time per megapixel on one panel (s/MP, log x; encode filled,
    decode hollow, joined per codec); learned codecs also against kMAC/pixel.

    Each codec is labelled with its device; a codec without a measured encode time (published
    bitstreams) shows its decode time only. ``points``: ``summary.speed_points``'s rows (``codec``,
    ``family``, ``device``, ``bd_rate`` in %, ``encode_s_per_mp``, ``decode_s_per_mp``,
    ``encoder_kmac``, ``decoder_kmac``; NaN where unknown).
    """
    learned = points.dropna(subset=["encoder_kmac"])
    panels = 2 if not learned.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.8 + 4.6 * (panels - 1), 4.8), layout="constrained",
                             squeeze=False, sharey=True, width_ratios=[1.5, 1][:panels])
    axes = axes[0]
    ax = axes[0]
    for _, row in points.iterrows():
        colour = "C1" if row["family"] == "learned" else "C0"
        times = [(row[c], kind) for c, kind in (("encode_s_per_mp", "encode"), ("decode_s_per_mp", "decode"))
                 if pd.notna(row[c])]
        if len(times) == 2:
            ax.plot([t for t, _ in times], [row["bd_rate"]] * 2, color=colour, linewidth=0.8, alpha=0.6)
        for t, kind in times:
            ax.scatter(t, row["bd_rate"], s=40, color=colour, marker="o" if row["family"] == "learned" else "s",
                       facecolors=colour if kind == "encode" else "none")
        if times:
            note = "" if len(times) == 2 else " (decode only)"
            ax.annotate(f"{row['codec']} ({row['device']}){note}", (times[0][0], row["bd_rate"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per megapixel (log): filled = encode, hollow = decode")
    if panels == 2:
        ax = axes[1]
        for column, marker, name in (("encoder_kmac", "o", "encoder"), ("decoder_kmac", "x", "decoder")):
            ax.scatter(learned[column], learned["bd_rate"], marker=marker, color="C1", label=name)
            for _, row in learned.iterrows() if column == "encoder_kmac" else ():
                ax.annotate(row["codec"], (row[column], row["bd_rate"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.set_xlabel("kMAC per pixel (learned codecs)")
        ax.set_xlim(0, 1.25 * float(learned[["encoder_kmac", "decoder_kmac"]].max().max()))
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_ylabel(f"BD-rate vs {anchor} (%, {metric}); lower is better")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.grid(True, alpha=0.3, which="both")
    fig.suptitle("\n".join(textwrap.wrap(title, 60 + 50 * (panels - 1))), fontsize=10)
    return fig


def family_rd_figure(curves: list[tuple[Curve, str, str, str]], metric: str, title: str) -> Figure:
    """The Conventional vs End2End RD figure: ``curves`` = (curve, legend name, colour, family); the
    colour comes from the family (blues conventional, reds End2End), published curves are dashed with
    hollow markers, measured ones solid; the legend lists conventional codecs first."""
    fig, ax = plt.subplots(figsize=(9.5, 6.2), layout="constrained")
    for curve, name, colour, family in sorted(curves, key=lambda c: (c[3] != "conventional", c[1])):
        order = curve.bpp.argsort()
        style: dict[str, Any] = dict(color=colour, label=name, linewidth=1.6, markersize=4.5,
                                     marker="s" if family == "conventional" else "o")
        if curve.published:
            style.update(linestyle="--", markerfacecolor="none")
        ax.plot(curve.bpp[order], curve.values[order], **style)
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(axis_label(metric))
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right", ncols=2)
    ax.set_title(title, fontsize=10)
    return fig


def timeline_figure(points: pd.DataFrame, anchors: list[tuple[str, str]], metric: str, title: str) -> Figure:
    """BD-rate (%) of End2End codecs by year of publication, one panel per anchor ((name, label));
    ``points``: ``figure4.timeline_points``'s rows for ``metric``. Measured points are filled (with their
    95 % interval), published ones hollow; below 0 the codec needs fewer bits than the anchor. A point
    above ``TIMELINE_CAP`` is drawn on it as a triangle, its value in its label."""
    fig, axes = plt.subplots(1, len(anchors), figsize=(6.2 * len(anchors), 4.8), layout="constrained",
                             squeeze=False)
    for ax, (name, label) in zip(axes[0], anchors, strict=True):
        rows = points[(points["anchor"] == name) & (points["metric"] == metric)].sort_values(["year", "label"])
        ax.axhline(0, color="black", linewidth=1.0)
        ax.axhspan(min(-5.0, float(rows["bd_rate"].min()) * 1.15) if len(rows) else -5.0, 0, color="#2ca02c",
                   alpha=0.06)
        ax.annotate(f"= {name} ({label})", (0.01, 0.0), xycoords=("axes fraction", "data"), xytext=(0, 3),
                    textcoords="offset points", fontsize=8)
        for _, row in rows.iterrows():
            published = row["source"] == "published curve"
            y = min(row["bd_rate"], TIMELINE_CAP)  # far-off points sit on the cap, their value in the label
            label = row["label"].removesuffix(" (published)")
            if row["bd_rate"] > TIMELINE_CAP:
                label += f" ({row['bd_rate']:+.0f} %, off the axis)"
            elif pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
                ax.errorbar(row["year"], y, yerr=[[row["bd_rate"] - row["ci_low"]], [row["ci_high"] - row["bd_rate"]]],
                            color="C3", capsize=3, linewidth=1)
            marker = "^" if row["bd_rate"] > TIMELINE_CAP else "o" if published else "D"
            ax.scatter(row["year"], y, s=55, color="C3", marker=marker, facecolors="none" if published else "C3",
                       zorder=3)
            ax.annotate(label, (row["year"], y), textcoords="offset points", xytext=(5, 2), fontsize=7.5)
        ax.set_xlabel("year of publication")
        ax.set_ylabel(f"BD-rate vs {name} (%, {metric}); below 0 = beats {name}")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"against {name}: ◆ measured here, ○ published curve", fontsize=9)
        years = [*points["year"], 2016]  # the same years on every panel, from the first End2End codec
        ax.set_xlim(min(years) - 1, max(years) + 1.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically, without timestamps (rebuilds give identical files)."""

    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, metadata={"Software": None}, format="png")
    with atomic_path(svg) as tmp:
        fig.savefig(tmp, metadata={"Date": None, "Creator": None}, format="svg")
    plt.close(fig)
    return [png, svg]
