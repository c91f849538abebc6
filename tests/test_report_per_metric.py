"""BD-rate per metric (JPEG AI style): the metric set, the table's numbers against the bjontegaard package
and a bootstrap written out here, lower-is-better metrics, the CSV, the small-multiple figure, and the
section in report.md, bd_rate.md and report.html (conftest's ``small_report``: jpeg and webp, 3 photos)."""

from __future__ import annotations

import math
from contextlib import nullcontext

import bjontegaard
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from PIL import Image

import bench.metrics
from bench.analysis import bd_metrics
from bench.analysis.per_metric import (
    AVERAGE,
    COLUMNS,
    choose_metric_set,
    per_metric_bd,
    per_metric_set,
    stored_metrics,
)
from bench.model import Curve
from bench.report.per_metric import CSV_NAME, TITLE, no_table_text
from bench.report.plots import per_metric_figure

BOOT = 2000


# --- which metrics -------------------------------------------------------------------------------
def test_metric_set_ctc_when_stored_else_every_stored_metric():
    stored = ["psnr-rgb", "psnr-y", "ms-ssim-rgb", "ms-ssim-db", "ssim", "gmsd", "fsim"]
    # no CTC metric stored: every stored metric in registry order (MS-SSIM in dB only), all averaged
    columns, averaged = choose_metric_set(stored, ("vmaf", "nlpd-y"), ("vmaf",))
    assert columns == averaged == bd_metrics(stored) == ["psnr-rgb", "psnr-y", "ms-ssim-db", "ssim", "gmsd", "fsim"]
    # CTC metrics stored: those, in the CTC order; the average over the stored members of CTC_AVERAGED
    columns, averaged = choose_metric_set(stored, ("fsim", "vmaf", "psnr-y", "gmsd"), ("gmsd", "psnr-y", "vmaf"))
    assert columns == ["fsim", "psnr-y", "gmsd"] and averaged == ["psnr-y", "gmsd"]
    # none of CTC_AVERAGED stored: the average covers every column
    assert choose_metric_set(stored, ("fsim", "gmsd"), ("vmaf",)) == (["fsim", "gmsd"], ["fsim", "gmsd"])


def test_per_metric_set_reads_the_ctc_constants_when_they_exist(monkeypatch):
    stored = ["psnr-rgb", "psnr-y", "gmsd", "fsim", "vmaf", "psnr-y10", "psnr-ycbcr"]
    assert per_metric_set(stored) == (["fsim", "vmaf", "psnr-y10", "psnr-ycbcr"], ["fsim", "vmaf", "psnr-ycbcr"])
    assert per_metric_set(["psnr-rgb", "gmsd"]) == (bd_metrics(["psnr-rgb", "gmsd"]),) * 2  # no CTC metric stored
    monkeypatch.setattr(bench.metrics, "CTC_METRICS", ("fsim", "psnr-y", "gmsd"))
    monkeypatch.setattr(bench.metrics, "CTC_AVERAGED", ("fsim", "psnr-y"))
    assert per_metric_set(stored) == (["fsim", "psnr-y", "gmsd"], ["fsim", "psnr-y"])


# --- numbers on made-up per-image results ---------------------------------------------------------
def synthetic(n_images: int = 4) -> pd.DataFrame:
    """Anchor ``a``; on image i ``b`` needs (20 - 2 i) % fewer bits at equal PSNR-Y and is worse at equal rate
    on GMSD (lower is better); ``c`` like ``b`` with 2 % more bits, no GMSD on the last image."""
    rows = []
    for i in range(n_images):
        bpp = np.geomspace(0.2, 2.0, 5) * (1 + 0.1 * i)
        psnr = 28 + 6 * np.log2(bpp) + 0.5 * i + 0.2 * np.sqrt(bpp)
        gmsd = 0.05 / bpp * (1 + 0.05 * i)
        factor, worse = 0.8 + 0.02 * i, (1.3 + 0.05 * i) * gmsd
        for codec, rate, g in (("a", bpp, gmsd), ("b", factor * bpp, worse), ("c", 1.02 * factor * bpp, worse)):
            if codec == "c" and i == n_images - 1:
                g = np.full(5, math.nan)
            rows += [{"codec": codec, "image": f"img{i}", "quality": q, "bpp": r, "psnr-y": p, "gmsd": d}
                     for q, r, p, d in zip(range(5), rate, psnr, g, strict=True)]
    return pd.DataFrame(rows)


def package_bd_rates(per_image: pd.DataFrame, anchor: str, codec: str, metric: str, sign: float) -> dict[str, float]:
    """image -> bjontegaard.bd_rate (pchip) of ``codec`` against ``anchor``; ``sign`` -1 for lower-is-better."""
    out = {}
    for image, g in per_image.groupby("image"):
        a, t = (g[g["codec"] == c].assign(q=lambda x: sign * x[metric]).sort_values("q") for c in (anchor, codec))
        if t["q"].notna().all():
            out[image] = bjontegaard.bd_rate(a["bpp"], a["q"], t["bpp"], t["q"], "pchip", min_overlap=0)
    return out


def expanded_percentiles(samples: np.ndarray, n: int) -> tuple[float, float]:
    """Hesterberg's expanded percentile interval at 95 %, written out."""
    tail = scipy.stats.norm.cdf(-scipy.stats.t.ppf(0.975, n - 1) * math.sqrt(n / (n - 1))) * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def test_cells_average_and_direction_against_the_package():
    per_image = synthetic()
    table = per_metric_bd(per_image, "a", ["psnr-y", "gmsd"], ["psnr-y", "gmsd"], "pchip", BOOT)
    assert list(table.columns) == COLUMNS
    assert list(table["codec"]) == ["b"] * 3 + ["c"] * 3 and list(table["metric"]) == ["psnr-y", "gmsd", AVERAGE] * 2
    cell = table.set_index(["codec", "metric"])
    expected = {}
    for codec in ("b", "c"):
        for metric, sign in (("psnr-y", 1), ("gmsd", -1)):
            values = package_bd_rates(per_image, "a", codec, metric, sign)
            expected[codec, metric] = values
            assert cell.loc[(codec, metric), "bd_rate_pct"] == pytest.approx(np.mean(list(values.values())), abs=1e-6)
            assert cell.loc[(codec, metric), "n_images"] == len(values)
    assert cell.loc[("b", "psnr-y"), "bd_rate_pct"] == pytest.approx(-17.0, abs=1e-9)  # mean of -20, -18, -16, -14
    assert all(v > 0 for v in expected["b", "gmsd"].values())  # worse on GMSD on every image: positive
    assert cell.loc[("b", "gmsd"), "bd_rate_pct"] > 0 and cell.loc[("b", "gmsd"), "ci_low"] > 0
    assert "no value for img3" in cell.loc[("c", "gmsd"), "note"] and cell.loc[("c", "gmsd"), "n_images"] == 3
    for codec in ("b", "c"):
        row = [cell.loc[(codec, m), "bd_rate_pct"] for m in ("psnr-y", "gmsd")]
        assert cell.loc[(codec, AVERAGE), "bd_rate_pct"] == pytest.approx(np.mean(row), abs=1e-12)
        # the average's interval: images resampled jointly (numpy default_rng(0)), each metric's mean over
        # the resampled images that have a value, then the mean over metrics
        images = sorted(set(per_image["image"]))
        matrix = np.array([[expected[codec, m].get(i, np.nan) for m in ("psnr-y", "gmsd")] for i in images])
        draws = np.random.default_rng(0).integers(0, len(images), size=(BOOT, len(images)))
        with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning) if codec == "c" else nullcontext():
            averages = np.nanmean(matrix[draws], axis=1).mean(axis=1)  # NaN: a resample without img0-2 for gmsd
        low, high = expanded_percentiles(averages[np.isfinite(averages)], len(images))
        assert (cell.loc[(codec, AVERAGE), "ci_low"], cell.loc[(codec, AVERAGE), "ci_high"]) == pytest.approx(
            (low, high), abs=1e-9)
        assert low < cell.loc[(codec, AVERAGE), "bd_rate_pct"] < high
    # a metric's own interval: its per-image values resampled (those of the BD table's per-image rows)
    gmsd_c = np.array(list(expected["c", "gmsd"].values()))
    draws = np.random.default_rng(0).integers(0, 3, size=(BOOT, 3))
    assert (cell.loc[("c", "gmsd"), "ci_low"], cell.loc[("c", "gmsd"), "ci_high"]) == pytest.approx(
        expanded_percentiles(gmsd_c[draws].mean(axis=1), 3), abs=1e-9)


def test_no_average_without_every_averaged_metric_and_no_table_for_a_published_anchor():
    per_image = synthetic().assign(gmsd=lambda f: f["gmsd"].where(f["codec"] != "c"))
    table = per_metric_bd(per_image, "a", ["psnr-y", "gmsd"], ["psnr-y", "gmsd"], "pchip", 0)
    average = table[(table["codec"] == "c") & (table["metric"] == AVERAGE)].iloc[0]
    assert math.isnan(average["bd_rate_pct"]) and average["note"] == "no average: no BD-rate for gmsd"
    only_psnr = per_metric_bd(per_image, "a", ["psnr-y", "gmsd"], ["psnr-y"], "pchip", 0)
    c = only_psnr[only_psnr["codec"] == "c"].set_index("metric")
    assert c.loc[AVERAGE, "bd_rate_pct"] == c.loc["psnr-y", "bd_rate_pct"] and not c.loc["gmsd", "in_average"]
    assert table["ci_low"].isna().all()  # --bootstrap 0
    assert per_metric_bd(per_image, "BPG (published)", ["psnr-y"], ["psnr-y"]).empty
    assert "published curve" in no_table_text("BPG (published)", per_image)
    assert stored_metrics(per_image.assign(gmsd=math.nan)) == ["psnr-y"]


def test_small_multiples_one_panel_per_metric():
    bpp = np.array([0.2, 0.5, 1.0, 2.0])
    curves = [Curve("jpeg", bpp, np.array([28.0, 31, 34, 37])), Curve("webp", bpp * 0.8, np.array([28.0, 31, 34, 37]))]
    metrics = ["psnr-rgb", "psnr-y", "ssim", "haarpsi", "gmsd"]
    fig = per_metric_figure([(m, curves) for m in metrics], {"jpeg": "conventional", "webp": "conventional"}, "jpeg",
                            "title")
    assert len(fig.axes) == len(metrics)  # 2 x 3 grid, the sixth panel removed
    assert [ax.get_title() for ax in fig.axes][-1] == "gmsd (lower is better: axis inverted)"
    assert [ax.yaxis_inverted() for ax in fig.axes] == [False] * 4 + [True]
    for ax in fig.axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["jpeg (anchor)", "webp"]
        assert lines[0].get_linewidth() > lines[1].get_linewidth() and lines[0].get_color() == "black"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["jpeg (anchor)", "webp"]


# --- in the report of a real run ----------------------------------------------------------------
@pytest.mark.slow
def test_report_section_csv_and_figure(small_report):
    out = small_report
    per_image = pd.read_csv(out / "per_image.csv")
    csv = pd.read_csv(out / CSV_NAME)
    columns, averaged = per_metric_set(stored_metrics(per_image))
    assert columns == averaged == ["psnr-rgb", "psnr-y", "ms-ssim-db", "ssim", "haarpsi", "gmsd"]
    assert list(csv.columns) == COLUMNS and set(csv["anchor"]) == {"jpeg"} and set(csv["codec"]) == {"webp"}
    assert list(csv["metric"]) == [*columns, AVERAGE]
    # the CSV round-trips: the same table computed again from per_image.csv
    again = per_metric_bd(per_image, "jpeg", columns, averaged)
    pd.testing.assert_frame_equal(csv.drop(columns=["in_average", "note"]), again.drop(columns=["in_average", "note"]),
                                  check_dtype=False, rtol=1e-12)
    assert csv["note"].fillna("").tolist() == again["note"].tolist() == [""] * len(csv)
    assert csv["in_average"].iloc[:-1].tolist() == [True] * len(columns) and pd.isna(csv["in_average"].iloc[-1])
    # a cell equals the bjontegaard package's per-image BD-rates averaged over the images, and the
    # same cell of bd_rate.csv (per image, BD-rate, pchip)
    cell = csv.set_index("metric")
    for metric, sign in (("psnr-y", 1), ("gmsd", -1)):
        values = package_bd_rates(per_image, "jpeg", "webp", metric, sign)
        assert cell.loc[metric, "bd_rate_pct"] == pytest.approx(np.mean(list(values.values())), abs=1e-6)
    bd = pd.read_csv(out / "bd_rate.csv").query("aggregation == 'per-image' and kind == 'bd-rate' and "
                                                "method == 'pchip'").set_index("metric")
    for metric in columns:
        assert cell.loc[metric, ["bd_rate_pct", "ci_low", "ci_high"]].tolist() == pytest.approx(
            bd.loc[metric, ["value", "ci_low", "ci_high"]].tolist(), abs=1e-9)
    assert cell.loc[AVERAGE, "bd_rate_pct"] == pytest.approx(cell.loc[columns, "bd_rate_pct"].mean(), abs=1e-9)
    assert cell.loc[AVERAGE, "ci_low"] < cell.loc[AVERAGE, "bd_rate_pct"] < cell.loc[AVERAGE, "ci_high"]

    report = (out / "report.md").read_text()
    section = report.split(f"## {TITLE}\n")[1].split("\n## ")[0]
    assert "against jpeg, per image then averaged over images (JPEG AI CTC style)" in section
    assert "Average over metrics: the mean of the row's BD-rates over psnr-rgb, psnr-y, ms-ssim-db, ssim, " \
           "haarpsi, gmsd." in section and "resamples the images jointly" in section
    assert f"| codec | family | {' | '.join(columns)} | average over metrics |" in section
    row = next(line for line in section.splitlines() if line.startswith("| webp |")).split(" | ")
    for shown, metric in zip(row[2:], [*columns, AVERAGE], strict=True):
        assert shown.startswith(f"{cell.loc[metric, 'bd_rate_pct']:+.2f} [{cell.loc[metric, 'ci_low']:+.2f}, "
                                f"{cell.loc[metric, 'ci_high']:+.2f}]"), metric
    assert "![RD curves per metric](rd_per_metric.png)" in section
    assert report.index(f"## {TITLE}") < report.index("## Bjøntegaard deltas")
    assert f"## {TITLE}" in (out / "bd_rate.md").read_text()
    page = (out / "report.html").read_text()
    assert f"<h2>{TITLE}</h2>" in page and "alt='RD curves per metric' src='data:image/png;base64," in page
    assert "<a href='rd_per_metric.png'>" in page
    # one panel per column: a 3-wide grid at 110 dpi, 4.3 x 3.3 inches per panel plus 0.9 for title and legend
    with Image.open(out / "rd_per_metric.png") as png:
        assert png.size == (round(3 * 4.3 * 110), round((2 * 3.3 + 0.9) * 110))
    assert (out / "rd_per_metric.svg").stat().st_size > 0
