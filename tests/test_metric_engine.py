"""The metric engine against the definitions of the libraries it replaces (pytorch-msssim, piq, CompressAI)
computed in float64, its building blocks, and the per-image cache of the original's statistics."""

import io
import math

import numpy as np
import piq
import pytest
import torch
import torch.nn.functional as F
from compressai.utils.bench.codecs import compute_metrics as compressai_metrics
from PIL import Image
from piq.functional import rgb2yiq
from pytorch_msssim import ms_ssim, ssim

from bench.datasets.images import load_image, pixel_sha256
from bench.metrics import DEFAULT_METRICS, METRICS, MS_SSIM_MIN_SIDE, compute_metrics, compute_metrics_batch, engine

from .conftest import KODAK, photo

LIBRARY = ("ms-ssim-rgb", "ssim", "haarpsi", "gmsd")


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def tensor(rgb: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).to(dtype).unsqueeze(0).permute(0, 3, 1, 2)


# The libraries' own float32 error: |float32 - float64| of the same library code on the same pair,
# measured on Kodak x JPEG q in {5, 10, 50, 75, 95, 100} (kodim01, 04, 06, 07, 13, 20, 23): MS-SSIM
# 4.6e-5 (kodim20, q=5), SSIM 6.3e-5 (kodim20, q=5), HaarPSI 2.7e-6 (kodim23, q=95), GMSD 2.3e-8
# (kodim20, q=5). The cause is float32 cancellation in sigma^2 = E[x^2] - mu^2; its size depends on
# the summation order, so on the CPU's kernels and the thread count. Our float32 engine must be as
# close to the float64 value as the library is, with a factor 2 of margin; never bit-equal to the
# library's float32 arithmetic (that holds on one CPU at one thread count only).
FLOAT32_ERROR = {"ms-ssim-rgb": 1e-4, "ssim": 1.5e-4, "haarpsi": 6e-6, "gmsd": 5e-8}
PSNR_ERROR_DB = 1e-9  # PSNR is computed in float64 on integer squared errors


def float64_values(ref: np.ndarray, rec: np.ndarray, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """The default metrics by the libraries' definitions, computed in ``dtype`` (float64: the reference)."""
    x, y = tensor(ref, dtype), tensor(rec, dtype)
    mse = np.mean((ref.astype(np.float64) - rec.astype(np.float64)) ** 2)
    out = {"psnr-rgb": 10 * math.log10(255**2 / mse) if mse else math.inf}
    with torch.no_grad():
        if min(ref.shape[:2]) >= MS_SSIM_MIN_SIDE:
            out["ms-ssim-rgb"] = ms_ssim(x, y, data_range=255).item()
        out["ssim"] = ssim(x, y, data_range=255).item()
        out["haarpsi"] = piq.haarpsi(y, x, data_range=255.0).item()
        out["gmsd"] = piq.gmsd(y, x, data_range=255.0).item()
    return out


def assert_equal_to_libraries(ref: np.ndarray, rec: np.ndarray, **kwargs) -> dict[str, float]:
    """Ours (float32) within the libraries' own float32 error of their definitions in float64."""
    ours = compute_metrics(ref, rec, DEFAULT_METRICS, **kwargs)
    exact = float64_values(ref, rec)
    library32 = float64_values(ref, rec, torch.float32)
    for name, value in exact.items():
        if math.isinf(value):
            assert ours[name] == value, name
            continue
        tolerance = FLOAT32_ERROR.get(name, PSNR_ERROR_DB)
        assert abs(library32[name] - value) <= tolerance, f"{name}: the library's float32 error grew"
        assert abs(ours[name] - value) <= tolerance, (name, ours[name], value)
    if "ms-ssim-rgb" in exact and ours["ms-ssim-rgb"] < 1:
        assert ours["ms-ssim-db"] == pytest.approx(-10 * math.log10(1 - ours["ms-ssim-rgb"]), rel=1e-9)
    return ours


def test_psnr_equals_float64_and_compressai():
    ref = photo(96, 128, "coffee")
    rec = jpeg(ref, 20)
    ours = compute_metrics(ref, rec, ("psnr-rgb",))["psnr-rgb"]
    assert ours == pytest.approx(float64_values(ref, rec)["psnr-rgb"], abs=PSNR_ERROR_DB)
    # CompressAI computes the MSE in float32: 8.4e-8 dB off the float64 value on this pair.
    assert ours == pytest.approx(compressai_metrics(ref, rec, ["psnr-rgb"])["psnr-rgb"], abs=1e-5)


def kodak_or_photo(index: int) -> np.ndarray:
    """A Kodak image when ../shared has them, else a Kodak-sized scikit-image photo."""
    path = KODAK / f"kodim{index:02d}.png"
    if path.is_file():
        return load_image(path).rgb
    name = ("astronaut", "coffee", "chelsea")[index % 3]
    return photo(768, 512, name) if index in (4, 9, 10, 17, 18, 19) else photo(512, 768, name)


@pytest.mark.slow
@pytest.mark.parametrize("index,quality", [(1, 10), (4, 50), (13, 75), (23, 95)])
def test_kodak_sized_equal_to_libraries(index, quality):
    ref = kodak_or_photo(index)
    assert_equal_to_libraries(ref, jpeg(ref, quality), ref_key=pixel_sha256(ref))


@pytest.mark.parametrize("size", [
    (MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE),  # the smallest image pytorch-msssim accepts
    (MS_SSIM_MIN_SIDE + 1, 333),  # just above, odd width
    (MS_SSIM_MIN_SIDE - 1, 250),  # just below: MS-SSIM NaN, the others computed
    (257, 391),  # odd sides, not multiples of 32
    (200, 319),
    (16, 47),  # the smallest HaarPSI accepts
])
def test_odd_sizes_equal_to_libraries(size):
    ref = photo(*size, "chelsea")
    rec = jpeg(ref, 30)
    if min(size) < MS_SSIM_MIN_SIDE:
        with pytest.warns(UserWarning, match="ms-ssim-rgb not computable"):
            ours = assert_equal_to_libraries(ref, rec)
        assert math.isnan(ours["ms-ssim-rgb"])
    else:
        assert_equal_to_libraries(ref, rec)


def test_grey_looking_rgb_equal_to_libraries():
    grey = photo(240, 320, "coffee").mean(axis=2).round().astype(np.uint8)
    ref = np.repeat(grey[:, :, None], 3, axis=2)
    assert_equal_to_libraries(ref, jpeg(ref, 40))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # CompressAI's PSNR of identical images
def test_identical_images():
    ref = kodak_or_photo(7)
    m = assert_equal_to_libraries(ref, ref.copy())
    assert m["psnr-rgb"] == math.inf and m["psnr-y"] == math.inf
    assert m["ms-ssim-db"] >= -10 * math.log10(FLOAT32_ERROR["ms-ssim-rgb"])  # inf, or 1 - MS-SSIM within float32 error
    assert m["ms-ssim-rgb"] == pytest.approx(1.0, abs=FLOAT32_ERROR["ms-ssim-rgb"])
    assert m["ssim"] == pytest.approx(1.0, abs=FLOAT32_ERROR["ssim"]) and m["gmsd"] == pytest.approx(0, abs=1e-7)


def test_pooling_equals_avg_pool2d_in_float64():
    x = torch.rand(2, 3, 37, 52) * 255
    close = dict(rtol=0, atol=1e-4)  # float32 rounding of means of values up to 255
    for padding in [(0, 0), (1, 0), (1, 1)]:
        exact = F.avg_pool2d(x.double(), kernel_size=2, padding=list(padding))
        assert torch.allclose(engine.pool2(x, padding).double(), exact, **close)
    exact = F.avg_pool2d(x.double(), kernel_size=2, stride=1, padding=0)
    assert torch.allclose(engine.pool2_stride1(x).double(), exact, **close)
    cl = x.contiguous(memory_format=torch.channels_last)
    exact = F.avg_pool2d(cl.double(), kernel_size=2, padding=[1, 1])
    assert torch.allclose(engine.pool2(cl, (1, 1)).double(), exact, **close)


def test_yiq_channels_equal_piq_within_float32():
    x = tensor(photo(64, 96)) / 255
    exact = rgb2yiq(x.double())
    for row in range(3):
        assert torch.allclose(engine.yiq_channel(x, row).double(), exact[:, row:row + 1], rtol=0, atol=1e-6)
        assert torch.allclose(rgb2yiq(x)[:, row:row + 1].double(), exact[:, row:row + 1], rtol=0, atol=1e-6)


def test_piq_rescaling_is_the_identity_on_8_bit_values():
    """haarpsi rescales x / 255 * 255: exact for every 8-bit value, so the engine skips it."""
    v = torch.arange(256, dtype=torch.float32)
    assert torch.equal(v / 255.0 * 255, v)


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
    assert on_b == compute_metrics(b, rec_b) == assert_equal_to_libraries(b, rec_b)
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
def test_cuda_equals_libraries_on_cpu():
    ref = photo(300, 420, "astronaut")
    rec = jpeg(ref, 35)
    cuda = compute_metrics(ref, rec, DEFAULT_METRICS, device="cuda")
    for name, value in float64_values(ref, rec).items():
        assert cuda[name] == pytest.approx(value, abs=FLOAT32_ERROR.get(name, PSNR_ERROR_DB)), name


def test_opt_in_metrics_are_the_libraries():
    ref = photo(192, 224, "coffee")
    rec = jpeg(ref, 30)
    ours = compute_metrics(ref, rec, ("vif", "fsim"))
    x, y = tensor(ref), tensor(rec)
    assert ours["vif"] == piq.vif_p(y, x, data_range=255.0).item()
    assert ours["fsim"] == piq.fsim(y, x, data_range=255.0).item()
    assert {"vif", "fsim", "ssimulacra2"} <= set(METRICS) - set(DEFAULT_METRICS)  # opt-in: the libraries themselves
