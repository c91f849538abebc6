"""Metrics against CompressAI's own functions and known cases."""

import math

import numpy as np
import pytest
import torch
from compressai.transforms.functional import rgb2ycbcr
from compressai.utils.bench.codecs import compute_metrics as compressai_metrics

from bench.adapters import Adapter, configure, discover
from bench.metrics import (
    DEFAULT_METRICS,
    METRIC_SETS,
    METRICS,
    MS_SSIM_MIN_SIDE,
    compute_metrics,
    ms_ssim_db,
    psnr_y,
    resolve_metrics,
)

from .conftest import photo

CODECS = {a.name: configure(a, {}) for a in discover() if isinstance(a, Adapter) and a.name in ("jpeg", "webp", "hevc")}


@pytest.mark.parametrize("codec,quality,size",
                         [("jpeg", 10, (192, 256)), ("webp", 60, (240, 200)), ("hevc", 35, (200, 320))])
def test_equal_to_compressai_compute_metrics(codec, quality, size):
    ref = photo(*size, name="coffee")
    rec = CODECS[codec].decode(CODECS[codec].encode(ref, quality))
    ours = compute_metrics(ref, rec)
    theirs = compressai_metrics(ref, rec, ["psnr-rgb", "ms-ssim-rgb"])
    # CompressAI computes both in float32: its own error is up to 1e-5 dB (PSNR) and 4.6e-5 (MS-SSIM,
    # Kodak JPEG q=5; see FLOAT32_ERROR in test_metric_engine.py), depending on the CPU and thread count.
    assert ours["psnr-rgb"] == pytest.approx(theirs["psnr-rgb"], abs=1e-5)
    assert ours["ms-ssim-rgb"] == pytest.approx(theirs["ms-ssim-rgb"], abs=1e-4)


def test_psnr_y_uses_bt709_luma_like_compressai():
    ref = photo(192, 256)
    rec = CODECS["jpeg"].decode(CODECS["jpeg"].encode(ref, 20))

    def y(x):
        t = torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]
        return rgb2ycbcr(t)[:, :1]

    mse = torch.mean((y(ref) - y(rec)) ** 2).item()
    assert psnr_y(ref, rec) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_known_noise_level():
    """Uniform error of +-3 on every sample: MSE = 9, PSNR = 10 log10(255^2 / 9)."""
    ref = photo(192, 256).astype(np.int16)
    ref = np.clip(ref, 3, 252).astype(np.uint8)
    sign = np.where(np.indices(ref.shape).sum(axis=0) % 2 == 0, 3, -3)
    rec = (ref.astype(np.int16) + sign).astype(np.uint8)
    m = compute_metrics(ref, rec)
    assert m["psnr-rgb"] == pytest.approx(10 * math.log10(255**2 / 9), abs=1e-12)
    assert m["psnr-y"] > m["psnr-rgb"]  # alternating errors partly cancel in luma


def test_identical_images():
    ref = photo(192, 256)
    m = compute_metrics(ref, ref.copy())
    assert m["psnr-rgb"] == math.inf and m["psnr-y"] == math.inf
    assert m["ms-ssim-rgb"] == pytest.approx(1.0, abs=1e-4)  # float32


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert math.isnan(ms_ssim_db(math.nan))


@pytest.mark.parametrize("size", [(8, 8), (MS_SSIM_MIN_SIDE - 1, 300)])
def test_too_small_for_ms_ssim_gives_nan_with_warning(size):
    ref = photo(*size)
    rec = np.clip(ref.astype(int) + 1, 0, 255).astype(np.uint8)
    with pytest.warns(UserWarning,
                      match="ms-ssim-rgb not computable for a .* image .*shorter side must be at least 161"):
        m = compute_metrics(ref, rec)
    assert math.isnan(m["ms-ssim-rgb"]) and math.isnan(m["ms-ssim-db"])
    assert m["psnr-rgb"] > 40
    if size == (8, 8):
        assert math.isnan(m["ssim"]) and math.isnan(m["haarpsi"])


def test_smallest_size_accepted_by_pytorch_msssim():
    ref = photo(MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE)
    assert not math.isnan(compute_metrics(ref, ref)["ms-ssim-rgb"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(photo(192, 256), photo(256, 192))


def test_ssim_equals_scikit_image():
    from skimage.metrics import structural_similarity

    ref = photo(192, 256, "chelsea")
    rec = CODECS["jpeg"].decode(CODECS["jpeg"].encode(ref, 25))
    expected = structural_similarity(ref, rec, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=2)
    assert compute_metrics(ref, rec, ("ssim",))["ssim"] == pytest.approx(expected, abs=1e-4)


# those that can run here, less the machine-task metrics (NaN without a face or text, ties on small images;
# tests/test_tasks.py has theirs)
ALL = tuple(name for name, m in METRICS.items() if not m.available() and name not in METRIC_SETS["tasks"])


def test_identical_images_score_perfectly_on_every_metric():
    ref = photo(192, 224, "coffee")
    m = compute_metrics(ref, ref.copy(), ALL)
    perfect = {"ssim": 1.0, "haarpsi": 1.0, "gmsd": 0.0, "vif": 1.0, "fsim": 1.0, "ssimulacra2": 100.0,
               "ms-ssim-y": 1.0, "iw-ssim-y": 1.0, "vif-y": 1.0, "nlpd-y": 0.0, "psnr-hvs-m-y": 100.0, "cvvdp": 10.0,
               "butteraugli": 0.0}
    for name, value in perfect.items():
        if name not in ALL:
            continue
        assert m[name] == pytest.approx(value, abs=1e-4), name


def test_more_noise_scores_worse_in_the_declared_direction():
    rng = np.random.default_rng(0)
    ref = photo(192, 224, "astronaut")
    noisy = [np.clip(ref + rng.normal(0, s, ref.shape), 0, 255).astype(np.uint8) for s in (3, 12)]
    light, heavy = (compute_metrics(ref, n, ALL) for n in noisy)
    for name, info in METRICS.items():
        if name not in ALL:
            continue
        better = light[name] > heavy[name] if info.higher_is_better else light[name] < heavy[name]
        assert better, f"{name}: {light[name]} vs {heavy[name]}"


def test_metric_selection():
    assert resolve_metrics(["ms-ssim-db"]) == ("ms-ssim-rgb", "ms-ssim-db")
    assert resolve_metrics(None) == DEFAULT_METRICS
    assert {"psnr-rgb", "ms-ssim-rgb", "haarpsi", "gmsd"} <= set(DEFAULT_METRICS)
    assert not METRICS["gmsd"].higher_is_better
    with pytest.raises(ValueError, match="unknown metric"):
        resolve_metrics(["lpips-alex"])
