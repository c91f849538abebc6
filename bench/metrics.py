"""Full-reference quality metrics between an original and a decoded uint8 RGB image.

| metric | unit | better | definition / library |
|---|---|---|---|
| ``psnr-rgb`` | dB | higher | 10·log10(255² / MSE), MSE over all R, G, B samples (CompressAI's convention) |
| ``psnr-y`` | dB | higher | the same on luma Y = 0.2126 R + 0.7152 G + 0.0722 B (BT.709, as CompressAI's ``rgb2ycbcr`` and the JPEG AI CTC), float |
| ``ms-ssim-rgb`` | | higher | pytorch-msssim ``ms_ssim`` on RGB, data_range 255 (CompressAI's convention) |
| ``ms-ssim-db`` | dB | higher | -10·log10(1 - MS-SSIM) |
| ``ssim`` | | higher | pytorch-msssim ``ssim`` on RGB (11x11 Gaussian window, σ 1.5), data_range 255 |
| ``haarpsi`` | | higher | piq ``haarpsi`` (Haar wavelet-based perceptual similarity), data_range 255 |
| ``gmsd`` | | lower | piq ``gmsd`` (gradient magnitude similarity deviation), data_range 255 |
| ``vif`` | | higher | piq ``vif_p`` (visual information fidelity, pixel domain); slow, opt-in |
| ``fsim`` | | higher | piq ``fsim`` (feature similarity, colour FSIMc); slow, opt-in |
| ``ssimulacra2`` | | higher | the ``ssimulacra2`` package (Cloudinary's SSIMULACRA 2, 100 = identical); slow, opt-in |

A metric that cannot be computed for an image (e.g. MS-SSIM on an image whose shorter side is
at most 160 pixels) is NaN, with a warning naming the metric and the image size.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

PEAK = 255.0
BT709_LUMA = (0.2126, 0.7152, 0.0722)
MS_SSIM_MIN_SIDE = (11 - 1) * 2**4 + 1  # pytorch-msssim: smaller side must exceed (win - 1) * 2^(scales - 1)


class Pair:
    """An original and its reconstruction, with lazily built tensors shared by the metrics."""

    def __init__(self, ref: np.ndarray, rec: np.ndarray):
        self.ref, self.rec = ref, rec
        self.values: dict[str, float] = {}

    @staticmethod
    def _tensor(rgb: np.ndarray):
        import torch

        # Same construction as compressai.utils.bench.codecs.compute_metrics: (1, 3, H, W) float32.
        return torch.from_numpy(rgb.copy()).float().unsqueeze(0).permute(0, 3, 1, 2)

    @cached_property
    def ref_t(self):
        return self._tensor(self.ref)

    @cached_property
    def rec_t(self):
        return self._tensor(self.rec)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    higher_is_better: bool
    description: str
    compute: Callable[[Pair], float] = field(repr=False, compare=False)
    default: bool = True
    requires: tuple[str, ...] = ()


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


def ms_ssim_db(ms_ssim: float) -> float:
    if math.isnan(ms_ssim):
        return math.nan
    return math.inf if ms_ssim >= 1.0 else -10.0 * math.log10(1.0 - ms_ssim)


def _no_grad(func):
    def wrapped(pair: Pair) -> float:
        import torch

        with torch.no_grad():
            return float(func(pair))

    return wrapped


def _ms_ssim(pair: Pair) -> float:
    if min(pair.ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"shorter side must be at least {MS_SSIM_MIN_SIDE} for 5 scales")
    from pytorch_msssim import ms_ssim

    return ms_ssim(pair.ref_t, pair.rec_t, data_range=PEAK).item()


def _ssim(pair: Pair) -> float:
    if min(pair.ref.shape[:2]) < 11:
        raise ValueError("shorter side must be at least 11 (the Gaussian window)")
    from pytorch_msssim import ssim

    return ssim(pair.ref_t, pair.rec_t, data_range=PEAK).item()


def _piq(name: str):
    def compute(pair: Pair) -> float:
        import piq

        return getattr(piq, name)(pair.rec_t, pair.ref_t, data_range=PEAK).item()

    return compute


def _png(rgb: np.ndarray) -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=0)
    buf.seek(0)
    return buf


def _ssimulacra2(pair: Pair) -> float:
    from ssimulacra2 import compute_ssimulacra2

    return compute_ssimulacra2(_png(pair.ref), _png(pair.rec))


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("psnr-rgb", "dB", True, "PSNR over R, G, B samples, peak 255", lambda p: psnr_rgb(p.ref, p.rec)),
        MetricInfo("psnr-y", "dB", True, "PSNR of BT.709 luma, peak 255", lambda p: psnr_y(p.ref, p.rec)),
        MetricInfo("ms-ssim-rgb", "", True, "MS-SSIM (pytorch-msssim, 5 scales, data_range 255)", _no_grad(_ms_ssim)),
        MetricInfo("ms-ssim-db", "dB", True, "-10 log10(1 - MS-SSIM)",
                   lambda p: ms_ssim_db(p.values["ms-ssim-rgb"]), requires=("ms-ssim-rgb",)),
        MetricInfo("ssim", "", True, "SSIM (pytorch-msssim, 11x11 Gaussian, data_range 255)", _no_grad(_ssim)),
        MetricInfo("haarpsi", "", True, "HaarPSI (piq)", _no_grad(_piq("haarpsi"))),
        MetricInfo("gmsd", "", False, "GMSD (piq), lower is better", _no_grad(_piq("gmsd"))),
        MetricInfo("vif", "", True, "VIFp (piq vif_p)", _no_grad(_piq("vif_p")), default=False),
        MetricInfo("fsim", "", True, "FSIMc (piq fsim)", _no_grad(_piq("fsim")), default=False),
        MetricInfo("ssimulacra2", "", True, "SSIMULACRA 2 (ssimulacra2 package)", _ssimulacra2, default=False),
    )
}
DEFAULT_METRICS = tuple(name for name, m in METRICS.items() if m.default)


def resolve_metrics(names: list[str] | None) -> tuple[str, ...]:
    """Requested metric names (default: DEFAULT_METRICS) plus what they require, in registry order."""
    wanted = set(names or DEFAULT_METRICS)
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRICS)})")
    for name in list(wanted):
        wanted.update(METRICS[name].requires)
    return tuple(name for name in METRICS if name in wanted)


def compute_metrics(ref: np.ndarray, rec: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Metrics of ``rec`` (decoded) against ``ref`` (original), both uint8 H x W x 3.

    ``names`` must include what each metric requires (see ``resolve_metrics``).
    """
    if ref.shape != rec.shape:
        raise ValueError(f"decoded image has shape {rec.shape}, original {ref.shape}")
    pair = Pair(ref, rec)
    for name in names or DEFAULT_METRICS:
        try:
            value = METRICS[name].compute(pair)
        except (ImportError, MemoryError):
            raise  # not a property of the image: fail the job rather than cache NaN
        except Exception as exc:  # a metric's limits (e.g. image size) must not stop the run
            warnings.warn(f"{name} not computable for a {ref.shape[1]}x{ref.shape[0]} image ({exc}); set to NaN",
                          stacklevel=2)
            value = math.nan
        pair.values[name] = value
    return pair.values

