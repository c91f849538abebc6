"""BPG (Fabrice Bellard's HEVC-intra image format) through the bpgenc / bpgdec binaries.

Used only when installed: options ``bpgenc`` / ``bpgdec`` (default ``$BPGENC`` / ``$BPGDEC``, else
found on PATH), resolved at setup; only the binaries' version and content hashes enter the cache
key. Settings as CompressAI's published BPG anchor: x265 encoder, YCbCr, 8 bit, chroma 4:4:4
(option), ``quality`` = bpgenc ``-q`` (0 = best, 51 = worst).
"""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.adapters import Option
from bench.adapters.codec_tools import file_sha256, resolve_tool, run_tool, tool_version

NAME = "bpg"
FAMILY = "conventional"
VERSION = "bpgenc"
DESCRIPTION = "BPG via bpgenc/bpgdec (x265, YCbCr, 8 bit); quality = bpgenc -q"
OPTIONS = {
    "bpgenc": Option("", key=False, help="bpgenc binary (default $BPGENC, else bpgenc on PATH)"),
    "bpgdec": Option("", key=False, help="bpgdec binary (default $BPGDEC, else bpgdec on PATH)"),
    "chroma": Option("444", choices=("444", "422", "420"), help="chroma format (bpgenc -f)"),
}
QUALITIES = [47, 42, 37, 32, 27, 22]
QUALITY_RANGE = (0, 51, 1)


def setup(bpgenc: str, bpgdec: str, chroma: str) -> dict:
    encoder = resolve_tool(bpgenc, "BPGENC", "bpgenc")
    decoder = resolve_tool(bpgdec, "BPGDEC", "bpgdec")
    return {"version": f"{tool_version([encoder, '-h'])} (bpgenc sha256 {file_sha256(encoder)}, "
                       f"bpgdec sha256 {file_sha256(decoder)})",
            "options": {"bpgenc": encoder, "bpgdec": decoder}}


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
