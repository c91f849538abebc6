"""What one job does in its worker process: per-process caches and the functions that run one task each.

Every job runs in a worker process that an executor started (``bench.execution``: never the run's
own process), so a codec that crashes the interpreter, hangs or exhausts memory costs one failure
row, not the run.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..adapters import CodecConfig, load_origin
from ..code_identity import harness_files, mismatch
from ..datasets.images import pixel_sha256
from ..metrics import register_task_model
from ..model import CodecTask, DecodeCheckTask, Measurement, Refused, SearchTask, Task
from .measure import (
    StageError,
    as_rgb,
    bits_per_pixel,
    decode_fresh,
    error_location,
    measure,
    read_only,
    reconstruction_sha256,
)
from .targets import search_quality

_CONFIGS: dict[tuple[str, str], CodecConfig] = {}
_IMAGES: OrderedDict[str, np.ndarray] = OrderedDict()
_IMAGE_CACHE_SIZE = 4


def image(path: str, expected_hash: str) -> np.ndarray:
    """The read-only original of a task (cached per worker), checked against its pixel hash once."""
    if path in _IMAGES:
        _IMAGES.move_to_end(path)
        return _IMAGES[path]
    return _cache_image(path, np.load(path), expected_hash, f"image file {path}")


def _cache_image(key: str, rgb: np.ndarray, expected_hash: str, what: str) -> np.ndarray:
    if pixel_sha256(rgb) != expected_hash:
        raise StageError("setup", f"{what} does not hold the pixels of hash {expected_hash[:16]}...")
    rgb.flags.writeable = False
    _IMAGES[key] = rgb
    if len(_IMAGES) > _IMAGE_CACHE_SIZE:
        _IMAGES.popitem(last=False)
    return rgb


def config(origin: str, options: dict[str, str]) -> CodecConfig:
    """The configuration in this worker (options come resolved from the parent; no setup)."""
    cache_key = (origin, repr(sorted(options.items())))
    if cache_key not in _CONFIGS:
        _CONFIGS[cache_key] = CodecConfig(load_origin(origin), options)
    return _CONFIGS[cache_key]


def refusal(task: CodecTask) -> Refused | None:
    """``Refused`` when the harness or adapter code this process runs is not the task's (the client's)."""
    reason = mismatch("harness", task.code.harness, harness_files())
    if not reason:
        try:
            adapter = config(task.origin, task.options).adapter
        except Exception:  # a codec that cannot load here fails as the job's own setup failure
            return None
        reason = mismatch(f"{task.label} adapter", task.code.adapter, adapter.code_files)
    return Refused(reason) if reason else None


def _warnings(caught: list) -> list[str]:
    return sorted({str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))})


@dataclass
class Outcome:
    task: Task
    measurement: Measurement | None = None
    stage: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    data: bytes | None = None  # the bitstream, when the task asks for a decode check
    rec_sha256: str = ""
    note: str = ""  # e.g. non-deterministic encoder


def run_task(task: Task) -> Outcome | Refused:
    """Measure one job; never raises for codec failures."""
    if (refused := refusal(task)) is not None:
        return refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rgb = image(task.image.npy, task.image.image_hash)
            if task.task_model is not None:  # its metrics, by name (a spawned worker has not registered them)
                register_task_model(task.task_model)
            m, data, rec, note = measure(config(task.origin, task.options), rgb, task.quality, task.key,
                                         task.metrics, task.check_determinism, task.decode_device, task.image.name)
            outcome = Outcome(task, measurement=m, note=note)
            if task.check_decode:
                outcome.data, outcome.rec_sha256 = data, reconstruction_sha256(rec)
        except StageError as exc:
            outcome = Outcome(task, stage=exc.stage, error=str(exc))
        except Exception as exc:  # adapter loading and anything unexpected
            outcome = Outcome(task, stage="setup", error=f"{type(exc).__name__}: {exc}{error_location(exc)}")
    if not original_intact(task):
        outcome = Outcome(task, stage="encode", error=modified_input(task.label))
    outcome.warnings = _warnings(caught)
    return outcome


def original_intact(task: Task | SearchTask) -> bool:
    """Whether this worker's cached original of the task's image still holds its pixels.

    An adapter can write into it past the read-only view (through ``.base`` and re-enabling
    writes, or ctypes): then the cached copy is dropped, so the next job reloads the original
    from its file and no innocent codec is measured on damaged pixels.
    """
    rgb = _IMAGES.get(task.image.npy)
    if rgb is None or pixel_sha256(rgb) == task.image.image_hash:
        return True
    del _IMAGES[task.image.npy]
    return False


def modified_input(label: str) -> str:
    return (f"adapter {label!r} modified its input image (the original changed during the job); the worker's copy "
            "was dropped and is reloaded for the next job")


@dataclass
class DecodeCheckOutcome:
    task: DecodeCheckTask
    error: str = ""  # empty: the fresh decode equals the measured reconstruction


def run_decode_check(task: DecodeCheckTask) -> DecodeCheckOutcome | Refused:
    """Decode the bytes in this process, which never encoded: it must give the same image."""
    if (refused := refusal(task)) is not None:
        return refused
    shape = (task.image.height, task.image.width, 3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = as_rgb(decode_fresh(config(task.origin, task.options), task.data)[0], shape)
    except Exception as exc:
        return DecodeCheckOutcome(task, f"decoding the bytes in a fresh process failed: {type(exc).__name__}: {exc}")
    if reconstruction_sha256(rec) != task.expected_sha256:
        return DecodeCheckOutcome(task, "decoding the same bytes in a fresh process gave another image: the decoder "
                                        "does not reconstruct from the bitstream alone")
    return DecodeCheckOutcome(task)


@dataclass
class SearchOutcome:
    task: SearchTask
    chosen: dict[float, float]  # target bpp -> quality
    probes: dict[float, int]  # new quality -> bytes
    error: str = ""


def run_search(task: SearchTask) -> SearchOutcome | Refused:
    """Search every target of one image and codec (encodes only; every probe's size is kept)."""
    if (refused := refusal(task)) is not None:
        return refused
    sizes = dict(task.known)
    probes: dict[float, int] = {}

    def bpp_at(quality: float) -> float:
        quality = round(quality, 6)
        if quality not in sizes:
            rgb = read_only(image(task.image.npy, task.image.image_hash))
            encoded = config(task.origin, task.options).encode(rgb, quality, task.image.name)
            sizes[quality] = probes[quality] = len(encoded)
        return bits_per_pixel(sizes[quality], task.image.width, task.image.height)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grid = list(task.grid) if task.grid is not None else None
            chosen = {t: round(search_quality(bpp_at, t, grid, task.bounds), 6) for t in task.targets}
    except Exception as exc:
        return SearchOutcome(task, {}, probes, f"{type(exc).__name__}: {exc}{error_location(exc)}")
    if not original_intact(task):
        return SearchOutcome(task, {}, {}, modified_input(task.label))
    return SearchOutcome(task, chosen, probes)
