"""JPEG XL through imagecodecs (libjxl), lossy (VarDCT)."""

import imagecodecs
import numpy as np

from bench.adapters import Option

if not imagecodecs.JPEGXL.available:
    raise ImportError(f"imagecodecs {imagecodecs.__version__} was built without libjxl")

NAME = "jxl"
FAMILY = "conventional"
VERSION = f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}"
DESCRIPTION = (f"JPEG XL lossy via {VERSION}; quality 0-100 is cjxl's -q (libjxl maps it to a butteraugli "
               "distance); effort 1-9 (cjxl default 7)")
OPTIONS = {"effort": Option(7, type=int, minimum=1, maximum=9, help="libjxl effort (cjxl's default 7)")}
QUALITIES = [5, 15, 25, 35, 45, 55, 65, 75, 85, 92]
QUALITY_RANGE = (0, 99, 1)


def encode(rgb: np.ndarray, quality: int, effort: int = 7) -> bytes:
    if not 0 <= quality < 100:
        raise ValueError(f"jxl quality must be in 0..99 for lossy coding, got {quality}")
    return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(rgb), level=int(quality), effort=int(effort)))


def decode(data: bytes, **_options) -> np.ndarray:
    return np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]
