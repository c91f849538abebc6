"""JPEG encoded by mozjpeg (trellis quantisation, optimised scans) through imagecodecs.

The same JPEG format and decoder as ``jpeg``; only the encoder differs, so the gap between the
two curves is what a better encoder buys within one format.
"""

import imagecodecs
import numpy as np

from bench.adapters import Option

if not getattr(imagecodecs, "MOZJPEG", None) or not imagecodecs.MOZJPEG.available:
    raise ImportError(f"imagecodecs {imagecodecs.__version__} was built without mozjpeg "
                      "(PyPI wheels omit it; build imagecodecs from source against mozjpeg)")

NAME = "mozjpeg"
FAMILY = "conventional"
VERSION = f"imagecodecs {imagecodecs.__version__}, {imagecodecs.mozjpeg_version()}"
DESCRIPTION = f"JPEG via mozjpeg ({VERSION}), decoded with libjpeg-turbo"
OPTIONS = {"subsampling": Option("4:2:0", choices=("4:2:0", "4:2:2", "4:4:4"), help="chroma subsampling")}
QUALITIES = list(range(5, 100, 5))
QUALITY_RANGE = (1, 100, 1)
_SUBSAMPLING = {"4:4:4": "444", "4:2:2": "422", "4:2:0": "420"}


def encode(rgb: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    return bytes(imagecodecs.mozjpeg_encode(rgb, level=int(quality), subsampling=_SUBSAMPLING[subsampling]))


def decode(data: bytes, **_options) -> np.ndarray:
    return np.asarray(imagecodecs.jpeg8_decode(data))
