"""The metric engine against the definitions of the libraries it replaces (pytorch-msssim, piq, CompressAI)
computed in float64, its kernels, and the per-image cache of the original's statistics."""

import io
import math
import warnings

import numpy as np
import piq
import pytest
import torch
import torch.nn.functional as F
from compressai.utils.bench.codecs import compute_metrics as compressai_metrics
from PIL import Image
from piq.functional import rgb2yiq
from pytorch_msssim import ms_ssim, ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter

from bench.datasets.images import load_image, pixel_sha256
from bench.metrics import (
    DEFAULT_METRICS,
    METRICS,
    MS_SSIM_MIN_SIDE,
    compute_metrics,
    compute_metrics_batch,
    engine,
    kernels,
)

from .conftest import KODAK, photo


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def tensor(rgb: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).to(dtype).unsqueeze(0).permute(0, 3, 1, 2)


# The libraries' own float32 error: |float32 - float64| of the same library code on the same pair,
# measured on Kodak x JPEG q in {5, 10, 50, 75, 95, 100} (kodim01, 04, 06, 07, 13, 20, 23): MS-SSIM
# 4.6e-5 (kodim20, q=5), SSIM 6.3e-5 (kodim20, q=5), HaarPSI 2.7e-6 (kodim23, q=95), GMSD 2.3e-8
# (kodim20, q=5); on all 24 images at q = 5, 50, 95 it reaches HaarPSI 5.6e-6 (kodim05, q=95) and GMSD
# 4.5e-8 (kodim12, q=5). The cause is float32 cancellation in sigma^2 = E[x^2] - mu^2; its size depends
# on the summation order, so on the CPU's kernels and the thread count. The engine must be at most that
# far from the float64 value (here with a factor 2 of margin over the first figures); on all 24 images
# at q = 5, 50, 95 it is at most MS-SSIM 4.5e-6 (kodim12, q=5), SSIM 5.7e-6 (kodim02, q=5), HaarPSI
# 2.6e-7 (kodim18, q=95), GMSD 1.1e-8 (kodim22, q=5). Never bit-equal to a library's float32
# arithmetic (that holds on one CPU at one thread count only).
FLOAT32_ERROR = {"ms-ssim-rgb": 1e-4, "ssim": 1.5e-4, "haarpsi": 6e-6, "gmsd": 5e-8}
PSNR_ERROR_DB = 1e-9  # PSNR is computed exactly from integer squared errors


def float64_values(ref: np.ndarray, rec: np.ndarray, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """The default metrics by the libraries' definitions, computed in ``dtype`` (float64: the reference)."""
    x, y = tensor(ref, dtype), tensor(rec, dtype)
    luma = np.asarray((0.2126, 0.7152, 0.0722))
    mse = np.mean((ref.astype(np.float64) - rec.astype(np.float64)) ** 2)
    mse_y = np.mean((ref.astype(np.float64) @ luma - rec.astype(np.float64) @ luma) ** 2)
    out = {name: 10 * math.log10(255**2 / m) if m else math.inf for name, m in (("psnr-rgb", mse), ("psnr-y", mse_y))}
    with torch.no_grad():
        if min(ref.shape[:2]) >= MS_SSIM_MIN_SIDE:
            out["ms-ssim-rgb"] = ms_ssim(x, y, data_range=255).item()
        out["ssim"] = ssim(x, y, data_range=255).item()
        out["haarpsi"] = piq.haarpsi(y, x, data_range=255.0).item()
        out["gmsd"] = piq.gmsd(y, x, data_range=255.0).item()
    return out


def assert_within_float32_error(ref: np.ndarray, rec: np.ndarray, library: bool = True, **kwargs) -> dict[str, float]:
    """Ours within the libraries' own float32 error of their definitions in float64 (``library``: and the
    libraries' float32 error itself still within FLOAT32_ERROR on this pair)."""
    ours = compute_metrics(ref, rec, DEFAULT_METRICS, **kwargs)
    exact = float64_values(ref, rec)
    library32 = float64_values(ref, rec, torch.float32) if library else {}
    for name, value in exact.items():
        if math.isinf(value) or math.isnan(value):
            assert ours[name] == value or (math.isnan(value) and math.isnan(ours[name])), (name, ours[name], value)
            continue
        tolerance = FLOAT32_ERROR.get(name, PSNR_ERROR_DB)
        if name in library32:
            assert abs(library32[name] - value) <= tolerance, f"{name}: the library's float32 error grew"
        assert abs(ours[name] - value) <= tolerance, (name, ours[name], value)
    if "ms-ssim-rgb" in exact and ours["ms-ssim-rgb"] < 1:
        assert ours["ms-ssim-db"] == pytest.approx(-10 * math.log10(1 - ours["ms-ssim-rgb"]), rel=1e-9)
    return ours


def test_psnr_equals_float64_and_compressai():
    ref = photo(96, 128, "coffee")
    rec = jpeg(ref, 20)
    ours = compute_metrics(ref, rec, ("psnr-rgb", "psnr-y"))
    exact = float64_values(ref, rec)
    assert ours["psnr-rgb"] == pytest.approx(exact["psnr-rgb"], abs=PSNR_ERROR_DB)
    assert ours["psnr-y"] == pytest.approx(exact["psnr-y"], abs=PSNR_ERROR_DB)
    # CompressAI computes the MSE in float32: 8.4e-8 dB off the float64 value on this pair.
    assert ours["psnr-rgb"] == pytest.approx(compressai_metrics(ref, rec, ["psnr-rgb"])["psnr-rgb"], abs=1e-5)


def kodak_or_photo(index: int) -> np.ndarray:
    """A Kodak image when ../shared has them, else a Kodak-sized scikit-image photo."""
    path = KODAK / f"kodim{index:02d}.png"
    if path.is_file():
        return load_image(path).rgb
    name = ("astronaut", "coffee", "chelsea")[index % 3]
    return photo(768, 512, name) if index in (4, 9, 10, 17, 18, 19) else photo(512, 768, name)


@pytest.mark.slow
@pytest.mark.parametrize("index,quality", [(20, 5), (23, 5), (1, 50), (13, 50), (4, 95), (23, 95)])
def test_kodak_within_float32_error(index, quality):
    """Kodak at three JPEG qualities, among them the libraries' worst cases (kodim20 q=5, kodim23 q=95)."""
    ref = kodak_or_photo(index)
    assert_within_float32_error(ref, jpeg(ref, quality), ref_key=pixel_sha256(ref))


@pytest.mark.parametrize("size", [
    (MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE),  # the smallest image pytorch-msssim accepts
    (MS_SSIM_MIN_SIDE + 1, 333),  # just above, odd width
    (MS_SSIM_MIN_SIDE - 1, 250),  # just below: MS-SSIM NaN, the others computed
    (257, 391),  # odd sides, not multiples of 32
    (200, 319),
    (16, 47),  # the smallest HaarPSI accepts
])
def test_odd_sizes_within_float32_error(size):
    ref = photo(*size, "chelsea")
    rec = jpeg(ref, 30)
    if min(size) < MS_SSIM_MIN_SIDE:
        with pytest.warns(UserWarning, match="ms-ssim-rgb not computable"):
            ours = assert_within_float32_error(ref, rec)
        assert math.isnan(ours["ms-ssim-rgb"])
    else:
        assert_within_float32_error(ref, rec)


def test_grey_looking_rgb_within_float32_error():
    grey = photo(240, 320, "coffee").mean(axis=2).round().astype(np.uint8)
    ref = np.repeat(grey[:, :, None], 3, axis=2)
    assert_within_float32_error(ref, jpeg(ref, 40))


def with_flat_regions(rgb: np.ndarray) -> np.ndarray:
    """The photo with saturated white and black blocks and a mid-grey band: where σ ≈ 0 and
    float32's cancellation in σ² = E[x²] - μ² is largest."""
    out = rgb.copy()
    h, w = out.shape[:2]
    out[: h // 3, : w // 2] = 255
    out[h // 3: 2 * h // 3, w // 2:] = 0
    out[2 * h // 3:, : w // 4] = 128
    return out


@pytest.mark.parametrize("quality", [5, 60])
def test_flat_regions_within_float32_error(quality):
    ref = with_flat_regions(photo(200, 256, "astronaut"))
    assert_within_float32_error(ref, jpeg(ref, quality), library=False)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("ref_value,rec_value", [(128, 128), (255, 250), (0, 3), (0, 0), (255, 255)])
def test_constant_images_within_float32_error(ref_value, rec_value):
    """Flat everywhere: σ = 0, the Haar and gradient responses only at the zero-padded border (none for
    black: HaarPSI's weights sum to 0 and piq's value is infinite)."""
    ref = np.full((170, 180, 3), ref_value, np.uint8)
    ours = assert_within_float32_error(ref, np.full_like(ref, rec_value), library=False)
    if ref_value == rec_value:
        assert ours["psnr-rgb"] == math.inf and ours["ssim"] == pytest.approx(1, abs=FLOAT32_ERROR["ssim"])


def test_constant_against_photo_within_float32_error():
    ref = photo(180, 200, "coffee")
    assert_within_float32_error(ref, np.full_like(ref, 128), library=False)
    assert_within_float32_error(np.full_like(ref, 200), ref, library=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # CompressAI's PSNR of identical images
def test_identical_images():
    ref = kodak_or_photo(7)
    m = assert_within_float32_error(ref, ref.copy())
    assert m["psnr-rgb"] == math.inf and m["psnr-y"] == math.inf
    assert m["ms-ssim-db"] >= -10 * math.log10(FLOAT32_ERROR["ms-ssim-rgb"])  # inf, or 1 - MS-SSIM within float32 error
    assert m["ms-ssim-rgb"] == pytest.approx(1.0, abs=FLOAT32_ERROR["ms-ssim-rgb"])
    assert m["ssim"] == pytest.approx(1.0, abs=FLOAT32_ERROR["ssim"]) and m["gmsd"] == pytest.approx(0, abs=1e-7)


# --- kernels -------------------------------------------------------------------------------
def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def test_pooling_equals_avg_pool2d():
    """Exact on 8-bit values (as MS-SSIM's pyramid of 8-bit images and differences), close on others."""
    for shape in [(1, 3, 37, 52), (1, 3, 36, 53), (1, 3, 40, 60), (1, 1, 17, 16)]:
        integers = torch.randint(-255, 256, shape).float()
        for x, tolerance in ((integers, 0.0), (torch.rand(shape) * 255, 1e-4)):
            x = channels_last(x)
            ph, pw = shape[2] % 2, shape[3] % 2
            exact = F.avg_pool2d(x.double(), 2, padding=[ph, pw])  # pytorch-msssim
            assert torch.allclose(kernels.pool2(x, leading=True).double(), exact, rtol=0, atol=tolerance)
            pad = max(ph, pw)  # piq pads both sides by one when either is odd
            exact = F.avg_pool2d(F.pad(x.double(), [0, pad, 0, pad]), 2)
            assert torch.allclose(kernels.pool2(x, leading=False).double(), exact, rtol=0, atol=tolerance)


def test_gaussian_equals_pytorch_msssim_in_float64():
    x = channels_last(torch.randint(0, 256, (1, 3, 40, 57)).float())
    win = _fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1)
    exact = gaussian_filter(x.double(), win.double())
    assert torch.allclose(kernels.gaussian(x).double(), exact, rtol=0, atol=1e-4)
    x8 = x.to(torch.uint8)
    assert torch.allclose(kernels.gaussian(x8).double(), exact, rtol=0, atol=1e-4)
    assert torch.allclose(kernels.gaussian(x.double()), exact, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_correlate_equals_conv2d(k):
    x = torch.rand(1, 1, 23, 30, dtype=torch.float64) * 255
    kx, ky = tuple(torch.rand(k).tolist()), tuple(torch.rand(k).tolist())
    anchor = (k // 2 - 1, max(k // 2 - 1, 0)) if k % 2 == 0 else (k // 2, k // 2)
    kernel = torch.outer(torch.tensor(ky, dtype=x.dtype), torch.tensor(kx, dtype=x.dtype))[None, None]
    pad = [anchor[0], k - 1 - anchor[0], anchor[1], k - 1 - anchor[1]]
    exact = F.conv2d(F.pad(x, pad), kernel)
    assert torch.allclose(kernels.correlate(x, kx, ky, anchor), exact, rtol=0, atol=1e-9)


def test_colour_planes_equal_piq_rgb2yiq():
    x = channels_last(tensor(photo(64, 96)))
    exact = rgb2yiq(x.double())
    for row, plane in enumerate(kernels.colour_planes(x, engine.YIQ)):
        assert torch.allclose(plane.double(), exact[:, row:row + 1], rtol=0, atol=1e-4)


def test_sums():
    x = channels_last(torch.rand(1, 3, 300, 400) * 100)
    assert torch.allclose(kernels.channel_sums(x), x.double().sum(dim=(0, 2, 3)), rtol=1e-6, atol=0)
    assert kernels.square_sum(x) == pytest.approx((x.double() ** 2).sum().item(), rel=1e-12)
    a, b = photo(30, 40), photo(30, 40, "coffee")
    assert kernels.squared_distance(a, b) == ((a.astype(np.int64) - b) ** 2).sum()


def test_original_statistics_are_cached_by_key_and_never_stale():
    engine.clear_cache()
    a = photo(192, 256, "astronaut")
    b = photo(192, 256, "coffee")  # same shape, other pixels (e.g. a same-named file replaced)
    rec_a, rec_b = jpeg(a, 20), jpeg(b, 20)
    key_a, key_b = pixel_sha256(a), pixel_sha256(b)
    first = compute_metrics(a, rec_a, ref_key=key_a)
    stats = engine.ref_stats(a, key_a, torch.device("cpu"))
    assert stats.levels and stats.haar is not None and stats.grad is not None  # filled by the first call
    assert compute_metrics(a, rec_a, ref_key=key_a) == first
    assert compute_metrics(a, jpeg(a, 60), ref_key=key_a) == compute_metrics(a, jpeg(a, 60))
    assert engine.ref_stats(a, key_a, torch.device("cpu")) is stats  # reused, not rebuilt
    on_b = compute_metrics(b, rec_b, ref_key=key_b)
    assert on_b == compute_metrics(b, rec_b) == assert_within_float32_error(b, rec_b, library=False)
    assert on_b != first


def test_cache_is_bounded_lru():
    engine.clear_cache()
    images = [photo(32, 40 + i) for i in range(engine.REF_CACHE_SIZE + 1)]
    for rgb in images:
        compute_metrics(rgb, rgb, ("psnr-rgb",), ref_key=pixel_sha256(rgb))
    keys = [k[0] for k in engine._CACHE]
    assert len(keys) == engine.REF_CACHE_SIZE
    assert pixel_sha256(images[0]) not in keys and pixel_sha256(images[-1]) in keys


def test_cache_is_bounded_in_bytes(monkeypatch):
    engine.clear_cache()
    a, b = photo(192, 256, "astronaut"), photo(192, 256, "coffee")
    compute_metrics(a, jpeg(a, 20), ref_key=pixel_sha256(a))
    (stats,) = engine._CACHE.values()
    assert stats.nbytes > a.nbytes * 4 * 4 / 3  # at least the float32 image pyramid is held
    monkeypatch.setattr(engine, "REF_CACHE_BYTES", stats.nbytes)
    compute_metrics(b, jpeg(b, 20), ref_key=pixel_sha256(b))
    assert [k[0] for k in engine._CACHE] == [pixel_sha256(b)]


def test_timings_per_metric():
    ref = photo(192, 256)
    timings: dict[str, float] = {}
    names = tuple(DEFAULT_METRICS)
    compute_metrics(ref, jpeg(ref, 30), names, timings=timings)
    assert set(timings) == set(names)
    assert all(t >= 0 and math.isfinite(t) for t in timings.values())


def test_batch_equals_one_by_one():
    ref = photo(200, 240, "coffee")
    recs = [jpeg(ref, q) for q in (10, 50, 90)]
    timings: dict[str, float] = {}
    batch = compute_metrics_batch(ref, recs, DEFAULT_METRICS, timings=timings)
    assert batch == [compute_metrics(ref, rec) for rec in recs]
    assert set(timings) == set(DEFAULT_METRICS)


def test_device_argument():
    ref = photo(64, 64)
    with pytest.raises(ValueError, match="metric device"):
        compute_metrics(ref, ref, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            compute_metrics(ref, ref, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device: the CUDA path runs the same code on GPU tensors")
def test_cuda_within_float32_error():
    ref = photo(300, 420, "astronaut")
    rec = jpeg(ref, 35)
    cuda = compute_metrics(ref, rec, DEFAULT_METRICS, device="cuda")
    for name, value in float64_values(ref, rec).items():
        assert cuda[name] == pytest.approx(value, abs=FLOAT32_ERROR.get(name, PSNR_ERROR_DB)), name


@pytest.mark.parametrize("size", [(300, 420), (257, 391), (16, 47)])
def test_torch_kernels_within_float32_error(monkeypatch, size):
    """The kernels' torch side (what CUDA tensors run) on CPU tensors, where CUDA is absent."""
    monkeypatch.setattr(kernels, "OPENCV_DEVICES", ())
    ref = photo(*size, "astronaut")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ms-ssim-rgb not computable")
        assert_within_float32_error(ref, jpeg(ref, 35), library=False)


def test_opt_in_metrics_are_the_libraries():
    ref = photo(192, 224, "coffee")
    rec = jpeg(ref, 30)
    ours = compute_metrics(ref, rec, ("vif", "fsim"))
    x, y = tensor(ref), tensor(rec)
    assert ours["vif"] == piq.vif_p(y, x, data_range=255.0).item()
    assert ours["fsim"] == piq.fsim(y, x, data_range=255.0).item()
    assert {"vif", "fsim", "ssimulacra2"} <= set(METRICS) - set(DEFAULT_METRICS)  # opt-in: the libraries themselves
