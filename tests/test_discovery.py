"""Plugin discovery: codecs/ folder, --codecs-dir folders, entry points, broken plugins."""

import math
import sys
import textwrap
from pathlib import Path

import pytest

from bench.adapters import Adapter, AdapterError, Unavailable, discover, load_origin, select
from bench.cli import main
from bench.datasets import resolve_dataset
from bench.pipeline.runner import run_benchmark
from bench.store import Store

PNG_ADAPTER = '''
import io
import numpy as np
import PIL
from PIL import Image

NAME = "{name}"
FAMILY = "conventional"
VERSION = f"Pillow {{PIL.__version__}}"
DESCRIPTION = f"lossless PNG via Pillow {{PIL.__version__}}; quality = zlib compress level"
QUALITIES = [1, 9]


def encode(rgb, quality):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=int(quality))
    return buf.getvalue()


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
'''


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    write(folder, "pngcodec", PNG_ADAPTER.format(name="png-test"))
    write(folder, "needs_lib", "import nonexistent_codec_library_xyz\nNAME = 'needs-lib'\n")
    write(folder, "crashes", "raise RuntimeError('encoder binary not found')\n")
    write(folder, "incomplete", "NAME = 'incomplete'\nFAMILY = 'conventional'\n")
    write(folder, "badfamily", PNG_ADAPTER.format(name="bad-family").replace('"conventional"', '"neural"'))
    write(folder, "dupe", PNG_ADAPTER.format(name="jpeg"))
    write(folder, "_private", "raise SystemExit('helper modules starting with _ are not plugins')\n")
    return folder


def by_name(items):
    return {i.name: i for i in items}


def test_builtin_and_folder_plugins(plugin_dir):
    items = discover([plugin_dir])
    found = by_name(items)
    assert isinstance(found["png-test"], Adapter)
    assert {"jpeg", "webp", "hevc"} <= {i.name for i in items if isinstance(i, Adapter)}
    unavailable = {i.name: i.reason for i in items if isinstance(i, Unavailable)}
    assert "missing library 'nonexistent_codec_library_xyz'" in unavailable["needs-lib"]  # its declared NAME
    assert "RuntimeError: encoder binary not found" in unavailable["crashes"]
    assert "missing" in unavailable["incomplete"] and "encode" in unavailable["incomplete"]
    assert "FAMILY must be one of" in unavailable["bad-family"]
    assert "duplicate name" in unavailable["jpeg"]
    assert "_private" not in unavailable


def test_missing_codecs_dir_is_an_error(tmp_path):
    with pytest.raises(AdapterError, match="codecs folder not found"):
        discover([tmp_path / "nope"])


@pytest.mark.slow
def test_plugin_from_temporary_folder_runs_in_worker_processes(plugin_dir, image_folder, tmp_path):
    configs, _ = select(discover([plugin_dir]), ["png-test"])
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", jobs=2, progress=False)
    assert report.failed == 0 and report.done == 3 * 2
    with Store(tmp_path / "out") as store:
        rows = list(store.rows("images"))
    assert len(rows) == 6
    assert all(math.isinf(r["psnr-rgb"]) for r in rows)  # lossless


def test_select_errors_and_unavailable(plugin_dir):
    items = discover([plugin_dir])
    with pytest.raises(AdapterError, match="unknown codec 'nope'"):
        select(items, ["nope"])
    with pytest.raises(AdapterError, match=r"has no option colour.*options: subsampling"):
        select(items, ["jpeg:colour=bw"])
    with pytest.raises(AdapterError, match="expected key=value"):
        select(items, ["jpeg:subsampling"])
    with pytest.raises(AdapterError, match="expected key=value"):
        select(items, ["jpeg:=4"])
    configs, skipped = select(items, ["jpeg:subsampling=4:4:4", "needs-lib"])
    assert configs[0].options == {"subsampling": "4:4:4"}
    assert [s.name for s in skipped] == ["needs-lib"]


@pytest.fixture
def entry_point_site(tmp_path, monkeypatch):
    """A fake installed distribution declaring two bench.codecs entry points."""
    site = tmp_path / "site"
    write(site, "fakepkg_codec", PNG_ADAPTER.format(name="png-ep"))
    dist = site / "fakepkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bench.codecs]\npng-ep = fakepkg_codec\nbroken-ep = fakepkg_missing_module\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("fakepkg_codec", None)


def test_entry_point_plugins(entry_point_site):
    found = by_name(discover())
    assert isinstance(found["png-ep"], Adapter)
    assert found["png-ep"].origin == "entrypoint:png-ep"
    assert isinstance(found["broken-ep"], Unavailable)
    assert "fakepkg_missing_module" in found["broken-ep"].reason
    assert load_origin("entrypoint:png-ep").name == "png-ep"


def test_cli_lists_codecs_with_reasons(plugin_dir, capsys):
    assert main(["codecs", "--codecs-dir", str(plugin_dir)]) == 0
    out = capsys.readouterr().out
    assert "png-test" in out and "available" in out
    assert "needs-lib" in out and "unavailable: missing library" in out
    for name in ("jpeg", "webp", "hevc"):
        assert name in out
    assert "qualities:   5,10,15" in out and "subsampling=4:2:0" in out
