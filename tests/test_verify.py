"""``python -m bench verify``: a real small run against curves written from the same data (pass),
perturbed ones (fail), usage errors, and Kodak against CompressAI's published files (../shared)."""

import json

import numpy as np
import pytest

from bench.cli import main

from .conftest import SHARED

REFERENCE = SHARED / "reference" / "compressai-kodak"


@pytest.fixture(scope="module")
def two_image_run(tmp_path_factory):
    from PIL import Image

    from .conftest import photo

    folder = tmp_path_factory.mktemp("imgs")
    for name, (h, w) in {"astronaut": (176, 208), "coffee": (192, 256)}.items():
        Image.fromarray(photo(h, w, name)).save(folder / f"{name}.png")
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg,webp", "--qualities", "10,30,50,70,90",
                 "--jobs", "1", "--out", str(out), "--quiet", "--metrics", "psnr-rgb"]) == 0
    return out


def published(tmp_path, out, codec, name, bpp_factor=1.0, db_offset=0.0, keep_quality=True):
    """A CompressAI-format file written from our own exported curve, optionally perturbed."""
    doc = json.loads((out / f"{codec}.json").read_text())
    results = doc["results"]
    new = {"bpp": list(np.array(results["bpp"]) * bpp_factor),
           "psnr-rgb": list(np.array(results["psnr-rgb"]) + db_offset)}
    if keep_quality:
        new["quality"] = results["quality"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": doc["name"], "results": new}))
    return path


@pytest.mark.slow
def test_same_data_passes(two_image_run, tmp_path, capsys):
    jpeg = published(tmp_path, two_image_run, "jpeg", "jpeg")
    webp = published(tmp_path, two_image_run, "webp", "webp-no-quality", keep_quality=False)
    assert main(["verify", str(two_image_run), "--reference", str(jpeg), str(webp)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert "same quality" in lines["jpeg (jpeg.json)"] and "5 of 5" in lines["jpeg (jpeg.json)"]
    assert "same bpp" in lines["webp (webp-no-quality.json)"]  # no quality list: PSNR at the published bpp
    assert out.count("| pass |") == 2 and "+0.00 | pass" in out  # BD-rate of identical curves is 0


def test_perturbed_curves_fail(two_image_run, tmp_path, capsys):
    more_bits = published(tmp_path, two_image_run, "jpeg", "jpeg", bpp_factor=1 / 1.01)  # ours 1 % more
    assert main(["verify", str(two_image_run), "--reference", str(more_bits)]) == 1
    out = capsys.readouterr().out
    assert "| FAIL |" in out and out.count("DIFFERS") == 5 and "+1.000 … +1.000" in out
    assert main(["verify", str(two_image_run), "--reference", str(more_bits), "--tolerance-bpp", "1.5%"]) == 0
    capsys.readouterr()
    brighter = published(tmp_path, two_image_run, "webp", "pub", db_offset=0.3, keep_quality=False)
    assert main(["verify", str(two_image_run), "--reference", str(brighter), "--as", "webp"]) == 1
    assert "-0.300 … -0.300" in capsys.readouterr().out


def test_usage_errors(two_image_run, tmp_path, capsys):
    ref = published(tmp_path, two_image_run, "jpeg", "jpeg")
    assert main(["verify", str(tmp_path), "--reference", str(ref)]) == 2
    assert "no result store" in capsys.readouterr().err
    assert main(["verify", str(two_image_run), "--reference", str(ref), "--as", "jpeg", "webp"]) == 2
    assert "--as names 2 codec(s) for 1 reference file(s)" in capsys.readouterr().err
    other = published(tmp_path, two_image_run, "jpeg", "mystery")
    results = json.loads(other.read_text())["results"]
    (tmp_path / "mystery.json").write_text(json.dumps({"name": "Mystery", "results": results}))
    assert main(["verify", str(two_image_run), "--reference", str(other)]) == 2
    assert "no measured codec named 'mystery' or 'Mystery'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["verify", str(two_image_run), "--reference", str(bad)]) == 2
    assert "not a CompressAI-format result file" in capsys.readouterr().err


@pytest.mark.slow
def test_kodak_reproduces_published_jpeg_and_webp(tmp_path, capsys, monkeypatch):
    if not (REFERENCE / "jpeg.json").is_file() or not (SHARED / "datasets" / "kodak" / "kodim01.png").is_file():
        pytest.skip(f"reference results or Kodak images not available under {SHARED}")
    monkeypatch.setenv("BENCH_DATA", str(SHARED / "datasets"))
    out = tmp_path / "kodak"
    assert main(["run", "--dataset", "kodak", "--codecs", "jpeg,webp", "--qualities", "5,50,95", "--jobs", "2",
                 "--out", str(out), "--quiet", "--metrics", "psnr-rgb", "--no-download"]) == 0
    refs = []
    for codec in ("jpeg", "webp"):  # the published points at qualities 5, 50 and 95 (sweep 5, 10, ..., 95)
        doc = json.loads((REFERENCE / f"{codec}.json").read_text())
        doc["results"] = {k: [v[0], v[9], v[18]] for k, v in doc["results"].items() if k in ("bpp", "psnr-rgb")}
        doc["results"]["quality"] = [5, 50, 95]
        refs.append(tmp_path / f"{codec}.json")
        refs[-1].write_text(json.dumps(doc))
    assert main(["verify", str(out), "--reference", *map(str, refs)]) == 0
    assert capsys.readouterr().out.count("| pass |") == 2
    assert main(["verify", str(out), "--reference", str(refs[0]), "--tolerance-db", "0.05"]) == 1  # JPEG drifts ~0.1 dB
