"""Rate-matched crops figure: regenerated reconstructions, one panel per codec plus the original."""

import numpy as np
import pytest

from bench.cli import main
from bench.report.crops import CropsError, build_crops, crops_figure, detailed_box

from .conftest import photo


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    for name in ("astronaut", "coffee"):
        Image.fromarray(photo(176, 232, name)).save(folder / f"{name}.png")
    out = tmp_path_factory.mktemp("res")
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg:q=10/30/60,webp:q=10/30/60,jpeg2000:q=0.3/1/2",
                 "--jobs", "2", "--out", str(out), "--quiet", "--metrics", "psnr-rgb"]) == 0
    return out


@pytest.mark.slow
def test_crops_png_and_panels(run_dir, monkeypatch):
    import bench.report.crops as crops

    figures = []
    original = crops.crops_figure
    monkeypatch.setattr(crops, "crops_figure", lambda *a: figures.append(original(*a)) or figures[-1])
    path = build_crops(run_dir, "coffee", 0.3, box=(10, 20, 64, 48))
    assert path.name == "crops_coffee_0.3bpp.png" and path.stat().st_size > 10_000
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 1 + 3
    titles = [ax.get_title() for ax in panels]
    assert titles[0] == "original"
    for codec in ("jpeg", "jpeg2000", "webp"):
        title = next(t for t in titles if t.startswith(codec + "\n"))
        assert "bpp" in title and "dB" in title
    assert panels[0].images[0].get_array().shape[:2] == (48, 64)
    j2k = next(t for t in titles if t.startswith("jpeg2000"))
    assert abs(float(j2k.split("\n")[1].split()[0]) - 0.3) < 0.02, "nearest bpp to the target"


@pytest.mark.slow
def test_report_embeds_the_crops(run_dir):
    build_crops(run_dir, "astronaut", 0.5)
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.md").read_text()
    assert "## Rate-matched crops" in page and "crops_astronaut_0.5bpp.png" in page


def test_detailed_box_prefers_texture():
    rgb = np.full((100, 160, 3), 128, np.uint8)
    rgb[60:90, 100:150] = np.random.default_rng(0).integers(0, 255, (30, 50, 3))
    x, y, w, h = detailed_box(rgb, 40, 20)
    assert (w, h) == (40, 20) and 60 <= y <= 70 and 100 <= x <= 110


def test_crops_figure_grid():
    crop = photo(40, 60)
    fig = crops_figure(crop, [(f"c{i}", crop) for i in range(5)], "t")
    assert sum(1 for ax in fig.axes if ax.images) == 6


def test_crops_errors(run_dir, tmp_path, capsys):
    with pytest.raises(CropsError, match="image 'nope' not in"):
        build_crops(run_dir, "nope", 0.25)
    with pytest.raises(CropsError, match="outside"):
        build_crops(run_dir, "coffee", 0.25, box=(200, 0, 64, 64))
    assert main(["crops", str(tmp_path)]) == 2
    assert "no result store" in capsys.readouterr().err


def test_crops_flag_off_target_and_refuse_out_of_range(run_dir, monkeypatch):
    import bench.report.crops as crops
    from bench.analysis.fairness import off_target

    figures = []
    original = crops.crops_figure
    monkeypatch.setattr(crops, "crops_figure", lambda *a: figures.append(original(*a)) or figures[-1])
    with pytest.raises(CropsError, match=r"40 bpp is outside every codec's measured range for coffee \(jpeg "):
        build_crops(run_dir, "coffee", 40)
    messages = []
    path = build_crops(run_dir, "coffee", 40, box=(0, 0, 64, 64), force=True, log=messages.append)
    assert path.name == "crops_coffee_40bpp.png"
    titles = [ax.get_title() for ax in figures[-1].axes if ax.images][1:]
    assert len(titles) == 3 and all("⚠ off target; range " in t for t in titles)
    assert sum("is off the 40 bpp target" in m for m in messages) == 3
    build_crops(run_dir, "coffee", 0.3, box=(0, 0, 64, 64))
    for title in [ax.get_title() for ax in figures[-1].axes if ax.images][1:]:
        bpp = float(title.split("\n")[1].split()[0])
        assert ("⚠ off target" in title) == off_target(bpp, 0.3), title


def test_crops_unknown_codec_names_the_known_ones(run_dir, capsys):
    with pytest.raises(CropsError, match=r"unknown codec\(s\) nope for coffee .*\(known: jpeg, jpeg2000, webp\)"):
        build_crops(run_dir, "coffee", 0.3, codecs=["jpeg", "nope"])
    assert main(["crops", str(run_dir), "--image", "coffee", "--bpp", "40"]) == 2
    assert "--force" in capsys.readouterr().err


DRIFTING = """import os
import numpy as np
NAME = 'drifting'
FAMILY = 'conventional'
VERSION = '1'
DESCRIPTION = 'test adapter: raw pixels, one byte longer when DRIFT is set (same version)'
QUALITIES = [1]
def encode(rgb, quality):
    extra = b'x' if os.environ.get('DRIFT') else b''
    return bytes(rgb) + rgb.shape[0].to_bytes(4, 'big') + rgb.shape[1].to_bytes(4, 'big') + extra
def decode(data):
    data = data[:-1] if len(data) % 3 == 0 and len(data) > 8 and os.environ.get('DRIFT') else data
    h, w = int.from_bytes(data[-8:-4], 'big'), int.from_bytes(data[-4:], 'big')
    return np.frombuffer(data[:-8], np.uint8).reshape(h, w, 3)
"""


@pytest.mark.slow
def test_crops_show_only_what_was_measured(tmp_path, monkeypatch, capsys):
    """Panels come from the measured path; a codec whose bytes or version changed since is left out."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo(64, 96)).save(folder / "a.png")
    plugins = tmp_path / "p"
    plugins.mkdir()
    (plugins / "drifting.py").write_text(DRIFTING)
    (plugins / "edited.py").write_text(DRIFTING.replace("'drifting'", "'edited'"))
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(folder), "--codecs", "drifting,edited,jpeg:q=50", "--codecs-dir",
                 str(plugins), "--out", str(out), "--quiet", "--metrics", "psnr-rgb"]) == 0
    monkeypatch.setenv("DRIFT", "1")
    with open(plugins / "edited.py", "a") as f:
        f.write("# edited after the run\n")
    messages: list[str] = []
    build_crops(out, "a", 8.0, codecs_dir=[str(plugins)], log=messages.append, force=True)
    assert any(m.startswith("skipping drifting: at quality 1 it now gives") and "stored" in m for m in messages)
    assert any(m.startswith("skipping edited: its version is now") for m in messages)
    assert not any(m.startswith("skipping jpeg") for m in messages), "the unchanged codec is shown"
