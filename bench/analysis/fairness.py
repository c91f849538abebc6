"""Fair-comparison checks: codecs that miss a target bit rate, published curves of other datasets, and the
chroma format each codec codes."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .compressai_json import read_result_file

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
    """(dataset name, image count) that a CompressAI-format JSON declares (at the top, or in ``meta`` as
    CompressAI's newer paper files do); None where it does not."""
    try:
        file = read_result_file(path)
    except ValueError:
        return None, None
    return file.dataset, file.n_images


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


# --- chroma format of each codec ------------------------------------------------------------------
# What a codec codes when neither its info nor its options say (read from each adapter's code).
CHROMA_BY_CODEC = {
    "webp": "Y'CbCr 4:2:0 (lossy WebP is always 4:2:0)",
    "jxl": "XYB, no chroma subsampling",
    "jpeg2000": "RGB → Y'CbCr (irreversible colour transform), 4:4:4",
    "vvc": "Y'CbCr 4:2:0, 10-bit (vvenc 1.9.1 takes 4:2:0 only)",
}
# Published curves, by the first word of their name (../shared/reference/README.md: how they were made).
CHROMA_PUBLISHED = {
    "vtm": "Y'CbCr 4:4:4 (CompressAI's published VTM anchor)",
    "hm": "Y'CbCr 4:4:4 (CompressAI's published HM anchor)",
    "bpg": "Y'CbCr 4:4:4 (CompressAI's published BPG anchor)",
    "av1": "Y'CbCr 4:4:4 (CompressAI's published AV1 anchor)",
    "jpeg": "Y'CbCr 4:2:0 (Pillow's default)",
    "webp": "Y'CbCr 4:2:0 (lossy WebP)",
}
CHROMA_OPTIONS = ("chroma", "subsampling")  # adapter options that set the chroma format


def chroma_text(value: str) -> str:
    """``444`` / ``4:4:4`` -> ``Y'CbCr 4:4:4``; other text unchanged."""
    digits = value.replace(":", "")
    return f"Y'CbCr {digits[0]}:{digits[1]}:{digits[2]}" if digits.isdigit() and len(digits) == 3 else value


def chroma_format(codec_name: str, family: str, options: dict, info: dict) -> tuple[str, str]:
    """(chroma format, where it was read) of a measured codec: the adapter's ``info["chroma"]`` first,
    then its ``chroma``/``subsampling`` option, then what the adapter is known to code."""
    if info.get("chroma"):
        return chroma_text(str(info["chroma"])), "adapter info"
    for option in CHROMA_OPTIONS:
        if options.get(option):
            return chroma_text(str(options[option])), f"option {option}={options[option]}"
    if codec_name in CHROMA_BY_CODEC:
        return CHROMA_BY_CODEC[codec_name], "adapter (fixed)"
    if str(info.get("source", "")).lower() == "published bitstreams":
        return "not stated (the publisher's format)", "published bitstreams"
    if family == "learned":
        return "RGB, no subsampling (the model codes RGB)", "learned codec"
    return "not stated", "unknown: set info['chroma'] in the adapter"


def published_chroma(label: str, family: str) -> str:
    """Chroma format of a published curve, from its name (conventional anchors) or family."""
    words = re.findall(r"[a-z0-9]+", label.lower().removeprefix("official "))
    if family == "learned":
        return "RGB (published End2End model)"
    return CHROMA_PUBLISHED.get(words[0] if words else "", "not stated (published curve)")
