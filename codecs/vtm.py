"""VVC intra with the VTM reference software (EncoderApp / DecoderApp), used only when installed.

Options: ``encoder``, ``decoder`` (default ``$VTM_ENCODER`` / ``$VTM_DECODER``, else EncoderApp /
DecoderApp on PATH) and ``config`` (default ``$VTM_CONFIG``: VTM's ``cfg/encoder_intra_vtm.cfg``);
resolved at setup, and only their content hashes enter the cache key.
As in CompressAI's VTM runs: RGB -> full-range BT.709 YCbCr 4:4:4, 8 bit, one intra frame,
``quality`` = QP. The bitstream is the VVC bitstream preceded by a 4-byte header (width,
height as uint16) that the decoder needs to read back the raw YUV output; bpp counts it.
"""

from bench.adapters.reference_software import ReferenceCodec

_codec = ReferenceCodec("VTM", "EncoderApp", "DecoderApp")
NAME = "vtm"
FAMILY = "conventional"
VERSION = "VTM"
DESCRIPTION = "VVC intra (VTM reference software), YCbCr 4:4:4 BT.709 full range, 8 bit; quality = QP"
OPTIONS = _codec.options
QUALITIES = [47, 42, 37, 32, 27, 22]
QUALITY_RANGE = (0, 63, 1)
TIMEOUT_S = 7200  # VTM at its slowest settings takes minutes per image; large images more
CODE_FILES = ["bench.adapters.reference_software", "bench.adapters.codec_tools"]  # the driver and the colour conversion
setup, encode, decode = _codec.setup, _codec.encode, _codec.decode
