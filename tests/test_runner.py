"""The harness: bpp, stored rows, resume after kill -9, bad inputs, exported files."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.adapters import Adapter, discover, select
from bench.cli import main
from bench.datasets import resolve_dataset
from bench.pipeline.measure import bits_per_pixel
from bench.pipeline.runner import run_benchmark
from bench.store import DB_NAME, Store

from .conftest import REPO, photo

ADAPTERS = [a for a in discover() if isinstance(a, Adapter)]


def configs(*specs):
    return select(ADAPTERS, list(specs))[0]


def test_bits_per_pixel():
    assert bits_per_pixel(1000, 100, 80) == 1.0
    assert bits_per_pixel(3, 2, 3) == 4.0


@pytest.mark.slow
def test_bpp_is_bytes_times_8_over_pixels(image_folder, tmp_path):
    run_benchmark(resolve_dataset(str(image_folder)), configs("jpeg", "webp"), tmp_path, qualities=[30, 80],
                  jobs=1, progress=False)
    with Store(tmp_path) as store:
        rows = list(store.rows("images"))
    assert len(rows) == 3 * 2 * 2
    by_name = {a.name: a for a in ADAPTERS}
    for row in rows:
        rgb = np.asarray(Image.open(image_folder / f"{row['name']}.png").convert("RGB"))
        data = by_name[row["codec"]].encode(rgb, int(row["quality"]), **json.loads(row["options"]))
        assert row["bytes"] == len(data)  # deterministic encoders: same bitstream, independently
        assert row["bpp"] == len(data) * 8 / (rgb.shape[0] * rgb.shape[1])
        assert (row["width"], row["height"]) == (rgb.shape[1], rgb.shape[0])
        assert row["encode_s"] > 0 and row["decode_s"] > 0 and row["device"] == "cpu"


@pytest.mark.slow
def test_rerun_computes_only_missing_rows(image_folder, tmp_path):
    ds = resolve_dataset(str(image_folder))
    first = run_benchmark(ds, configs("jpeg"), tmp_path, qualities=[20, 60], jobs=2, progress=False)
    assert (first.done, first.cached_jobs) == (6, 0)
    again = run_benchmark(ds, configs("jpeg"), tmp_path, qualities=[20, 60, 90], jobs=2, progress=False)
    assert (again.done, again.cached_jobs) == (3, 6)
    other_option = run_benchmark(ds, configs("jpeg:subsampling=4:4:4"), tmp_path, qualities=[20], jobs=1,
                                 progress=False)
    assert other_option.done == 3, "options are part of the key"


def _count_rows(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_kill_9_loses_and_recomputes_nothing(image_folder, tmp_path, jobs):
    out = tmp_path / "out"
    qualities = ",".join(str(q) for q in range(5, 100, 5))
    cmd = [sys.executable, "-m", "bench", "run", "--dataset", str(image_folder), "--codecs", "webp",
           "--qualities", qualities, "--jobs", str(jobs), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while _count_rows(out / DB_NAME) < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(out / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = {r[0:5]: r[5] for r in conn.execute(
            "SELECT image_hash, codec, options, version, quality, created FROM measurements")}
    total = 3 * 19
    assert 10 <= len(before) < total, "the run must have been killed midway"
    ds = resolve_dataset(str(image_folder))
    report = run_benchmark(ds, configs("webp"), out, qualities=list(range(5, 100, 5)), jobs=jobs, progress=False)
    assert report.cached_jobs == len(before)
    assert report.done == total - len(before)
    with sqlite3.connect(out / DB_NAME) as conn:
        after = {r[0:5]: r[5] for r in conn.execute(
            "SELECT image_hash, codec, options, version, quality, created FROM measurements")}
    assert len(after) == total
    assert all(after[k] == v for k, v in before.items()), "finished rows were not recomputed"


@pytest.mark.slow
def test_bad_inputs_are_converted_or_skipped(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    base = photo(192, 256, "coffee")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    Image.fromarray(base).save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:3000])
    (folder / "whole.png").unlink()
    Image.fromarray(base).convert("L").save(folder / "gray.png")
    Image.fromarray(base).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(base).convert("P").save(folder / "palette.png")
    Image.fromarray(base[..., 1].astype(np.uint16) * 257).save(folder / "gray16.png")
    import tifffile

    tifffile.imwrite(folder / "rgb16.tif", base.astype(np.uint16) * 257, photometric="rgb")
    Image.fromarray(photo(8, 8)).save(folder / "tiny8x8.png")
    Image.fromarray(photo(513, 769, "chelsea")).save(folder / "odd769x513.png")

    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg,hevc", "--qualities", "30",
                 "--jobs", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "corrupt.png: not a readable image" in out
    assert "truncated.png: cannot decode" in out
    assert "gray.png: grayscale converted to RGB" in out
    assert "rgba.png: alpha channel dropped" in out
    assert "palette.png: palette image converted to RGB" in out
    assert "gray16.png: 16-bit grayscale converted to 8-bit RGB" in out
    assert "rgb16.tif: 16-bit samples reduced to 8 bits" in out
    assert "ms-ssim-rgb not computable for a 8x8 image" in out
    assert "2 image(s) skipped" in out

    frame = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert sorted(frame["image"].unique()) == ["gray", "gray16", "odd769x513", "palette", "rgb16", "rgba", "tiny8x8"]
    assert len(frame) == 7 * 2, "every readable image measured with both codecs"
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["ms-ssim-rgb"].isna().all(), "a mean over images never skips the tiny image"
    assert summary["psnr-rgb"].notna().all()
    tiny = frame[frame["image"] == "tiny8x8"]
    assert tiny["ms-ssim-rgb"].isna().all() and (tiny["psnr-rgb"] > 10).all()
    odd = frame[frame["image"] == "odd769x513"].iloc[0]
    assert (odd["width"], odd["height"]) == (769, 513)
    from bench.datasets.images import load_image

    assert np.array_equal(load_image(folder / "rgb16.tif").rgb, base), "16-bit x*257 maps back to x"
    assert np.array_equal(load_image(folder / "gray16.png").rgb, np.repeat(base[..., 1:2], 3, axis=2))


@pytest.mark.slow
def test_failures_are_counted_with_reasons(tmp_path, image_folder, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flaky.py").write_text(
        "import numpy as np\nNAME='flaky'\nFAMILY='conventional'\nVERSION='1'\nDESCRIPTION='fails on purpose'\n"
        "QUALITIES=[1, 2]\n"
        "def encode(rgb, quality):\n"
        "    if quality == 2:\n        raise RuntimeError('unsupported quality')\n"
        "    return rgb.tobytes()\n"
        "def decode(data):\n    return np.zeros((3, 3, 3), np.uint8)\n"
    )
    code = main(["run", "--dataset", str(image_folder), "--codecs", "flaky", "--codecs-dir", str(plugins),
                 "--jobs", "1", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1, "exit 1 when measurements failed"
    out = capsys.readouterr().out
    assert "0 measured, 0 cached, 6 failed" in out
    assert "flaky: 6 failed" in out
    assert "3 x encode: RuntimeError: unsupported quality (flaky.py:9)" in out, "the adapter's file:line is kept"
    assert "1 x decode: decoded shape (3, 3, 3) differs from the original (192, 256, 3)" in out


@pytest.mark.slow
def test_exported_files(image_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(image_folder), "--codecs", "jpeg,webp", "--qualities", "10,50,90",
                 "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    per_image = pd.read_csv(out / "per_image.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert len(per_image) == 3 * 2 * 3 and len(summary) == 2 * 3
    for codec in ("jpeg", "webp"):
        doc = json.loads((out / f"{codec}.json").read_text())
        assert doc["name"] == codec and "Pillow" in doc["description"]
        res = doc["results"]
        assert set(res) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
        assert res["bpp"] == sorted(res["bpp"]) and len(res["bpp"]) == 3
        rows = per_image[per_image["codec"] == codec]
        for i, q in enumerate(res["quality"]):
            at_q = rows[rows["quality"] == q]
            assert len(at_q) == 3
            assert res["bpp"][i] == pytest.approx(np.mean(at_q["bytes"] * 8 / (at_q["width"] * at_q["height"])))
            assert res["psnr-rgb"][i] == pytest.approx(at_q["psnr-rgb"].mean())
            assert res["ms-ssim-rgb"][i] == pytest.approx(at_q["ms-ssim-rgb"].mean())
            assert res["decoding_time"][i] == pytest.approx(at_q["decode_s"].mean())


def test_cli_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for option in ("--dataset", "--codecs", "--qualities", "--jobs", "--out", "--codecs-dir", "--no-download"):
        assert option in text


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["run", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["run", "--dataset", "sample", "--codecs", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown codec 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_sample_dataset_run(tmp_path):
    assert main(["run", "--dataset", "sample", "--codecs", "webp", "--qualities", "50", "--jobs", "2",
                 "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "webp.json").read_text())
    assert len(doc["results"]["bpp"]) == 1 and math.isfinite(doc["results"]["psnr-rgb"][0])


@pytest.mark.slow
def test_added_metrics_are_computed_for_stored_rows_only(image_folder, tmp_path):
    ds = resolve_dataset(str(image_folder))
    first = run_benchmark(ds, configs("jpeg"), tmp_path, qualities=[40], jobs=1, progress=False,
                          metrics=("psnr-rgb", "ms-ssim-rgb"))
    assert first.done == 3
    with Store(tmp_path) as store:
        created = {r["name"]: r["bytes"] for r in store.rows("images")}
    more = run_benchmark(ds, configs("jpeg"), tmp_path, qualities=[40], jobs=2, progress=False,
                         metrics=("psnr-rgb", "ms-ssim-rgb", "ms-ssim-db", "gmsd"))
    assert (more.done, more.cached_jobs) == (3, 0)
    again = run_benchmark(ds, configs("jpeg"), tmp_path, qualities=[40], jobs=1, progress=False,
                          metrics=("gmsd", "psnr-rgb"))
    assert (again.done, again.cached_jobs) == (0, 3)
    with Store(tmp_path) as store:
        rows = list(store.rows("images"))
    assert all(0 < r["gmsd"] < 1 and r["ms-ssim-db"] > 0 for r in rows)
    assert {r["name"]: r["bytes"] for r in rows} == created


@pytest.mark.slow
def test_crashing_codec_and_untimed_prepare(tmp_path, image_folder):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "crashy.py").write_text(
        "import os, time\nimport numpy as np\nNAME='crashy'\nFAMILY='conventional'\nVERSION='1'\n"
        "DESCRIPTION='kills its process at quality 2; slow untimed prepare'\nQUALITIES=[1, 2, 3]\n"
        "def prepare(quality):\n    time.sleep(0.3)\n"
        "def encode(rgb, quality):\n"
        "    if quality == 2:\n        os._exit(1)\n"
        "    return rgb.tobytes() + rgb.shape[0].to_bytes(2, 'big') + rgb.shape[1].to_bytes(2, 'big')\n"
        "def decode(data):\n"
        "    h, w = int.from_bytes(data[-4:-2], 'big'), int.from_bytes(data[-2:], 'big')\n"
        "    return np.frombuffer(data[:-4], np.uint8).reshape(h, w, 3)\n")
    configs, _ = select(discover([plugins], builtin=False), ["crashy"])
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", jobs=2, progress=False,
                           metrics=("psnr-rgb",))
    assert report.done + report.failed == 9 and report.failed >= 3
    assert all(stage == "crash" for (_, stage, _) in report.failures)
    with Store(tmp_path / "out") as store:
        rows = list(store.rows("images"))
    assert {r["quality"] for r in rows} <= {1.0, 3.0} and len(rows) >= 3
    assert all(r["encode_s"] < 0.2 for r in rows), "prepare() is not timed"


def test_same_stem_images_and_file_names(tmp_path):
    from bench.store.export import file_stem

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo(170, 170)).save(folder / "x.png")
    Image.fromarray(photo(170, 170, "coffee")).save(folder / "x.jpg")
    Image.fromarray(photo(170, 170, "chelsea")).save(folder / "y.png")
    assert sorted(s.name for s in resolve_dataset(str(folder)).sources) == ["x.jpg", "x.png", "y"]
    assert file_stem("hyperprior_checkpoints=/data/ckpt") == "hyperprior_checkpoints=_data_ckpt"
