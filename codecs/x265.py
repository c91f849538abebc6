"""HEVC intra with x265 through an ffmpeg binary (option ``ffmpeg``, default ``$FFMPEG`` or ``ffmpeg`` on PATH,
resolved at setup; libx265 needed; only ffmpeg's and libx265's versions enter the cache key).

The raw HEVC Annex-B bitstream, no container. Like the ``hevc`` adapter, x265 runs with
bpgenc-like settings: constant QP = quality + 1 (bpgenc's ``-q`` scale), tune ssim, psy-rd and
psy-rdoq off, one intra frame; colour conversion full-range BT.709 both ways (swscale).
"""

import io

import numpy as np
from PIL import Image

from bench.adapters import Option
from bench.adapters.codec_tools import resolve_tool, run_tool, tool_version

NAME = "x265"
FAMILY = "conventional"
VERSION = "ffmpeg + libx265"  # setup() names both versions
DESCRIPTION = ("HEVC intra (raw Annex-B) via ffmpeg/libx265; constant QP = quality + 1 (bpgenc -q scale), "
               "tune ssim, psy-rd 0, full-range BT.709 YCbCr")
X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
OPTIONS = {
    "ffmpeg": Option("", key=False, help="ffmpeg binary with libx265 (default $FFMPEG, else ffmpeg on PATH)"),
    "chroma": Option("444", choices=("444", "420"), help="chroma format"),
    "preset": Option("slow", choices=X265_PRESETS, help="x265 preset"),
}
QUALITIES = [47, 44, 41, 38, 35, 32, 29, 26, 23, 20]
QUALITY_RANGE = (0, 50, 1)
_PIX_FMT = {"444": "yuv444p", "420": "yuv420p"}
_QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error"]


def setup(ffmpeg: str, chroma: str, preset: str) -> dict:
    path = resolve_tool(ffmpeg, "FFMPEG", "ffmpeg")
    encoders = run_tool([path, *_QUIET, "-encoders"]).decode(errors="replace")
    if "libx265" not in encoders:
        raise RuntimeError(f"{path} has no libx265 encoder")
    return {"version": f"{tool_version([path, '-version'])}, libx265 {libx265_version(path)}",
            "options": {"ffmpeg": path}}


def libx265_version(ffmpeg: str) -> str:
    """libx265's own version, from the log of a tiny encode."""
    import re
    import subprocess

    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-f", "lavfi", "-i", "color=gray:size=64x64", "-frames:v", "1",
           "-c:v", "libx265", "-x265-params", "log-level=info", "-f", "null", "-"]
    log = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stderr
    found = re.search(r"HEVC encoder version (\S+)", log)
    return found.group(1) if found else "unknown"


def encode(rgb: np.ndarray, quality: int, ffmpeg: str, chroma: str, preset: str) -> bytes:
    if not 0 <= quality <= 50:
        raise ValueError(f"x265 quality (bpgenc -q scale) must be in 0..50, got {quality}")
    height, width, _ = rgb.shape
    params = f"qp={int(quality) + 1}:keyint=1:info=0:psy-rd=0:psy-rdoq=0:aq-mode=2:log-level=error"
    cmd = [ffmpeg, *_QUIET, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-",
           "-frames:v", "1", "-vf", "scale=out_color_matrix=bt709:out_range=full", "-pix_fmt", _PIX_FMT[chroma],
           "-color_range", "pc", "-colorspace", "bt709", "-c:v", "libx265", "-preset", preset, "-tune", "ssim",
           "-x265-params", params, "-f", "hevc", "-"]
    return run_tool(cmd, input=np.ascontiguousarray(rgb).tobytes())


def decode(data: bytes, ffmpeg: str, chroma: str, preset: str) -> np.ndarray:
    cmd = [ffmpeg, *_QUIET, "-f", "hevc", "-i", "-", "-vf", "scale=in_color_matrix=bt709:in_range=full",
           "-pix_fmt", "rgb24", "-f", "image2pipe", "-c:v", "png", "-"]
    with Image.open(io.BytesIO(run_tool(cmd, input=data))) as img:
        return np.asarray(img.convert("RGB"))
