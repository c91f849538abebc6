"""VVC intra with Fraunhofer HHI's vvenc (encoder) and vvdec (decoder), built from source by the project.

``make vvc`` (``python -m bench tools build vvc``) builds ``vvencapp``/``vvdecapp`` into the per-user
tool folder (``bench.adapters.tools``). Options ``vvencapp``/``vvdecapp`` (machine-local, not in the cache
key): empty means ``$VVENCAPP``/``$VVDECAPP``, else the project-built tool, else the command on
PATH; ``setup`` resolves them and puts their version line and SHA-256 into the version.

One picture, all intra: RGB -> Y'CbCr BT.601 full range, 10 bit, 4:2:0 (chroma 2x2 box mean,
centre-sited), ``vvencapp -c yuv420_10 --qp Q --qpa 0 -t 1 --preset P``. ``quality`` = vvenc's
``--qp``; every preset sets IntraQPOffset = -3, so the slice QP is ``--qp`` - 3. ``--qpa 0``:
vvenc's default perceptual QP adaptation (XPSNR) costs PSNR. vvenc accepts only 4:2:0 (or 4:0:0),
so unlike CompressAI's published VTM curve (4:4:4) chroma is coded at quarter resolution.
Decoding: ``vvdecapp`` writes the cropped picture (the conformance window) as 10-bit Y4M, whose
header gives its size; chroma is up-sampled bilinearly (centre-sited) and converted back.

The bitstream is the ``.266`` file itself (parameter sets + one coded picture), so bpp counts
exactly the VVC bitstream. 4:2:0 needs even dimensions: an odd width or height is padded by
edge replication, and then (only then) one byte precedes the bitstream, counted in bpp: bit 0 =
drop the last column, bit 1 = drop the last row after decoding. An Annex-B stream starts with a
zero byte, so the two cases cannot be confused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.adapters import Option, tools
from bench.adapters.codec_tools import (
    file_sha256,
    require_tool,
    rgb_to_ycbcr420,
    run_tool,
    tool_version,
    ycbcr420_to_rgb,
)

NAME = "vvc"
FAMILY = "conventional"
BITS = 10  # bit depth of the encoder's input and of its internal coding (Main 10 profile)
VERSION = "vvenc/vvdec"  # setup() names both versions and binaries
DESCRIPTION = ("VVC intra via vvenc/vvdec (Fraunhofer HHI, built from source: make vvc); Y'CbCr 4:2:0 10-bit "
               "BT.601 full range; quality = vvenc --qp (slice QP = qp - 3), --qpa 0")
PRESETS = ("faster", "fast", "medium", "slow", "slower")
OPTIONS = {
    "preset": Option("faster", choices=PRESETS, help="vvenc preset (encode CPU s per Kodak image: faster 0.8, "
                                                     "medium 13, slow 31)"),
    "vvencapp": Option("", key=False, help="vvencapp binary (default $VVENCAPP, else built by make vvc, else PATH)"),
    "vvdecapp": Option("", key=False, help="vvdecapp binary (default $VVDECAPP, else built by make vvc, else PATH)"),
}
QUALITIES = [47, 42, 37, 32, 27, 22]  # --qp; slice QP 44 ... 19; ~0.08-1.8 bpp on Kodak
QUALITY_RANGE = (0, 63, 1)
TIMEOUT_S = 3600  # slower at QP 0 on a large image takes minutes
CODE_FILES = ["bench.adapters.codec_tools"]  # the colour conversion
BUILD_HINT = "make vvc"
CROP_LAST_COLUMN, CROP_LAST_ROW = 1, 2  # bits of the leading byte that odd-sized pictures carry


def find_app(value: str, env: str, tool: str, app: str) -> str:
    """Absolute path of ``app``: ``value``, else ``$env``, else the project-built ``tool``, else PATH."""
    if value or os.environ.get(env):
        return require_tool(value or os.environ[env], env)
    built = tools.built_file(tool, app)
    if built is not None:
        return str(built)
    found = shutil.which(app)
    if found:
        return os.path.abspath(found)
    raise FileNotFoundError(f"vvenc/vvdec not built: {BUILD_HINT} (= python -m bench tools build vvc) builds "
                            f"{app}; or set {env} to its path")


def setup(preset: str, vvencapp: str, vvdecapp: str) -> dict:
    encoder = find_app(vvencapp, "VVENCAPP", "vvenc", "vvencapp")
    decoder = find_app(vvdecapp, "VVDECAPP", "vvdec", "vvdecapp")
    version = (f"{tool_version([encoder, '--version'])} ({Path(encoder).name} {file_sha256(encoder)}); "
               f"{tool_version([decoder, '--version'])} ({Path(decoder).name} {file_sha256(decoder)}); "
               f"4:2:0 {BITS}-bit BT.601 full range")
    return {"version": version, "options": {"vvencapp": encoder, "vvdecapp": decoder},
            "info": {"encoder": f"vvenc preset {preset}, --qpa 0, one thread",
                     "chroma": f"4:2:0, {BITS}-bit, BT.601 full range"}}


def pad_even(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """``rgb`` padded by edge replication to even width and height, and the crop flags to undo it."""
    height, width, _ = rgb.shape
    flags = (CROP_LAST_COLUMN if width % 2 else 0) | (CROP_LAST_ROW if height % 2 else 0)
    if flags:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return rgb, flags


def encode(rgb: np.ndarray, quality: int, preset: str, vvencapp: str, vvdecapp: str) -> bytes:
    if not 0 <= quality <= 63:
        raise ValueError(f"vvc quality (vvenc --qp) must be in 0..63, got {quality}")
    padded, flags = pad_even(rgb)
    height, width, _ = padded.shape
    with tempfile.TemporaryDirectory(prefix="bench-vvc-") as tmp:
        src, out = Path(tmp) / "in.yuv", Path(tmp) / "out.266"
        src.write_bytes(b"".join(p.astype("<u2").tobytes() for p in rgb_to_ycbcr420(padded, BITS)))
        run_tool([vvencapp, "-i", src, "-s", f"{width}x{height}", "-c", f"yuv420_{BITS}", "-r", "1", "-f", "1",
                  "--intraperiod", "1", "--preset", preset, "--qp", str(int(quality)), "--qpa", "0", "-t", "1",
                  "--internal-bitdepth", str(BITS), "-v", "1", "-o", out], timeout=TIMEOUT_S)
        data = out.read_bytes()
    return (bytes([flags]) + data) if flags else data


def decode(data: bytes, preset: str, vvencapp: str, vvdecapp: str) -> np.ndarray:
    flags = data[0] if data and data[0] != 0 else 0
    with tempfile.TemporaryDirectory(prefix="bench-vvc-") as tmp:
        src, out = Path(tmp) / "in.266", Path(tmp) / "rec.y4m"
        src.write_bytes(data[1:] if flags else data)
        run_tool([vvdecapp, "-b", src, "-o", out, "-t", "1", "-v", "1"], timeout=TIMEOUT_S)
        y, cb, cr, bits = read_y4m_420(out.read_bytes())
    rgb = ycbcr420_to_rgb(y, cb, cr, bits)
    return rgb[: rgb.shape[0] - bool(flags & CROP_LAST_ROW), : rgb.shape[1] - bool(flags & CROP_LAST_COLUMN)]


def read_y4m_420(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Planes Y, Cb, Cr (uint16) of the first frame of a 4:2:0 Y4M file (8-bit, or 10-bit little
    endian as vvdecapp writes), and their bit depth."""
    header_end = data.find(b"\n")
    frame_end = data.find(b"\n", header_end + 1)
    fields = data[:header_end].split()
    if header_end < 0 or fields[:1] != [b"YUV4MPEG2"] or not data[header_end + 1:].startswith(b"FRAME"):
        raise ValueError("vvdecapp wrote no Y4M picture")
    params = {f[:1]: f[1:].decode() for f in fields[1:]}
    width, height, colour = int(params[b"W"]), int(params[b"H"]), params.get(b"C", "420")
    if colour not in ("420", "420jpeg", "420p10"):
        raise ValueError(f"vvdecapp wrote chroma format {colour}, expected 4:2:0")
    dtype = np.dtype("<u2") if colour.endswith("p10") else np.dtype(np.uint8)
    cw, ch = (width + 1) // 2, (height + 1) // 2
    samples = np.frombuffer(data, dtype, count=width * height + 2 * cw * ch, offset=frame_end + 1)
    y = samples[: width * height].reshape(height, width)
    cb = samples[width * height: width * height + cw * ch].reshape(ch, cw)
    cr = samples[width * height + cw * ch:].reshape(ch, cw)
    return y.astype(np.uint16), cb.astype(np.uint16), cr.astype(np.uint16), 10 if colour.endswith("p10") else 8
