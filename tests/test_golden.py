"""Behaviour stays the same through refactoring: a fixed Kodak JPEG/WebP run gives the
``per_image.csv`` committed in ``tests/data`` (made by the harness before the code base was
restructured): the same columns in the same order, the same rows, bytes and bpp exactly, every
metric within float32's error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.metrics import METRICS

from .conftest import KODAK

GOLDEN = Path(__file__).parent / "data" / "kodak-jpeg-webp-per_image.csv"
IMAGES = ("kodim01.png", "kodim23.png")
# Where and when it ran, and the code's own hash (part of the version): not the figures.
VARYING = ("version", "encode_s", "decode_s", "device", "host", "machine", "metric_device")
FLOAT32_RTOL = 2e-5  # metrics computed in float32 (torch, piq) may differ by CPU and thread count


@pytest.mark.slow
def test_kodak_jpeg_webp_per_image_csv_is_unchanged(tmp_path):
    if not all((KODAK / name).is_file() for name in IMAGES):
        pytest.skip(f"Kodak images not available at {KODAK} (only beside a developer's or CI's checkout)")
    folder = tmp_path / "kodak-golden"
    folder.mkdir()
    for name in IMAGES:
        (folder / name).symlink_to(KODAK / name)
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg,webp", "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    now = pd.read_csv(tmp_path / "out" / "per_image.csv")
    golden = pd.read_csv(GOLDEN)
    assert list(now.columns) == list(golden.columns)
    metrics = [c for c in golden.columns if c in METRICS]
    exact = [c for c in golden.columns if c not in metrics and c not in VARYING]
    pd.testing.assert_frame_equal(now[exact], golden[exact], check_exact=True)
    for metric in metrics:
        now_m, golden_m = now[metric], golden[metric]
        if metric == "ms-ssim-db":  # as MS-SSIM: near MS-SSIM = 1 the dB scale magnifies float32's error 100x
            now_m, golden_m = 1 - 10 ** (-now_m / 10), 1 - 10 ** (-golden_m / 10)
        np.testing.assert_allclose(now_m, golden_m, rtol=FLOAT32_RTOL, atol=1e-7, err_msg=metric)
