"""JPEG 2000 through Pillow's OpenJPEG: 9/7 irreversible wavelet, colour transform, rate control.

As CompressAI's JPEG 2000 anchor (OpenJPEG, 4:4:4), the rate is set by OpenJPEG's rate control;
here ``quality`` is the target in bits per pixel (compression ratio = 24 / quality), so the sweep
lands where it is asked to. The output is a raw J2K codestream (no JP2 container).
"""

import io

import numpy as np
import PIL
from PIL import Image, features

if not features.check("jpg_2000"):
    raise ImportError("this Pillow build has no OpenJPEG (JPEG 2000) support")

NAME = "jpeg2000"
FAMILY = "conventional"
VERSION = f"Pillow {PIL.__version__}, OpenJPEG {features.version('jpg_2000')}"
DESCRIPTION = (f"JPEG 2000 codestream via {VERSION}; 9/7 wavelet, irreversible colour transform, "
               "quality = target bpp (OpenJPEG rate control, ratio 24/quality)")
OPTIONS: dict[str, str] = {}
QUALITIES = [0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]
QUALITY_RANGE = (0.01, 12.0, 0)  # continuous


def encode(rgb: np.ndarray, quality: float) -> bytes:
    if not 0 < quality < 24:
        raise ValueError(f"jpeg2000 quality (target bpp) must be in (0, 24), got {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[24.0 / quality],
                                     irreversible=True, mct=1, no_jp2=True)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
