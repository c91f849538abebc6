"""Helpers for adapters that drive external encoder/decoder binaries (bpgenc, ffmpeg, VTM, HM, vvenc).

An adapter names its binaries by an option declared ``Option("", key=False)``: empty means
``$ENV`` or the command on ``PATH``. Its ``setup`` calls ``resolve_tool``, which makes the codec
unavailable, with the reason, when the binary is missing, and returns the absolute path (given
back to the harness as a resolved option, so workers use the same binary) while only the binary's
identity (``file_sha256``, ``tool_version``) enters the cache key. ``run_tool`` raises
``ToolError`` carrying the binary's stderr when it fails, so the failure report shows what the
tool said.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..code_identity import file_digest
from ..metrics import BT709_LUMA

STDERR_TAIL = 600  # characters of stderr kept in an error


class ToolError(RuntimeError):
    """An external codec binary failed; the message ends with its stderr."""


def resolve_tool(value: str, env: str, command: str) -> str:
    """Absolute path of a binary: ``value`` if given, else ``$env``, else ``command`` on PATH.

    Raises FileNotFoundError naming what was looked for when it is not an executable.
    """
    return require_tool(value or os.environ.get(env) or command, env)


def require_tool(path: str, env: str) -> str:
    """The executable for ``path`` (a path or a command on PATH); raises FileNotFoundError if absent."""
    found = shutil.which(path)
    if not found:
        raise FileNotFoundError(f"{path!r} not found (install it, put it on PATH or set {env} to its path)")
    return os.path.abspath(found)


def file_sha256(path: str | Path, length: int = 12) -> str:
    """Leading hex digits of a file's SHA-256 (identifies a binary or a configuration)."""
    return file_digest(path)[:length]


def tool_version(cmd: Sequence[str | Path]) -> str:
    """First line a binary prints for a version query (stdout or stderr), or ``unknown``; without its path."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (result.stdout + result.stderr).strip().splitlines()
    # The binary's path is machine-local: the version (part of the cache key) names it by file name only.
    return lines[0].strip().replace(str(cmd[0]), Path(cmd[0]).name) if lines else "unknown"


def run_tool(cmd: Sequence[str | Path], input: bytes | None = None, timeout: float = 3600) -> bytes:
    """Run a binary; return its stdout. Raises ToolError with the exit status and stderr on failure."""
    try:
        result = subprocess.run([str(c) for c in cmd], input=input, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise ToolError(f"{cmd[0]}: not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from None
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        raise ToolError(f"{Path(cmd[0]).name} exited with status {result.returncode}: {stderr or '(no stderr)'}")
    return result.stdout


# --- planar YCbCr 4:4:4 files, for the reference encoders -----------------------------------
BT709 = BT709_LUMA


def rgb_to_ycbcr444(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.709 YCbCr, 8-bit, planar (3, H, W), as CompressAI's VTM/HM runs convert."""
    kr, kg, kb = BT709
    x = rgb.astype(np.float64) / 255.0
    y = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    cb = 0.5 * (x[..., 2] - y) / (1 - kb) + 0.5
    cr = 0.5 * (x[..., 0] - y) / (1 - kr) + 0.5
    return np.clip(np.rint(np.stack([y, cb, cr]) * 255.0), 0, 255).astype(np.uint8)


def ycbcr444_to_rgb(planes: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_ycbcr444``: (3, H, W) uint8 -> H x W x 3 uint8 RGB."""
    kr, kg, kb = BT709
    y, cb, cr = (planes.astype(np.float64) / 255.0)
    cb, cr = cb - 0.5, cr - 0.5
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255.0), 0, 255).astype(np.uint8)


# --- planar Y'CbCr 4:2:0, N-bit, for vvenc/vvdec ---------------------------------------------
BT601 = (0.299, 0.587, 0.114)  # Kr, Kg, Kb (ITU-R BT.601)


def rgb_to_ycbcr420(rgb: np.ndarray, bits: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-range BT.601 Y'CbCr 4:2:0 with ``bits``-bit samples (H.273: Y = (2^N-1)E'y,
    C = (2^N-1)E'c + 2^(N-1)), as uint16 planes Y (H x W), Cb, Cr (H/2 x W/2).

    ``rgb``: uint8 H x W x 3, H and W even. Chroma is computed in float at full resolution, then
    each 2x2 block is averaged (centre-sited), then rounded; all samples in 0..2^N-1.
    """
    height, width, _ = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs even dimensions, got {width}x{height}")
    kr, kg, kb = BT601
    peak, mid = (1 << bits) - 1, 1 << (bits - 1)
    x = rgb.astype(np.float64) / 255.0
    y = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    cb = (x[..., 2] - y) / (2 * (1 - kb))
    cr = (x[..., 0] - y) / (2 * (1 - kr))

    def box(c: np.ndarray) -> np.ndarray:
        return c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    def quantise(v: np.ndarray, offset: int) -> np.ndarray:
        return np.clip(np.rint(v * peak + offset), 0, peak).astype(np.uint16)

    return quantise(y, 0), quantise(box(cb), mid), quantise(box(cr), mid)


def upsample2_bilinear(plane: np.ndarray) -> np.ndarray:
    """Twice the size, bilinear, centre-sited, edges replicated (= torch ``interpolate(scale_factor=2,
    mode='bilinear', align_corners=False)``): each output sample is 3/4 of the nearer input
    sample and 1/4 of the next one, along each axis."""

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])  # neighbour before, edge replicated
        nxt = np.concatenate([a[1:], a[-1:]])  # neighbour after
        out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=np.float64)
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, 0, axis)

    return along(along(plane.astype(np.float64), 0), 1)


def ycbcr420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, bits: int = 10) -> np.ndarray:
    """Inverse of ``rgb_to_ycbcr420``: chroma up-sampled by ``upsample2_bilinear``, inverse BT.601
    matrix, rounded and clipped to 0..255 -> H x W x 3 uint8 RGB."""
    kr, kg, kb = BT601
    peak, mid = (1 << bits) - 1, 1 << (bits - 1)
    luma = y.astype(np.float64) / peak
    pb = (upsample2_bilinear(cb) - mid) / peak
    pr = (upsample2_bilinear(cr) - mid) / peak
    r = luma + 2 * (1 - kr) * pr
    b = luma + 2 * (1 - kb) * pb
    g = (luma - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255.0), 0, 255).astype(np.uint8)
