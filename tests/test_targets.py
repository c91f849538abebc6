"""Target-bpp matching: the search, the stored choice, the tables."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.adapters import Adapter, discover, select
from bench.cli import main
from bench.datasets import resolve_dataset
from bench.pipeline.runner import run_benchmark
from bench.pipeline.targets import quality_grid, search_quality
from bench.store import Store

ADAPTERS = [a for a in discover() if isinstance(a, Adapter)]


def counting(func):
    calls = []

    def wrapped(q):
        calls.append(q)
        return func(q)

    return wrapped, calls


@pytest.mark.parametrize("target", [0.07, 0.3, 1.0, 3.9])
def test_integer_grid_increasing_and_decreasing(target):
    grid = list(range(1, 101))
    bpp = lambda q: 0.04 * q  # noqa: E731
    f, calls = counting(bpp)
    q = search_quality(f, target, grid=grid)
    assert abs(bpp(q) - target) == min(abs(bpp(g) - target) for g in grid)
    assert len(set(calls)) <= 10, "bisection, not a scan"
    q = search_quality(lambda q: 4.0 - 0.04 * q, target, grid=grid)  # bpp falls as quality rises
    assert abs(4.0 - 0.04 * q - target) == min(abs(4.0 - 0.04 * g - target) for g in grid)


def test_targets_outside_the_range_take_the_end():
    grid = list(range(1, 101))
    assert search_quality(lambda q: 0.1 + q / 100, 0.01, grid=grid) == 1
    assert search_quality(lambda q: 0.1 + q / 100, 50, grid=grid) == 100


def test_continuous_and_discrete():
    q = search_quality(lambda q: q, 0.37, bounds=(0.01, 12.0))
    assert q == pytest.approx(0.37, rel=0.005)
    assert search_quality(lambda q: {1: 0.1, 2: 0.2, 4: 0.5, 8: 1.4}[q], 0.3, grid=[1, 2, 4, 8]) == 2
    assert quality_grid((0, 50, 1), ())[0][:3] == [0, 1, 2]
    assert quality_grid(None, (3.0, 1.0, 2.0)) == ([1.0, 2.0, 3.0], None)
    assert quality_grid((0.01, 12.0, 0), ()) == (None, (0.01, 12.0))


@pytest.mark.slow
def test_jpeg_search_hits_the_nearest_quality(tmp_path, image_folder):
    configs, _ = select(ADAPTERS, ["jpeg"])
    ds = resolve_dataset(str(image_folder))
    report = run_benchmark(ds, configs, tmp_path, qualities=[50], jobs=2, progress=False, targets=(0.5, 1.0))
    assert report.failed == 0
    with Store(tmp_path) as store:
        chosen = store.target_rows("images")
    assert len(chosen) == 3 * 2
    jpeg = configs[0]
    for row in chosen:
        rgb = np.asarray(Image.open(image_folder / f"{row['image']}.png"))
        pixels = rgb.shape[0] * rgb.shape[1]
        sizes = {q: len(jpeg.encode(rgb, q)) * 8 / pixels for q in range(1, 101)}
        best = min(sizes, key=lambda q: abs(sizes[q] - row["target_bpp"]))
        assert abs(row["quality"] - best) <= 1, "within one quality step of the nearest"
    # a second run searches and encodes nothing
    messages = []
    again = run_benchmark(ds, configs, tmp_path, qualities=[50], jobs=1, progress=False, targets=(0.5, 1.0),
                          log=messages.append)
    assert again.done == 0 and not any("searching" in m for m in messages)


@pytest.mark.slow
def test_target_tables_from_the_cli(tmp_path, image_folder):
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(image_folder), "--codecs", "jpeg:q=50,jpeg2000:q=0.5",
                 "--target-bpp", "0.25,0.5", "--jobs", "2", "--out", str(out), "--quiet",
                 "--metrics", "psnr-rgb,ms-ssim-rgb"]) == 0
    sweep = pd.read_csv(out / "per_image.csv")
    assert sorted(set(zip(sweep["codec"], sweep["quality"], strict=True))) == [("jpeg", 50), ("jpeg2000", 0.5)], \
        "target-bpp points stay out of the RD sweep"
    rows = pd.read_csv(out / "target_bpp.csv")
    means = pd.read_csv(out / "target_bpp_summary.csv")
    assert set(rows["target_bpp"]) == {0.25, 0.5} and set(rows["codec"]) == {"jpeg", "jpeg2000"}
    assert len(means) == 4 and (means["n_images"] == 3).all()
    j2k = means[(means["codec"] == "jpeg2000") & (means["target_bpp"] == 0.25)].iloc[0]
    assert j2k["mean_bpp"] == pytest.approx(0.25, rel=0.05)
    sub = rows[(rows["codec"] == "jpeg") & (rows["target_bpp"] == 0.5)]
    m = means[(means["codec"] == "jpeg") & (means["target_bpp"] == 0.5)].iloc[0]
    assert m["psnr-rgb"] == pytest.approx(sub["psnr-rgb"].mean()) and m["mean_bpp"] == pytest.approx(sub["bpp"].mean())
