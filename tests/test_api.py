"""Python API: bench.load, Results tables and curves, bench.bd_rate; `import bench` stays light."""

import json
import subprocess
import sys

import bjontegaard
import numpy as np
import pandas as pd
import pytest

import bench


def test_import_is_light():
    code = ("import sys, bench; heavy = [m for m in ('pandas', 'torch', 'matplotlib', 'numpy') if m in sys.modules];"
            "print(heavy, sorted(bench.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['Curve', 'Results', '__version__', 'bd_rate', 'load']"


@pytest.mark.slow
def test_load_tables_curves_and_bd(small_report):
    r = bench.load(small_report)  # its default report wrote the CSVs the API must agree with
    assert (r.n_images, r.codecs) == (3, ["jpeg", "webp"])
    assert r.dataset == json.loads((small_report / "webp.json").read_text())["dataset"]
    per_image = pd.read_csv(small_report / "per_image.csv")
    pd.testing.assert_frame_equal(r.per_image.reset_index(drop=True), per_image, check_dtype=False)
    summary = pd.read_csv(small_report / "summary.csv")
    pd.testing.assert_frame_equal(r.summary.reset_index(drop=True), summary, check_dtype=False)
    bd = pd.read_csv(small_report / "bd_rate.csv")
    assert np.allclose(r.bd["value"].astype(float), bd["value"], equal_nan=True, rtol=1e-12)

    curves = r.curves("psnr-rgb")
    jpeg = summary[summary["codec"] == "jpeg"].sort_values("bpp")
    assert np.array_equal(curves["jpeg"].bpp, jpeg["bpp"].to_numpy())
    webp = summary[summary["codec"] == "webp"].sort_values("psnr-rgb")
    jpeg_q = jpeg.sort_values("psnr-rgb")
    expected = bjontegaard.bd_rate(jpeg_q["bpp"], jpeg_q["psnr-rgb"], webp["bpp"], webp["psnr-rgb"], "akima",
                                   min_overlap=0)
    assert bench.bd_rate(curves["jpeg"], curves["webp"], method="akima") == pytest.approx(expected, abs=1e-9)
    # DataFrames and (bpp, values) pairs work too, and so does the Results shortcut by name
    assert bench.bd_rate(jpeg, summary[summary["codec"] == "webp"], metric="psnr-rgb", method="akima") == \
        pytest.approx(expected, abs=1e-9)
    assert bench.bd_rate((jpeg["bpp"], jpeg["psnr-rgb"]), (webp["bpp"], webp["psnr-rgb"]), method="akima") == \
        pytest.approx(expected, abs=1e-9)
    assert r.bd_rate("jpeg", "webp", method="akima") == pytest.approx(expected, abs=1e-9)


def test_api_errors(small_run, tmp_path):
    from bench.api import ResultsError

    with pytest.raises(ResultsError, match="no result store"):
        bench.load(tmp_path)
    r = bench.load(small_run)
    with pytest.raises(ResultsError, match="metric 'vif' not measured"):
        r.curves("vif")
    with pytest.raises(ResultsError, match="no psnr-rgb curve named 'hevc'"):
        r.bd_rate("jpeg", "hevc")
    far = (np.array([0.1, 0.2, 0.3, 0.4]), np.array([20.0, 21.0, 22.0, 23.0]))
    near = (np.array([0.1, 0.2, 0.3, 0.4]), np.array([40.0, 41.0, 42.0, 43.0]))
    with pytest.raises(ValueError, match="no BD-rate: quality overlap 0 % < 75 %"):
        bench.bd_rate(far, near)


@pytest.mark.slow
def test_readme_notebook_example_runs(small_run, capsys):
    import re

    from .conftest import REPO

    section = (REPO / "docs" / "api.md").read_text().split("# Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    exec(code.replace('"results/kodak"', repr(str(small_run))), {})
    printed = capsys.readouterr().out.strip().splitlines()
    expected = bench.bd_rate(bench.load(small_run).curves("psnr-rgb")["jpeg"],
                             bench.load(small_run).curves("psnr-rgb")["webp"])
    assert float(printed[-1]) == pytest.approx(expected, rel=1e-12) and expected < 0
