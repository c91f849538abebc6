"""The Conventional vs End2End view (Figure 4): BD table against VVC and JPEG, the timeline, years,
family colours, chroma notes, the speed view's decode-only rows, and make bench's row selection.

Built from a real store (jpeg, webp and hevc run on three photos) plus published curves: numbers
from CompressAI's Kodak result files (BSD-3-Clause-Clear, © InterDigital; the same as
../shared/reference/compressai-kodak/), written by the tests as CompressAI-format JSONs.
"""

import json
import math
import re
import shutil

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from bench.analysis.fairness import chroma_format, published_chroma
from bench.cli import main
from bench.cli.run import published_specs, tool_lines
from bench.report import figure4

from .conftest import SHARED, stored_codec

pytestmark = pytest.mark.slow  # real sweeps and reports of the Conventional vs End2End view

# Published Kodak curves (bpp, PSNR-RGB, MS-SSIM), CompressAI's results/image/kodak/*.json.
PUBLISHED = {
    "vtm.json": {"name": "VTM", "results": {
        "bpp": [0.0482, 0.1125, 0.2458, 0.4905, 0.8748, 1.4308, 2.3246, 3.6326],
        "psnr-rgb": [26.1448, 28.493, 31.1999, 34.2615, 37.4198, 40.4244, 43.5058, 46.5918],
        "ms-ssim-rgb": [0.8606, 0.9177, 0.9561, 0.9781, 0.9888, 0.9939, 0.9969, 0.9987]}},
    "paper-bmshj2018-factorized.json": {"name": "official bmshj2018-factorized", "results": {
        "bpp": [0.1198, 0.1946, 0.316, 0.4811, 0.7213, 1.0608, 1.4587, 1.9576],
        "psnr-rgb": [26.7751, 28.3487, 30.0208, 31.7296, 33.6858, 35.8159, 38.02, 40.134]}},
    "paper-mbt2018.json": {"name": "official mbt2018", "results": {
        "bpp": [0.072, 0.1534, 0.2644, 0.4285, 0.6354, 0.9043, 1.2588, 1.9821, 2.9928],
        "psnr-rgb": [26.8041, 28.8807, 30.9271, 33.0286, 34.9981, 37.0533, 39.1208, 42.1652, 45.0749]}},
}
METRICS = "psnr-rgb,ms-ssim-rgb,ms-ssim-db,psnr-y"


@pytest.fixture(scope="module")
def f4_run(tmp_path_factory):
    """jpeg, webp and hevc (4:4:4 and 4:2:0) on three photos, and the published curves as files."""
    from .conftest import write_photos

    folder = write_photos(tmp_path_factory.mktemp("imgs"))
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--dataset", str(folder), "--codecs",
                 "jpeg:q=10/30/50/70/90,webp:q=10/30/50/70/90,hevc:q=45/39/33/27/21,hevc:chroma=420:q=45/39/33/27/21",
                 "--metrics", METRICS, "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    refs = tmp_path_factory.mktemp("refs")
    for name, doc in PUBLISHED.items():
        (refs / name).write_text(json.dumps(doc))
    return out, refs


def build(out, refs, *extra: str) -> dict:
    files = [str(refs / name) for name in PUBLISHED]
    assert main(["figure4", str(out), "--reference", *files, "--bootstrap", "300", *extra]) == 0
    return page_data(out)


@pytest.fixture(scope="module")
def f4_built(f4_run, tmp_path_factory):
    """``figure4`` with the three published curves, built once in a copy of the run's folder that no
    test rebuilds: (results folder, the page's data). Tests that build otherwise use ``f4_run``'s folder."""
    out, refs = f4_run
    copy = tmp_path_factory.mktemp("figure4") / "results"
    shutil.copytree(out, copy)
    return copy, build(copy, refs)


def page_data(out) -> dict:
    text = (out / "report.html").read_text()
    raw = re.search(r"<script type='application/json' id='bench-data'>(.*?)</script>", text, re.S).group(1)
    return json.loads(raw.replace("<\\/", "</"))


def mean_curve(summary: pd.DataFrame, codec: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = summary[(summary["codec"] == codec) & (summary["n_images"] == 3)].sort_values(metric)
    return rows["bpp"].to_numpy(), rows[metric].to_numpy()


def published_curve(name: str, metric: str = "psnr-rgb") -> tuple[np.ndarray, np.ndarray]:
    r = PUBLISHED[name]["results"]
    return np.array(r["bpp"]), np.array(r[metric])


def test_bd_table_against_vvc_and_jpeg_equals_bjontegaard(f4_built):
    out, _ = f4_built
    table = pd.read_csv(out / "figure4_bd_rate.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert set(table["anchor_name"]) == {"VVC", "JPEG"}
    assert set(table.loc[table["anchor_name"] == "VVC", "anchor"]) == {"VTM (published)"}, "no vvc rows here"
    assert set(table.loc[table["anchor_name"] == "JPEG", "anchor"]) == {"jpeg"}

    def value(anchor: str, codec: str, metric: str) -> pd.Series:
        hit = table.query("anchor_name == @anchor and codec == @codec and metric == @metric and method == 'pchip'")
        assert len(hit) == 1
        return hit.iloc[0]

    for codec in ("webp", "hevc", "hevc_chroma=420"):
        for metric in ("psnr-rgb", "psnr-y", "ms-ssim-db"):  # PSNR-Y next to PSNR-RGB: measured here
            row = value("JPEG", codec, metric)
            expected = bjontegaard.bd_rate(*mean_curve(summary, "jpeg", metric), *mean_curve(summary, codec, metric),
                                           "pchip", require_matching_points=False, min_overlap=0)
            assert row["value"] == pytest.approx(expected, abs=1e-6)
            assert row["ci_low"] <= row["value"] <= row["ci_high"], "both have per-image data: an interval"
        vtm = value("VVC", codec, "psnr-rgb")
        expected = bjontegaard.bd_rate(*published_curve("vtm.json"), *mean_curve(summary, codec, "psnr-rgb"),
                                       "pchip", require_matching_points=False, min_overlap=0)
        assert vtm["value"] == pytest.approx(expected, abs=1e-6)
        assert math.isnan(vtm["ci_low"]), "a published anchor has no per-image data: no interval"
    factorized = value("JPEG", "official bmshj2018-factorized (published)", "psnr-rgb")
    expected = bjontegaard.bd_rate(*mean_curve(summary, "jpeg", "psnr-rgb"),
                                   *published_curve("paper-bmshj2018-factorized.json"), "pchip",
                                   require_matching_points=False, min_overlap=0)
    assert factorized["value"] == pytest.approx(expected, abs=1e-6) and math.isnan(factorized["ci_low"])

    md = (out / "report.md").read_text()
    section = md.split("## Conventional vs End2End")[1].split("\n## ")[0]
    line = next(row for row in section.splitlines() if row.startswith("| webp |"))
    jpeg_rgb = value("JPEG", "webp", "psnr-rgb")
    assert f"{jpeg_rgb['value']:+.2f} [{jpeg_rgb['ci_low']:+.2f}, {jpeg_rgb['ci_high']:+.2f}]" in line
    assert f"{value('VVC', 'webp', 'psnr-rgb')['value']:+.2f} no CI" in line
    assert "| hevc_chroma=420 | Conventional | measured | Y'CbCr 4:2:0 |" in section
    assert "| VTM (published) | Conventional | published curve | Y'CbCr 4:4:4" in section
    assert "VVC anchor: VTM (published) (no vvc rows in this store" in section
    assert "JPEG anchor: jpeg, measured here." in section
    f1 = section.split("Table F1.")[1]
    assert "| official mbt2018 (published) | End2End | published curve |" in f1
    assert "PSNR-Y" in f1 and "MS-SSIM dB" in f1


def test_timeline_years_and_marks(f4_built):
    out, data = f4_built
    points = pd.read_csv(out / "figure4_timeline.csv")
    table = pd.read_csv(out / "figure4_bd_rate.csv")
    assert set(points["label"]) == {"official bmshj2018-factorized (published)", "official mbt2018 (published)"}
    years = points.groupby("label")["year"].first()
    assert years["official bmshj2018-factorized (published)"] == 2016
    assert years["official mbt2018 (published)"] == 2018
    assert set(points["source"]) == {"published curve"}
    for _, p in points.iterrows():  # the same numbers as the BD table
        hit = table.query("anchor_name == @p.anchor and codec == @p.label and metric == @p.metric "
                          "and method == 'pchip'")
        assert p["bd_rate"] == pytest.approx(hit["value"].iloc[0], abs=1e-9)
    fig = data["figure4"]["timeline-psnr-rgb"]
    published = [t for t in fig["data"] if t["name"].startswith("published")]
    assert published and all(set(t["marker"]["symbol"]) == {"circle-open"} for t in published)
    assert sum(len(t["x"]) for t in fig["data"]) == len(points[points["metric"] == "psnr-rgb"])
    assert {tuple(sorted(t["x"])) for t in published} <= {(2016, 2018)}
    assert (out / "figure4_timeline_psnr-rgb.png").stat().st_size > 0
    page = (out / "report.html").read_text()
    section = page[page.index("<section id='figure4'>"):]
    assert section.index("The article&#x27;s claim") < section.index("id='f4-rd-psnr-rgb'") \
        < section.index("id='f4-timeline-psnr-rgb'") < section.index("Table F1.") < section.index("</section>")
    md = (out / "report.md").read_text()
    assert "| official bmshj2018-factorized (published) | 2016 | factorized prior (Ballé et al.) |" in md
    assert "ICLR 2017 (arXiv:1611.01704" in md


def test_family_colours_and_published_dashes(f4_built):
    _, data = f4_built
    for metric in ("psnr-rgb", "ms-ssim-db"):
        traces = data["figure4"][f"rd-{metric}"]["data"]
        by_name = {t["meta"]: t for t in traces}
        assert {"jpeg", "webp", "hevc", "hevc_chroma=420", "VTM (published)"} <= set(by_name)
        for label, trace in by_name.items():
            family = "learned" if "bmshj2018" in label or "mbt2018" in label else "conventional"
            assert trace["line"]["color"] in figure4.FAMILY_COLOURS[family], label
            assert trace["legendgroup"] == family
            assert trace["line"]["dash"] == ("dash" if label.endswith("(published)") else "solid")
        conventional = [t["meta"] for t in traces if t["legendgroup"] == "conventional"]
        assert [t["meta"] for t in traces][:len(conventional)] == conventional, "conventional codecs first"
    assert "official mbt2018 (published)" not in {t["meta"] for t in data["figure4"]["rd-ms-ssim-db"]["data"]}


def test_chroma_notes(f4_built):
    out, _ = f4_built
    md = (out / "report.md").read_text()
    assert "- jpeg: Y'CbCr 4:2:0 (option subsampling=4:2:0)" in md
    assert "- hevc: Y'CbCr 4:4:4 (option chroma=444)" in md
    assert "- hevc_chroma=420: Y'CbCr 4:2:0 (option chroma=420)" in md
    assert "- webp: Y'CbCr 4:2:0 (lossy WebP is always 4:2:0)" in md
    assert "**Warning:** chroma formats differ (" in md
    assert chroma_format("vvc", "conventional", {}, {"chroma": "420", "source": "x"}) == ("Y'CbCr 4:2:0",
                                                                                         "adapter info")
    assert chroma_format("vvc", "conventional", {"preset": "faster"}, {})[0].startswith("Y'CbCr 4:2:0, 10-bit")
    assert chroma_format("avif", "conventional", {"subsampling": "4:4:4"}, {})[0] == "Y'CbCr 4:4:4"
    assert chroma_format("jxl", "conventional", {"effort": "7"}, {})[0].startswith("XYB")
    assert chroma_format("jpeg2000", "conventional", {}, {})[0].endswith("4:4:4")
    assert chroma_format("hyperprior", "learned", {}, {})[0].startswith("RGB")
    assert chroma_format("published", "learned", {}, {"source": "published bitstreams"})[0].startswith("not stated")
    assert published_chroma("VTM (published)", "conventional").startswith("Y'CbCr 4:4:4")
    assert published_chroma("elic2022 (published)", "learned").startswith("RGB")


def test_years_table():
    expected = {"official bmshj2018-factorized (published)": 2016, "bmshj2018-factorized": 2016, "hyperprior": 2018,
                "official bmshj2018-hyperprior (published)": 2018, "official mbt2018 (published)": 2018,
                "mbt2018-mean": 2018, "cheng2020-attn (published)": 2020, "cheng2020-anchor": 2020,
                "minnen2020-cc10 (published)": 2020, "minnen2018-checkerboard (published)": 2021,
                "cheng2020-parallel (published)": 2022, "elic2022 (published)": 2022,
                "coolchic-3.4.1-kodak": 2025, "Cool-chic (published)": 2023}
    for label, year in expected.items():
        pub = figure4.publication(label)
        assert pub is not None and pub.year == year, label
        assert pub.citation
    assert figure4.publication("mbt2018-mean") == figure4.MBT2018_MEAN
    assert figure4.publication("mine", codec_name="hyperprior") == figure4.HYPERPRIOR  # a renamed hyperprior
    for label in ("jpeg", "VTM (published)", "learned", "webp"):
        assert figure4.publication(label) is None
    assert figure4.reference_family("BPG 8b 444 x265 ycbcr (published)") == "conventional"
    assert figure4.reference_family("official mbt2018 (published)") == "learned"


def infos(*items: tuple[str, str, str, str]) -> dict:
    return {label: figure4.CurveInfo(label, family, source, codec) for label, family, source, codec in items}


def test_published_bitstream_rows_are_end2end_and_marked():
    """Rows of the published codec (codec info as it stores them) are End2End, marked, and dated."""
    here = {"source": "published bitstreams", "decoded": "here (Cool-chic 3.4.1 decoder)"}
    supplied = {"source": "published bitstreams", "decoded": "supplied images (times not measured)"}
    codecs = [stored_codec("coolchic-3.4.1-kodak", "learned", here, "published"),
              stored_codec("other", "learned", supplied, "published"),
              stored_codec("jpeg", "conventional"), stored_codec("gone", "conventional", codec="webp")]
    found = figure4.curve_infos(codecs, {"coolchic-3.4.1-kodak", "other", "jpeg"}, ["VTM (published)"])
    assert set(found) == {"coolchic-3.4.1-kodak", "other", "jpeg", "VTM (published)"}
    cool = found["coolchic-3.4.1-kodak"]
    assert cool.source == figure4.BITSTREAMS and cool.family == "learned"
    assert figure4.source_text(cool) == "published bitstreams, decoded here (Cool-chic 3.4.1 decoder)"
    assert figure4.source_text(found["other"]) == "published bitstreams, supplied images (times not measured)"
    assert figure4.display_name(cool) == "coolchic-3.4.1-kodak (published bitstreams)"
    assert figure4.publication(cool.label, cool.codec_name).year == 2025
    assert found["VTM (published)"].family == "conventional" and found["jpeg"].source == figure4.MEASURED
    assert figure4.undated(found) == ["other"]


def test_anchor_choice():
    vtm = ("VTM (published)", "conventional", figure4.PUBLISHED, "")
    jpeg = ("jpeg", "conventional", figure4.MEASURED, "jpeg")
    slower = ("vvc_preset=slower", "conventional", figure4.MEASURED, "vvc")
    vvc = ("vvc", "conventional", figure4.MEASURED, "vvc")
    assert figure4.pick_anchor("VVC", infos(vtm, jpeg, slower, vvc)).label == "vvc", "default options first"
    assert figure4.pick_anchor("VVC", infos(vtm, slower)).label == "vvc_preset=slower"
    fallback = figure4.pick_anchor("VVC", infos(vtm, jpeg))
    assert fallback.label == "VTM (published)" and "no vvc rows" in fallback.note and "4:4:4" in fallback.note
    none = figure4.pick_anchor("VVC", infos(jpeg))
    assert none.label is None and "make vvc" in none.note
    assert figure4.pick_anchor("JPEG", infos(vtm, jpeg)).label == "jpeg"
    published_jpeg = ("JPEG (published)", "conventional", figure4.PUBLISHED, "")
    assert figure4.pick_anchor("JPEG", infos(vtm, published_jpeg)).label == "JPEG (published)"
    assert figure4.pick_anchor("JPEG", infos(("JPEG2000 (published)", "conventional", figure4.PUBLISHED, ""))) \
        .label is None


def test_published_bitstream_rows_show_decode_time_only(f4_built):
    """A row whose encode time was not measured (as the published codec stores it) keeps its decode time."""
    from bench.report.interactive import speed_figure_json
    from bench.report.summary import speed_points

    out, _ = f4_built
    per_image = pd.read_csv(out / "per_image.csv")
    per_image.loc[per_image["codec"] == "webp", "encode_s"] = np.nan
    table = pd.read_csv(out / "bd_rate.csv")
    codecs = [stored_codec("webp", "learned", {"source": "published bitstreams"}), stored_codec("jpeg", "conventional")]
    points = speed_points(per_image, codecs, table, "psnr-rgb", "pchip", "jpeg").set_index("codec")
    webp = per_image[per_image["codec"] == "webp"]
    megapixels = float((webp["width"] * webp["height"]).sum()) / 1e6
    assert math.isnan(points.loc["webp", "encode_mps"]) and math.isnan(points.loc["webp", "encode_s_per_mp"])
    assert points.loc["webp", "decode_s_per_mp"] == pytest.approx(webp["decode_s"].sum() / megapixels, rel=1e-12)
    fig = speed_figure_json(points.reset_index(), "psnr-rgb", "jpeg", "t", {})
    trace = next(t for t in fig["data"] if t["name"] == "webp")
    assert trace["meta"] == ["decode"] and "decode only" in trace["text"][0]
    assert "encode time not measured (published bitstreams)" in trace["hovertext"][0]
    both = next(t for t in fig["data"] if t["name"] == "jpeg")
    assert both["meta"] == ["encode", "decode"] and both["marker"]["symbol"] == ["square", "square-open"]


def test_make_bench_row_selection(tmp_path, capsys):
    present = tmp_path / "coolchic-3.4.1-kodak"
    present.mkdir()
    missing = tmp_path / "nowhere" / "coolchic-3.4.1-kodak"
    specs, lines = published_specs([str(present), str(missing), ""], {"published", "jpeg"})
    assert specs == [f"published:dir={present}"]
    assert lines == [f"coolchic-3.4.1-kodak: {missing} not found (published bitstreams left out; set PUBLISHED=DIR "
                     "or --published DIR)"]
    specs, lines = published_specs([str(present)], {"jpeg"})
    assert specs == [] and lines == ["coolchic-3.4.1-kodak: left out, this checkout has no 'published' codec kind"]
    assert tool_lines({"jpeg"}, {"jpeg"}, built=lambda tool: None) == ["vvc: not built (make vvc)"]
    assert tool_lines({"jpeg"}, {"jpeg"}, built=lambda tool: tmp_path)[0].startswith("vvc: vvenc is built")
    assert tool_lines({"jpeg", "vvc"}, {"jpeg"}, built=lambda tool: None) == [], "the vvc adapter says why itself"
    assert tool_lines({"vvc"}, {"vvc"}, built=lambda tool: tmp_path) == []

    from .conftest import write_photos

    folder = tmp_path / "imgs"
    folder.mkdir()
    write_photos(folder)
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg", "--published", str(missing), "--dry-run",
                 "--out", str(tmp_path / "out")]) == 0
    assert f"coolchic-3.4.1-kodak: {missing} not found" in capsys.readouterr().out
    from .conftest import REPO

    makefile = (REPO / "Makefile").read_text()
    assert "PUBLISHED ?= ../shared/published/coolchic-3.4.1-kodak" in makefile
    assert "--published $(d)" in makefile and "-m bench figure4 $(OUT)" in makefile


def test_default_references(f4_run, tmp_path, capsys):
    out, refs = f4_run
    folder = tmp_path / "compressai-kodak"
    folder.mkdir()
    for name in ("vtm.json", "paper-mbt2018.json"):
        (folder / name).write_text((refs / name).read_text())
    files, line = figure4.default_references(folder)
    assert [f.name for f in files] == ["paper-mbt2018.json", "vtm.json"]
    assert line.startswith(f"Figure 4: 2 published curves from {folder} (the default set; 4 of its files are missing")
    assert main(["figure4", str(out), "--reference-dir", str(folder), "--bootstrap", "0"]) == 0
    assert "Figure 4: 2 published curves" in capsys.readouterr().out
    assert {t["meta"] for t in page_data(out)["figure4"]["rd-psnr-rgb"]["data"]} >= {"VTM (published)",
                                                                                     "official mbt2018 (published)"}
    assert main(["figure4", str(out), "--reference-dir", str(tmp_path / "none"), "--bootstrap", "0"]) == 0
    assert "Figure 4: no published curves" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "No VVC anchor: run the vvc codec (make vvc) or pass --reference .../vtm.json." in md
    assert main(["figure4", str(out), "--reference", "--reference-dir", str(folder)]) == 2


@pytest.mark.skipif(not (SHARED / "models" / "bmshj2018-hyperprior").is_dir(),
                    reason="stand-in hyperprior checkpoints only beside a developer's or CI's checkout")
def test_measured_hyperprior_on_the_timeline(tmp_path, monkeypatch):
    """The hyperprior run here (stand-in weights) is a measured timeline point, with its interval."""
    pytest.importorskip("compressai")
    from .conftest import write_photos

    folder = tmp_path / "imgs"
    folder.mkdir()
    write_photos(folder)
    monkeypatch.setenv("BENCH_CHECKPOINTS", str(SHARED / "models" / "bmshj2018-hyperprior"))
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg:q=10/30/50/70/90,hyperprior", "--metrics",
                 METRICS, "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    vtm = tmp_path / "vtm.json"
    vtm.write_text(json.dumps(PUBLISHED["vtm.json"]))
    assert main(["figure4", str(out), "--reference", str(vtm), "--bootstrap", "300"]) == 0
    points = pd.read_csv(out / "figure4_timeline.csv")
    label = "hyperprior"  # --device auto: the device is not part of the label
    mine = points[(points["label"] == label) & (points["metric"] == "psnr-rgb")].set_index("anchor")
    assert set(mine["source"]) == {"measured"} and set(mine["year"]) == {2018}
    assert mine.loc["JPEG", "ci_low"] <= mine.loc["JPEG", "bd_rate"] <= mine.loc["JPEG", "ci_high"]
    summary = pd.read_csv(out / "summary.csv")
    expected = bjontegaard.bd_rate(*mean_curve(summary, "jpeg", "psnr-rgb"), *mean_curve(summary, label, "psnr-rgb"),
                                   "pchip", require_matching_points=False, min_overlap=0)
    assert mine.loc["JPEG", "bd_rate"] == pytest.approx(expected, abs=1e-6)
    fig = page_data(out)["figure4"]["timeline-psnr-rgb"]
    traces = {t["name"]: t for t in fig["data"]}
    assert traces["measured vs JPEG"]["marker"]["symbol"] == ["diamond"] and "error_y" in traces["measured vs JPEG"]
    assert "error_y" not in traces["measured vs VVC"], "against the published VTM curve: no interval"
