"""Full-reference quality metrics between an original and a decoded uint8 RGB image.

* ``psnr-rgb``: 10·log10(255² / MSE), MSE over all R, G and B samples (CompressAI's convention).
* ``psnr-y``: the same on luma Y = 0.2126 R + 0.7152 G + 0.0722 B (ITU-R BT.709 weights, as
  CompressAI's ``rgb2ycbcr`` and the JPEG AI CTC), computed in floating point, no rounding.
* ``ms-ssim-rgb``: pytorch-msssim's 5-scale MS-SSIM on the RGB image, data_range 255 (CompressAI's
  convention); NaN with a warning for images whose shorter side is at most 160 pixels.
* ``ms-ssim-db``: -10·log10(1 - MS-SSIM).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

PEAK = 255.0
BT709_LUMA = (0.2126, 0.7152, 0.0722)
MS_SSIM_MIN_SIDE = (11 - 1) * 2**4 + 1  # pytorch-msssim: smaller side must exceed (win - 1) * 2^(scales - 1)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("psnr-rgb", "dB", True, "PSNR over R, G, B samples, peak 255"),
        MetricInfo("psnr-y", "dB", True, "PSNR of BT.709 luma, peak 255"),
        MetricInfo("ms-ssim-rgb", "", True, "MS-SSIM (pytorch-msssim, 5 scales, data_range 255)"),
        MetricInfo("ms-ssim-db", "dB", True, "-10 log10(1 - MS-SSIM)"),
    )
}


def psnr_from_mse(mse: float, peak: float = PEAK) -> float:
    """PSNR in dB; +inf for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    diff = ref.astype(np.float64) - rec.astype(np.float64)
    return psnr_from_mse(float(np.mean(diff * diff)))


def luma_bt709(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.asarray(BT709_LUMA)


def psnr_y(ref: np.ndarray, rec: np.ndarray) -> float:
    diff = luma_bt709(ref) - luma_bt709(rec)
    return psnr_from_mse(float(np.mean(diff * diff)))


def _to_tensor(rgb: np.ndarray):
    import torch

    # Same construction as compressai.utils.bench.codecs.compute_metrics: (1, 3, H, W) float32.
    return torch.from_numpy(rgb.copy()).float().unsqueeze(0).permute(0, 3, 1, 2)


def ms_ssim_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM in [0, 1] (NaN, with a warning, if the image is too small for 5 scales)."""
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        warnings.warn(
            f"image {ref.shape[1]}x{ref.shape[0]} is too small for 5-scale MS-SSIM "
            f"(shorter side must be at least {MS_SSIM_MIN_SIDE}); ms-ssim set to NaN",
            stacklevel=2,
        )
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim

    with torch.no_grad():
        return float(ms_ssim(_to_tensor(ref), _to_tensor(rec), data_range=PEAK).item())


def ms_ssim_db(ms_ssim: float) -> float:
    if math.isnan(ms_ssim):
        return math.nan
    return math.inf if ms_ssim >= 1.0 else -10.0 * math.log10(1.0 - ms_ssim)


def compute_metrics(ref: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    """All metrics of ``rec`` (decoded) against ``ref`` (original), both uint8 H x W x 3."""
    if ref.shape != rec.shape:
        raise ValueError(f"decoded image has shape {rec.shape}, original {ref.shape}")
    msssim = ms_ssim_rgb(ref, rec)
    return {
        "psnr-rgb": psnr_rgb(ref, rec),
        "psnr-y": psnr_y(ref, rec),
        "ms-ssim-rgb": msssim,
        "ms-ssim-db": ms_ssim_db(msssim),
    }
