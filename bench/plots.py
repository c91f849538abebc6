"""RD curves: one figure per metric, bpp on x, quality on y, full range and a 0-2 bpp zoom."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .analysis import Curve  # noqa: E402
from .metrics import METRICS  # noqa: E402

ZOOM_MAX_BPP = 2.0
LINESTYLES = {"conventional": "--", "learned": "-"}
METRIC_LABELS = {"ms-ssim-db": "MS-SSIM (dB) = −10·log10(1 − MS-SSIM)"}

plt.rcParams["svg.hashsalt"] = "codec-bench"  # deterministic SVG ids


def axis_label(metric: str) -> str:
    info = METRICS.get(metric)
    unit = f" ({info.unit})" if info and info.unit else ""
    return METRIC_LABELS.get(metric, f"{metric.upper()}{unit}")


def rd_figure(curves: list[Curve], families: dict[str, str], metric: str, title: str) -> Figure:
    """Two panels (all rates; 0-2 bpp) with one line per codec.

    Conventional codecs are dashed, learned codecs solid, published reference curves dotted
    with hollow markers and labelled "(published)".
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    for i, curve in enumerate(curves):
        order = curve.bpp.argsort()
        style = dict(color=colours[i % len(colours)], label=curve.label, linewidth=1.6, markersize=4.5)
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
    in_zoom = [q for c in zoomed for b, q in zip(c.bpp, c.quality) if b <= ZOOM_MAX_BPP and q == q and abs(q) != float("inf")]
    if in_zoom:
        pad = 0.03 * (max(in_zoom) - min(in_zoom) or 1.0)
        axes[1].set_ylim(min(in_zoom) - pad, max(in_zoom) + pad)
    axes[0].set_xlim(left=0)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return fig


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` without timestamps (rebuilds give identical files)."""
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=110, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return [png, svg]
