"""The filters, pooling, colour transforms and sums of the metric engine, per device.

Every function takes and returns (1, C, H, W) float tensors. On CPU such a tensor is a view of an
H x W x C array (channels-last memory), handed to OpenCV without a copy: ``cv2.sepFilter2D``
(separable correlation), ``cv2.resize`` (exact 2x2 means), ``cv2.transform`` (a per-pixel colour
matrix) and ``cv2.sumElems`` (sums accumulated in float64) are 2-10x faster on one core than the
torch operations that compute the same values, which run on CUDA tensors. Both sides are
checked against the float64 definitions in the tests, not against each other bit for bit.
"""

from __future__ import annotations

import ctypes
import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d

SSIM_WIN, SSIM_SIGMA = 11, 1.5
OPENCV_DEVICES = ("cpu",)  # the tests empty it to run the torch side on CPU tensors
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
GAUSS = _fspecial_gauss_1d(SSIM_WIN, SSIM_SIGMA).flatten().numpy()  # pytorch-msssim's float32 window


def opencv(device: torch.device) -> bool:
    """Whether tensors on ``device`` go to OpenCV (CPU) rather than to torch's operations (CUDA)."""
    return device.type in OPENCV_DEVICES


def sync_threads() -> None:
    """Let OpenCV use as many threads as torch (one in a benchmark worker)."""
    threads = torch.get_num_threads()
    if cv2.getNumThreads() != threads:
        cv2.setNumThreads(threads)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (heap blocks up to 32 MiB, up to 128 MiB kept free)
    rather than unmap it and fault it in again: each reconstruction allocates and frees ~30 MB of
    temporaries, and on the 2-core VM measured the ~5000 page faults of mapping them afresh took
    ~8 ms of a Kodak image's ~27 ms. Once per process; False where malloc is not glibc's."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 128 << 20))
    except (OSError, AttributeError):
        return False


def hwc(x: torch.Tensor) -> np.ndarray:
    """The H x W x C array (H x W for one channel) behind a CPU (1, C, H, W) tensor: a view when each pixel's
    channels are adjacent in memory (channels-last, a crop of it allowed), else a copy."""
    a = x[0, 0] if x.shape[1] == 1 else x[0].permute(1, 2, 0)
    if a.stride(-1) != 1 or (a.ndim == 3 and a.stride(1) != a.shape[2]):
        a = a.contiguous()
    return a.numpy()


def nchw(a: np.ndarray) -> torch.Tensor:
    """An H x W (x C) array as a (1, C, H, W) tensor over the same memory."""
    return torch.from_numpy(a if a.ndim == 3 else a[:, :, None]).permute(2, 0, 1).unsqueeze(0)


def gaussian(x: torch.Tensor) -> torch.Tensor:
    """pytorch-msssim's ``gaussian_filter``: the 11-tap Gaussian (σ 1.5) along both axes, valid region only.
    8-bit input gives float32 (and is filtered 1.4x faster than float32 input on CPU)."""
    if opencv(x.device):
        r = SSIM_WIN // 2
        a = hwc(x)
        depth = cv2.CV_64F if a.dtype == np.float64 else cv2.CV_32F
        kernel = GAUSS.astype(np.float64 if depth == cv2.CV_64F else np.float32)
        return nchw(cv2.sepFilter2D(a, depth, kernel, kernel, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r])
    if not x.is_floating_point():
        x = x.float()
    win = torch.from_numpy(GAUSS).to(x).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    out = F.conv2d(x, win, groups=x.shape[1])
    return F.conv2d(out, win.transpose(2, 3), groups=x.shape[1])


def pool2(x: torch.Tensor, leading: bool) -> torch.Tensor:
    """2x2 means, stride 2; an odd side first gets one zero row or column, counted in the mean, before
    it (``leading``: pytorch-msssim's ``avg_pool2d(x, 2, padding=side % 2)``) or after it (piq's pad)."""
    ph, pw = x.shape[2] % 2, x.shape[3] % 2
    if opencv(x.device):
        a = hwc(x)
        if ph or pw:
            top, left = (ph, pw) if leading else (0, 0)
            a = cv2.copyMakeBorder(a, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=(0.0, 0.0, 0.0, 0.0))
        # bilinear at exactly half size: the mean of each 2x2 block, 3x faster than INTER_AREA
        return nchw(cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_LINEAR))
    pad = [pw, 0, ph, 0] if leading else [0, pw, 0, ph]
    return F.avg_pool2d(F.pad(x, pad), 2)


def correlate(x: torch.Tensor, kx: tuple[float, ...], ky: tuple[float, ...], anchor: tuple[int, int]) -> torch.Tensor:
    """Correlation of each channel with the separable kernel ky ⊗ kx, output pixel (i, j) taking input
    (i - anchor[1] + a, j - anchor[0] + b) times ky[a] kx[b], zeros outside the image (same size out)."""
    if opencv(x.device):
        a = hwc(x)
        kx_, ky_ = np.asarray(kx, dtype=a.dtype), np.asarray(ky, dtype=a.dtype)
        return nchw(cv2.sepFilter2D(a, -1, kx_, ky_, anchor=anchor, borderType=cv2.BORDER_CONSTANT))
    kernel = torch.outer(torch.tensor(ky, dtype=x.dtype), torch.tensor(kx, dtype=x.dtype)).to(x.device)
    channels = x.shape[1]
    padded = F.pad(x, [anchor[0], len(kx) - 1 - anchor[0], anchor[1], len(ky) - 1 - anchor[1]])
    return F.conv2d(padded, kernel.expand(channels, 1, -1, -1), groups=channels)


Correlation = tuple[torch.Tensor, tuple[float, ...], tuple[float, ...], tuple[int, int]]  # x, kx, ky, anchor


def correlate_stack(items: list[Correlation]) -> torch.Tensor:
    """``correlate`` of several one-channel (1, 1, H, W) planes, stacked as the channels of one
    (1, K, H, W) tensor (written in place on CPU), so that later arithmetic runs once for all."""
    x = items[0][0]
    if not opencv(x.device):
        return torch.cat([correlate(*item) for item in items], dim=1)
    out = np.empty((len(items), *x.shape[2:]), dtype=hwc(x).dtype)
    for plane, (y, kx, ky, anchor) in zip(out, items, strict=True):
        a = hwc(y)
        kx_, ky_ = np.asarray(kx, dtype=a.dtype), np.asarray(ky, dtype=a.dtype)
        cv2.sepFilter2D(a, -1, kx_, ky_, dst=plane, anchor=anchor, borderType=cv2.BORDER_CONSTANT)
    return torch.from_numpy(out).unsqueeze(0)


def colour_planes(x: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> list[torch.Tensor]:
    """Per pixel, the output channels ``matrix @ (input channels)``, each as a (1, 1, H, W) plane."""
    if opencv(x.device):
        a = hwc(x)
        out = cv2.transform(a, np.asarray(matrix, dtype=a.dtype))
        return [nchw(plane) for plane in (cv2.split(out) if out.ndim == 3 else [out])]
    return [sum(w * x[:, c:c + 1] for c, w in enumerate(row)) for row in matrix]  # type: ignore[misc]


def channel_sums(x: torch.Tensor) -> torch.Tensor:
    """Sum of each channel, float64, shape (C,), on the CPU: there float32 row sums (<= a few thousand terms)
    added in float64 (~1e-7 relative on 10⁶ terms, 2x faster than ``cv2.sumElems``); on CUDA in float64."""
    if opencv(x.device):
        return x[0].sum(dim=2).double().sum(dim=1)
    return torch.sum(x, dim=(0, 2, 3), dtype=torch.float64).cpu()


def square_sum(x: torch.Tensor) -> float:
    """Sum of the squares of all elements, accumulated in float64."""
    if opencv(x.device):
        return float(cv2.norm(hwc(x), cv2.NORM_L2SQR))
    return float(torch.sum(x.double() ** 2))


def difference(a: np.ndarray, b: np.ndarray, device: torch.device) -> torch.Tensor:
    """a - b of two uint8 H x W x 3 arrays as a float32 (1, 3, H, W) tensor on ``device`` (exact)."""
    if opencv(device):
        return nchw(cv2.subtract(a, b, dtype=cv2.CV_32F))
    return nchw(a).to(device).float().sub_(nchw(b).to(device))


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared differences of two arrays, accumulated in float64 (exact for 8-bit samples)."""
    return float(cv2.norm(a, b, cv2.NORM_L2SQR))
