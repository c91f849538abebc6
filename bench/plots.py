"""Static figures (PNG and SVG, for papers): RD curves and speed against coding efficiency.

RD: one figure per metric, bpp on x, quality on y, full range and a 0-2 bpp zoom; each legend
entry carries the codec's BD-rate against the anchor. Speed: BD-rate against encode and decode
speed (megapixels per second, log scale), and for learned codecs against kMAC per pixel.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .analysis import Curve  # noqa: E402
from .atomic import atomic_path  # noqa: E402
from .metrics import METRICS  # noqa: E402

ZOOM_MAX_BPP = 2.0
LINESTYLES = {"conventional": "--", "learned": "-"}
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
    colours = plt.get_cmap("tab10").colors
    for i, curve in enumerate(curves):
        order = curve.bpp.argsort()
        style = dict(color=colours[i % len(colours)], label=legend_label(curve.label, anchor, bd),
                     linewidth=3.0 if curve.label == anchor else 1.6, markersize=4.5)
        if curve.published:
            style.update(linestyle=":", marker="s", markerfacecolor="none")
        else:
            style.update(linestyle=LINESTYLES.get(families.get(curve.label, ""), "-."), marker="o")
        for ax in axes:
            ax.plot(curve.bpp[order], curve.quality[order], **style)
    zoomed = [c for c in curves if (c.bpp <= ZOOM_MAX_BPP).any()]
    for ax, name in zip(axes, ("all rates", f"zoom: 0–{ZOOM_MAX_BPP:g} bpp")):
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


def zoom_range(curves: list[Curve], max_bpp: float = ZOOM_MAX_BPP) -> tuple[float, float] | None:
    """Quality range (with 3 % padding) of the finite points at or below ``max_bpp``; None if there are none."""
    values = [q for c in curves for b, q in zip(c.bpp, c.quality) if b <= max_bpp and q == q and abs(q) != float("inf")]
    if not values:
        return None
    pad = 0.03 * (max(values) - min(values) or 1.0)
    return float(min(values) - pad), float(max(values) + pad)


def speed_figure(points: pd.DataFrame, metric: str, anchor: str, title: str) -> Figure:
    """BD-rate against encode and decode speed (MP/s, log x); learned codecs also against kMAC/pixel.

    Each point is labelled with its codec and device. ``points``: one row per codec with ``codec``,
    ``family``, ``device``, ``bd_rate`` (%), ``encode_mps``,
    ``decode_mps``, ``encoder_kmac`` and ``decoder_kmac`` (NaN where unknown).
    """
    learned = points.dropna(subset=["encoder_kmac"])
    panels = 3 if not learned.empty else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), layout="constrained", squeeze=False,
                             sharey=True)
    axes = axes[0]
    markers = {"conventional": "s", "learned": "o"}
    for ax, column, name in zip(axes, ("encode_mps", "decode_mps"), ("encode", "decode")):
        for _, row in points.dropna(subset=[column]).iterrows():  # a time not measured: no point
            ax.scatter(row[column], row["bd_rate"], marker=markers.get(row["family"], "^"), s=40,
                       color="C1" if row["family"] == "learned" else "C0")
            ax.annotate(f"{row['codec']} ({row['device']})", (row[column], row["bd_rate"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{name} speed (megapixels per second, log scale)")
    if panels == 3:
        ax = axes[2]
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
