"""JPEG through Pillow's libjpeg-turbo (the JPEG anchor of CompressAI's published results)."""

import io

import numpy as np
import PIL
from PIL import Image, features

from bench.adapters import Option

NAME = "jpeg"
FAMILY = "conventional"
_LIB = f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo') or features.version('jpg')}"
VERSION = _LIB
DESCRIPTION = f"JPEG (baseline, Huffman) via {_LIB}; Pillow's encoder defaults, chroma subsampling as option"
OPTIONS = {"subsampling": Option("4:2:0", choices=("4:2:0", "4:2:2", "4:4:4"),
                                  help="chroma subsampling (Pillow's default 4:2:0)")}
QUALITIES = list(range(5, 100, 5))
QUALITY_RANGE = (1, 100, 1)  # (lowest, highest, step) for target-bpp search


def encode(rgb: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    return buf.getvalue()


def decode(data: bytes, **_options) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
