"""Our JPEG and WebP reproduce CompressAI's published Kodak results (needs ../shared)."""

import json

import numpy as np
import pytest

from bench.adapters import Adapter, discover, select
from bench.datasets import resolve_dataset
from bench.pipeline.runner import run_benchmark
from bench.store import Store
from bench.store.export import export_results

from .conftest import SHARED

pytestmark = pytest.mark.slow  # reproduces CompressAI's published Kodak tables with real sweeps

REFERENCE = SHARED / "reference" / "compressai-kodak"
QUALITIES = [5, 50, 95]  # a subset of the 19-point sweep keeps the test fast
METRICS = ("psnr-rgb", "ms-ssim-rgb")
TOLERANCE = {"webp": (0.01, 0.1), "jpeg": (0.15, 0.5)}  # (dB, % bpp)


@pytest.fixture(scope="module")
def kodak_results(tmp_path_factory):
    if not (REFERENCE / "jpeg.json").is_file() or not (SHARED / "datasets" / "kodak" / "kodim01.png").is_file():
        pytest.skip(f"reference results or Kodak images not available under {SHARED}")
    import os

    os.environ["BENCH_DATA"] = str(SHARED / "datasets")
    try:
        dataset = resolve_dataset("kodak", allow_download=False)
    finally:
        del os.environ["BENCH_DATA"]
    out = tmp_path_factory.mktemp("kodak")
    configs, _ = select([a for a in discover() if isinstance(a, Adapter)], ["jpeg", "webp"])
    # only the metrics compared below (the default set adds psnr-y, ssim, haarpsi and gmsd: ~40 % more metric time)
    run_benchmark(dataset, configs, out, qualities=QUALITIES, jobs=2, progress=False, metrics=METRICS)
    with Store(out) as store:
        export_results(store, "kodak", out)
    return out


@pytest.mark.parametrize("codec", ["webp", "jpeg"])
def test_reproduces_published_kodak_results(kodak_results, codec):
    ours = json.loads((kodak_results / f"{codec}.json").read_text())["results"]
    published = json.loads((REFERENCE / f"{codec}.json").read_text())["results"]
    index = [q // 5 - 1 for q in ours["quality"]]  # published sweep is 5, 10, ..., 95
    assert ours["quality"] == QUALITIES
    db_tol, bpp_tol = TOLERANCE[codec]
    for key in ("psnr-rgb",):
        diff = np.array(ours[key]) - np.array(published[key])[index]
        assert np.abs(diff).max() <= db_tol, f"{codec} {key} differs by {diff}"
    rel = (np.array(ours["bpp"]) / np.array(published["bpp"])[index] - 1) * 100
    assert np.abs(rel).max() <= bpp_tol, f"{codec} bpp differs by {rel} %"
    msssim = np.array(ours["ms-ssim-rgb"]) - np.array(published["ms-ssim-rgb"])[index]
    assert np.abs(msssim).max() <= (1e-5 if codec == "webp" else 5e-3)
