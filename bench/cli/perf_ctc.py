"""``bench.cli.perf --section metrics``, the opt-in part: the JPEG AI CTC set against its libraries called
one by one (as a user's script following the CTC software would), and every metric's cost per megapixel.

Both sides run in this process, side by side and alternating, so the ratio holds on a loaded machine.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

PERF_IMAGES = 4  # Kodak images per measurement: the CTC set costs seconds per image


def ctc_by_libraries(ref: np.ndarray, rec: np.ndarray, nlpd) -> None:
    """The CTC set as a script would compute it: its own float64 BT.709 conversion, then each library."""
    import piq
    import torch
    from psnr_hvsm import psnr_hvs_hvsm
    from pytorch_msssim import ms_ssim

    from ..metrics.ctc import vmaf_score

    matrix = np.array([[0.2126, 0.7152, 0.0722], [-0.2126 / 1.8556, -0.7152 / 1.8556, 0.5],
                       [0.5, -0.7152 / 1.5748, -0.0722 / 1.5748]])

    def planes(rgb: np.ndarray) -> np.ndarray:
        rgb10 = np.round(rgb / 255.0 * 1023) / 1023
        yuv = np.einsum("ij,hwj->ihw", matrix, rgb10) + np.array([0, 0.5, 0.5])[:, None, None]
        return np.round(np.clip(yuv, 0, 1) * 1023) / 1023

    a, b = planes(ref), planes(rec)
    for i in range(3):
        float(np.mean(((a[i] - b[i]) * 1023) ** 2))
    x, y = (torch.from_numpy(p[0]).float()[None, None] for p in (a, b))
    xr, yr = (torch.from_numpy(p.copy()).float().permute(2, 0, 1)[None] for p in (ref, rec))
    with torch.no_grad():
        ms_ssim(x * 1023, y * 1023, data_range=1023).item()
        piq.information_weighted_ssim(x, y, data_range=1.0).item()
        piq.vif_p(y, x, data_range=1.0).item()
        piq.fsim(yr, xr, data_range=255.0).item()
        nlpd(y, x, as_loss=False).item()
    pad = [(0, -s % 8) for s in a[0].shape]
    with np.errstate(divide="ignore", invalid="ignore"):
        psnr_hvs_hvsm(np.pad(a[0], pad, mode="edge"), np.pad(b[0], pad, mode="edge"))
    vmaf_score(a, b)


def ctc_section(pairs: list, side_by_side) -> None:
    """Print the CTC set's time through compute_metrics against its libraries one by one (target <= 3x)."""
    from IQA_pytorch import NLPD

    from ..metrics import compute_metrics, resolve_metrics

    names = resolve_metrics(["ctc"])
    nlpd = NLPD(channels=1)
    ref, rec = pairs[0]
    ctc_by_libraries(ref, rec, nlpd)  # warm-up: imports, the ffmpeg binary
    lib_s = ours_s = 0.0
    for i, (ref, rec) in enumerate(pairs):
        lib, ours = side_by_side(i % 2 == 0, partial(ctc_by_libraries, ref, rec, nlpd),
                                 partial(compute_metrics, ref, rec, names))
        lib_s, ours_s = lib_s + lib, ours_s + ours
    n = len(pairs)
    print(f"  CTC set ({n} images): libraries one by one {1000 * lib_s / n:.0f} ms/image, compute_metrics "
          f"{1000 * ours_s / n:.0f} ms/image -> {ours_s / lib_s:.2f}x the libraries' time (target <= 3x)")


def cost_per_megapixel(pairs: list) -> dict[str, float]:
    """Milliseconds per megapixel of every metric that can run here (``timings`` of compute_metrics; work
    shared by several metrics is charged to the first that needs it, so run each metric on its own)."""
    from ..metrics import METRICS, compute_metrics, resolve_metrics

    megapixels = sum(ref.shape[0] * ref.shape[1] for ref, _ in pairs) / 1e6
    costs = {}
    for name, info in METRICS.items():
        if info.available():
            continue
        names = resolve_metrics([name])
        compute_metrics(pairs[0][0], pairs[0][1], names)  # warm-up: imports, models
        timings: dict[str, float] = {}
        for ref, rec in pairs:
            compute_metrics(ref, rec, names, timings=timings)
        costs[name] = 1000 * sum(timings.values()) / megapixels
    return costs


def print_costs(pairs: list) -> None:
    start = time.perf_counter()
    costs = cost_per_megapixel(pairs)
    print(f"  cost per megapixel, each metric alone with what it requires ({len(pairs)} images, "
          f"{time.perf_counter() - start:.0f} s): " + ", ".join(f"{k} {v:.0f} ms" for k, v in costs.items()))
