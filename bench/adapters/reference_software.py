"""Shared driver for the JVET / JCT-VC reference encoders (VTM for VVC, HM for HEVC).

Both take planar YCbCr files and the same command-line options; adapters in ``codecs/vtm.py``
and ``codecs/hm.py`` configure one ``ReferenceCodec`` each. The binaries and the encoder
configuration are options that are not part of the cache key (``key=False``): empty means
``$<NAME>_ENCODER`` / ``$<NAME>_DECODER`` / ``$<NAME>_CONFIG`` (or the command on PATH); ``setup``
resolves them and puts their content hashes into the version.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from . import Option
from .codec_tools import file_sha256, resolve_tool, rgb_to_ycbcr444, run_tool, ycbcr444_to_rgb

DIMENSIONS = struct.Struct(">HH")  # width, height: the raw YUV output does not say


class ReferenceCodec:
    def __init__(self, name: str, encoder: str, decoder: str):
        self.name = name
        self.env = name.upper()
        self.commands = {"encoder": encoder, "decoder": decoder}
        self.options = {
            "encoder": Option("", key=False, help=f"{encoder} binary (default ${self.env}_ENCODER, else on PATH)"),
            "decoder": Option("", key=False, help=f"{decoder} binary (default ${self.env}_DECODER, else on PATH)"),
            "config": Option("", key=False, help=f"all-intra encoder .cfg (default ${self.env}_CONFIG)"),
        }

    def setup(self, encoder: str, decoder: str, config: str) -> dict:
        encoder_path = resolve_tool(encoder, f"{self.env}_ENCODER", self.commands["encoder"])
        decoder_path = resolve_tool(decoder, f"{self.env}_DECODER", self.commands["decoder"])
        config = config or os.environ.get(f"{self.env}_CONFIG", "")
        if not config or not Path(config).is_file():
            raise FileNotFoundError(f"{self.name} encoder configuration {config!r} not found (set {self.env}_CONFIG to "
                                    "the all-intra .cfg of the reference software)")
        config = os.path.abspath(config)
        # Binaries and configuration by content: an upgrade or an edited .cfg invalidates the cache.
        return {"version": f"{self.name} {Path(encoder_path).name} {file_sha256(encoder_path)}, "
                           f"{Path(decoder_path).name} {file_sha256(decoder_path)}, "
                           f"config {Path(config).name} {file_sha256(config)}",
                "options": {"encoder": encoder_path, "decoder": decoder_path, "config": config}}

    def encode(self, rgb: np.ndarray, quality: int, encoder: str, decoder: str, config: str) -> bytes:
        height, width, _ = rgb.shape
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name.lower()}-") as tmp:
            src, out = Path(tmp) / "in.yuv", Path(tmp) / "out.bin"
            src.write_bytes(rgb_to_ycbcr444(rgb).tobytes())
            run_tool([encoder, "-c", config, "-i", src, "-b", out, "-o", Path(tmp) / "rec.yuv", "-q", str(int(quality)),
                      f"--SourceWidth={width}", f"--SourceHeight={height}", "--InputBitDepth=8",
                      "--InternalBitDepth=8", "--OutputBitDepth=8", "--InputChromaFormat=444",
                      "--ChromaFormatIDC=444", "--FrameRate=1", "--FramesToBeEncoded=1",
                      "--ConformanceWindowMode=1"])
            return DIMENSIONS.pack(width, height) + out.read_bytes()

    def decode(self, data: bytes, encoder: str, decoder: str, config: str) -> np.ndarray:
        width, height = DIMENSIONS.unpack_from(data)
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name.lower()}-") as tmp:
            src, out = Path(tmp) / "in.bin", Path(tmp) / "rec.yuv"
            src.write_bytes(data[DIMENSIONS.size:])
            run_tool([decoder, "-b", src, "-o", out, "-d", "8"])
            planes = np.frombuffer(out.read_bytes(), np.uint8)
        if planes.size != 3 * width * height:
            raise ValueError(f"{self.name} decoder wrote {planes.size} samples, expected {3 * width * height}")
        return ycbcr444_to_rgb(planes.reshape(3, height, width))
