"""Shared fixtures: small real images from scikit-image's package data, ../shared paths, one small run
of jpeg and webp with its default report, and a fork server with torch preloaded for in-process runs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
KODAK = SHARED / "datasets" / "kodak"


@pytest.fixture(scope="session", autouse=True)
def forkserver_with_torch():
    """Start the fork server that in-process runs fork their workers from, with torch already imported.

    Once torch is loaded in this process (test modules import it), ``bench.execution`` forks its CPU
    workers from a fork server instead of from here (GNU OpenMP's thread pool does not survive
    ``fork``), and every new worker imports torch in ``init_worker``: about 2 s per run, ~100 runs.
    Started here, once, with torch preloaded (imported, never run: no OpenMP threads to lose), the
    workers fork with torch in place. The workers, their jobs and their results are the same.
    """
    if "torch" in sys.modules and sys.platform.startswith("linux"):
        from multiprocessing import forkserver

        forkserver.set_forkserver_preload(["bench.pipeline.worker", "torch"])
        forkserver.ensure_running()  # later set_forkserver_preload calls do not restart a running server
    yield


def photo(height: int, width: int, name: str = "astronaut") -> np.ndarray:
    """A real photo (scikit-image package data) resized to height x width, uint8 RGB."""
    rgb = getattr(skimage.data, name)()
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))


@pytest.fixture
def rgb_small() -> np.ndarray:
    return photo(192, 256)


def write_photos(folder: Path) -> Path:
    """Three small photos of different sizes as PNG files in ``folder``."""
    for name, (h, w) in {"astronaut": (176, 208), "coffee": (192, 256), "chelsea": (168, 224)}.items():
        Image.fromarray(photo(h, w, name)).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small photos as PNG files."""
    folder = tmp_path / "images"
    folder.mkdir()
    return write_photos(folder)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """jpeg and webp at 5 qualities on 3 small photos (default metrics): one run for every module that
    reads it (test_report, test_api, test_report_browser). Tests that read report files build the report
    there first, or read ``small_report``."""
    from bench.cli import main

    folder = write_photos(tmp_path_factory.mktemp("imgs"))
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--dataset", str(folder), "--codecs", "jpeg,webp", "--qualities", "10,30,50,70,90",
                 "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def small_report(small_run: Path, tmp_path_factory) -> Path:
    """``report`` with default options on a copy of ``small_run``'s folder, built once, for tests that only
    read the default report (the others rebuild in ``small_run`` as they need); only
    test_rebuild_is_deterministic builds it again, with the same options, to compare the bytes."""
    from bench.cli import main

    copy = tmp_path_factory.mktemp("small-report") / "results"
    shutil.copytree(small_run, copy)
    assert main(["report", str(copy)]) == 0
    return copy


@pytest.fixture
def kodak_dir() -> Path:
    if not (KODAK / "kodim01.png").is_file():
        pytest.skip(f"Kodak images not available at {KODAK} (only beside a developer's or CI's checkout)")
    return KODAK


@pytest.fixture
def shared_data(kodak_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("BENCH_DATA", str(kodak_dir.parent))
    return kodak_dir.parent


def stored_codec(label: str, family: str, info: dict | None = None, codec: str = ""):
    """A codec configuration as ``Store.codecs()`` returns it (options, version, description left empty)."""
    from bench.model import StoredCodec

    return StoredCodec(label, codec or label, "{}", "", family, "", info or {})
