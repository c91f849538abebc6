"""Shared-work engine behind ``bench.metrics``: PSNR, MS-SSIM, SSIM, HaarPSI and GMSD in one pass.

The engine repeats the libraries' float32 operations in their order (pytorch-msssim's
``ms_ssim``/``ssim``, piq's ``haarpsi``/``gmsd``), so its values equal theirs (tested to 1e-6
relative; bit for bit on the x86-64 CPU tested), and removes the work that one-by-one calls repeat:

- each image becomes a float32 tensor once (CompressAI's construction: (1, 3, H, W) over
  channels-last memory);
- the original's statistics are computed once per image and device and kept in a small
  per-process LRU cache keyed by the caller's pixel hash (``ref_key``): per MS-SSIM scale its
  downsampled image, Gaussian mean, squared mean and variance; its HaarPSI Haar and chroma
  responses; its GMSD gradient magnitude; its BT.709 luma;
- SSIM is MS-SSIM's first scale (identical arithmetic), computed once for both;
- the Gaussian filter is pytorch-msssim's grouped convolution on channels-last memory, the
  fastest correct kernel measured on a 512x768 image, one core: 5 ms per 3-channel map, against
  4 ms for 11 shifted multiply-adds per pass (not bit-equal), 21 ms for
  ``scipy.ndimage.correlate1d``, 18 ms for an FFT, 20 ms for the same convolution on
  channels-first memory and 59 ms with channels as batch; stacking the three maps of a
  reconstruction into one 9-channel convolution filters faster (3.4 ms per map) but the copies
  into and out of the interleaved layout cost more than that saves;
- 2x2 averages are strided additions in ``avg_pool2d``'s order (bit-equal, 3-10x faster), piq's
  RGB->YIQ (H·W x 3) @ (3 x 3) product is taken one output channel at a time (bit-equal, ~6x
  faster with MKL), and temporaries are updated in place (same operations, fewer allocations).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d
from pytorch_msssim.ssim import gaussian_filter as _gauss  # separable, valid region

PEAK = 255.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # pytorch-msssim's defaults
SSIM_WIN, SSIM_SIGMA, SSIM_K = 11, 1.5, (0.01, 0.03)
MS_SSIM_MIN_SIDE = (SSIM_WIN - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # pytorch-msssim asserts side > 160
HAAR_SCALES, HAAR_C, HAAR_ALPHA = 3, 30.0, 4.2  # piq haarpsi defaults
HAARPSI_MIN_SIDE = 2 ** (HAAR_SCALES + 1)
GMSD_T = 170 / (255.0 ** 2)  # piq gmsd default
YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))  # piq rgb2yiq
REF_CACHE_SIZE = 4  # originals kept per process (a worker sees a few images at a time) ...
REF_CACHE_BYTES = 512 * 2**20  # ... within this many bytes of statistics (one is always kept)


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


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 (1, 3, H, W), channels-last memory (CompressAI's construction)."""
    if not (rgb.flags.writeable and rgb.flags.c_contiguous):
        rgb = rgb.copy()  # torch wants writable memory
    return torch.from_numpy(rgb).to(device).float().unsqueeze(0).permute(0, 3, 1, 2)


def yiq_channel(x: torch.Tensor, row: int) -> torch.Tensor:
    """One channel of piq ``rgb2yiq``: the same per-pixel float32 product (bit-equal on CPU),
    as a (H·W x 3) @ (3 x 1) product, which MKL runs ~6x faster than piq's @ (3 x 3)."""
    weights = torch.tensor(YIQ[row], dtype=x.dtype, device=x.device).view(3, 1)
    return torch.matmul(x.permute(0, 2, 3, 1), weights).permute(0, 3, 1, 2)


def pool2(x: torch.Tensor, padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``F.avg_pool2d(x, 2, padding=padding)`` (zero padding counted, as its default) as four
    strided slice additions in the same order: bit-equal, and 3-10x faster on CPU."""
    ph, pw = padding
    if ph or pw:
        x = F.pad(x, [pw, pw, ph, ph])
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    return (x[..., 0:h:2, 0:w:2] + x[..., 0:h:2, 1:w:2]).add_(x[..., 1:h:2, 0:w:2]).add_(x[..., 1:h:2, 1:w:2]).div_(4)


def pool2_stride1(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 2, stride=1)`` as slice additions in the same order (bit-equal)."""
    return (x[..., :-1, :-1] + x[..., :-1, 1:]).add_(x[..., 1:, :-1]).add_(x[..., 1:, 1:]).div_(4)


def _pad_even(x: torch.Tensor) -> torch.Tensor:
    """piq's zero padding of the bottom and right edge by one when a side is odd."""
    down = max(x.shape[2] % 2, x.shape[3] % 2)
    return F.pad(x, pad=[0, down, 0, down]) if down else x


Haar = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]  # see haar_responses


# --- original's statistics --------------------------------------------------------------
@dataclass
class SsimLevel:
    """One MS-SSIM scale of the original: image, Gaussian mean, its square and variance."""
    x: torch.Tensor
    mu: torch.Tensor
    mu_sq: torch.Tensor
    sigma_sq: torch.Tensor


@dataclass
class RefStats:
    """Everything the metrics need from the original, built lazily on first use."""
    rgb: np.ndarray
    device: torch.device
    x: torch.Tensor
    levels: list[SsimLevel] = field(default_factory=list)
    sq_sum: int | None = None
    luma: np.ndarray | None = None
    haar: Haar | None = None
    grad: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the statistics (arrays and tensors), in bytes."""
        tensors = [self.x, *(t for lv in self.levels for t in (lv.x, lv.mu, lv.mu_sq, lv.sigma_sq)), self.grad]
        if self.haar is not None:
            tensors += [*self.haar[0], self.haar[1], self.haar[2]]
        arrays = [self.rgb] + ([self.luma] if self.luma is not None else [])
        return (sum(t.element_size() * t.nelement() for t in tensors if t is not None)
                + sum(a.nbytes for a in arrays))

    @property
    def win(self) -> torch.Tensor:
        """pytorch-msssim's 1-D Gaussian window, one per RGB channel."""
        return _window(self.device)

    def level(self, i: int) -> SsimLevel:
        while len(self.levels) <= i:
            if not self.levels:
                x = self.x
            else:
                prev = self.levels[-1].x
                x = pool2(prev, (prev.shape[2] % 2, prev.shape[3] % 2))
            mu = _gauss(x, self.win)
            mu_sq = mu.pow(2)
            self.levels.append(SsimLevel(x, mu, mu_sq, _gauss(x * x, self.win).sub_(mu_sq)))
        return self.levels[i]


_WINDOWS: dict[str, torch.Tensor] = {}


def _window(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _WINDOWS:
        _WINDOWS[key] = _fspecial_gauss_1d(SSIM_WIN, SSIM_SIGMA).repeat(3, 1, 1, 1).to(device)
    return _WINDOWS[key]


_CACHE: OrderedDict[tuple, RefStats] = OrderedDict()


def ref_stats(ref: np.ndarray, ref_key: str | None, device: torch.device) -> RefStats:
    """The original's statistics: cached by (``ref_key``, shape, device) when a key is given."""
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
        self.stats, self.rec = stats, rec
        self._y: torch.Tensor | None = None
        self._x01: torch.Tensor | None = None
        self.ssim_y: torch.Tensor | None = None  # the reconstruction at the last SSIM scale computed
        self.ssim_levels: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ssim, cs) per channel and scale
        self.values: dict[str, float] = {}

    @property
    def ref(self) -> np.ndarray:
        return self.stats.rgb

    @property
    def y(self) -> torch.Tensor:
        if self._y is None:
            self._y = to_tensor(self.rec, self.stats.device)
        return self._y

    @property
    def x(self) -> torch.Tensor:
        return self.stats.x

    @property
    def x01(self) -> torch.Tensor:
        """The reconstruction / 255 (piq gmsd's rescaling)."""
        if self._x01 is None:
            self._x01 = self.y / PEAK
        return self._x01


def psnr_from_mse(mse: float, peak: float = PEAK) -> float:
    """PSNR in dB; +inf for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def squared_error_sum(x: torch.Tensor, y: torch.Tensor) -> int:
    """Exact sum of squared differences of two float32 tensors of 8-bit values: differences and
    squares (<= 255²) are exact in float32, and the sum is accumulated in float64 (exact below 2^53)."""
    diff = y - x
    return int(torch.sum(diff * diff, dtype=torch.float64).item())


def psnr_rgb(pair: Pair) -> float:
    return psnr_from_mse(squared_error_sum(pair.x, pair.y) / pair.ref.size)


def luma_bt709(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma in float64 (0.2126 R + 0.7152 G + 0.0722 B)."""
    return rgb.astype(np.float64) @ np.asarray((0.2126, 0.7152, 0.0722))


def psnr_y(pair: Pair) -> float:
    stats = pair.stats
    if stats.luma is None:
        stats.luma = luma_bt709(stats.rgb)
    diff = stats.luma - luma_bt709(pair.rec)
    return psnr_from_mse(float(np.mean(diff * diff)))


def ssim_scales(pair: Pair, scales: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """pytorch-msssim ``_ssim`` at the first ``scales`` scales: (ssim, cs) per channel, shape (1, 3)."""
    c1, c2 = (SSIM_K[0] * PEAK) ** 2, (SSIM_K[1] * PEAK) ** 2
    stats = pair.stats
    while len(pair.ssim_levels) < scales:
        i = len(pair.ssim_levels)
        ref = stats.level(i)
        prev = pair.ssim_y
        y = pair.y if prev is None else pool2(prev, (prev.shape[2] % 2, prev.shape[3] % 2))
        win = stats.win
        # pytorch-msssim's _ssim, in place where it allocates (same operations and order;
        # its multiplications by compensation = 1.0 change no bit and are left out)
        mu2 = _gauss(y, win)
        mu2_sq = mu2.pow(2)
        mu1_mu2 = mu2.mul_(ref.mu)
        sigma2_sq = _gauss(y * y, win).sub_(mu2_sq)
        sigma12 = _gauss(ref.x * y, win).sub_(mu1_mu2)
        cs_map = sigma12.mul_(2).add_(c2).div_(sigma2_sq.add_(ref.sigma_sq).add_(c2))
        ssim_map = mu1_mu2.mul_(2).add_(c1).div_(mu2_sq.add_(ref.mu_sq).add_(c1)).mul_(cs_map)
        pair.ssim_levels.append((torch.flatten(ssim_map, 2).mean(-1), torch.flatten(cs_map, 2).mean(-1)))
        pair.ssim_y = y
    return pair.ssim_levels[:scales]


def ms_ssim(pair: Pair) -> float:
    side = min(pair.ref.shape[:2])
    if side < MS_SSIM_MIN_SIDE:
        raise ValueError(f"shorter side must be at least {MS_SSIM_MIN_SIDE} for 5 scales")
    levels = ssim_scales(pair, len(MS_SSIM_WEIGHTS))
    weights = pair.y.new_tensor(MS_SSIM_WEIGHTS)
    mcs = [torch.relu(cs) for _, cs in levels[:-1]]
    last = torch.relu(levels[-1][0])
    val = torch.prod(torch.stack([*mcs, last], dim=0) ** weights.view(-1, 1, 1), dim=0)
    return val.mean().item()


def ssim(pair: Pair) -> float:
    if min(pair.ref.shape[:2]) < SSIM_WIN:
        raise ValueError(f"shorter side must be at least {SSIM_WIN} (the Gaussian window)")
    return ssim_scales(pair, 1)[0][0].mean().item()


def haar_responses(x: torch.Tensor) -> Haar:
    """What piq haarpsi (data_range 255) derives from one image: per Haar scale the
    |coefficients| (1, 2, h, w: horizontal, vertical) of the 2x2-averaged luma, and the
    |2x2 stride-1 averages| of the subsampled I and Q (each 1, 1, h, w).

    piq first rescales x / 255 * 255, which in float32 gives back every 8-bit value exactly
    (tested), so that step is left out."""
    luma, i, q = (pool2(_pad_even(yiq_channel(x, row))) for row in range(3))
    coefficients = []
    for scale in range(HAAR_SCALES):
        k = 2 ** (scale + 1)
        h = torch.ones((k, k), dtype=luma.dtype, device=luma.device) / k
        h[k // 2:, :] = -h[k // 2:, :]
        kernels = torch.stack([h.unsqueeze(0), h.unsqueeze(0).transpose(-1, -2)])
        pad = [k // 2 - 1, k // 2, k // 2 - 1, k // 2]
        coefficients.append(torch.abs(F.conv2d(F.pad(luma, pad=pad, mode="constant"), kernels)))
    i, q = (torch.abs(pool2_stride1(F.pad(c, pad=[0, 1, 0, 1]))) for c in (i, q))
    return coefficients, i, q


def _similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    """piq ``similarity_map`` with alpha = 0 (its ``- 0 * a * b`` terms change no bit)."""
    return (2.0 * a).mul_(b).add_(constant).div_(a.pow(2).add_(b.pow(2)).add_(constant))


def haarpsi(pair: Pair) -> float:
    """piq ``haarpsi(rec, ref, data_range=255)``, same float32 operations and reductions."""
    if min(pair.ref.shape[:2]) < HAARPSI_MIN_SIDE:
        raise ValueError(f"shorter side must be at least {HAARPSI_MIN_SIDE} for {HAAR_SCALES} Haar scales")
    stats = pair.stats
    if stats.haar is None:
        stats.haar = haar_responses(stats.x)
    coeff_y, i_y, q_y = stats.haar
    coeff_x, i_x, q_x = haar_responses(pair.y)
    weights = torch.max(coeff_x[2], coeff_y[2])
    # piq sums each similarity over two channels (scales 1 and 2, or I and Q), then halves
    sim = [(_similarity(coeff_x[0][:, o:o + 1], coeff_y[0][:, o:o + 1], HAAR_C)
            + _similarity(coeff_x[1][:, o:o + 1], coeff_y[1][:, o:o + 1], HAAR_C)) / 2 for o in range(2)]
    sim.append((_similarity(i_x, i_y, HAAR_C) + _similarity(q_x, q_y, HAAR_C)) / 2)
    sim_map = torch.cat(sim, dim=1)
    weights = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)
    eps = torch.finfo(sim_map.dtype).eps
    score = (((sim_map * HAAR_ALPHA).sigmoid() * weights).sum(dim=[1, 2, 3]) + eps) / \
        (torch.sum(weights, dim=[1, 2, 3]) + eps)
    return ((torch.log(score / (1 - score)) / HAAR_ALPHA) ** 2).mean().item()


def _gradient_magnitude(x01: torch.Tensor) -> torch.Tensor:
    """piq gmsd's luma of x / 255, 2x2 average and Prewitt gradient magnitude."""
    y = pool2(_pad_even(yiq_channel(x01, 0)))
    p = torch.tensor([[[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]], dtype=y.dtype, device=y.device) / 3
    kernels = torch.stack([p, p.transpose(-1, -2)])
    grads = F.conv2d(y, kernels, padding=1)
    return torch.sqrt(torch.sum(grads ** 2, dim=-3, keepdim=True))


def gmsd(pair: Pair) -> float:
    """piq ``gmsd(rec, ref, data_range=255)``."""
    stats = pair.stats
    if stats.grad is None:
        stats.grad = _gradient_magnitude(stats.x / PEAK)
    gms = _similarity(_gradient_magnitude(pair.x01), stats.grad, GMSD_T)
    mean_gms = torch.mean(gms, dim=[1, 2, 3], keepdim=True)
    return torch.pow(gms - mean_gms, 2).mean(dim=[1, 2, 3]).sqrt().mean().item()


def timed(func, pair: Pair, timings: dict[str, float] | None, name: str):
    """Run ``func(pair)``; add its seconds to ``timings[name]`` when timings are collected."""
    start = time.perf_counter()
    try:
        return func(pair)
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
