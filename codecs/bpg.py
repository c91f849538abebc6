"""BPG (Fabrice Bellard's HEVC-intra image format) through the bpgenc / bpgdec binaries.

Used only when installed: options ``bpgenc`` / ``bpgdec`` (defaults ``$BPGENC`` / ``$BPGDEC``, else
found on PATH). Settings as CompressAI's published BPG anchor: x265 encoder, YCbCr, 8 bit,
chroma 4:4:4 (option), ``quality`` = bpgenc ``-q`` (0 = best, 51 = worst).
"""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.codec_tools import require_tool, run_tool, tool_default, tool_version

NAME = "bpg"
FAMILY = "conventional"
VERSION = "bpgenc"
DESCRIPTION = "BPG via bpgenc/bpgdec (x265, YCbCr, 8 bit); quality = bpgenc -q"
OPTIONS = {"bpgenc": tool_default("BPGENC", "bpgenc"), "bpgdec": tool_default("BPGDEC", "bpgdec"), "chroma": "444"}
QUALITIES = [47, 42, 37, 32, 27, 22]
QUALITY_RANGE = (0, 51, 1)


def setup(bpgenc: str, bpgdec: str, chroma: str) -> dict:
    encoder = require_tool(bpgenc, "BPGENC")
    require_tool(bpgdec, "BPGDEC")
    if chroma not in ("444", "420", "422"):
        raise ValueError(f"bpg chroma must be 444, 422 or 420, got {chroma!r}")
    return {"version": tool_version([encoder, "-h"])}


def encode(rgb: np.ndarray, quality: int, bpgenc: str, bpgdec: str, chroma: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="bench-bpg-") as tmp:
        src, out = Path(tmp) / "in.png", Path(tmp) / "out.bpg"
        Image.fromarray(rgb).save(src)
        run_tool([bpgenc, "-q", str(int(quality)), "-f", chroma, "-c", "ycbcr", "-b", "8", "-e", "x265",
                  "-o", out, src])
        return out.read_bytes()


def decode(data: bytes, bpgenc: str, bpgdec: str, chroma: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="bench-bpg-") as tmp:
        src, out = Path(tmp) / "in.bpg", Path(tmp) / "out.png"
        src.write_bytes(data)
        run_tool([bpgdec, "-o", out, src])
        with Image.open(out) as img:
            return np.asarray(img.convert("RGB"))
