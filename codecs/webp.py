"""Lossy WebP through Pillow's libwebp (the WebP curve of CompressAI's published results)."""

import io

import numpy as np
import PIL
from PIL import Image, features

from bench.adapters import Option

NAME = "webp"
FAMILY = "conventional"
VERSION = f"Pillow {PIL.__version__}, libwebp {features.version('webp')}"
DESCRIPTION = f"WebP lossy (VP8 intra, 4:2:0) via {VERSION}; method is libwebp's speed/effort 0-6"
OPTIONS = {"method": Option(4, type=int, minimum=0, maximum=6, help="libwebp effort (Pillow's default 4)")}
QUALITIES = list(range(5, 100, 5))
QUALITY_RANGE = (0, 100, 1)


def encode(rgb: np.ndarray, quality: int, method: int = 4) -> bytes:
    if not 0 <= quality <= 100:
        raise ValueError(f"webp quality must be in 0..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="WEBP", quality=int(quality), method=int(method))
    return buf.getvalue()


def decode(data: bytes, **_options) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
