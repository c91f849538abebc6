"""The report's "Machine tasks" section: which images score a task, the mean curves over them, the codecs'
order by task against their order by PSNR (numbers made up here, checked by hand), and the section, its CSV
and figure on a real run with the SIFT task (sample images, jpeg and webp)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.report.tasks import (
    CSV_NAME,
    FIGURE_STEM,
    MIN_TASK_IMAGES,
    TITLE,
    coverage,
    coverage_lines,
    rankings,
    task_curves,
)


def per_image() -> pd.DataFrame:
    """Two codecs, two qualities, three images; image "c" has no face in its original (NaN throughout)."""
    rows = []
    for codec, shift in (("a", 0.0), ("b", 0.1)):
        for quality, bpp in ((10, 0.2), (50, 0.8)):
            for image, face in (("x", 0.5), ("y", 0.7), ("c", math.nan)):
                rows.append({"codec": codec, "image": image, "quality": quality, "bpp": bpp + shift,
                             "face-f1": face + quality / 100})
    return pd.DataFrame(rows)


def test_coverage_counts_images_whose_original_scores_and_flags_few():
    table = per_image()
    assert coverage(table, "face-f1") == (2, 3)
    (line,) = coverage_lines(table, ["face-f1"])
    assert line.startswith("face-f1: 2 of 3 images (the others' originals give the task nothing)")
    assert f"fewer than {MIN_TASK_IMAGES}" in line


def test_task_curves_are_means_over_the_scoring_images():
    curves = {c.label: c for c in task_curves(per_image(), "face-f1")}
    assert curves["a"].bpp.tolist() == pytest.approx([0.2, 0.8])
    assert curves["a"].values.tolist() == pytest.approx([(0.6 + 0.8) / 2, (1.0 + 1.2) / 2])  # x and y only
    assert curves["b"].bpp.tolist() == pytest.approx([0.3, 0.9])


def test_rankings_put_the_anchor_at_zero_and_say_where_psnr_disagrees():
    table = pd.DataFrame([
        {"codec": "b", "anchor": "a", "metric": "face-f1", "bd_rate_pct": 12.0},
        {"codec": "b", "anchor": "a", "metric": "psnr-rgb", "bd_rate_pct": -30.0},
        {"codec": "c", "anchor": "a", "metric": "face-f1", "bd_rate_pct": -5.0},
        {"codec": "c", "anchor": "a", "metric": "psnr-rgb", "bd_rate_pct": -10.0},
        {"codec": "b", "anchor": "a", "metric": "average", "bd_rate_pct": 12.0},
    ])
    assert rankings(table, ["face-f1"]) == ["face-f1: c < a < b (PSNR orders them b < c < a)"]
    same = table.assign(bd_rate_pct=[-12.0, -30.0, -5.0, -10.0, -12.0])
    assert rankings(same, ["face-f1"]) == ["face-f1: b < c < a (the same order as PSNR)"]


@pytest.mark.slow
def test_machine_tasks_section_on_a_real_run(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--dataset", "sample", "--codecs", "jpeg,webp", "--qualities", "10,30,50,70,90",
                 "--tasks", "features", "--metrics", "psnr-rgb", "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out), "--anchor", "jpeg"]) == 0
    table = pd.read_csv(out / CSV_NAME)
    assert set(table["metric"]) == {"sift-repeatability", "sift-matching", "psnr-rgb", "average"}
    assert set(table["codec"]) == {"webp"} and (table["anchor"] == "jpeg").all()
    sift = table.set_index("metric").loc["sift-matching"]
    assert np.isfinite(sift["bd_rate_pct"]) and sift["ci_low"] <= sift["bd_rate_pct"] <= sift["ci_high"]
    average = table.set_index("metric").loc["average", "bd_rate_pct"]
    both = table.set_index("metric").loc[["sift-repeatability", "sift-matching"], "bd_rate_pct"]
    assert average == pytest.approx(both.mean())  # the average is over the task metrics, not PSNR
    report = (out / "report.md").read_text()
    assert f"## {TITLE}" in report and "sift-matching: 5 of 5 images" in report and "pseudo ground truth" in report
    assert (out / f"{FIGURE_STEM}.png").stat().st_size > 10_000 and f"{FIGURE_STEM}.png" in report
    assert TITLE in (out / "report.html").read_text()
    assert "sift" not in (out / "bd_rate_per_metric.csv").read_text()  # not in the JPEG AI per-metric table
