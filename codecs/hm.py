"""HEVC intra with the HM reference software (TAppEncoder / TAppDecoder), used only when installed.

Options: ``encoder``, ``decoder`` (default ``$HM_ENCODER`` / ``$HM_DECODER``, else TAppEncoder /
TAppDecoder on PATH) and ``config`` (default ``$HM_CONFIG``: HM's ``cfg/encoder_intra_main_rext.cfg``);
resolved at setup, and only their content hashes enter the cache key.
Same conversion, QP sweep and 4-byte dimension header as ``vtm``.
"""

from bench.adapters.reference_software import ReferenceCodec

_codec = ReferenceCodec("HM", "TAppEncoder", "TAppDecoder")
NAME = "hm"
FAMILY = "conventional"
VERSION = "HM"
DESCRIPTION = "HEVC intra (HM reference software), YCbCr 4:4:4 BT.709 full range, 8 bit; quality = QP"
OPTIONS = _codec.options
QUALITIES = [47, 42, 37, 32, 27, 22]
QUALITY_RANGE = (0, 51, 1)
TIMEOUT_S = 3600  # the reference encoder is slow
CODE_FILES = ["bench.adapters.reference_software", "bench.adapters.codec_tools"]  # the driver and the colour conversion
setup, encode, decode = _codec.setup, _codec.encode, _codec.decode
