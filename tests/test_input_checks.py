"""Bad input is refused before anything runs (issue 20, "Input and paths"): numeric options,
codecs named twice, results folders that are files, inside the dataset, or shared by two datasets."""

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from bench.adapters import AdapterError, discover, merge_duplicates, select
from bench.cli import main
from bench.cli.run import results_folder
from bench.datasets import resolve_dataset
from bench.datasets.images import ImageError, load_image
from bench.store import DB_NAME

from .conftest import photo, write_photos

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["run", "--timeout", "nan"], ["run", "--timeout", "-1"], ["run", "--timeout", "inf"], ["run", "--jobs", "0"],
    ["report", "x", "--bootstrap", "-5"], ["verify", "x", "--reference", "f", "--tolerance-db", "nan"],
    ["crops", "x", "--bpp", "-0.25"], ["worker", "tcp://127.0.0.1:1", "--jobs", "-1"],
    ["train", "--arch", "a", "--lambda", "nan", "--data", "d", "--out", "o", "--minutes", "1"],
])
def test_numeric_options_refused_with_one_line(args):
    result = bench(*args)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert "error: argument" in error and "Traceback" not in result.stderr


def stored(out: Path) -> int:
    with sqlite3.connect(out / DB_NAME) as conn:
        return conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]


@pytest.mark.slow
def test_codec_named_twice_runs_once_with_the_union_of_qualities(image_folder, tmp_path):
    out = tmp_path / "out"
    code = main(["run", "--dataset", str(image_folder), "--codecs", "jpeg:q=30,jpeg:q=30/60", "--out", str(out),
                 "--quiet", "--metrics", "psnr-rgb", "--jobs", "1"])
    assert code == 0 and stored(out) == 3 * 2  # 3 images x qualities {30, 60}, each once


def test_two_configurations_under_one_label_are_refused():
    jpeg, jpeg444 = select(discover(), ["jpeg", "jpeg:subsampling=4:4:4"])[0]
    assert merge_duplicates([jpeg, jpeg444]) == [jpeg, jpeg444]
    named = [replace(c, options={**c.options, "name": "x"}) for c in (jpeg, jpeg444)]
    with pytest.raises(AdapterError, match="labelled 'x'"):
        merge_duplicates(named)


def test_out_that_is_a_file_is_one_line(image_folder, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["run", "--dataset", str(image_folder), "--codecs", "jpeg", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_out_inside_the_dataset_is_refused(image_folder, capsys):
    assert main(["run", "--dataset", str(image_folder), "--codecs", "jpeg", "--out", str(image_folder / "res")]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err
    assert not (image_folder / "res").exists()


def test_two_datasets_of_the_same_folder_name_get_their_own_results(tmp_path):
    first, second = tmp_path / "a" / "images", tmp_path / "b" / "images"
    for folder in (first, second):
        folder.mkdir(parents=True)
        write_photos(folder)
    out_first = results_folder(None, str(first), resolve_dataset(str(first)))
    out_second = results_folder(None, str(second), resolve_dataset(str(second)))
    assert out_first != out_second and out_first.name.startswith("images-") and out_second.parent == Path("results")
    assert results_folder(None, str(first), resolve_dataset(str(first))) == out_first  # stable


PICKY = '''
import io
import numpy as np
from PIL import Image
NAME, FAMILY, DESCRIPTION, VERSION = "picky", "conventional", "JPEG that refuses qualities off its sweep", "1"
QUALITIES = [20, 80]
QUALITY_RANGE = (1, 100, 1)

def encode(rgb, quality):
    if quality not in QUALITIES:
        raise ValueError(f"quality {quality} refused")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
'''


@pytest.mark.slow
def test_failed_target_bpp_search_exits_1_with_the_reason(image_folder, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "picky.py").write_text(PICKY)
    args = ["run", "--dataset", str(image_folder), "--codecs", "picky", "--codecs-dir", str(plugins), "--out",
            str(tmp_path / "out"), "--quiet", "--metrics", "psnr-rgb", "--jobs", "1", "--target-bpp", "0.5"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "target-bpp search" in out and "refused" in out
    assert stored(tmp_path / "out") == 3 * 2, "the sweep itself is stored"
    assert main(args) == 1, "the failed searches are tried again, and fail again"


@pytest.mark.slow
def test_clashing_image_names_get_distinct_ids(tmp_path, capsys):
    folder = tmp_path / "dups"
    folder.mkdir()
    photos = [photo(64, 80, n) for n in ("astronaut", "coffee", "chelsea")]
    for name, rgb in zip(["dup.png", "dup.jpg", "dup.png.jpg"], photos, strict=True):
        Image.fromarray(rgb).save(folder / name, format="PNG" if name.endswith(".png") else "JPEG")
    assert sorted(s.name for s in resolve_dataset(str(folder)).sources) == ["dup.jpg", "dup.png", "dup.png.jpg"]
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg:q=50", "--out", str(out), "--quiet",
                 "--metrics", "psnr-rgb", "--jobs", "1"]) == 0
    assert stored(out) == 3


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_are_refused_with_the_reason(tmp_path, fmt):
    frames = [Image.fromarray(photo(48, 64, n)) for n in ("astronaut", "coffee")]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(ImageError, match=r"anim\..*animated .* \(2 frames\): refused"):
        load_image(path)
    Image.fromarray(photo(48, 64)).save(tmp_path / "still.png")
    assert load_image(tmp_path / "still.png").rgb.shape == (48, 64, 3)
