"""The JPEG AI CTC metrics against their reference libraries, called here directly on Y'CbCr planes the
test computes itself from ITU-R BT.709's matrix (not with bench's conversion), and VMAF against an
independent implementation (vmaf-torch)."""

import io
import math
import warnings

import numpy as np
import piq
import pytest
import torch
from IQA_pytorch import NLPD
from PIL import Image
from psnr_hvsm import BACKENDS
from pytorch_msssim import ms_ssim

from bench.datasets.images import load_image
from bench.metrics import CTC_AVERAGED, CTC_METRICS, METRICS, MetricError, compute_metrics, ctc, resolve_metrics

from .conftest import KODAK, photo

# ITU-R BT.709 R'G'B' -> Y'CbCr (full range, chroma centred on 1/2): Y' row from Kr = 0.2126, Kb = 0.0722;
# Cb = (B' - Y') / 1.8556, Cr = (R' - Y') / 1.5748.
BT709 = np.array([[0.2126, 0.7152, 0.0722],
                  [-0.2126 / 1.8556, -0.7152 / 1.8556, 0.5],
                  [0.5, -0.7152 / 1.5748, -0.0722 / 1.5748]])


def ycbcr10(rgb: np.ndarray) -> np.ndarray:
    """The CTC planes as 10-bit integers (3 x H x W), by the matrix form of BT.709 in float64; values within
    1e-6 of a half step are exact half steps (e.g. a grey pixel's chroma) and round half to even."""
    rgb10 = np.round(rgb.astype(np.float64) / 255 * 1023) / 1023
    out = (np.einsum("ij,hwj->ihw", BT709, rgb10) + np.array([0, 0.5, 0.5])[:, None, None]) * 1023
    halves = np.round(out * 2) / 2
    return np.round(np.clip(np.where(np.abs(out - halves) < 1e-6, halves, out), 0, 1023))


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def kodak_or_photo(index: int) -> np.ndarray:
    path = KODAK / f"kodim{index:02d}.png"
    return load_image(path).rgb if path.is_file() else photo(512, 768, ("astronaut", "coffee")[index % 2])


def library_values(ref: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    """Each CTC metric as its library computes it, on this test's own planes."""
    a, b = ycbcr10(ref), ycbcr10(rec)
    out = {}
    for name, i in (("psnr-y10", 0), ("psnr-cb10", 1), ("psnr-cr10", 2)):
        out[name] = 10 * math.log10(1023**2 / np.mean((a[i] - b[i]) ** 2))
    out["psnr-ycbcr"] = (6 * out["psnr-y10"] + out["psnr-cb10"] + out["psnr-cr10"]) / 8
    x, y = (torch.tensor(p[0], dtype=torch.float32)[None, None] for p in (a, b))
    with torch.no_grad():
        out["ms-ssim-y"] = ms_ssim(x, y, data_range=1023).item()
        out["iw-ssim-y"] = piq.information_weighted_ssim(x / 1023, y / 1023, data_range=1.0).item()
        out["vif-y"] = piq.vif_p(y / 1023, x / 1023, data_range=1.0).item()
        out["nlpd-y"] = NLPD(channels=1)(y / 1023, x / 1023, as_loss=False).item()
        xr, yr = (torch.tensor(p, dtype=torch.float32).unsqueeze(0).permute(0, 3, 1, 2) for p in (ref, rec))
        out["fsim"] = piq.fsim(yr, xr, data_range=255.0).item()
    pad = [(0, -s % 8) for s in a[0].shape]
    with np.errstate(divide="ignore", invalid="ignore"):  # the numpy backend: the library's reference code
        out["psnr-hvs-m-y"] = float(BACKENDS["numpy"]["psnr_hvs_hvsm"](np.pad(a[0] / 1023, pad, mode="edge"),
                                                                        np.pad(b[0] / 1023, pad, mode="edge"))[1])
    return out


def test_planes_are_bt709_full_range_on_the_10_bit_grid():
    """Equal to the matrix form of BT.709, exact half steps rounded to even (a grey pixel's chroma 511.5 -> 512)."""
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255], [12, 200, 77]]], dtype=np.uint8)
    planes = ctc.ycbcr_planes(rgb)
    assert planes[:, 0, 0].tolist() == [1.0, 512 / 1023, 512 / 1023]  # white: Y' = 1, Cb = Cr = 511.5 -> 512
    assert planes[2, 0, 2] == 1.0 and planes[1, 0, 3] == 1.0  # pure red: Cr = 1; pure blue: Cb = 1
    photo_rgb = np.concatenate([photo(64, 96), np.full((4, 96, 3), 77, np.uint8)])  # with grey rows
    assert np.array_equal(ctc.ycbcr_codes(photo_rgb), ycbcr10(photo_rgb))
    assert np.abs(ctc.ycbcr_planes(photo_rgb) * 1023 - ycbcr10(photo_rgb)).max() < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("index,quality", [(1, 20), (23, 60)])
def test_ctc_metrics_equal_their_libraries_on_kodak(index, quality):
    """Two Kodak images (or Kodak-sized photos without ../shared): each CTC metric equals its library's
    value on independently converted planes (float32 libraries: a relative 1e-5; PSNRs: 1e-9 dB)."""
    ref = kodak_or_photo(index)
    rec = jpeg(ref, quality)
    ours = compute_metrics(ref, rec, resolve_metrics(["ctc"]))
    expected = library_values(ref, rec)
    for name in set(CTC_METRICS) - {"vmaf"}:
        tol = 1e-9 if name.startswith("psnr-") and name != "psnr-hvs-m-y" else 1e-5 * abs(expected[name])
        assert ours[name] == pytest.approx(expected[name], abs=tol), name
    assert 20 < ours["vmaf"] < 100


@pytest.mark.slow
def test_vmaf_equals_an_independent_implementation():
    """libvmaf (through ffmpeg) against vmaf-torch, a PyTorch re-implementation of VMAF v0.6.1 (it states a mean
    |difference| of 0.006 and at most 0.027 on Netflix's public dataset), at three JPEG qualities; and the
    ordering: identical > mild > strong distortion."""
    vmaf_torch = pytest.importorskip("vmaf_torch")
    ref = kodak_or_photo(1)
    scores = []
    for quality in (10, 40, 90):
        rec = jpeg(ref, quality)
        ours = compute_metrics(ref, rec, ("vmaf",))["vmaf"]
        x, y = (torch.tensor(ycbcr10(p)[0] / 1023 * 255, dtype=torch.float32)[None, None] for p in (ref, rec))
        with torch.no_grad():
            theirs = vmaf_torch.VMAF()(x, y).item()
        assert ours == pytest.approx(theirs, abs=0.1), quality
        scores.append(ours)
    identical = compute_metrics(ref, ref, ("vmaf",))["vmaf"]
    assert scores[0] < scores[1] < scores[2] < identical


def test_psnr_hvs_backend_equals_the_reference_numpy_code():
    ref = photo(96, 136)
    rec = jpeg(ref, 30)
    a, b = ycbcr10(ref)[0] / 1023, ycbcr10(rec)[0] / 1023
    pad = ((0, 0), (0, 0))  # 96 x 136: already multiples of 8
    with np.errstate(divide="ignore", invalid="ignore"):
        hvs, hvsm = BACKENDS["numpy"]["psnr_hvs_hvsm"](np.pad(a, pad), np.pad(b, pad))
    values = compute_metrics(ref, rec, ("psnr-hvs-y", "psnr-hvs-m-y"))
    assert values["psnr-hvs-y"] == pytest.approx(float(hvs), abs=1e-9)
    assert values["psnr-hvs-m-y"] == pytest.approx(float(hvsm), abs=1e-9)


def test_padding_replicates_the_edge_to_a_multiple_of_8():
    plane = np.arange(12.0).reshape(3, 4)
    padded = ctc.pad_to_multiple(plane)
    assert padded.shape == (8, 8) and (padded[3:, :4] == plane[-1]).all() and (padded[:3, 4:] == plane[:, -1:]).all()


def test_ctc_set_resolves_and_small_images_give_nan_with_a_warning():
    names = resolve_metrics(["ctc"])
    assert set(names) == set(CTC_METRICS) and set(CTC_AVERAGED) <= set(CTC_METRICS)
    assert names == tuple(n for n in METRICS if n in names)  # registry order: plane PSNRs before their average
    assert resolve_metrics(["default", "vmaf"])[-1] == "vmaf"
    ref = photo(64, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = compute_metrics(ref, jpeg(ref, 50), names)
    assert math.isnan(values["ms-ssim-y"]) and math.isnan(values["iw-ssim-y"]) and math.isnan(values["nlpd-y"])
    assert any("ms-ssim-y not computable for a 64x64 image" in str(w.message) for w in caught)
    assert all(math.isfinite(values[n]) for n in ("psnr-ycbcr", "vif-y", "psnr-hvs-m-y", "vmaf", "fsim"))
    assert values["psnr-ycbcr"] == pytest.approx(
        (6 * values["psnr-y10"] + values["psnr-cb10"] + values["psnr-cr10"]) / 8, abs=1e-12)


def test_vmaf_without_libvmaf_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    """An ffmpeg without the libvmaf filter, and none on PATH: VMAF is refused when selected, with the reason,
    never computed some other way; ``bench metrics`` marks it unavailable."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' ... vmafmotion        V->V       Calculate the VMAF Motion score.'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    ctc.vmaf_ffmpeg.cache_clear()
    try:
        with pytest.raises(MetricError, match=r"metric 'vmaf' is unavailable here: no ffmpeg with the libvmaf "
                                              r"filter.*looked at: .*ffmpeg"):
            resolve_metrics(["ctc"])
        assert resolve_metrics(["psnr-ycbcr"])  # the rest of the set still runs
        with pytest.raises(ImportError):  # in a worker: the job fails, it does not store NaN
            compute_metrics(photo(64, 64), photo(64, 64), ("vmaf",))
    finally:
        ctc.vmaf_ffmpeg.cache_clear()
