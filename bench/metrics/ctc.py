"""The JPEG AI common-test-condition (CTC) metrics, computed as the CTC's reference software does.

Source: ISO/IEC JTC 1/SC 29/WG 1 N89022, "Report on the JPEG AI Call for Evidence Results" §4
(objective quality metrics), and the JPEG AI Objective Quality Assessment Framework (QAF) that
implements the CTC (wg1n92048 "JPEG AI Common Training and Test Conditions"). The QAF reads an 8-bit
sRGB PNG, rounds R'G'B' / 255 to ``CTC_BITS`` (10) bits, converts to BT.709 full-range Y'CbCr
(Y' = 0.2126 R' + 0.7152 G' + 0.0722 B', Cb = (B' - Y') / 1.8556 + 1/2, Cr = (R' - Y') / 1.5748 + 1/2),
clips to [0, 1] and rounds each plane to 10 bits again; every metric but FSIM then reads these planes:

- PSNR per plane with peak 1023 (``psnr-y10``, ``psnr-cb10``, ``psnr-cr10``) and the 6:1:1 weighted
  average of the three (``psnr-ycbcr``, the usual Y'CbCr PSNR of MPEG and JPEG AI);
- MS-SSIM (pytorch-msssim) on Y' × 1023 with data_range 1023;
- IW-SSIM, VIF (pixel domain) on Y' (piq; the QAF used IW_SSIM_PyTorch and IQA_pytorch's VIFs);
- NLPD on Y' (IQA_pytorch, the library the QAF calls);
- PSNR-HVS-M on Y', padded to a multiple of 8 by edge replication (psnr-hvsm, the QAF's library);
- VMAF (libvmaf, default model vmaf_v0.6.1) on the 10-bit 4:4:4 planes, as the QAF runs Netflix's
  ``vmaf`` tool; here through the ffmpeg that imageio-ffmpeg ships, which is built with libvmaf;
- FSIM (FSIMc) on R'G'B': the existing ``fsim`` metric (piq).

Every function takes the engine's ``Pair`` (original statistics and reconstruction); the planes of a
pair are computed once (``planes``) and shared by all CTC metrics of that reconstruction.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .optional import MetricUnavailable
from .per_object import PerObject

if TYPE_CHECKING:
    import torch

    from .engine import Pair

CTC_BITS = 10
CTC_PEAK = (1 << CTC_BITS) - 1  # 1023
YCBCR_WEIGHTS = (6, 1, 1)  # Y', Cb, Cr weights of the averaged PSNR
VMAF_MODEL = "vmaf_v0.6.1"  # libvmaf's default model, the one the CTC names
VMAF_TIMEOUT_S = 600


def _div_round_half_even(num: np.ndarray, den: int) -> np.ndarray:
    """num / den rounded to the nearest integer, ties to even, in exact integer arithmetic."""
    q, r = np.divmod(num, den)
    return q + ((2 * r > den) | ((2 * r == den) & (q % 2 == 1)))


def ycbcr_codes(rgb: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 R'G'B' -> int64 3 x H x W Y'CbCr 10-bit codes: the QAF's conversion (R'G'B' / 255
    rounded to 10 bits, BT.709 full range, clipped, rounded to 10 bits) in exact rational arithmetic.

    With 10-bit R'G'B' codes R, G, B: Y' = (2126 R + 7152 G + 722 B) / 10000,
    Cb = (9278 B - 2126 R - 7152 G) / 18556 + 511.5 and Cr = (7874 R - 7152 G - 722 B) / 15748 + 511.5
    (the BT.709 equations times 1023). Many samples sit exactly on a half step (a grey pixel's chroma is
    511.5): floating point would round those either way by its rounding error; here they go to the even code.
    """
    r, g, b = np.moveaxis(_div_round_half_even(rgb.astype(np.int64) * CTC_PEAK, 255), -1, 0)
    y = _div_round_half_even(2126 * r + 7152 * g + 722 * b, 10000)
    cb = _div_round_half_even(2 * (9278 * b - 2126 * r - 7152 * g) + 18556 * CTC_PEAK, 2 * 18556)
    cr = _div_round_half_even(2 * (7874 * r - 7152 * g - 722 * b) + 15748 * CTC_PEAK, 2 * 15748)
    return np.clip(np.stack([y, cb, cr]), 0, CTC_PEAK)


def ycbcr_planes(rgb: np.ndarray) -> np.ndarray:
    """The CTC Y'CbCr planes as float64 3 x H x W in [0, 1] (``ycbcr_codes`` / 1023)."""
    return ycbcr_codes(rgb) / CTC_PEAK


_REF_PLANES = PerObject()  # per original's statistics (cached across reconstructions with a ref_key)
_REC_PLANES = PerObject()  # per pair
_HVS = PerObject()  # per pair: (PSNR-HVS, PSNR-HVS-M)


def planes(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(original, reconstruction) Y'CbCr planes, each computed once per original and per pair."""
    return (_REF_PLANES.get(pair.stats, lambda: ycbcr_planes(pair.ref)),
            _REC_PLANES.get(pair, lambda: ycbcr_planes(pair.rec)))


def _psnr_10bit(a: np.ndarray, b: np.ndarray) -> float:
    diff = (a - b) * CTC_PEAK
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(CTC_PEAK ** 2 / mse)


def psnr_plane(index: int):
    """PSNR of one Y'CbCr plane (0: Y', 1: Cb, 2: Cr) on 10-bit values, peak 1023."""
    def compute(pair: Pair) -> float:
        ref, rec = planes(pair)
        return _psnr_10bit(ref[index], rec[index])

    return compute


def psnr_ycbcr(pair: Pair) -> float:
    """(6 PSNR-Y' + PSNR-Cb + PSNR-Cr) / 8, from the three stored plane PSNRs."""
    values = [pair.values[name] for name in ("psnr-y10", "psnr-cb10", "psnr-cr10")]
    return sum(w * v for w, v in zip(YCBCR_WEIGHTS, values, strict=True)) / sum(YCBCR_WEIGHTS)


def _luma_tensors(pair: Pair, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Y' of the original and the reconstruction as float32 (1, 1, H, W) tensors on the pair's device."""
    import torch

    def luma(p: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(p[0] * scale).float().to(pair.stats.device)[None, None]

    ref, rec = planes(pair)
    return luma(ref), luma(rec)


def ms_ssim_y(pair: Pair) -> float:
    """pytorch-msssim ``ms_ssim`` on Y' × 1023, data_range 1023 (the QAF's MSSSIMTorch)."""
    from pytorch_msssim import ms_ssim

    x, y = _luma_tensors(pair, CTC_PEAK)
    return ms_ssim(x, y, data_range=CTC_PEAK).item()


def iw_ssim_y(pair: Pair) -> float:
    """piq ``information_weighted_ssim`` on Y' in [0, 1]."""
    import piq

    x, y = _luma_tensors(pair)
    return piq.information_weighted_ssim(x, y, data_range=1.0).item()


def vif_y(pair: Pair) -> float:
    """piq ``vif_p`` (pixel-domain VIF) on Y' in [0, 1]; piq's argument order (distorted, reference)."""
    import piq

    x, y = _luma_tensors(pair)
    return piq.vif_p(y, x, data_range=1.0).item()


@functools.lru_cache(maxsize=4)
def _nlpd_model(device: str):
    from IQA_pytorch import NLPD

    return NLPD(channels=1).to(device)


def nlpd_y(pair: Pair) -> float:
    """IQA_pytorch ``NLPD(channels=1)(reconstruction, original)`` on Y' in [0, 1]; lower is better."""
    x, y = _luma_tensors(pair)
    return _nlpd_model(str(pair.stats.device))(y, x, as_loss=False).item()


def pad_to_multiple(plane: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Edge-replicate the bottom and right so both sides are multiples of ``multiple``."""
    h, w = plane.shape
    return np.pad(plane, ((0, -h % multiple), (0, -w % multiple)), mode="edge")


def _psnr_hvs_pair(pair: Pair) -> tuple[float, float]:
    """(PSNR-HVS, PSNR-HVS-M) of Y', from psnr-hvsm's C++ backend (its numpy one where that is missing)."""
    import psnr_hvsm

    def compute() -> tuple[float, float]:
        ref, rec = planes(pair)
        backend = psnr_hvsm.BACKENDS.get("cpp", psnr_hvsm.BACKENDS["numpy"])
        with np.errstate(divide="ignore", invalid="ignore"):  # its flat-block and identical-image branches
            hvs, hvsm = backend["psnr_hvs_hvsm"](pad_to_multiple(ref[0]), pad_to_multiple(rec[0]))
        return float(hvs), float(hvsm)

    return _HVS.get(pair, compute)


def psnr_hvs_m_y(pair: Pair) -> float:
    """psnr-hvsm's PSNR-HVS-M on Y' in [0, 1], padded to multiples of 8 (the QAF's padding)."""
    return _psnr_hvs_pair(pair)[1]


def psnr_hvs_y(pair: Pair) -> float:
    """psnr-hvsm's PSNR-HVS (without the masking model) on Y', the variant the QAF's summary reports."""
    return _psnr_hvs_pair(pair)[0]


# --- VMAF through ffmpeg's libvmaf filter ----------------------------------------------------------
@functools.lru_cache(maxsize=1)
def vmaf_ffmpeg() -> str:
    """Path of an ffmpeg built with libvmaf: imageio-ffmpeg's (``IMAGEIO_FFMPEG_EXE`` overrides it),
    else one on PATH; ``MetricUnavailable`` saying why when there is none."""
    candidates = []
    try:
        import imageio_ffmpeg

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    if shutil.which("ffmpeg"):
        candidates.append(str(shutil.which("ffmpeg")))
    for exe in candidates:
        out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True, check=False)
        if any(line.split()[1:2] == ["libvmaf"] for line in out.stdout.splitlines()):
            return exe
    raise MetricUnavailable("no ffmpeg with the libvmaf filter: install imageio-ffmpeg (it ships one) or set "
                          f"IMAGEIO_FFMPEG_EXE to an ffmpeg built with --enable-libvmaf (looked at: "
                          f"{', '.join(candidates) or 'none found'})")


def _write_yuv444p10(planes_01: np.ndarray, path: Path) -> None:
    """3 x H x W planes in [0, 1] on the 10-bit grid -> planar yuv444p10le (little-endian uint16)."""
    np.round(planes_01 * CTC_PEAK).astype("<u2").tofile(path)


def vmaf_score(ref_planes: np.ndarray, rec_planes: np.ndarray, ffmpeg: str | None = None) -> float:
    """libvmaf's VMAF (model vmaf_v0.6.1) of 10-bit 4:4:4 planes: ffmpeg's libvmaf filter, distorted
    input first, reference second, one thread; the pooled mean of the single frame."""
    exe = ffmpeg or vmaf_ffmpeg()
    _, h, w = ref_planes.shape
    with tempfile.TemporaryDirectory(prefix="vmaf-") as tmp:
        ref_file, rec_file, log = Path(tmp, "ref.yuv"), Path(tmp, "rec.yuv"), Path(tmp, "vmaf.json")
        _write_yuv444p10(ref_planes, ref_file)
        _write_yuv444p10(rec_planes, rec_file)
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv444p10le", "-s", f"{w}x{h}", "-i"]
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *raw, str(rec_file), *raw, str(ref_file),
               "-lavfi", f"libvmaf=model=version={VMAF_MODEL}:n_threads=1:log_fmt=json:log_path={log}",
               "-f", "null", "-"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=VMAF_TIMEOUT_S, check=False)
        if done.returncode != 0 or not log.exists():
            raise RuntimeError(f"ffmpeg libvmaf failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])


def vmaf(pair: Pair) -> float:
    ref, rec = planes(pair)
    return vmaf_score(ref, rec)
