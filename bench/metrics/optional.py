"""Opt-in metrics that need something outside the Python dependencies: a tool or learned weights.

- ``butteraugli``: Google's Butteraugli distance (lower is better), by Debian's ``butteraugli`` tool or
  libjxl's ``butteraugli_main`` (``BUTTERAUGLI`` names another), on the two images as PNG files.
- ``cvvdp``: ColorVideoVDP (Mantiuk et al. 2024) in JOD units (10 = no visible difference), from the
  ``cvvdp`` package (optional extra ``codec-bench[cvvdp]``), display model ``standard_4k`` (its default);
  it runs offline: its display and CSF data ship in the package.
- ``lpips``, ``dists``: piq's LPIPS (VGG16) and DISTS, whose weights piq would download. Here they come
  from a folder the user names in ``BENCH_METRIC_WEIGHTS`` holding the files under the names piq
  downloads them as (``WEIGHT_FILES``, with their addresses in ``WEIGHT_URLS``); without it, or with a
  file missing, the metric is unavailable with a one-line reason, and it never downloads.

A metric that cannot run raises ``MetricUnavailable`` (an ``ImportError``): a run refuses it up front,
and a worker fails the job rather than store NaN.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .engine import Pair

WEIGHTS_ENV = "BENCH_METRIC_WEIGHTS"
VGG16 = "vgg16-397923af.pth"
WEIGHT_FILES = {"lpips": (VGG16, "lpips_weights.pt"), "dists": (VGG16, "dists_weights.pt")}
WEIGHT_URLS = {
    VGG16: "https://download.pytorch.org/models/vgg16-397923af.pth",
    "lpips_weights.pt": "https://github.com/photosynthesis-team/photosynthesis.metrics/releases/download/v0.4.0/"
                        "lpips_weights.pt",
    "dists_weights.pt": "https://github.com/photosynthesis-team/piq/releases/download/v0.4.1/dists_weights.pt",
}
BUTTERAUGLI_TIMEOUT_S = 600


class MetricUnavailable(ImportError):
    """A metric's tool or weights are not on this machine (the reason is the message)."""


# --- Butteraugli -----------------------------------------------------------------------------------
def butteraugli_exe() -> str:
    """The Butteraugli tool: ``BUTTERAUGLI``, else ``butteraugli`` or ``butteraugli_main`` on PATH."""
    named = os.environ.get("BUTTERAUGLI")
    found = named if named and shutil.which(named) else shutil.which("butteraugli") or shutil.which("butteraugli_main")
    if not found:
        raise MetricUnavailable("no Butteraugli tool: install Debian's 'butteraugli' package or libjxl's "
                                "butteraugli_main, or set BUTTERAUGLI to its path")
    return found


def _write_png(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)


def butteraugli(pair: Pair) -> float:
    """The tool's distance of the reconstruction from the original (its first printed number)."""
    exe = butteraugli_exe()
    with tempfile.TemporaryDirectory(prefix="butteraugli-") as tmp:
        ref, rec = Path(tmp, "ref.png"), Path(tmp, "rec.png")
        _write_png(pair.ref, ref)
        _write_png(pair.rec, rec)
        done = subprocess.run([exe, str(ref), str(rec)], capture_output=True, text=True,
                              timeout=BUTTERAUGLI_TIMEOUT_S, check=False)
    if done.returncode != 0 or not done.stdout.split():
        raise RuntimeError(f"{exe} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return float(done.stdout.split()[0])


# --- ColorVideoVDP ----------------------------------------------------------------------------------
CVVDP_DISPLAY = "standard_4k"


def cvvdp_installed() -> None:
    """``MetricUnavailable`` unless the cvvdp package is installed (checked without importing it)."""
    import importlib.util

    if importlib.util.find_spec("pycvvdp") is None:
        raise MetricUnavailable("cvvdp needs the 'cvvdp' package: pip install 'codec-bench[cvvdp]'")


@functools.lru_cache(maxsize=4)
def cvvdp_model(device: str):
    """pycvvdp's metric for the display model ``CVVDP_DISPLAY`` on ``device``."""
    cvvdp_installed()
    import pycvvdp
    import torch

    return pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, device=torch.device(device))


def cvvdp(pair: Pair) -> float:
    """ColorVideoVDP's JOD of the reconstruction against the original (8-bit sRGB, H x W x 3)."""
    jod, _ = cvvdp_model(str(pair.stats.device)).predict(pair.rec, pair.ref, dim_order="HWC")
    return float(jod)


# --- LPIPS and DISTS from user-given weights ---------------------------------------------------------
def weights_folder(name: str) -> Path:
    """The folder in ``BENCH_METRIC_WEIGHTS`` holding every file ``name`` needs, or ``MetricUnavailable``."""
    files = WEIGHT_FILES[name]
    where = os.environ.get(WEIGHTS_ENV)
    missing = [f for f in files if not where or not Path(where, f).is_file()]
    if missing:
        wanted = ", ".join(f"{f} ({WEIGHT_URLS[f]})" for f in missing)
        place = f"{WEIGHTS_ENV}={where}" if where else f"{WEIGHTS_ENV} is not set"
        raise MetricUnavailable(f"{name} needs its weights in a folder named by {WEIGHTS_ENV} ({place}); missing: "
                                f"{wanted}")
    return Path(str(where))


@contextlib.contextmanager
def _hub_holding(folder: Path, files: tuple[str, ...]) -> Iterator[None]:
    """torch.hub's folder set, for the duration, to a temporary one whose checkpoints are ``folder``'s files,
    so that piq loads them instead of downloading. Afterwards torch.hub is as before: unset (following
    ``TORCH_HOME``) if it was unset, not pinned to the folder ``TORCH_HOME`` named at the time."""
    import torch

    previous = torch.hub._hub_dir  # None unless set_dir was called; get_dir() would resolve TORCH_HOME now
    with tempfile.TemporaryDirectory(prefix="metric-weights-") as hub:
        Path(hub, "checkpoints").mkdir()
        for file in files:
            Path(hub, "checkpoints", file).symlink_to(folder.resolve() / file)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub._hub_dir = previous


@functools.lru_cache(maxsize=4)
def deep_model(name: str, device: str):
    """piq's ``LPIPS`` or ``DISTS`` (reduction none) with the user's weights, on ``device``."""
    import piq

    folder = weights_folder(name)
    try:
        with _hub_holding(folder, WEIGHT_FILES[name]):
            model = piq.LPIPS(reduction="none") if name == "lpips" else piq.DISTS(reduction="none")
    except Exception as exc:  # torch.load (any unpickling error) or load_state_dict: the files are not the weights
        raise MetricUnavailable(f"{name}: the weights in {folder} do not load ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from exc
    return model.to(device).eval()


def deep_metric(name: str):
    """``lpips`` or ``dists`` of the reconstruction against the original, RGB in [0, 1] (piq's convention)."""
    def compute(pair: Pair) -> float:
        model = deep_model(name, str(pair.stats.device))
        return model(pair.y / 255.0, pair.x / 255.0).item()

    return compute


def available(check) -> str:
    """"" when ``check()`` passes, else the reason it gives."""
    try:
        check()
    except MetricUnavailable as exc:
        return str(exc)
    return ""
