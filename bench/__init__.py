"""codec-bench: side-by-side benchmark of conventional and End2End (learned) image codecs."""

__version__ = "0.1.0"
