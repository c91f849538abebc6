"""codec-bench: side-by-side benchmark of conventional and End2End (learned) image codecs."""

__version__ = "0.1.0"

import warnings as _warnings

# CompressAI 1.2.8 calls torch.jit.script at import, which torch >= 2.10 deprecates noisily.
_warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
