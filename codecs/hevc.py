"""HEVC intra (HEIF still image) through pillow-heif: libheif + x265 encoder, libde265 decoder.

Configured as a stand-in for BPG, the classic HEVC-intra anchor of learned-compression papers
(bpgenc 0.9.8 with x265, 4:4:4, YCbCr): like bpgenc's x265 glue we use constant QP (no CRF),
tune "ssim" (adaptive quantisation on, psycho-visual RD off) and QP = quality + 1, so
`quality` has the meaning of bpgenc's ``-q`` (0 = best, 50 = worst). libheif's own defaults
(CRF, psy-rd 1.0, psy-rdoq 1.0) cost about +16 % BD-rate against BPG on Kodak; these settings
remove most of that. The HEIF container (ftyp/meta/iloc/hvcC boxes) adds a few hundred bytes
per image; see `container_overhead_bytes`.
"""

import io

import numpy as np
import pillow_heif

from bench.adapters import Option

NAME = "hevc"
FAMILY = "conventional"
VERSION = f"pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_version()}, " + (
    pillow_heif.libheif_info().get("encoders", {}).get("x265") or "no x265 encoder"
)
DESCRIPTION = (
    f"HEVC intra in HEIF via {VERSION}; x265 constant QP = quality + 1 (bpgenc -q scale), "
    "tune ssim, psy-rd 0, YCbCr BT.601 full range"
)
X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
OPTIONS = {
    "chroma": Option("444", choices=("444", "422", "420"), help="chroma format (444 as BPG)"),
    "preset": Option("slow", choices=X265_PRESETS, help="x265 preset"),
}
QUALITIES = [47, 44, 41, 38, 35, 32, 29, 26, 23, 20]  # ~0.05-2 bpp on Kodak
QUALITY_RANGE = (0, 50, 1)

if "x265" not in pillow_heif.libheif_info().get("encoders", {}):
    raise ImportError("libheif in this pillow-heif build has no x265 HEVC encoder")


def x265_params(quality: int, preset: str) -> dict[str, str]:
    """libheif encoder parameters: BPG-like constant-QP x265 settings."""
    return {
        "preset": preset,
        "tune": "ssim",
        "x265:qp": str(int(quality) + 1),
        "x265:aq-mode": "2",
        "x265:psy-rd": "0",
        "x265:psy-rdoq": "0",
    }


def encode(rgb: np.ndarray, quality: int, chroma: str = "444", preset: str = "slow") -> bytes:
    if not 0 <= quality <= 50:
        raise ValueError(f"hevc quality (bpgenc -q) must be in 0..50, got {quality}")
    height, width, _ = rgb.shape
    buf = io.BytesIO()
    heif = pillow_heif.from_bytes(mode="RGB", size=(width, height), data=np.ascontiguousarray(rgb).tobytes())
    heif.save(buf, quality=50, chroma=int(chroma), enc_params=x265_params(quality, preset))
    return buf.getvalue()


def decode(data: bytes, **_options) -> np.ndarray:
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif)[..., :3]


def container_overhead_bytes(data: bytes) -> int:
    """Bytes of the HEIF file outside the HEVC payload (everything but the ``mdat`` contents)."""
    pos, payload = 0, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        box = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if box == b"mdat":
            payload += size - header
        pos += size
    return len(data) - payload
