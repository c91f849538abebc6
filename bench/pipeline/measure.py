"""One measurement: encode, decode and score one image with one codec configuration.

Owns timing (wall seconds around ``encode`` and ``decode`` only; a stage the adapter declares
``untimed`` is stored as not measured, NaN) and size (bpp = bytes * 8 / pixels, from the
returned bytes). The adapter sees a read-only view of the original: a write
into it fails that job instead of corrupting every later result. Encoding and each decode run
in a fresh working directory that is also their ``TMPDIR`` (removed afterwards), so a decoder
that reads a file its encoder left instead of its bytes fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..adapters import CodecConfig, stage_directory
from ..metrics import DEFAULT_METRICS, compute_metrics
from ..model import CrossDevice, Key, Measurement
from .provenance import cpu_model


class StageError(Exception):
    """A job failed in one stage (encode, decode, metrics, ...)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    """bpp = bytes * 8 / (width * height)."""
    return num_bytes * 8.0 / (width * height)


def read_only(rgb: np.ndarray) -> np.ndarray:
    """A view of ``rgb`` that cannot be written (nor made writable again, as its base is read-only too)."""
    if rgb.flags.writeable:
        rgb = rgb.copy()
        rgb.flags.writeable = False
    view = rgb.view()
    view.flags.writeable = False
    return view


def reconstruction_sha256(rec: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rec).tobytes()).hexdigest()


def as_rgb(decoded, shape: tuple[int, ...]) -> np.ndarray:
    """The decoder's output as a uint8 array of the original's shape, or a ``decode`` StageError."""
    rec = np.asarray(decoded)
    if rec.dtype != np.uint8:
        raise StageError("decode", f"decoded dtype is {rec.dtype}, expected uint8")
    if rec.shape != shape:
        raise StageError("decode", f"decoded shape {rec.shape} differs from the original {shape}")
    return rec


def _describe(exc: BaseException, config: CodecConfig) -> str:
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        return f"adapter {config.name!r} wrote into its input image, which is read-only ({exc})"
    return f"{type(exc).__name__}: {exc}{error_location(exc)}"


def error_location(exc: BaseException) -> str:
    """`` (file.py:123)`` of the innermost frame of an exception's traceback, or ``""``."""
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def metric_device(codec_device: str) -> str:
    """Metrics run where the codec runs: on the GPU for CUDA codecs (when torch sees one), else on the CPU."""
    if not codec_device.startswith("cuda"):
        return "cpu"
    import torch

    return codec_device if torch.cuda.is_available() else "cpu"


def host_identity(device: str) -> tuple[str, str]:
    """(host name, CPU model, plus the GPU name when measured on CUDA)."""
    machine = cpu_model()
    if device.startswith("cuda"):
        try:
            import torch

            machine += f"; {torch.cuda.get_device_name(torch.device(device))}"
        except Exception as exc:  # provenance must never fail a measurement
            machine += f"; GPU name unavailable ({type(exc).__name__})"
    return socket.gethostname(), machine


def _is_cuda_oom(exc: BaseException | None) -> bool:
    return type(exc).__name__ == "OutOfMemoryError"


def measure(config: CodecConfig, rgb: np.ndarray, quality: float, key: Key,
            metrics: tuple[str, ...] = DEFAULT_METRICS, check_determinism: bool = False, decode_device: str = "",
            image_name: str = "") -> tuple[Measurement, bytes, np.ndarray, str]:
    """Encode, decode and score one image; raises StageError naming the failing stage.

    Returns the measurement, the bitstream, the reconstruction and a note ("" unless
    ``check_determinism`` found that two encodes of the same image differ). Learned codecs are
    decoded twice: outputs that differ are a ``decode-mismatch`` failure. On CUDA out of memory
    the image is measured on the CPU instead, with a warning. With ``decode_device`` the bytes are
    also decoded on that device (``cross_device`` of the measurement; a difference is a warning).
    ``image_name`` goes to adapters whose encode asks for it.
    """
    try:
        return _measure(config, rgb, quality, key, metrics, check_determinism, decode_device, image_name)
    except StageError as exc:
        if not (config.device.startswith("cuda") and _is_cuda_oom(exc.__cause__)):
            raise
    warnings.warn(f"CUDA out of memory on a {rgb.shape[1]}x{rgb.shape[0]} image with {config.label}; "
                  "measured on the CPU instead", stacklevel=2)
    cpu = replace(config, options={**config.options, "device": "cpu"})
    return _measure(cpu, rgb, quality, key, metrics, check_determinism, decode_device, image_name)


def cross_decode(config: CodecConfig, data: bytes, rec: np.ndarray, original: np.ndarray,
                 decode_device: str) -> CrossDevice:
    """Decode the same bytes on ``decode_device`` (untimed) and compare with the measured reconstruction."""
    encode_device = config.device
    other = replace(config, options={**config.options, "device": decode_device})
    try:
        again = as_rgb(decode_fresh(other, data)[0], original.shape)
    except Exception as exc:
        warnings.warn(f"{config.label}: bitstreams encoded on {encode_device} fail to decode on {decode_device}",
                      stacklevel=2)
        return CrossDevice(encode_device, decode_device, None, error=f"{_describe(exc, config)}"[:500])
    diff = int(np.abs(again.astype(np.int16) - rec).max())
    psnr = float(compute_metrics(original, again, ("psnr-rgb",))["psnr-rgb"])
    if diff:
        warnings.warn(f"{config.label}: bitstreams encoded on {encode_device} decode to another image on "
                      f"{decode_device} (see the cross-device table of the report)", stacklevel=2)
    return CrossDevice(encode_device, decode_device, diff == 0, diff, psnr)


@contextlib.contextmanager
def fresh_directory(stage: str) -> Iterator[Path]:
    """Run one stage in a new, empty working directory that is also its ``TMPDIR``, removed afterwards
    with whatever the adapter left in it: a decoder cannot read a file its encoder left behind."""
    old_cwd, old_env, old_tempdir = os.getcwd(), os.environ.get("TMPDIR"), tempfile.tempdir
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{stage}-"))
    os.chdir(folder)
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    try:
        with stage_directory(old_cwd):  # adapters resolve relative option paths there (adapters.run_directory)
            yield folder
    finally:
        os.chdir(old_cwd)
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        shutil.rmtree(folder, ignore_errors=True)


FRESH_DECODE = ("decode runs in a fresh working directory and TMPDIR, without the files its encoder wrote: "
                "it must decode from its bytes alone")


def decode_error(exc: BaseException, config: CodecConfig) -> str:
    """Why a decode failed; a missing file is explained (decoding never sees the encoder's files)."""
    hint = f" ({FRESH_DECODE})" if isinstance(exc, FileNotFoundError) else ""
    return _describe(exc, config) + hint


def decode_fresh(config: CodecConfig, data: bytes) -> tuple[object, float]:
    """Decode in a fresh directory; (decoded image, wall seconds of ``decode`` alone)."""
    with fresh_directory("decode"):
        start = time.perf_counter()
        decoded = config.decode(data)
        return decoded, time.perf_counter() - start


def _encode(config: CodecConfig, rgb: np.ndarray, quality: float, image_name: str = "") -> tuple[bytes, float]:
    try:
        with fresh_directory("encode"):
            start = time.perf_counter()
            data = config.encode(rgb, quality, image_name)
            seconds = time.perf_counter() - start
    except Exception as exc:
        raise StageError("encode", _describe(exc, config)) from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StageError("encode", f"encode returned {type(data).__name__}, expected bytes")
    return bytes(data), seconds


def _measure(config: CodecConfig, rgb: np.ndarray, quality: float, key: Key, metric_names: tuple[str, ...],
             check_determinism: bool, decode_device: str = "", image_name: str = ""
             ) -> tuple[Measurement, bytes, np.ndarray, str]:
    original = read_only(rgb)
    try:
        config.prepare(quality)
    except Exception as exc:
        raise StageError("prepare", _describe(exc, config)) from exc
    data, encode_s = _encode(config, original, quality, image_name)
    note = ""
    if check_determinism:
        again, _ = _encode(config, original, quality, image_name)
        if again != data:
            note = (f"{config.label} is not deterministic: two encodes of the same image at quality {quality:g} "
                    f"gave {len(data)} and {len(again)} bytes"
                    f"{'' if len(data) != len(again) else ' (different content)'}")
    try:
        decoded, decode_s = decode_fresh(config, data)
    except Exception as exc:
        raise StageError("decode", decode_error(exc, config)) from exc
    rec = as_rgb(decoded, rgb.shape)
    try:
        config.check_decoded(data, rec)
    except Exception as exc:
        raise StageError("decode", _describe(exc, config)) from exc
    untimed = config.untimed
    encode_s = math.nan if "encode" in untimed else encode_s
    decode_s = math.nan if "decode" in untimed else decode_s
    if config.adapter.family == "learned":
        try:
            again_rec = as_rgb(decode_fresh(config, data)[0], rgb.shape)
        except Exception as exc:
            raise StageError("decode-mismatch",
                             f"second decode of the same bytes failed: {decode_error(exc, config)}") from exc
        if not np.array_equal(rec, again_rec):
            diff = np.abs(rec.astype(np.int16) - again_rec).max()
            raise StageError("decode-mismatch", f"two decodes of the same bytes differ (max |diff| {diff})")
    seconds: dict[str, float] = {}
    on = metric_device(config.device)
    try:
        start = time.perf_counter()
        metrics = compute_metrics(original, rec, metric_names, ref_key=key.image_hash, timings=seconds,
                                  device=on)
        metric_s = time.perf_counter() - start
    except Exception as exc:
        raise StageError("metrics", f"{type(exc).__name__}: {exc}{error_location(exc)}") from exc
    cross = cross_decode(config, data, rec, original, decode_device) if decode_device else None
    height, width = rgb.shape[:2]
    host, machine = host_identity(config.device)
    measurement = Measurement(
        key=key, bytes=len(data), bpp=bits_per_pixel(len(data), width, height), width=width, height=height,
        encode_s=encode_s, decode_s=decode_s, metric_s=metric_s, device=config.device, metrics=dict(metrics),
        metric_seconds=seconds, host=host, machine=machine, metric_device=on, cross_device=cross,
    )
    return measurement, data, rec, note
