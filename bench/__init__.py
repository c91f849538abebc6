"""codec-bench: side-by-side benchmark of conventional and End2End (learned) image codecs.

Notebook API (imported on first use, so ``import bench`` stays light)::

    import bench
    r = bench.load("results/kodak")   # r.per_image, r.summary, r.bd (DataFrames), r.curves("psnr-rgb")
    bench.bd_rate(r.curves()["jpeg"], r.curves()["webp"], metric="psnr-rgb", method="pchip")
"""

__version__ = "0.1.0"
__all__ = ["Curve", "Results", "__version__", "bd_rate", "load"]

import warnings as _warnings

# CompressAI 1.2.8 calls torch.jit.script at import, which torch >= 2.10 deprecates noisily.
_warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

_LAZY = {"load": "api", "bd_rate": "api", "Results": "api", "Curve": "analysis"}


def __getattr__(name: str):
    """``bench.load`` etc. import their module (pandas, ...) only when first used."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
