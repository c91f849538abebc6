"""AVIF (AV1 intra) through Pillow's AVIF support: libavif with the aom encoder, dav1d decoder."""

import io

import numpy as np
import PIL
from PIL import Image, features

if not features.check("avif"):
    raise ImportError("this Pillow build has no AVIF support (Pillow >= 11.3 wheels include libavif)")

from PIL import _avif

from bench.adapters import Option

if not _avif.encoder_codec_available("aom"):
    raise ImportError("libavif in this Pillow build has no aom encoder")

NAME = "avif"
FAMILY = "conventional"
VERSION = f"Pillow {PIL.__version__}, libavif {features.version('avif')}, aom encoder"
DESCRIPTION = (f"AVIF (AV1 intra, YCbCr) via {VERSION}; quality 0-100 (libavif quality, maps to the AV1 "
               "quantiser); speed 0 (slowest, best) - 10 (fastest), libavif's default 6")
OPTIONS = {
    "subsampling": Option("4:4:4", choices=("4:4:4", "4:2:2", "4:2:0"), help="chroma subsampling"),
    "speed": Option(6, type=int, minimum=0, maximum=10, help="0 slowest/best ... 10 fastest (libavif's default 6)"),
}
QUALITIES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
QUALITY_RANGE = (0, 100, 1)


def encode(rgb: np.ndarray, quality: int, subsampling: str = "4:4:4", speed: int = 6) -> bytes:
    if not 0 <= quality <= 100:
        raise ValueError(f"avif quality must be in 0..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="AVIF", quality=int(quality), speed=int(speed),
                                     subsampling=subsampling, codec="aom")
    return buf.getvalue()


def decode(data: bytes, **_options) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
