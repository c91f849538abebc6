"""Fair-comparison checks: codecs that miss a target bit rate, and published curves of other datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

TARGET_RELATIVE = 0.10  # a point more than 10 % ...
TARGET_ABSOLUTE = 0.02  # ... or 0.02 bpp (whichever is larger) from the target is off target


def target_tolerance(target: float) -> float:
    """Largest bpp distance from ``target`` that still counts as "at the target"."""
    return max(TARGET_RELATIVE * target, TARGET_ABSOLUTE)


def off_target(achieved: float, target: float) -> bool:
    """Whether an achieved bpp is too far from the target for a fair comparison at that rate."""
    return abs(achieved - target) > target_tolerance(target)


def bpp_ranges(frame: pd.DataFrame, bpp_column: str = "bpp") -> dict[str, tuple[float, float]]:
    """codec -> (lowest, highest) bpp in ``frame`` (e.g. the mean curves: the measured range)."""
    return {codec: (float(g[bpp_column].min()), float(g[bpp_column].max()))
            for codec, g in frame.groupby("codec", sort=True)}


def range_text(bpp_range: tuple[float, float]) -> str:
    return f"{bpp_range[0]:.3g}–{bpp_range[1]:.3g} bpp"


def target_flag(codec: str, achieved: float, target: float, ranges: dict[str, tuple[float, float]]) -> str:
    """Empty if on target, else a warning naming the codec's measured range."""
    if not off_target(achieved, target):
        return ""
    reach = f"; measured range {range_text(ranges[codec])}" if codec in ranges else ""
    return f"⚠ off target ({achieved:.3g} bpp for {target:g}){reach}"


def reference_dataset(path: str | Path) -> tuple[str | None, int | None]:
    """(dataset name, image count) that a CompressAI-format JSON declares; None where it does not."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None, None
    dataset, n_images = doc.get("dataset"), doc.get("n_images")
    return (dataset if isinstance(dataset, str) else None), (n_images if isinstance(n_images, int) else None)


def reference_warning(path: str | Path, label: str, dataset: str, n_images: int) -> str:
    """Why a published curve may not be comparable with this run; empty if it declares the same data."""
    ref_dataset, ref_images = reference_dataset(path)
    if ref_dataset is None:
        return (f"{label}: {Path(path).name} does not name its dataset (CompressAI's published files do not); "
                f"it is compared with this {dataset} run unverified")
    if ref_dataset != dataset:
        return f"{label}: measured on {ref_dataset!r}, this run is {dataset!r}: not comparable"
    if ref_images is not None and ref_images != n_images:
        return f"{label}: {ref_images} images of {dataset}, this run has {n_images}"
    return ""
