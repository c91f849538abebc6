"""Shared fixtures: small real images from scikit-image's package data, and ../shared paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
KODAK = SHARED / "datasets" / "kodak"


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
