"""HEVC intra with the HM reference software (TAppEncoder / TAppDecoder), used only when installed.

Options: ``encoder``, ``decoder`` (defaults ``$HM_ENCODER`` / ``$HM_DECODER``, else TAppEncoder /
TAppDecoder on PATH) and ``config`` (default ``$HM_CONFIG``: HM's ``cfg/encoder_intra_main_rext.cfg``).
Same conversion, QP sweep and 4-byte dimension header as ``vtm``.
"""

from bench.codec_tools import tool_default
from bench.reference_software import ReferenceCodec

_codec = ReferenceCodec("HM", tool_default("HM_ENCODER", "TAppEncoder"), tool_default("HM_DECODER", "TAppDecoder"),
                        tool_default("HM_CONFIG", ""))
NAME = "hm"
FAMILY = "conventional"
VERSION = "HM"
DESCRIPTION = "HEVC intra (HM reference software), YCbCr 4:4:4 BT.709 full range, 8 bit; quality = QP"
OPTIONS = _codec.options
QUALITIES = [47, 42, 37, 32, 27, 22]
QUALITY_RANGE = (0, 51, 1)
setup, encode, decode = _codec.setup, _codec.encode, _codec.decode
