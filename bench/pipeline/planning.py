"""Planning: which jobs a run still needs, as typed tasks for the worker processes.

A task carries everything a worker needs (adapter origin, resolved options, the image as a
``.npy`` of its uint8 RGB pixels and their hash) and nothing that only the parent knows, and the
code identity it must be measured with (``bench.code_identity``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..adapters import CodecConfig
from ..code_identity import harness_files
from ..datasets import Dataset
from ..metrics import DEFAULT_METRICS, METRICS
from ..model import CodecTask, CodeIdentity, Ident, ImageRef, Log, SearchTask, Task, TaskModelSpec
from ..store import Store
from .inputs import image_folder, prepare_images
from .targets import quality_grid


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
                      decode_device: str = "", task_model: TaskModelSpec | None = None
                      ) -> tuple[list[Task], int, int]:
    """The jobs still to run (missing measurements or metrics), how many are cached, how many kept failed.

    ``check_decode``: ``sample`` = the first job of each (codec configuration, quality) is also
    decoded in a fresh process; ``all``; ``off``. The first job of each codec configuration
    checks that encoding is deterministic. ``decode_device``: codecs with a device option also
    decode on it; stored measurements without that cross-device decode are measured again for it.
    ``task_model``: the user's task model that ``metrics`` name (``task-*@<digest>``), which its jobs carry.
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
                                  check_decode=check, check_determinism=determinism, decode_device=cross,
                                  task_model=task_model))
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


@dataclass
class Plan:
    """What a run would do (``run --dry-run``): counts per codec and an estimate of the cost."""

    images: int
    counts: dict[str, list[int]]  # codec label -> [total, cached, to run]
    searches: int
    cpu_s: float
    gpu_s: float
    longest_s: float

    def lines(self, workers: int, gpu_workers: int = 1) -> list[str]:
        total = [sum(c[i] for c in self.counts.values()) for i in range(3)]
        out = [f"{self.images} images; {total[0]} measurements: {total[1]} cached, {total[2]} to run"]
        width = max([len(label) for label in self.counts] + [5])
        out += [f"  {label:<{width}} {t:>6} total {c:>6} cached {r:>6} to run" for label, (t, c, r) in
                sorted(self.counts.items())]
        if self.searches:
            out.append(f"  plus {self.searches} target-bpp searches, then the measurements at the chosen qualities")
        wall = max(self.cpu_s / max(1, workers), self.gpu_s / max(1, gpu_workers), self.longest_s)
        out.append(f"estimate (stored timings per megapixel of the same codecs, else family hints): "
                   f"{self.cpu_s / 3600:.2f} CPU-hours, {self.gpu_s / 3600:.2f} GPU-hours; "
                   f"about {_duration(wall)} on {workers} CPU worker(s)"
                   + (f" and {gpu_workers} GPU worker(s)" if self.gpu_s else ""))
        return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def plan_run(dataset: Dataset, configs: list[CodecConfig], out_dir: str | Path, qualities: list[float] | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS, targets: tuple[float, ...] = (),
             retry_failures: bool = True, log: Log = print) -> Plan:
    """Plan a run without measuring or writing anything (the store, if any, is only read)."""
    with image_folder() as folder, tempfile.TemporaryDirectory(prefix="bench-plan-") as empty:
        images, _, _ = prepare_images(dataset, folder, log)
        db = Path(out_dir) / "results.sqlite"
        with (Store(out_dir, writer=False) if db.is_file() else Store(empty)) as store:
            searches, chosen = plan_searches(store, images, configs, targets) if targets else ([], {})
            tasks, _, _ = plan_measurements(store, images, configs, qualities, chosen, metrics, retry_failures, "off")
            measured = store.seconds_per_megapixel()
            counts = {c.label: [0, 0, 0] for c in configs}
            for task in tasks:
                counts[task.label][2] += 1
            for config in configs:  # cached (or kept failed) = wanted - to run
                counts[config.label][0] = sum(len(wanted_qualities(config, i, qualities, chosen)) for i in images)
                counts[config.label][1] = counts[config.label][0] - counts[config.label][2]
            seconds = [(expected_seconds(t, measured), t.on_gpu) for t in tasks]
    return Plan(len(images), counts, len(searches), sum(s for s, gpu in seconds if not gpu),
                sum(s for s, gpu in seconds if gpu), max((s for s, _ in seconds), default=0.0))
