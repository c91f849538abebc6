"""The records every layer speaks: what is measured (images, codec identities, tasks), what a
measurement is (its key and values), how it runs (``Job``, the ``Executor`` protocol), what the
store holds of a codec (``StoredCodec``), and what analysis compares (curves, BD results).

Only data and the small methods that derive one field from another live here; no layer below
this one exists, so every module may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Log = Callable[[str], None]  # where a run's one-line messages go (print, a logger, a list's append)

Files = tuple[tuple[str, str], ...]  # (file name, SHA-256 of its bytes, 12 hex digits), sorted by name


# --- code identity: what a task must be measured with ---------------------------------------
@dataclass(frozen=True)
class CodeIdentity:
    """The code a task expects to be measured with (the client's)."""

    harness: Files
    adapter: Files
    version: str  # the codec's resolved version (library, binaries, weights; adapter code hash)


@dataclass(frozen=True)
class Refused:
    """A worker's answer to a task it will not run: its code differs from the task's."""

    reason: str  # e.g. "its harness file(s) bench/pipeline/measure.py differ from the client's"
    worker: str = ""  # a Dask worker's address; empty: a local worker process

    def message(self, label: str) -> str:
        who = f"worker {self.worker}" if self.worker else "a worker process of this run"
        return f"{who} refused the {label} jobs: {self.reason}"


# --- measurements: their keys and values -----------------------------------------------------
@dataclass(frozen=True)
class Ident:
    """One codec configuration on one image: everything of a measurement's key but the quality."""

    image_hash: str
    codec: str
    options: str  # canonical JSON
    version: str

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.image_hash, self.codec, self.options, self.version)

    def at(self, quality: float) -> Key:
        return Key(*self.as_tuple(), float(quality))


@dataclass(frozen=True)
class Key:
    """Identity of one measurement."""

    image_hash: str
    codec: str
    options: str  # canonical JSON
    version: str
    quality: float

    def as_tuple(self) -> tuple[str, str, str, str, float]:
        return (self.image_hash, self.codec, self.options, self.version, float(self.quality))

    @property
    def ident(self) -> Ident:
        return Ident(self.image_hash, self.codec, self.options, self.version)


@dataclass(frozen=True)
class CrossDevice:
    """The same bitstream decoded on another device: identical to the measured decode, or how far off.

    ``identical`` is None and ``error`` says why when the other device failed to decode.
    """

    encode_device: str
    decode_device: str
    identical: bool | None
    max_abs_diff: int | None = None  # pixel levels (0-255) against the measured decode
    psnr_rgb: float | None = None  # dB, the other device's decode against the original
    error: str = ""


@dataclass(frozen=True)
class Measurement:
    key: Key
    bytes: int
    bpp: float
    width: int
    height: int
    encode_s: float  # wall seconds; NaN = not measured (e.g. published bitstreams are not encoded here)
    decode_s: float
    metric_s: float
    device: str
    metrics: dict[str, float]
    metric_seconds: dict[str, float] = field(default_factory=dict)  # per metric (sums to about metric_s)
    host: str = ""  # host name of the machine that measured it
    machine: str = ""  # its CPU model (and GPU name on CUDA)
    metric_device: str = "cpu"  # where the metrics were computed
    cross_device: CrossDevice | None = None  # with --decode-device


@dataclass(frozen=True)
class ImageRecord:
    """An input image of a dataset as registered in the store."""

    name: str
    image_hash: str
    width: int
    height: int
    path: str
    conversions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredCodec:
    """A codec configuration as the store records it, at its current version (a row of ``codecs``)."""

    label: str  # the name it has in every table and plot: NAME, or NAME[options] when run with options
    codec: str  # the adapter's NAME
    options: str  # JSON of its resolved options
    version: str
    family: str  # conventional or learned
    description: str
    info: dict  # codec_info: chroma, parameters, kMAC/pixel, weights; source and manifest of published bitstreams


# --- tasks: what a worker process measures ---------------------------------------------------
BYTES_PER_PIXEL = {"conventional": 400, "learned": 2000}  # peak memory of one job, codec and metrics
BASE_JOB_BYTES = 300 * 2**20  # a worker's own footprint (interpreter, libraries)


@dataclass(frozen=True)
class ImageRef:
    """An input image as workers see it: its pixels in ``npy`` (uint8 H x W x 3) and their hash."""

    name: str
    image_hash: str
    width: int
    height: int
    npy: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class CodecTask:
    """What every kind of job has: which codec configuration, on which image."""

    origin: str
    options: dict[str, str]
    label: str
    family: str
    image: ImageRef
    code: CodeIdentity  # the client's: the worker refuses the task if its own differs

    def codec_fields(self) -> dict:
        """The fields of this class, to build another kind of task for the same codec and image."""
        return dict(origin=self.origin, options=self.options, label=self.label, family=self.family, image=self.image,
                    code=self.code)

    @property
    def on_gpu(self) -> bool:
        return self.options.get("device", "cpu").startswith("cuda")

    @property
    def memory_bytes(self) -> int:
        """Estimated peak memory of the job, from the image size and the codec family."""
        return BASE_JOB_BYTES + self.image.pixels * BYTES_PER_PIXEL.get(self.family, BYTES_PER_PIXEL["learned"])


@dataclass(frozen=True)
class TaskModelSpec:
    """The user's own task model (``run --task-model FILE.py:FUNC --task-weights WEIGHTS``), as every process
    loads it: absolute paths, the digest naming its metrics, and the kind of output it gives."""

    file: str  # absolute path of the Python file
    function: str  # FUNC(): a torch.nn.Module
    weights: str  # absolute path of the state dict
    digest: str  # SHA-256 of file, function name and weights, 8 hex digits (bench.metrics.own_task_spec)
    kind: str = ""  # classifier or detector, from its output on a probe image ("": not probed yet)


@dataclass(frozen=True)
class Task(CodecTask):
    """Measure one (image, codec configuration, quality)."""

    key: Key = field(default=None)  # type: ignore[assignment]
    metrics: tuple[str, ...] = ()
    metrics_only: bool = False  # measurement stored already: add the missing metrics only
    check_decode: bool = False  # also decode the bytes in a process that never encoded
    check_determinism: bool = False  # encode twice and compare
    decode_device: str = ""  # also decode the bytes on this device (--decode-device)
    task_model: TaskModelSpec | None = None  # the user's task model, when metrics name it (--task-model)

    @property
    def quality(self) -> float:
        return self.key.quality

    @property
    def on_gpu(self) -> bool:
        return super().on_gpu or self.decode_device.startswith("cuda")


@dataclass(frozen=True)
class SearchTask(CodecTask):
    """Find the quality nearest each target bpp for one image and codec configuration."""

    ident: Ident = field(default=None)  # type: ignore[assignment]
    targets: tuple[float, ...] = ()
    grid: tuple[float, ...] | None = None
    bounds: tuple[float, float] | None = None
    known: dict[float, int] = field(default_factory=dict)  # quality -> bytes, from earlier runs


@dataclass(frozen=True)
class DecodeCheckTask(CodecTask):
    """Decode a stored bitstream again in a process that never encoded; compare the result."""

    key: Key = field(default=None)  # type: ignore[assignment]
    data: bytes = b""
    expected_sha256: str = ""


# --- execution: jobs and the executors that run them ------------------------------------------
@dataclass
class Job:
    """One task to run in a worker process, and how (pool, time limit)."""

    func: Callable[[Any], Any]  # a module-level function run in the worker: func(task) -> result
    task: CodecTask  # what to measure (its estimated memory decides how many jobs run at once)
    timeout_s: float | None = None  # None or 0: no limit
    pool: str = "cpu"  # cpu, gpu or fresh (a process that never encoded, for decode checks)
    expected_s: float | None = None  # expected seconds, when known (a cluster groups short jobs)


class Executor(Protocol):
    """Where jobs run: ``bench.execution.LocalExecutor`` (this machine) or ``DaskExecutor`` (a cluster)."""

    def submit(self, job: Job) -> None:
        """Queue a job (callbacks may submit more while ``run`` runs)."""

    def run(self, on_result: Callable[[Job, Any], None], on_failure: Callable[[Job, str, str], None]) -> None:
        """Run until no job is pending or running; ``on_failure(job, stage, message)`` for a crash or timeout."""


# --- analysis: rate-distortion curves ----------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """One RD curve: bpp and one metric's values, point by point as measured (not sorted).

    (Not the codec's quality setting: that is the ``quality`` column of the result files.)"""

    label: str
    bpp: np.ndarray
    values: np.ndarray  # the metric's value at each point
    published: bool = False


@dataclass(frozen=True)
class BDResult:
    """One Bjøntegaard delta of a test curve against an anchor: ``value`` in % (BD-rate, negative =
    fewer bits) or in the metric's unit (BD-quality), or None when it cannot be computed, with the
    reason in ``note`` (e.g. too little overlap); a value may carry a note too (e.g. few points)."""

    value: float | None
    note: str = ""
