"""Planning: which jobs a run still needs, as typed tasks for the worker processes.

A task carries everything a worker needs (adapter origin, resolved options, the image as a
``.npy`` of its uint8 RGB pixels and their hash) and nothing that only the parent knows, and the
code identity it must be measured with (``bench.code_identity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .adapters import CodecConfig
from .code_identity import CodeIdentity, harness_files
from .metrics import METRICS
from .store import Ident, Key, Store
from .targets import quality_grid

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
class Task(CodecTask):
    """Measure one (image, codec configuration, quality)."""

    key: Key = field(default=None)  # type: ignore[assignment]
    metrics: tuple[str, ...] = ()
    metrics_only: bool = False  # measurement stored already: add the missing metrics only
    check_decode: bool = False  # also decode the bytes in a process that never encoded
    check_determinism: bool = False  # encode twice and compare
    decode_device: str = ""  # also decode the bytes on this device (--decode-device)

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


def codec_task_fields(config: CodecConfig, image: ImageRef) -> dict:
    code = CodeIdentity(harness_files(), config.adapter.code_files, config.version)
    return dict(origin=config.adapter.origin, options=config.options, label=config.label,
                family=config.adapter.family, image=image, code=code)


def ident_of(config: CodecConfig, image: ImageRef) -> Ident:
    return Ident(image.image_hash, config.name, config.options_key, config.version)


def wanted_qualities(config: CodecConfig, image: ImageRef, qualities: list[float] | None,
                     chosen: dict[tuple[str, str], list[float]]) -> list[float]:
    """Qualities to measure for one image and codec: the sweep, then target-bpp choices not in it."""
    wanted = list(config.qualities if qualities is None else qualities)
    return wanted + [q for q in chosen.get((image.image_hash, config.label), ()) if q not in wanted]


def plan_searches(store: Store, images: list[ImageRef], configs: list[CodecConfig], targets: tuple[float, ...]
                  ) -> tuple[list[SearchTask], dict[tuple[str, str], list[float]]]:
    """Target-bpp searches still to run, and the qualities already chosen per (image hash, label)."""
    chosen: dict[tuple[str, str], list[float]] = {}
    tasks = []
    for image in images:
        for config in configs:
            ident = ident_of(config, image)
            done = store.chosen_targets(ident)
            missing = tuple(t for t in targets if t not in done)
            chosen[(image.image_hash, config.label)] = sorted({done[t] for t in targets if t in done})
            if missing:
                grid, bounds = quality_grid(config.adapter.quality_range, config.qualities)
                tasks.append(SearchTask(**codec_task_fields(config, image), ident=ident, targets=missing,
                                        grid=tuple(grid) if grid else None, bounds=bounds, known=store.sizes(ident)))
    return tasks, chosen


def plan_measurements(store: Store, images: list[ImageRef], configs: list[CodecConfig],
                      qualities: list[float] | None, chosen: dict[tuple[str, str], list[float]],
                      metrics: tuple[str, ...], retry_failures: bool = True, check_decode: str = "sample",
                      decode_device: str = "") -> tuple[list[Task], int, int]:
    """The jobs still to run (missing measurements or metrics), how many are cached, how many kept failed.

    ``check_decode``: ``sample`` = the first job of each (codec configuration, quality) is also
    decoded in a fresh process; ``all``; ``off``. The first job of each codec configuration
    checks that encoding is deterministic. ``decode_device``: codecs with a device option also
    decode on it; stored measurements without that cross-device decode are measured again for it.
    """
    stored = store.stored_metrics()
    crossed = store.cross_device_keys(decode_device) if decode_device else set()
    failed = set() if retry_failures else store.failed_keys()
    tasks: list[Task] = []
    cached = kept_failed = 0
    decode_checked: set[tuple[str, float]] = set()
    determinism_checked: set[str] = set()
    for image in images:
        for config in configs:
            ident = ident_of(config, image)
            cross = decode_device if "device" in config.options else ""
            for quality in wanted_qualities(config, image, qualities, chosen):
                key = ident.at(quality)
                have = stored.get(key.as_tuple())
                missing = tuple(m for m in metrics if have is None or m not in have)
                if not missing and (not cross or key.as_tuple() in crossed):
                    cached += 1
                    continue
                if key.as_tuple() in failed:
                    kept_failed += 1
                    continue
                if have is not None:  # derived metrics need their inputs again
                    missing = tuple(m for m in metrics
                                    if m in missing or any(m in METRICS[x].requires for x in missing))
                new = have is None
                check = new and (check_decode == "all" or (check_decode == "sample"
                                                            and (config.label, key.quality) not in decode_checked))
                determinism = new and config.label not in determinism_checked
                if check:
                    decode_checked.add((config.label, key.quality))
                if determinism:
                    determinism_checked.add(config.label)
                tasks.append(Task(**codec_task_fields(config, image), key=key, metrics=missing, metrics_only=not new,
                                  check_decode=check, check_determinism=determinism, decode_device=cross))
    return tasks, cached, kept_failed


# Hints when nothing of a codec was measured yet (seconds per megapixel, encode + decode + metrics).
FAMILY_SECONDS_PER_MP = {"conventional": 1.0, "learned": 10.0}
CODEC_SECONDS_PER_MP = {"vtm": 1500.0, "hm": 300.0, "avif": 5.0, "jxl": 3.0}


def expected_seconds(task: CodecTask, measured: dict[tuple[str, str], float]) -> float:
    """Expected seconds of a job: stored timings of the same codec configuration, else a hint."""
    codec, options = task.key.codec, task.key.options  # type: ignore[attr-defined]
    per_mp = measured.get((codec, options))
    if per_mp is None:
        per_mp = CODEC_SECONDS_PER_MP.get(codec, FAMILY_SECONDS_PER_MP.get(task.family, 10.0))
    return per_mp * task.image.pixels / 1e6


def order_slowest_first(tasks: list[Task], store: Store) -> list[tuple[Task, float]]:
    """(task, expected seconds), longest jobs first, so that a slow straggler does not set the wall time."""
    measured = store.seconds_per_megapixel()
    return sorted(((t, expected_seconds(t, measured)) for t in tasks), key=lambda pair: -pair[1])
