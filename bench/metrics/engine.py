"""Shared-work engine behind ``bench.metrics``: PSNR, MS-SSIM, SSIM, HaarPSI and GMSD in one pass.

Each metric keeps its library's definition (pytorch-msssim ``ms_ssim``/``ssim`` and piq
``haarpsi``/``gmsd``, data_range 255 on RGB; PSNR on 8-bit samples) and is computed with arithmetic
whose error against that definition evaluated in float64 is at most the libraries' own float32 error
(both measured in tests/test_metric_engine.py), not with the libraries' operations:

- PSNR exactly: squared errors of 8-bit samples summed in float64, and the luma difference as the
  integer 2126 ΔR + 7152 ΔG + 722 ΔB (exact in float32) for BT.709's 0.2126, 0.7152, 0.0722;
- MS-SSIM and SSIM in float32 on the difference e = original - reconstruction (exact at every
  scale): with the original's σ₁² cached, pytorch-msssim's cs = (2σ₁₂ + C2) / (σ₁² + σ₂² + C2) is
  2u / (var(e) + 2u), u = σ₁² + C2/2 - cov(x, e), and its luminance term is m / (m + mean(e)²),
  m = 2μ₁μ₂ + C1. Where the images agree these terms are small, so the float32 cancellation in
  σ² = E[x²] - μ² behind the libraries' own error mostly disappears (the original's variance is
  taken around 128 for the same reason); MS-SSIM's scales 2-4 need cs alone;
- HaarPSI and GMSD at half resolution (both libraries average 2x2 first; the mean of 8-bit RGB is
  exact in float32 and the colour transform commutes with it), in float32 with float64 sums;
  GMSD's gradient magnitudes in float64;
- filters, 2x2 means, colour transforms and sums are ``bench.metrics.kernels`` (OpenCV on CPU,
  torch on CUDA); the rest is torch arithmetic on (1, C, H, W) tensors, the same on both devices.

Shared work: each original's statistics are computed once per image and device and kept in a small
per-process LRU cache keyed by the caller's pixel hash (``ref_key``): per MS-SSIM scale its image,
Gaussian mean and σ² + C2/2; its half-resolution RGB, YIQ, Haar and chroma responses and gradient
magnitude. A reconstruction's difference pyramid serves all metrics; SSIM is
MS-SSIM's first scale, computed once for both.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from . import kernels
from .kernels import SSIM_WIN

PEAK = 255.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # pytorch-msssim's defaults
SSIM_K = (0.01, 0.03)
C1, C2 = (SSIM_K[0] * PEAK) ** 2, (SSIM_K[1] * PEAK) ** 2
MS_SSIM_MIN_SIDE = (SSIM_WIN - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # pytorch-msssim asserts side > 160
SHIFT = 128.0  # the original's variance is taken around mid-grey (exact in float32 at every scale)
HAAR_SCALES, HAAR_C, HAAR_ALPHA = 3, 30.0, 4.2  # piq haarpsi defaults
HAARPSI_MIN_SIDE = 2 ** (HAAR_SCALES + 1)
GMSD_T = 170.0  # piq gmsd's 170 / 255² for images in [0, 1]; the same similarity on [0, 255]
YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))  # piq rgb2yiq
BT709 = (0.2126, 0.7152, 0.0722)
BT709_INT = ((2126.0, 7152.0, 722.0),)  # 10⁴ BT709: integer luma of integer RGB, exact in float32
REF_CACHE_SIZE = 4  # originals kept per process (a worker sees a few images at a time) ...
REF_CACHE_BYTES = 512 * 2**20  # ... within this many bytes of statistics (one is always kept)

Planes = list[torch.Tensor]  # (1, 1, H, W) planes


def torch_device(device: str) -> torch.device:
    """``cpu`` or ``cuda[:n]``; an error naming the device when CUDA is asked for and absent."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"metric device must be 'cpu' or 'cuda[:n]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"metric device {device!r} requested but torch sees no CUDA device")
    return dev


def own(rgb: np.ndarray) -> np.ndarray:
    """The array itself when C-contiguous and writable (torch's views want writable memory), else a copy."""
    return rgb if rgb.flags.writeable and rgb.flags.c_contiguous else rgb.copy()


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 (1, 3, H, W), channels-last memory (CompressAI's construction)."""
    return torch.from_numpy(own(rgb)).to(device).float().unsqueeze(0).permute(0, 3, 1, 2)


# --- original's statistics --------------------------------------------------------------
@dataclass
class SsimLevel:
    """One MS-SSIM scale of the original: the image, and over the valid region of the Gaussian window
    its mean μ₁ and σ₁² + C2/2."""
    x: torch.Tensor
    mu: torch.Tensor
    v: torch.Tensor


def ssim_level(x: torch.Tensor, x8: torch.Tensor | None = None) -> SsimLevel:
    """The statistics of ``x``; ``x8``: the same image as 8-bit samples, which filter faster."""
    xs = x - SHIFT
    mu = kernels.gaussian(xs if x8 is None else x8)
    mu_s = mu if x8 is None else mu - SHIFT
    v = kernels.gaussian(xs.square_()).addcmul_(mu_s, mu_s, value=-1).add_(C2 / 2)
    if x8 is None:
        mu.add_(SHIFT)
    return SsimLevel(x, mu, v)


@dataclass
class RefStats:
    """Everything the metrics need from the original, built lazily on first use."""
    rgb: np.ndarray
    device: torch.device
    x: torch.Tensor
    levels: list[SsimLevel] = field(default_factory=list)
    half_rgb: torch.Tensor | None = None  # piq's 2x2 mean
    yiq: Planes | None = None  # its Y, I, Q
    haar: torch.Tensor | None = None  # see haar_responses
    grad: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the statistics (arrays and tensors), in bytes."""
        return sum(_nbytes(getattr(self, f.name)) for f in fields(self))

    def level(self, i: int) -> SsimLevel:
        while len(self.levels) <= i:
            if not self.levels:
                self.levels.append(ssim_level(self.x, kernels.nchw(self.rgb).to(self.device)))
            else:
                self.levels.append(ssim_level(kernels.pool2(self.levels[-1].x, leading=True)))
        return self.levels[i]

    @property
    def half(self) -> torch.Tensor:
        """piq's 2x2 mean: MS-SSIM's second scale when both sides are even (the paddings differ only for odd)."""
        if self.half_rgb is None:
            even = self.rgb.shape[0] % 2 == 0 and self.rgb.shape[1] % 2 == 0
            self.half_rgb = self.levels[1].x if even and len(self.levels) > 1 else kernels.pool2(self.x, leading=False)
        return self.half_rgb


def _nbytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, SsimLevel):
        return sum(_nbytes(getattr(value, f.name)) for f in fields(value))
    return 0


_CACHE: OrderedDict[tuple, RefStats] = OrderedDict()


def ref_stats(ref: np.ndarray, ref_key: str | None, device: torch.device) -> RefStats:
    """The original's statistics: cached by (``ref_key``, shape, device) when a key is given."""
    kernels.sync_threads()
    kernels.keep_freed_memory()
    ref = own(ref)
    if ref_key is None:
        return RefStats(ref, device, to_tensor(ref, device))
    key = (ref_key, ref.shape, str(device))
    stats = _CACHE.get(key)
    if stats is None:
        stats = RefStats(ref, device, to_tensor(ref, device))
        _CACHE[key] = stats
        while len(_CACHE) > 1 and (len(_CACHE) > REF_CACHE_SIZE
                                   or sum(s.nbytes for s in _CACHE.values()) > REF_CACHE_BYTES):
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return stats


def clear_cache() -> None:
    _CACHE.clear()


# --- per reconstruction -------------------------------------------------------------------
class Pair:
    """An original's statistics and one reconstruction, with lazily built shared tensors."""

    def __init__(self, stats: RefStats, rec: np.ndarray):
        self.stats, self.rec = stats, own(rec)
        self._y: torch.Tensor | None = None
        self.diffs: list[torch.Tensor] = []  # original - reconstruction per MS-SSIM scale (float32, exact)
        self._yiq: Planes | None = None
        self.ssim_levels: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (cs, ssim) per channel and scale
        self.values: dict[str, float] = {}

    @property
    def ref(self) -> np.ndarray:
        return self.stats.rgb

    @property
    def x(self) -> torch.Tensor:
        return self.stats.x

    @property
    def y(self) -> torch.Tensor:
        """The reconstruction as a float32 tensor."""
        if self._y is None:
            self._y = to_tensor(self.rec, self.stats.device)
        return self._y

    def diff(self, scale: int) -> torch.Tensor:
        """original - reconstruction at an MS-SSIM scale (pytorch-msssim's 2x2 means)."""
        if not self.diffs:  # the next scale at once, while the first is in cache (2x faster)
            self.diffs.append(kernels.difference(self.ref, self.rec, self.stats.device))
            self.diffs.append(kernels.pool2(self.diffs[0], leading=True))
        while len(self.diffs) <= scale:
            self.diffs.append(kernels.pool2(self.diffs[-1], leading=True))
        return self.diffs[scale]

    @property
    def yiq(self) -> Planes:
        """The reconstruction's Y, I, Q after piq's 2x2 mean: the original's mean minus the difference's
        (pytorch-msssim's second scale when both sides are even: the two paddings differ only for odd sides)."""
        if self._yiq is None:
            h, w = self.ref.shape[:2]
            even = h % 2 == 0 and w % 2 == 0
            half_e = self.diff(1) if even else kernels.pool2(self.diff(0), leading=False)
            self._yiq = kernels.colour_planes(self.stats.half - half_e, YIQ)
        return self._yiq


def ref_yiq(stats: RefStats) -> Planes:
    if stats.yiq is None:
        stats.yiq = kernels.colour_planes(stats.half, YIQ)
    return stats.yiq


def psnr_from_mse(mse: float, peak: float = PEAK) -> float:
    """PSNR in dB; +inf for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_rgb(pair: Pair) -> float:
    return psnr_from_mse(kernels.squared_distance(pair.ref, pair.rec) / pair.ref.size)


def luma_bt709(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma in float64 (0.2126 R + 0.7152 G + 0.0722 B)."""
    return rgb.astype(np.float64) @ np.asarray(BT709)


def psnr_y(pair: Pair) -> float:
    """PSNR of BT.709 luma: 10⁴ ΔY is an integer, exact in float32; its squares are summed in float64."""
    scaled = kernels.colour_planes(pair.diff(0), BT709_INT)[0]
    return psnr_from_mse(kernels.square_sum(scaled) / 1e8 / scaled[0, 0].numel())


def ssim_scale(level: SsimLevel, e: torch.Tensor, luminance: bool,
               y8: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """pytorch-msssim ``_ssim`` at one scale from the original's ``level`` and ``e`` = original -
    reconstruction (``y8``: the reconstruction as 8-bit samples, which filter faster): the means of
    cs and (with ``luminance``) of ssim per channel, float64 (3,)."""
    mu2 = None if y8 is None else kernels.gaussian(y8)
    me = kernels.gaussian(e) if mu2 is None else level.mu - mu2  # mean(e) = μ₁ - μ₂
    product = e * e
    var = kernels.gaussian(product).addcmul_(me, me, value=-1)  # var(e) = σ₁² + σ₂² - 2σ₁₂
    cov = kernels.gaussian(torch.mul(level.x, e, out=product)).addcmul_(level.mu, me, value=-1)  # σ₁² - σ₁₂
    u = torch.sub(level.v, cov, out=cov)  # σ₁₂ + C2/2
    half_cs = u.div_(var.add_(u, alpha=2))  # over σ₁² + σ₂² + C2
    n = half_cs.shape[2] * half_cs.shape[3]
    cs = kernels.channel_sums(half_cs) * (2 / n)
    if not luminance:
        return cs, None
    if mu2 is None:
        mu2 = level.mu - me
    m = torch.addcmul(me.new_tensor(C1), level.mu, mu2, value=2, out=var)  # 2μ₁μ₂ + C1
    lum = m.div_(torch.addcmul(m, me, me, out=me))  # over μ₁² + μ₂² + C1
    return cs, kernels.channel_sums(lum.mul_(half_cs)) * (2 / n)


def ssim_scales(pair: Pair, scales: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(cs, ssim) per channel at the first ``scales`` scales (ssim at the first and at MS-SSIM's last)."""
    while len(pair.ssim_levels) < scales:
        i = len(pair.ssim_levels)
        luminance = i in (0, len(MS_SSIM_WEIGHTS) - 1)
        y8 = kernels.nchw(pair.rec).to(pair.stats.device) if i == 0 else None
        pair.ssim_levels.append(ssim_scale(pair.stats.level(i), pair.diff(i), luminance, y8))
    return pair.ssim_levels[:scales]


def ms_ssim(pair: Pair) -> float:
    side = min(pair.ref.shape[:2])
    if side < MS_SSIM_MIN_SIDE:
        raise ValueError(f"shorter side must be at least {MS_SSIM_MIN_SIDE} for 5 scales")
    levels = ssim_scales(pair, len(MS_SSIM_WEIGHTS))
    last = levels[-1][1]
    assert last is not None
    factors = torch.stack([*(cs for cs, _ in levels[:-1]), last]).clamp_(min=0)  # pytorch-msssim's relu
    weights = factors.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1)
    return torch.prod(factors ** weights, dim=0).mean().item()


def ssim(pair: Pair) -> float:
    if min(pair.ref.shape[:2]) < SSIM_WIN:
        raise ValueError(f"shorter side must be at least {SSIM_WIN} (the Gaussian window)")
    value = ssim_scales(pair, 1)[0][1]
    assert value is not None
    return value.mean().item()


def haar_responses(yiq: Planes) -> torch.Tensor:
    """What piq haarpsi derives from half-resolution Y, I, Q planes, as the 8 channels of one tensor:
    the |responses| of Y to its k x k Haar filters (rows or columns split in +1/k and -1/k halves; zeros
    outside) for horizontal edges at k = 2, 4, then vertical at k = 2, 4, the |2x2 means| of I and Q
    (stride 1, zeros after the last row and column), and horizontal, vertical at k = 8 (the weights)."""
    luma, i, q = yiq
    filters: dict[str, list[kernels.Correlation]] = {"h": [], "v": []}
    for k in (2, 4, 8):
        box, signs, anchor = (1 / k,) * k, (1.0,) * (k // 2) + (-1.0,) * (k // 2), (k // 2 - 1, k // 2 - 1)
        filters["h"].append((luma, box, signs, anchor))
        filters["v"].append((luma, signs, box, anchor))
    means = [(c, (0.5, 0.5), (0.5, 0.5), (0, 0)) for c in (i, q)]
    h, v = filters["h"], filters["v"]
    return kernels.correlate_stack([*h[:2], *v[:2], *means, h[2], v[2]]).abs_()


def similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    """piq ``similarity_map`` (alpha 0): (2ab + c) / (a² + b² + c), as num / (num + (a - b)²)."""
    num = torch.addcmul(a.new_tensor(constant), a, b, value=2)
    return num.div_(torch.sub(a, b).square_().add_(num))


def haarpsi(pair: Pair) -> float:
    """piq ``haarpsi(rec, ref, data_range=255)``."""
    if min(pair.ref.shape[:2]) < HAARPSI_MIN_SIDE:
        raise ValueError(f"shorter side must be at least {HAARPSI_MIN_SIDE} for {HAAR_SCALES} Haar scales")
    stats = pair.stats
    if stats.haar is None:
        stats.haar = haar_responses(ref_yiq(stats))
    ref, rec = stats.haar, haar_responses(pair.yiq)
    weights = torch.maximum(rec[:, 6:], ref[:, 6:])  # per orientation, from the largest scale
    weights = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)  # and their mean for I, Q
    # similarities summed over scales 1 and 2 per orientation, and over I and Q
    sims = similarity(rec[:, :6], ref[:, :6], HAAR_C).unflatten(1, (3, 2)).sum(dim=2)
    num = float(kernels.channel_sums(sims.mul_(HAAR_ALPHA / 2).sigmoid_().mul_(weights)).sum())
    den = float(kernels.channel_sums(weights).sum())
    eps = torch.finfo(torch.float64).eps
    score = (num + eps) / (den + eps)
    if score >= 1:  # no weight anywhere (a black image against itself): piq's logit is infinite
        return math.inf
    return (math.log(score / (1 - score)) / HAAR_ALPHA) ** 2


def gradient_magnitude(yiq: Planes) -> torch.Tensor:
    """piq gmsd's Prewitt gradient magnitude of the half-resolution luma (zeros outside), float64 from
    the squares on: GMSD's tolerance is tight (the libraries' own float32 error is 2.3e-8)."""
    third, diff = (1 / 3,) * 3, (-1.0, 0.0, 1.0)
    grads = kernels.correlate_stack([(yiq[0], diff, third, (1, 1)), (yiq[0], third, diff, (1, 1))])
    return grads.square_().sum(dim=1, keepdim=True).double().sqrt_()


def gmsd(pair: Pair) -> float:
    """piq ``gmsd(rec, ref, data_range=255)``: the standard deviation of the gradient magnitude similarity."""
    stats = pair.stats
    if stats.grad is None:
        stats.grad = gradient_magnitude(ref_yiq(stats))
    gms = similarity(gradient_magnitude(pair.yiq), stats.grad, GMSD_T)
    n = gms.shape[2] * gms.shape[3]
    mean = float(kernels.channel_sums(gms)) / n
    return math.sqrt(float(kernels.channel_sums(gms.sub_(mean).square_())) / n)


def timed(func, pair: Pair, timings: dict[str, float] | None, name: str):
    """Run ``func(pair)``; add its seconds to ``timings[name]`` when timings are collected."""
    start = time.perf_counter()
    try:
        return func(pair)
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
