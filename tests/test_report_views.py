"""The report's opening and views: summary, legends with BD-rate, hover data, per-image view, speed view,
fair-comparison warnings and the CompressAI plot tool on our JSONs."""

import json
import math
import re
import shutil
import socket
import subprocess
import sys

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from bench.analysis.fairness import off_target
from bench.cli import main

from .conftest import stored_codec

pytestmark = pytest.mark.slow  # builds full reports (plots, HTML) from real runs

FAKE_LEARNED = '''"""WebP at effort 6 posing as a learned codec, with a stated complexity (report tests only)."""
import io

import numpy as np
from PIL import Image

NAME = "fakelearned"
FAMILY = "learned"
VERSION = "test 1"
DESCRIPTION = "WebP method 6, labelled learned"
OPTIONS = {}
QUALITIES = [10, 30, 50, 70, 90]


def setup():
    return {"info": {"encoder_kmac_per_pixel": 12.5, "decoder_kmac_per_pixel": 11.0, "parameters": 1000}}


def encode(rgb, quality):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=quality, method=6)
    return buf.getvalue()


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
'''
METRICS = "psnr-rgb,ms-ssim-rgb,ms-ssim-db,psnr-y"


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """jpeg, webp and a 'learned' codec on 3 small photos, with target-bpp points (one unreachable)."""
    from .conftest import write_photos

    folder = write_photos(tmp_path_factory.mktemp("imgs"))
    adapters = tmp_path_factory.mktemp("adapters")
    (adapters / "fakelearned.py").write_text(FAKE_LEARNED)
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg,webp,fakelearned", "--codecs-dir", str(adapters),
                 "--qualities", "10,30,50,70,90", "--metrics", METRICS, "--target-bpp", "0.03,1.0", "--jobs", "2",
                 "--out", str(out), "--quiet"]) == 0
    return out, folder, adapters


@pytest.fixture(scope="module")
def default_report(mixed_run, tmp_path_factory):
    """The report with default options, built once in a copy of the run's folder (results.sqlite and
    the exported files) that no test rebuilds; the tests that only read it share it. The tests with
    other options (--anchor, --reference, a moved original) rebuild in ``mixed_run``'s folder."""
    out, folder, adapters = mixed_run
    copy = tmp_path_factory.mktemp("default-report") / "results"
    shutil.copytree(out, copy)
    assert main(["report", str(copy)]) == 0
    return copy, folder, adapters


def page_data(out) -> dict:
    """The JSON the report page draws its figures from."""
    text = (out / "report.html").read_text()
    raw = re.search(r"<script type='application/json' id='bench-data'>(.*?)</script>", text, re.S).group(1)
    return json.loads(raw.replace("<\\/", "</"))


def mean_curve(summary: pd.DataFrame, codec: str, metric: str):
    rows = summary[summary["codec"] == codec].sort_values(metric)
    return rows["bpp"].to_numpy(), rows[metric].to_numpy()


def test_summary_first_with_sorted_bd_and_family_sentences(default_report):
    out, _, _ = default_report
    md = (out / "report.md").read_text()
    heads = re.findall(r"^## (.+)$", md, re.M)
    assert heads[:3] == ["Summary", "Rate–distortion curves", "Speed against coding efficiency"]
    assert heads[-1] == "Settings and provenance"
    summary = pd.read_csv(out / "summary.csv")
    table = pd.read_csv(out / "bd_rate.csv")
    # summary table: BD-rate on the mean curves (pchip) for the main metrics, best first
    block = md.split("## Summary")[1].split("## Rate")[0]
    rows = [line.split("|")[1:-1] for line in block.splitlines() if line.startswith("| ") and "codec" not in line]
    assert [r[0].strip() for r in rows][-1] == "jpeg" and rows[-1][2].strip() == "anchor"
    values = []
    for r in rows[:-1]:
        cell = table[(table["codec"] == r[0].strip()) & (table["metric"] == "psnr-rgb") & (table["method"] == "pchip")
                     & (table["aggregation"] == "mean-curve") & (table["kind"] == "bd-rate")].iloc[0]
        expected = cell["value"]
        shown = float(r[2].strip().replace("−", "-").split(" %")[0])
        assert shown == pytest.approx(expected, abs=0.05)
        low, high = cell["ci_low"], cell["ci_high"]
        assert r[2].strip().endswith(f"% [{low:+.1f}, {high:+.1f}]".replace("-", "−"))
        values.append(shown)
    assert values == sorted(values) and len(values) == 2
    # best learned vs best conventional: bjontegaard between the two mean curves
    shown_values = dict(zip([r[0].strip() for r in rows[:-1]], values, strict=True))
    conventional = min(("webp", "jpeg"), key=lambda c: shown_values.get(c, 0))
    a_rate, a_q = mean_curve(summary, conventional, "psnr-rgb")
    t_rate, t_q = mean_curve(summary, "fakelearned", "psnr-rgb")
    expected = bjontegaard.bd_rate(a_rate, a_q, t_rate, t_q, "pchip", min_overlap=0)
    sentence = re.search(r"Best learned codec vs best conventional codec \(fakelearned vs (\w+)\): ([-−+0-9.]+) % bits "
                         r"at equal PSNR-RGB", md)
    assert sentence and sentence.group(1) == conventional
    assert float(sentence.group(2).replace("−", "-")) == pytest.approx(expected, abs=0.05)
    assert "Best conventional codec: webp" in md and "Only learned codec: fakelearned" in md


def test_legends_carry_bd_rate_and_mark_the_anchor(mixed_run):
    from bench.model import Curve
    from bench.report.plots import rd_figure

    out, _, _ = mixed_run
    assert main(["report", str(out), "--anchor", "webp"]) == 0
    table = pd.read_csv(out / "bd_rate.csv")
    value = table.query("codec == 'jpeg' and metric == 'psnr-y' and method == 'pchip' and "
                        "aggregation == 'mean-curve' and kind == 'bd-rate'")["value"].iloc[0]
    names = [t["name"] for t in page_data(out)["rd"]["psnr-y"]["data"]]
    assert "webp (anchor)" in names
    assert "jpeg: BD-rate " + f"{value:+.1f} %".replace("-", "−") in names
    # the static figure gets the same legend
    c = Curve("a", np.array([0.1, 0.2]), np.array([30.0, 32.0]))
    d = Curve("b", np.array([0.1, 0.2]), np.array([31.0, 33.0]))
    fig = rd_figure([c, d], {"a": "conventional", "b": "learned"}, "psnr-rgb", "t", "a", {"b": "−12.3 %"})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a (anchor)", "b: BD-rate −12.3 %"]


def test_hover_per_image_view_and_thumbnails(default_report, mixed_run, tmp_path):
    out, folder, _ = default_report
    data = page_data(out)
    per_image = pd.read_csv(out / "per_image.csv")
    summary = pd.read_csv(out / "summary.csv")
    trace = next(t for t in data["rd"]["psnr-rgb"]["data"] if t["meta"] == "jpeg")
    row = summary[summary["codec"] == "jpeg"].sort_values("bpp").iloc[2]
    assert trace["x"][2] == pytest.approx(row["bpp"], rel=1e-12)
    hover = trace["text"][2]
    for text in ("<b>jpeg</b>", "subsampling=4:2:0", f"quality: {row['quality']:g}", f"{row['bpp']:.4f} bpp",
                 f"psnr-rgb: {row['psnr-rgb']:.4f}", "3 images"):
        assert text in hover, text
    assert data["images"] == ["astronaut", "chelsea", "coffee"]
    coffee = data["per_image"]["psnr-y"]["coffee"]["data"]
    webp = next(t for t in coffee if t["meta"] == "webp")
    rows = per_image.query("image == 'coffee' and codec == 'webp'").sort_values("bpp")
    assert webp["y"] == pytest.approx(list(rows["psnr-y"]), rel=1e-12)
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in data["thumbs"].values())
    # an original that is gone: said so instead of a thumbnail (rebuilt in the run's own folder)
    run_out = mixed_run[0]
    moved = tmp_path / "chelsea.png"
    (folder / "chelsea.png").rename(moved)
    try:
        assert main(["report", str(run_out)]) == 0
        assert "is gone: no thumbnail" in page_data(run_out)["thumbs"]["chelsea"]["missing"]
    finally:
        moved.rename(folder / "chelsea.png")


def test_page_is_self_contained(default_report):
    out, _, _ = default_report
    page = (out / "report.html").read_text()
    import plotly.offline

    assert plotly.offline.get_plotlyjs() in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=['\"]https?:", page), "no external scripts or styles"
    assert page.index("id='summary'") < page.index("id='rd-plot'") < page.index("id='per-image'") \
        < page.index("Settings and provenance")


def test_speed_view(default_report):
    from bench.report.summary import speed_points

    out, _, _ = default_report
    for suffix in ("png", "svg"):
        assert (out / f"speed_psnr-rgb.{suffix}").stat().st_size > 0
    per_image = pd.read_csv(out / "per_image.csv")
    table = pd.read_csv(out / "bd_rate.csv")
    codecs = [stored_codec("fakelearned", "learned", {"encoder_kmac_per_pixel": 12.5, "decoder_kmac_per_pixel": 11.0}),
              stored_codec("jpeg", "conventional"), stored_codec("webp", "conventional")]
    points = speed_points(per_image, codecs, table, "psnr-rgb", "pchip", "jpeg").set_index("codec")
    for codec, g in per_image.groupby("codec"):
        mp = (g["width"] * g["height"]).sum() / 1e6
        assert points.loc[codec, "encode_mps"] == pytest.approx(mp / g["encode_s"].sum(), rel=1e-12)
        assert points.loc[codec, "decode_mps"] == pytest.approx(mp / g["decode_s"].sum(), rel=1e-12)
        hosts = {f"{h} ({m})" for h, m in zip(g["host"], g["machine"], strict=True)}
        assert points.loc[codec, "host"] == "; ".join(sorted(hosts))
        assert socket.gethostname() in points.loc[codec, "host"]
    assert points.loc["jpeg", "bd_rate"] == 0 and points.loc["fakelearned", "encoder_kmac"] == 12.5
    assert math.isnan(points.loc["webp", "encoder_kmac"])
    speed = page_data(out)["speed"]["psnr-rgb"]
    assert speed["layout"]["xaxis"]["type"] == "log" and "xaxis2" in speed["layout"]  # kMAC panel for learned


def test_target_flags(default_report):
    out, _, _ = default_report
    means = pd.read_csv(out / "target_bpp_summary.csv")
    md = (out / "report.md").read_text()
    flagged = 0
    for _, r in means.iterrows():
        block = md.split(f"Target {r['target_bpp']:g} bpp")[1].split("\n\n")[1]
        line = next(line for line in block.splitlines() if line.startswith(f"| {r['codec']} |"))
        expected = off_target(r["mean_bpp"], r["target_bpp"])
        assert ("⚠ off target" in line) == expected, line
        assert ("measured range" in line) == expected
        flagged += expected
    assert 0 < flagged < len(means), "0.03 bpp is out of reach, 1.0 bpp within reach"
    assert "**Warning:** target 0.03 bpp:" in md


def reference(out, tmp_path, name, dataset=None, keys=("bpp", "psnr-rgb", "ms-ssim-rgb")):
    doc = json.loads((out / "webp.json").read_text())
    doc["name"] = name
    doc.pop("dataset"), doc.pop("n_images")
    if dataset:
        doc["dataset"] = dataset
    doc["results"] = {k: v for k, v in doc["results"].items() if k in keys}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_reference_dataset_warnings(mixed_run, tmp_path):
    out, folder, _ = mixed_run
    ours = json.loads((out / "webp.json").read_text())
    assert ours["dataset"] == folder.name and ours["n_images"] == 3
    unknown = reference(out, tmp_path, "Anon")
    other = reference(out, tmp_path, "Elsewhere", dataset="kodak")
    same = reference(out, tmp_path, "Same", dataset=folder.name)
    assert main(["report", str(out), "--reference", str(unknown), str(other), str(same)]) == 0
    md = (out / "report.md").read_text()
    assert "Anon (published): Anon.json does not name its dataset" in md
    assert f"Elsewhere (published): measured on 'kodak', this run is '{folder.name}': not comparable" in md
    warnings = [line for line in md.splitlines() if line.startswith("- **Warning:**") and "(published)" in line]
    assert len(warnings) == 2 and not any("Same (published)" in w for w in warnings)
    table = pd.read_csv(out / "bd_rate.csv")
    notes = table.groupby("codec")["note"].apply(lambda s: set(s.fillna("")))
    assert all("measured on 'kodak'" in n for n in notes["Elsewhere (published)"])
    assert all("does not name its dataset" in n for n in notes["Anon (published)"])
    assert not any("dataset" in n for n in notes["Same (published)"])


def test_published_anchor_without_psnr_y(mixed_run, tmp_path):
    out, folder, _ = mixed_run
    ref = reference(out, tmp_path, "Pub", dataset=folder.name)
    assert main(["report", str(out), "--reference", str(ref), "--anchor", "Pub (published)"]) == 0
    table = pd.read_csv(out / "bd_rate.csv")
    y = table[table["metric"] == "psnr-y"]
    assert len(y) and y["value"].isna().all() and set(y["note"]) == {"n/a (anchor has no psnr-y)"}
    rgb = table.query("codec == 'webp' and metric == 'psnr-rgb' and aggregation == 'mean-curve' and kind == 'bd-rate'")
    assert rgb["value"].abs().max() < 1e-6, "Pub is webp's own curve"


PLOT_EVERY_KEY = """
import runpy, sys
path, folder, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
for key in keys:
    sys.argv = ["compressai.utils.plot", "-f", path, "-m", key, "-o", f"{folder}/{key}.png"]
    runpy.run_module("compressai.utils.plot", run_name="__main__", alter_sys=True)
    print(key, flush=True)
"""


def test_every_json_key_plots_with_compressai(mixed_run, tmp_path):
    from compressai.utils.plot.__main__ import parse_json_file

    out, _, _ = mixed_run
    path = out / "jpeg.json"
    keys = [k for k in json.loads(path.read_text())["results"] if k != "bpp"]
    assert "ms-ssim-rgb" in keys and "ms-ssim-db" not in keys
    for key in keys:
        parsed = parse_json_file(path, key)
        assert np.isfinite(np.asarray(parsed["ys"], float)).all(), key
    # `python -m compressai.utils.plot -f FILE -m KEY -o PNG` for every key, in one process (it imports
    # torch: a process per key took most of this test's time): runpy runs the tool's __main__ as -m does
    run = subprocess.run([sys.executable, "-c", PLOT_EVERY_KEY, str(path), str(tmp_path), *keys],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == keys, "every key plotted, in order"
    for key in keys:
        assert (tmp_path / f"{key}.png").stat().st_size > 0, key
    ms = parse_json_file(path, "ms-ssim")["ys"]  # the tool's dB conversion of ms-ssim-rgb
    summary = pd.read_csv(out / "summary.csv").query("codec == 'jpeg'").sort_values("bpp")
    assert ms == pytest.approx(list(-10 * np.log10(1 - summary["ms-ssim-rgb"])), rel=1e-9)
