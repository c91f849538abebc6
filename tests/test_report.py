"""Report rebuilt from a small stored run: files, BD table content, determinism, references."""

import json

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from bench.cli import main

from .conftest import SHARED


def reference_file(tmp_path, out):
    """A CompressAI-format 'published' curve: our webp curve with 10 % fewer bits."""
    doc = json.loads((out / "webp.json").read_text())
    doc["name"] = "WebP-10"
    doc["results"] = {k: (list(np.array(v) * 0.9) if k == "bpp" else v) for k, v in doc["results"].items()
                      if k in ("bpp", "psnr-rgb", "ms-ssim-rgb")}
    path = tmp_path / "webp10.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.slow
def test_report_files_and_tables(small_run, tmp_path):
    ref = reference_file(tmp_path, small_run)
    assert main(["report", str(small_run), "--anchor", "jpeg", "--reference", str(ref)]) == 0
    for name in ("bd_rate.csv", "bd_rate.md", "report.md", "report.html", "per_image.csv", "summary.csv",
                 "rd_psnr-rgb.png", "rd_psnr-rgb.svg", "rd_psnr-y.png", "rd_ms-ssim-db.svg"):
        assert (small_run / name).stat().st_size > 0, name
    table = pd.read_csv(small_run / "bd_rate.csv")
    assert set(table["method"]) == {"pchip", "akima", "cubic"}
    assert set(table["aggregation"]) == {"mean-curve", "per-image"}
    assert set(table["metric"]) == {"psnr-rgb", "psnr-y", "ms-ssim-db", "ssim", "haarpsi", "gmsd"}

    # mean-curve BD-rate equals bjontegaard on the summary means
    summary = pd.read_csv(small_run / "summary.csv")
    a = summary[summary["codec"] == "jpeg"].sort_values("psnr-rgb")
    w = summary[summary["codec"] == "webp"].sort_values("psnr-rgb")
    expected = bjontegaard.bd_rate(a["bpp"], a["psnr-rgb"], w["bpp"], w["psnr-rgb"], "akima", min_overlap=0)
    row = table.query("codec == 'webp' and metric == 'psnr-rgb' and method == 'akima' and "
                      "aggregation == 'mean-curve' and kind == 'bd-rate'")
    assert row["value"].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert expected < 0  # webp beats jpeg

    # per-image: mean over images of per-image BD-rates
    per_image = pd.read_csv(small_run / "per_image.csv")
    values = []
    for _image, g in per_image.groupby("image"):
        ga = g[g["codec"] == "jpeg"].sort_values("psnr-y")
        gw = g[g["codec"] == "webp"].sort_values("psnr-y")
        values.append(bjontegaard.bd_rate(ga["bpp"], ga["psnr-y"], gw["bpp"], gw["psnr-y"], "pchip", min_overlap=0))
    row = table.query("codec == 'webp' and metric == 'psnr-y' and method == 'pchip' and "
                      "aggregation == 'per-image' and kind == 'bd-rate'")
    assert row["note"].isna().iloc[0], "every image overlaps enough"
    assert row["value"].iloc[0] == pytest.approx(np.mean(values), abs=1e-6)

    # the published curve enters the table, marked, and is exactly 10 % cheaper than webp
    pub = table[(table["codec"] == "WebP-10 (published)") & (table["aggregation"] == "mean-curve")
                & (table["kind"] == "bd-rate") & (table["metric"] == "psnr-rgb")]
    assert set(pub["source"]) == {"published"}
    webp = table[(table["codec"] == "webp") & (table["aggregation"] == "mean-curve") & (table["kind"] == "bd-rate")
                 & (table["metric"] == "psnr-rgb")]
    for method in ("pchip", "akima", "cubic"):
        p = pub[pub["method"] == method]["value"].iloc[0]
        q = webp[webp["method"] == method]["value"].iloc[0]
        assert (1 + p / 100) == pytest.approx(0.9 * (1 + q / 100), abs=1e-9)

    md = (small_run / "bd_rate.md").read_text()
    assert "Anchor: jpeg; interpolation: pchip" in md and "WebP-10 (published)" in md
    report = (small_run / "report.md").read_text()
    for text in ("## Settings and provenance", "images", "Pillow", "project commit",
                 "## Encode and decode time per image",
                 "MP/s", "![psnr-rgb](rd_psnr-rgb.png)", "published references"):
        assert text in report, text
    page = (small_run / "report.html").read_text()
    assert "<table>" in page and "id='rd-plot'" in page and "WebP-10 (published)" in page
    for metric in ("psnr-rgb", "psnr-y", "ms-ssim-db", "ssim", "haarpsi", "gmsd"):
        assert f"<option value='{metric}'>" in page, metric


@pytest.mark.slow
def test_rebuild_is_deterministic(small_report):
    """A second ``report`` in the folder of the first (conftest's ``small_report``, built with the same
    default options from the same store) rewrites the same bytes."""
    names = ["bd_rate.csv", "bd_rate.md", "summary.csv", "per_image.csv", "jpeg.json", "rd_psnr-rgb.png",
             "rd_psnr-rgb.svg", "speed_psnr-rgb.png", "speed_psnr-rgb.svg", "bd_rate_per_metric.csv",
             "rd_per_metric.png", "rd_per_metric.svg", "report.md", "report.html"]

    def snapshot():
        return {n: (small_report / n).read_bytes() for n in names}

    first = snapshot()
    assert main(["report", str(small_report)]) == 0
    second = snapshot()
    for name in names:
        if name.startswith("report."):
            strip = lambda b: [line for line in b.decode().splitlines() if "Report built" not in line]  # noqa: E731
            assert strip(first[name]) == strip(second[name]), name
        else:
            assert first[name] == second[name], name


def test_report_errors(small_run, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no result store" in capsys.readouterr().err
    assert main(["report", str(small_run), "--anchor", "hevc"]) == 2
    assert "anchor 'hevc' not among the curves (jpeg, webp)" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", str(small_run), "--reference", str(bad)]) == 2
    assert "not a CompressAI-format result file" in capsys.readouterr().err


def test_published_bpg_reference_loads():
    path = SHARED / "reference" / "compressai-kodak" / "bpg_444_x265_ycbcr.json"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    from bench.analysis import load_reference

    curves = load_reference(path)
    assert set(curves) == {"psnr-rgb", "ms-ssim-rgb", "ms-ssim-db"}
    assert curves["psnr-rgb"].published and curves["psnr-rgb"].label.endswith("(published)")


def test_timings_are_grouped_by_host_and_mixed_hosts_warned():
    from bench.report import mixed_host_warnings, timing_rows

    frame = pd.DataFrame({"codec": ["jpeg"] * 3 + ["webp"] * 2, "host": ["a", "b", "b", "a", "a"],
                          "device": ["cpu"] * 5, "width": [10] * 5, "height": [10] * 5,
                          "encode_s": [1.0, 2.0, 4.0, 1.0, 1.0], "decode_s": [0.5] * 5})
    rows = timing_rows(frame)
    assert [r[:2] for r in rows] == [["jpeg", "a"], ["jpeg", "b"], ["webp", "a"]]
    assert rows[1][3] == "3.0000", "mean encode seconds of host b alone"
    assert mixed_host_warnings(frame) == ["jpeg: encode/decode times come from 2 hosts (a, b); compare speeds per "
                                          "host (timing table)"]
