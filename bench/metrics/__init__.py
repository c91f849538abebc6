"""Full-reference quality metrics between an original and a decoded uint8 RGB image.

| metric | unit | better | definition / library |
|---|---|---|---|
| ``psnr-rgb`` | dB | higher | 10·log10(255² / MSE), MSE over all R, G, B samples (CompressAI's convention) |
| ``psnr-y`` | dB | higher | the same on BT.709 luma Y = 0.2126 R + 0.7152 G + 0.0722 B, float |
| ``ms-ssim-rgb`` | | higher | pytorch-msssim ``ms_ssim`` on RGB, data_range 255 (CompressAI's convention) |
| ``ms-ssim-db`` | dB | higher | -10·log10(1 - MS-SSIM) |
| ``ssim`` | | higher | pytorch-msssim ``ssim`` on RGB (11x11 Gaussian window, σ 1.5), data_range 255 |
| ``haarpsi`` | | higher | piq ``haarpsi`` (Haar wavelet-based perceptual similarity), data_range 255 |
| ``gmsd`` | | lower | piq ``gmsd`` (gradient magnitude similarity deviation), data_range 255 |
| ``vif`` | | higher | piq ``vif_p`` (visual information fidelity, pixel domain); slow, opt-in |
| ``fsim`` | | higher | piq ``fsim`` (feature similarity, colour FSIMc); slow, opt-in |
| ``ssimulacra2`` | | higher | the ``ssimulacra2`` package (Cloudinary's SSIMULACRA 2, 100 = identical); slow, opt-in |

A metric that cannot be computed for an image (e.g. MS-SSIM on an image whose shorter side is
at most 160 pixels) is NaN, with a warning naming the metric and the image size. The default
set is computed by ``bench.metrics.engine`` with shared work; its values are within the libraries' own
float32 error of their definitions computed in float64 (measured: MS-SSIM 4.5e-6, SSIM 5.7e-6, HaarPSI
2.6e-7, GMSD 1.1e-8 at most on Kodak, against the libraries' 4.6e-5, 6.3e-5, 5.6e-6, 4.5e-8).
The JPEG AI CTC metrics are in ``bench.metrics.ctc``; the machine-task metrics (coding for machines:
faces, OCR, SIFT features against the original's output) in ``bench.metrics.tasks``; the user's own task
model (``run --task-model``; metrics ``task-*@<digest>``, registered when it is given) in ``own_task``.
"""

from __future__ import annotations

import importlib
import io
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BenchError, did_you_mean
from . import own_task_spec

if TYPE_CHECKING:
    from ..model import TaskModelSpec
    from .engine import Pair

_FROM_ENGINE = ("MS_SSIM_MIN_SIDE", "PEAK", "psnr_from_mse")  # re-exported, loaded with the engine


def _engine() -> Any:
    """The metric engine (torch), imported when a metric is first computed, not when names are listed."""
    from . import engine

    return engine


def __getattr__(name: str) -> Any:
    if name in _FROM_ENGINE:
        return getattr(_engine(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lazy(module: str, name: str, *args: Any) -> Callable[[Pair], float]:
    """The metric ``bench.metrics.<module>.<name>`` (a factory, called with ``args``, when they are given),
    imported when it is first computed, not when names are listed (``bench metrics`` runs without torch)."""
    def compute(pair: Pair) -> float:
        func = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return func(*args)(pair) if args else func(pair)

    compute.__name__ = name
    return compute

BT709_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    higher_is_better: bool
    description: str
    compute: Callable[[Pair], float] = field(repr=False, compare=False)
    default: bool = True
    requires: tuple[str, ...] = ()
    library: str = ""  # the PyPI distribution whose definition it follows ("": a closed-form one, computed here)
    available: Callable[[], str] = field(default=lambda: "", repr=False, compare=False)  # "" or why not here


def psnr_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR over all R, G, B samples (float64 MSE)."""
    diff = ref.astype(np.float64) - rec.astype(np.float64)
    return _engine().psnr_from_mse(float(np.mean(diff * diff)))


def luma_bt709(rgb: np.ndarray) -> np.ndarray:
    return _engine().luma_bt709(rgb)


def psnr_y(ref: np.ndarray, rec: np.ndarray) -> float:
    diff = luma_bt709(ref) - luma_bt709(rec)
    return _engine().psnr_from_mse(float(np.mean(diff * diff)))


def ms_ssim_db(ms_ssim: float) -> float:
    if math.isnan(ms_ssim):
        return math.nan
    return math.inf if ms_ssim >= 1.0 else -10.0 * math.log10(1.0 - ms_ssim)


def _piq(name: str):
    """A piq metric called as the library defines it, on the engine's shared tensors."""
    def compute(pair: Pair) -> float:
        import piq

        return getattr(piq, name)(pair.y, pair.x, data_range=_engine().PEAK).item()

    return compute


def _png(rgb: np.ndarray) -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=0)
    buf.seek(0)
    return buf


def _ssimulacra2(pair: Pair) -> float:
    from ssimulacra2 import compute_ssimulacra2

    return compute_ssimulacra2(_png(pair.ref), _png(pair.rec))


def _available(module: str, check: str, *args: str) -> Callable[[], str]:
    """"" when ``module.check(*args)`` passes, else the reason it gives (a tool or weights missing here)."""
    def reason() -> str:
        from .optional import available

        func = getattr(importlib.import_module(f"{__name__}.{module}"), check)
        return available(lambda: func(*args))

    return reason


def _ctc_metrics() -> tuple[MetricInfo, ...]:
    """The JPEG AI CTC metrics on BT.709 full-range Y'CbCr at 10 bits (see bench/metrics/ctc.py), opt-in."""
    def ctc(name: str, unit: str, higher: bool, description: str, func: str, *args: int, **kw: Any) -> MetricInfo:
        return MetricInfo(name, unit, higher, description, _lazy("ctc", func, *args), default=False, **kw)

    planes = ("psnr-y10", "psnr-cb10", "psnr-cr10")
    return (
        *(ctc(name, "dB", True, f"PSNR of CTC {plane} (BT.709 full range, 10-bit, peak 1023)", "psnr_plane", i)
          for i, (name, plane) in enumerate(zip(planes, ("Y'", "Cb", "Cr"), strict=True))),
        ctc("psnr-ycbcr", "dB", True, "(6 PSNR-Y' + PSNR-Cb + PSNR-Cr) / 8 on the CTC planes", "psnr_ycbcr",
            requires=planes),
        ctc("ms-ssim-y", "", True, "MS-SSIM (pytorch-msssim) of CTC Y', data_range 1023", "ms_ssim_y",
            library="pytorch-msssim"),
        ctc("iw-ssim-y", "", True, "IW-SSIM (piq information_weighted_ssim) of CTC Y'", "iw_ssim_y", library="piq"),
        ctc("vif-y", "", True, "VIFp (piq vif_p) of CTC Y'", "vif_y", library="piq"),
        ctc("nlpd-y", "", False, "NLPD (IQA_pytorch, Laparra et al. 2016) of CTC Y'; lower is better", "nlpd_y",
            library="IQA_pytorch"),
        ctc("psnr-hvs-m-y", "dB", True, "PSNR-HVS-M (psnr-hvsm) of CTC Y'", "psnr_hvs_m_y", library="psnr-hvsm"),
        ctc("psnr-hvs-y", "dB", True, "PSNR-HVS (psnr-hvsm, no masking) of CTC Y'", "psnr_hvs_y", library="psnr-hvsm"),
        ctc("vmaf", "", True, "VMAF (libvmaf, model vmaf_v0.6.1) of the CTC 10-bit 4:4:4 planes", "vmaf",
            library="imageio-ffmpeg", available=_available("ctc", "vmaf_ffmpeg")),
    )


def _task_metrics() -> tuple[MetricInfo, ...]:
    """Coding for machines (bench/metrics/tasks.py): a vision task's output on the decoded image against its
    output on the original (pseudo ground truth), opt-in; NaN where the original yields nothing."""
    def task(name: str, higher: bool, description: str, func: str, field: str | None, library: str, check: str,
             requires: tuple[str, ...] = ()) -> MetricInfo:
        compute = _lazy("tasks", func, field) if field else _lazy("tasks", func)
        return MetricInfo(name, "", higher, description, compute, default=False, requires=requires, library=library,
                          available=_available("tasks", "installed", check))

    faces = "OpenCV Haar frontal faces of the decoded image against the original's (one-to-one, IoU >= 0.5): "
    sift = "OpenCV SIFT keypoints (1000 strongest) of the original "
    return (
        task("face-f1", True, faces + "F1", "face", "f1", "opencv-python-headless", "faces"),
        *(task(f"face-{field}", True, faces + text, "face", field, "opencv-python-headless", "faces",
               requires=("face-f1",))
          for field, text in (("precision", "precision"), ("recall", "recall"),
                              ("iou", "mean IoU of matched boxes (0 when none matches)"))),
        task("ocr-cer", False, "character error rate of RapidOCR's text (lines in reading order) against the "
             "original's: Levenshtein distance / its length; lower is better", "ocr_cer", None, "rapidocr", "ocr"),
        task("sift-repeatability", True, sift + "with a decoded keypoint within 2.5 px", "sift", "repeatability",
             "opencv-python-headless", "features"),
        task("sift-matching", True, sift + "whose descriptor match (ratio test 0.8) in the decoded image lies within "
             "2.5 px", "sift", "matching", "opencv-python-headless", "features", requires=("sift-repeatability",)),
    )


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("psnr-rgb", "dB", True, "PSNR over R, G, B samples, peak 255", _lazy("engine", "psnr_rgb")),
        MetricInfo("psnr-y", "dB", True, "PSNR of BT.709 luma, peak 255", _lazy("engine", "psnr_y")),
        MetricInfo("ms-ssim-rgb", "", True, "MS-SSIM (pytorch-msssim, 5 scales, data_range 255)",
                   _lazy("engine", "ms_ssim"), library="pytorch-msssim"),
        MetricInfo("ms-ssim-db", "dB", True, "-10 log10(1 - MS-SSIM)",
                   lambda p: ms_ssim_db(p.values["ms-ssim-rgb"]), requires=("ms-ssim-rgb",), library="pytorch-msssim"),
        MetricInfo("ssim", "", True, "SSIM (pytorch-msssim, 11x11 Gaussian, data_range 255)", _lazy("engine", "ssim"),
                   library="pytorch-msssim"),
        MetricInfo("haarpsi", "", True, "HaarPSI (piq)", _lazy("engine", "haarpsi"), library="piq"),
        MetricInfo("gmsd", "", False, "GMSD (piq), lower is better", _lazy("engine", "gmsd"), library="piq"),
        MetricInfo("vif", "", True, "VIFp (piq vif_p)", _piq("vif_p"), default=False, library="piq"),
        MetricInfo("fsim", "", True, "FSIMc (piq fsim)", _piq("fsim"), default=False, library="piq"),
        MetricInfo("ssimulacra2", "", True, "SSIMULACRA 2 (ssimulacra2 package)", _ssimulacra2, default=False,
                   library="ssimulacra2"),
        *_ctc_metrics(),
        MetricInfo("butteraugli", "", False, "Butteraugli distance (Debian's butteraugli or libjxl's "
                   "butteraugli_main); lower is better", _lazy("optional", "butteraugli"), default=False,
                   library="tool: butteraugli", available=_available("optional", "butteraugli_exe")),
        MetricInfo("cvvdp", "JOD", True, "ColorVideoVDP (cvvdp package, display standard_4k); 10 = no visible "
                   "difference", _lazy("optional", "cvvdp"), default=False, library="cvvdp",
                   available=_available("optional", "cvvdp_installed")),
        MetricInfo("lpips", "", False, "LPIPS-VGG (piq LPIPS) with the user's weights (BENCH_METRIC_WEIGHTS); lower is "
                   "better", _lazy("optional", "deep_metric", "lpips"), default=False, library="piq",
                   available=_available("optional", "weights_folder", "lpips")),
        MetricInfo("dists", "", False, "DISTS (piq DISTS) with the user's weights (BENCH_METRIC_WEIGHTS); lower is "
                   "better", _lazy("optional", "deep_metric", "dists"), default=False, library="piq",
                   available=_available("optional", "weights_folder", "dists")),
        *_task_metrics(),
    )
}
DEFAULT_METRICS = tuple(name for name, m in METRICS.items() if m.default)
# The JPEG AI CTC set (bench/metrics/ctc.py has the definitions and the source) and the metrics whose
# BD-rates are averaged in the per-metric table: the perceptual ones plus the 6:1:1 Y'CbCr PSNR
# (its three plane PSNRs are shown, not averaged again).
CTC_METRICS = ("ms-ssim-y", "iw-ssim-y", "vif-y", "fsim", "nlpd-y", "psnr-hvs-m-y", "vmaf",
               "psnr-y10", "psnr-cb10", "psnr-cr10", "psnr-ycbcr")
CTC_AVERAGED = ("ms-ssim-y", "iw-ssim-y", "vif-y", "fsim", "nlpd-y", "psnr-hvs-m-y", "vmaf", "psnr-ycbcr")
# Coding for machines (bench/metrics/tasks.py): one set per vision task, and ``tasks`` for all three.
TASK_SETS = {"faces": ("face-f1", "face-precision", "face-recall", "face-iou"), "ocr": ("ocr-cer",),
             "features": ("sift-repeatability", "sift-matching")}
METRIC_SETS = {"default": DEFAULT_METRICS, "ctc": CTC_METRICS, **TASK_SETS,
               "tasks": tuple(name for names in TASK_SETS.values() for name in names)}


def is_task_metric(name: str) -> bool:
    """Whether a metric scores a machine task: a built-in task's (``METRIC_SETS["tasks"]``) or the user's own
    task model's (``task-<metric>@<digest>``)."""
    return name in METRIC_SETS["tasks"] or own_task_spec.parse_name(name) is not None


def metric_set(name: str) -> str:
    """The set a metric is listed under: ``default``, ``ctc``, its task's (``faces``, ``ocr``, ``features``),
    ``own task`` (``--task-model``) or ``opt-in``."""
    if own_task_spec.parse_name(name):
        return "own task"
    task = next((t for t, names in TASK_SETS.items() if name in names), "")
    return "default" if METRICS[name].default else "ctc" if name in CTC_METRICS else task or "opt-in"


class MetricError(BenchError, ValueError):
    """An unknown metric name."""


def _own_metric(name: str, spec: TaskModelSpec | None) -> MetricInfo:
    """The registry entry of an own-task metric: computed by ``spec``'s model, or (``None``) known by name only."""
    base, digest = own_task_spec.parse_name(name) or ("", "")
    higher, unit, text = own_task_spec.OWN_METRICS[base]
    if spec is not None:
        return MetricInfo(name, unit, higher, f"{text} (model {Path(spec.file).name}:{spec.function}, weights "
                          f"{Path(spec.weights).name}, digest {digest})", _lazy("own_task", "metric", spec, base),
                          default=False, library="your task model")
    reason = f"its task model (digest {digest}) is not loaded: bench run --task-model FILE.py:FUNC --task-weights W"

    def unloaded(pair: Pair) -> float:
        raise own_task_spec.TaskModelError(reason)

    return MetricInfo(name, unit, higher, f"{text} (task model digest {digest})", unloaded, default=False,
                      library="your task model", available=lambda: reason)


def register_task_model(spec: TaskModelSpec) -> tuple[str, ...]:
    """Register the metrics of the user's task model, whose kind is known (``own_task.probe``), in ``METRICS``
    (the run's process and each worker, from its task); their names, ``task-<metric>@<digest>``."""
    names = own_task_spec.metric_names(spec)
    METRICS.update((name, _own_metric(name, spec)) for name in names)
    return names


def register_stored(names: Iterable[str]) -> None:
    """Make the own-task metrics among ``names`` (e.g. a store's columns) known to this process by name: their
    direction, unit and definition, so that exports and reports list them; computing one needs its model."""
    order = list(own_task_spec.OWN_METRICS)
    found = [(parsed[1], order.index(parsed[0]), name) for name in names
             if name not in METRICS and (parsed := own_task_spec.parse_name(name))]
    for *_, name in sorted(found):  # by digest, then in the order of OWN_METRICS
        METRICS[name] = _own_metric(name, None)


def resolve_metrics(names: list[str] | None, *, tasks: list[str] | None = None) -> tuple[str, ...]:
    """Requested metric names or set names (``default``, ``ctc``, ``faces``, ``ocr``, ``features``, ``tasks``;
    default: DEFAULT_METRICS) plus the sets of the machine ``tasks`` named (``bench run --tasks``) plus what
    they require, in registry order. A metric that cannot run here (e.g. VMAF without an ffmpeg with
    libvmaf) is refused with the reason."""
    for task in tasks or []:
        if task not in TASK_SETS:
            raise MetricError(f"unknown task {task!r} (known: {', '.join(TASK_SETS)}){did_you_mean(task, TASK_SETS)}")
    wanted: set[str] = set()
    for name in [*(names or ["default"]), *(tasks or [])]:
        if name in METRIC_SETS:
            wanted.update(METRIC_SETS[name])
        elif name in METRICS:
            wanted.add(name)
        else:
            known = [*METRIC_SETS, *METRICS]
            raise MetricError(f"unknown metric {name!r} (known: {', '.join(known)}){did_you_mean(name, known)}")
    for name in list(wanted):
        wanted.update(METRICS[name].requires)
    for name in sorted(wanted):
        reason = METRICS[name].available()
        if reason:
            raise MetricError(f"metric {name!r} is unavailable here: {reason}")
    return tuple(name for name in METRICS if name in wanted)


def _check(ref: np.ndarray, rec: np.ndarray) -> None:
    if ref.shape != rec.shape:
        raise ValueError(f"decoded image has shape {rec.shape}, original {ref.shape}")
    if ref.dtype != np.uint8 or rec.dtype != np.uint8 or ref.ndim != 3 or ref.shape[2] != 3:
        raise ValueError(f"metrics need uint8 H x W x 3 images, got {ref.dtype} {ref.shape} "
                         f"and {rec.dtype} {rec.shape}")


def _score(pair: Pair, names: tuple[str, ...], timings: dict[str, float] | None) -> dict[str, float]:
    import torch

    shape = pair.ref.shape
    with torch.no_grad():
        for name in names:
            try:
                value = _engine().timed(METRICS[name].compute, pair, timings, name)
            except (ImportError, MemoryError):
                raise  # not a property of the image: fail the job rather than cache NaN
            except Exception as exc:  # a metric's limits (e.g. image size) must not stop the run
                if type(exc).__name__ == "OutOfMemoryError":
                    raise
                warnings.warn(f"{name} not computable for a {shape[1]}x{shape[0]} image ({exc}); set to NaN",
                              stacklevel=3)
                value = math.nan
            pair.values[name] = float(value)
    return pair.values


def compute_metrics(ref: np.ndarray, rec: np.ndarray, names: tuple[str, ...] | list[str] | None = None, *,
                    ref_key: str | None = None, timings: dict[str, float] | None = None,
                    device: str = "cpu") -> dict[str, float]:
    """Metrics of ``rec`` (decoded) against ``ref`` (original), both uint8 H x W x 3.

    ``names`` (default DEFAULT_METRICS) must include what each metric requires (see
    ``resolve_metrics``). ``ref_key``: the original's pixel hash; when given, the original's
    statistics are cached per process under it (a few images, LRU) and reused for every
    reconstruction of that image; without it nothing is cached. ``timings``: filled with seconds
    per metric name; work shared by several metrics (the reconstruction's float tensor, SSIM's
    first scale, a cache miss of the original's statistics) is charged to the first metric that
    needs it, in registry order. ``device``: ``cpu`` or ``cuda[:n]``.
    """
    _check(ref, rec)
    eng = _engine()
    stats = eng.ref_stats(ref, ref_key, eng.torch_device(device))
    return _score(eng.Pair(stats, rec), tuple(names or DEFAULT_METRICS), timings)


def compute_metrics_batch(ref: np.ndarray, recs: list[np.ndarray], names: tuple[str, ...] | list[str] | None = None,
                          *, ref_key: str | None = None, timings: dict[str, float] | None = None,
                          device: str = "cpu") -> list[dict[str, float]]:
    """``compute_metrics`` for several reconstructions of one original, sharing its statistics
    even without ``ref_key``; ``timings`` accumulates seconds per metric over all of them."""
    for rec in recs:
        _check(ref, rec)
    eng = _engine()
    stats = eng.ref_stats(ref, ref_key, eng.torch_device(device))
    return [_score(eng.Pair(stats, rec), tuple(names or DEFAULT_METRICS), timings) for rec in recs]
