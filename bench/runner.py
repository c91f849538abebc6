"""The harness: turns (image, codec, quality) jobs into stored measurements.

Owns timing (wall seconds around ``encode`` and ``decode`` only), size (bpp = bytes * 8 /
pixels, from the returned bytes), metrics, caching (only missing rows are computed) and
parallelism (a process pool; one row committed per finished job).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from collections import Counter, OrderedDict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .adapters import CodecConfig, load_origin
from .datasets import Dataset
from .images import ImageError, LoadedImage, load_image, pixel_sha256
from .metrics import DEFAULT_METRICS, METRICS, compute_metrics
from .provenance import run_provenance
from .store import Key, Measurement, Store


class StageError(Exception):
    """A job failed in one stage (encode, decode or metrics)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    """bpp = bytes * 8 / (width * height)."""
    return num_bytes * 8.0 / (width * height)


def _as_rgb(decoded, shape: tuple[int, ...]) -> np.ndarray:
    rec = np.asarray(decoded)
    if rec.dtype != np.uint8:
        raise StageError("decode", f"decoded dtype is {rec.dtype}, expected uint8")
    if rec.shape != shape:
        raise StageError("decode", f"decoded shape {rec.shape} differs from the original {shape}")
    return rec


def _is_cuda_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError"


def measure(config: CodecConfig, rgb: np.ndarray, quality: float, key: Key,
            metrics: tuple[str, ...] = DEFAULT_METRICS) -> Measurement:
    """Encode, decode and score one image; raises StageError naming the failing stage.

    Learned codecs are decoded twice: outputs that differ are a ``decode-mismatch`` failure. On
    CUDA out of memory the image is measured on the CPU instead, with a warning.
    """
    try:
        return _measure(config, rgb, quality, key, metrics)
    except StageError as exc:
        if not (config.device.startswith("cuda") and _is_cuda_oom(exc.__cause__)):
            raise
    warnings.warn(f"CUDA out of memory on a {rgb.shape[1]}x{rgb.shape[0]} image with {config.label}; "
                  "measured on the CPU instead", stacklevel=2)
    return _measure(replace(config, options={**config.options, "device": "cpu"}), rgb, quality, key, metrics)


def _measure(config: CodecConfig, rgb: np.ndarray, quality: float, key: Key, metric_names: tuple[str, ...]) -> Measurement:
    try:
        config.prepare(quality)
        start = time.perf_counter()
        data = config.encode(rgb, quality)
        encode_s = time.perf_counter() - start
    except Exception as exc:
        raise StageError("encode", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StageError("encode", f"encode returned {type(data).__name__}, expected bytes")
    data = bytes(data)
    try:
        start = time.perf_counter()
        decoded = config.decode(data)
        decode_s = time.perf_counter() - start
    except Exception as exc:
        raise StageError("decode", f"{type(exc).__name__}: {exc}") from exc
    rec = _as_rgb(decoded, rgb.shape)
    if config.adapter.family == "learned":
        try:
            again = _as_rgb(config.decode(data), rgb.shape)
        except Exception as exc:
            raise StageError("decode-mismatch", f"second decode of the same bytes failed: {type(exc).__name__}: {exc}") from exc
        if not np.array_equal(rec, again):
            diff = np.abs(rec.astype(np.int16) - again).max()
            raise StageError("decode-mismatch", f"two decodes of the same bytes differ (max |diff| {diff})")
    try:
        start = time.perf_counter()
        metrics = compute_metrics(rgb, rec, metric_names)
        metric_s = time.perf_counter() - start
    except Exception as exc:
        raise StageError("metrics", f"{type(exc).__name__}: {exc}") from exc
    height, width = rgb.shape[:2]
    return Measurement(
        key=key, bytes=len(data), bpp=bits_per_pixel(len(data), width, height), width=width, height=height,
        encode_s=encode_s, decode_s=decode_s, metric_s=metric_s, device=config.device, metrics=metrics,
    )


# --- worker side -------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    origin: str
    options: dict[str, str]
    quality: float
    image_file: str  # .npy of the converted uint8 RGB image
    image_name: str
    key: Key
    metrics: tuple[str, ...] = DEFAULT_METRICS
    metrics_only: bool = False  # measurement stored already: add the missing metrics only


_CONFIGS: dict[tuple[str, str], CodecConfig] = {}
_IMAGES: OrderedDict[str, np.ndarray] = OrderedDict()
_IMAGE_CACHE_SIZE = 4


def _init_worker(torch_threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:
        pass


def _image(path: str) -> np.ndarray:
    if path in _IMAGES:
        _IMAGES.move_to_end(path)
        return _IMAGES[path]
    rgb = np.load(path)
    _IMAGES[path] = rgb
    if len(_IMAGES) > _IMAGE_CACHE_SIZE:
        _IMAGES.popitem(last=False)
    return rgb


def _config(origin: str, options: dict[str, str]) -> CodecConfig:
    """The configuration in this worker (options come resolved from the parent; no setup)."""
    cache_key = (origin, repr(sorted(options.items())))
    if cache_key not in _CONFIGS:
        _CONFIGS[cache_key] = CodecConfig(load_origin(origin), options)
    return _CONFIGS[cache_key]


@dataclass
class Outcome:
    task: Task
    measurement: Measurement | None = None
    stage: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def run_task(task: Task) -> Outcome:
    """Run one job in the current process; never raises for codec failures."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config = _config(task.origin, task.options)
            measurement = measure(config, _image(task.image_file), task.quality, task.key, task.metrics)
            outcome = Outcome(task, measurement=measurement)
        except StageError as exc:
            outcome = Outcome(task, stage=exc.stage, error=str(exc))
        except Exception as exc:  # adapter loading and anything unexpected
            outcome = Outcome(task, stage="setup", error=f"{type(exc).__name__}: {exc}")
    outcome.warnings = sorted({str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))})
    return outcome


# --- parent side -------------------------------------------------------------------------
@dataclass
class RunReport:
    images: list[LoadedImage]
    skipped_images: list[str]
    total_jobs: int
    cached_jobs: int
    done: int = 0
    failures: Counter = field(default_factory=Counter)  # (label, stage, error) -> count
    warnings: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    work_s: float = 0.0  # sum of encode + decode + metric seconds
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def load_dataset_images(dataset: Dataset, log=print) -> tuple[list[LoadedImage], list[str]]:
    """Decode every image to 8-bit RGB; unreadable files are reported and skipped."""
    images, skipped = [], []
    for source in dataset.sources:
        try:
            image = load_image(source.path, source.name)
        except ImageError as exc:
            skipped.append(str(exc))
            log(f"warning: skipping image: {exc}")
            continue
        for note in image.conversions:
            log(f"warning: {source.path}: {note}")
        images.append(image)
    return images, skipped


def default_jobs() -> int:
    return os.cpu_count() or 1


def _label_of(task: Task, labels: dict[tuple[str, str], str]) -> str:
    return labels[(task.key.codec, task.key.options)]


def run_benchmark(
    dataset: Dataset,
    configs: list[CodecConfig],
    out_dir: str | Path,
    qualities: list[float] | None = None,
    jobs: int | None = None,
    progress: bool = True,
    log=print,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    targets: tuple[float, ...] = (),
) -> RunReport:
    """Measure every (image, codec, quality) not yet in the store of ``out_dir``.

    A stored measurement that lacks some of ``metrics`` is encoded and decoded again and only
    the missing metrics are added (reconstructions are not stored). With ``targets`` (bpp), each
    image and codec is also measured at the quality whose bpp is nearest each target.
    """
    jobs = max(1, jobs or default_jobs())
    started = time.perf_counter()
    images, skipped = load_dataset_images(dataset, log)
    with Store(out_dir) as store, tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        hashes = []
        for image in images:
            digest = pixel_sha256(image.rgb)
            hashes.append(digest)
            np.save(Path(tmp) / f"{digest}.npy", image.rgb)
        store.register_images(
            dataset.name,
            [(im.name, h, im.width, im.height, str(im.path), list(im.conversions)) for im, h in zip(images, hashes)],
        )
        for config in configs:
            a = config.adapter
            store.register_codec(config.label, a.name, config.options_key, config.version, a.family, a.description,
                                 config.info)
            store.add_sweep(a.name, config.options_key, config.version, qualities or config.qualities)
        store.set_meta("dataset", {"name": dataset.name, "description": dataset.description})
        store.set_meta("run", run_provenance(jobs))

        report = RunReport(images, skipped, total_jobs=0, cached_jobs=0)
        labels = {(c.name, c.options_key): c.label for c in configs}

        def record(outcome: Outcome) -> None:
            for message in outcome.warnings:
                report.warnings[message] += 1
            if outcome.measurement is not None and outcome.task.metrics_only:
                store.add_metrics(outcome.task.key, outcome.measurement.metrics)
                report.done += 1
            elif outcome.measurement is not None:
                store.add(outcome.measurement)
                m = outcome.measurement
                report.done += 1
                report.work_s += m.encode_s + m.decode_s + m.metric_s
            else:
                store.add_failure(outcome.task.key, outcome.task.image_name, outcome.stage, outcome.error)
                report.failures[(_label_of(outcome.task, labels), outcome.stage, outcome.error)] += 1

        try:
            chosen = _search_targets(store, images, hashes, configs, targets, tmp, jobs, progress, log) if targets else {}
            tasks, report.cached_jobs = _plan(store, images, hashes, configs, qualities, chosen, metrics, tmp)
            report.total_jobs = len(tasks) + report.cached_jobs
            log(f"{dataset.name}: {len(images)} images, {len(configs)} codec(s), {report.total_jobs} measurements "
                f"({report.cached_jobs} cached, {len(tasks)} to run) with {jobs} job(s)")
            bar = _progress_bar(len(tasks), progress)
            try:
                _execute(tasks, jobs, record, bar)
            finally:
                bar.close()
        except KeyboardInterrupt:
            report.interrupted = True
    report.wall_s = time.perf_counter() - started
    return report


def _plan(store: Store, images: list[LoadedImage], hashes: list[str], configs: list[CodecConfig],
          qualities: list[float] | None, chosen: dict, metrics: tuple[str, ...], tmp: str) -> tuple[list[Task], int]:
    """The jobs still to run (missing measurements or metrics), and how many are cached."""
    stored = store.stored_metrics()
    tasks, cached = [], 0
    for image, digest in zip(images, hashes):
        for config in configs:
            wanted = list(qualities or config.qualities)
            wanted += [q for q in chosen.get((digest, config.label), ()) if q not in wanted]
            for quality in wanted:
                key = Key(digest, config.name, config.options_key, config.version, float(quality))
                have = stored.get(key.as_tuple())
                missing = tuple(m for m in metrics if have is None or m not in have)
                if not missing:
                    cached += 1
                    continue
                if have is not None:  # derived metrics need their inputs again
                    missing = tuple(m for m in metrics if m in missing or any(m in METRICS[x].requires for x in missing))
                tasks.append(Task(config.adapter.origin, config.options, float(quality),
                                  str(Path(tmp) / f"{digest}.npy"), image.name, key, missing, have is not None))
    return tasks, cached


def _progress_bar(total: int, enabled: bool, unit: str = "job"):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not enabled or total == 0, dynamic_ncols=True, smoothing=0.05)


def _search_targets(store: Store, images: list[LoadedImage], hashes: list[str], configs: list[CodecConfig],
                    targets: tuple[float, ...], tmp: str, jobs: int, progress: bool, log) -> dict:
    """Find (and store) per image and codec the quality nearest each target bpp.

    Returns {(image hash, codec label): [qualities to measure]}. Searches already stored are reused.
    """
    from .targets import SearchOutcome, SearchTask, quality_grid, run_search

    chosen: dict[tuple[str, str], list[float]] = {}
    tasks = []
    for image, digest in zip(images, hashes):
        for config in configs:
            ident = (digest, config.name, config.options_key, config.version)
            done = store.chosen_targets(*ident)
            missing = tuple(t for t in targets if t not in done)
            chosen[(digest, config.label)] = sorted({done[t] for t in targets if t in done})
            if missing:
                grid, bounds = quality_grid(config.adapter.quality_range, config.qualities)
                tasks.append(SearchTask(config.adapter.origin, config.options, str(Path(tmp) / f"{digest}.npy"),
                                        image.name, config.label, image.pixels, missing,
                                        tuple(grid) if grid else None, bounds, store.sizes(*ident)))
    if not tasks:
        return chosen
    log(f"target bpp {', '.join(f'{t:g}' for t in targets)}: searching {len(tasks)} image x codec pair(s)")
    by_label = {c.label: c for c in configs}

    def record(outcome: SearchOutcome) -> None:
        task, config = outcome.task, by_label[outcome.task.label]
        digest = Path(task.image_file).stem
        if outcome.error:
            log(f"warning: target-bpp search failed for {task.label} on {task.image_name}: {outcome.error}")
        store.add_search(digest, config.name, config.options_key, config.version, outcome.probes, outcome.chosen)
        chosen[(digest, task.label)] = sorted(set(chosen[(digest, task.label)]) | set(outcome.chosen.values()))

    bar = _progress_bar(len(tasks), progress, unit="search")
    try:
        _execute(tasks, jobs, record, bar, worker=run_search,
                 crashed=lambda task: SearchOutcome(task, {}, {}, CRASH))
    finally:
        bar.close()
    return chosen


CRASH = "worker process died while this job was in flight"


def _on_gpu(options: dict[str, str]) -> bool:
    return options.get("device", "cpu").startswith("cuda")


def _execute(tasks: list, jobs: int, record, bar, worker=None, crashed=None) -> None:
    """Run tasks inline (one job) or in process pools: CUDA tasks in one spawned worker, the rest forked."""
    worker = worker or run_task
    gpu = [t for t in tasks if _on_gpu(t.options)]
    cpu = [t for t in tasks if not _on_gpu(t.options)]
    if gpu or (jobs > 1 and len(cpu) > 1):
        _run_pools([(cpu, jobs, "fork"), (gpu, 1, "spawn")], record, bar, worker, crashed)
        return
    for task in cpu:
        record(worker(task))
        bar.update(1)


def _pool(jobs: int, method: str) -> ProcessPoolExecutor:
    if method == "fork" and not sys.platform.startswith("linux"):
        method = "spawn"
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return ProcessPoolExecutor(jobs, mp_context=mp.get_context(method), initializer=_init_worker, initargs=(threads,))


def _run_pools(groups: list[tuple[list, int, str]], record, bar, worker, crashed=None) -> None:
    """Run task groups concurrently, each in its own process pool: (tasks, workers, start method).

    CUDA jobs get one spawned worker that owns the GPU while CPU jobs keep the forked pool. At
    most 2 jobs per worker are in flight. If a worker dies (e.g. a codec crashes the
    interpreter), its pool's jobs in flight are recorded as failures and the pool restarted.
    """
    crashed = crashed or (lambda task: Outcome(task, stage="crash", error=CRASH))
    groups = [(list(reversed(tasks)), jobs, method) for tasks, jobs, method in groups if tasks]
    pools = {i: _pool(jobs, method) for i, (_, jobs, method) in enumerate(groups)}
    in_flight: dict = {}  # future -> (group index, task)
    try:
        while any(pending for pending, _, _ in groups) or in_flight:
            broken = set()
            for i, (pending, jobs, _) in enumerate(groups):
                while pending and i not in broken and sum(1 for g, _ in in_flight.values() if g == i) < 2 * jobs:
                    task = pending.pop()
                    try:
                        in_flight[pools[i].submit(worker, task)] = (i, task)
                    except BrokenProcessPool:  # a worker died while we were recording
                        pending.append(task)
                        broken.add(i)
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED) if in_flight else (set(), set())
            for future in finished:
                i, task = in_flight.pop(future)
                try:
                    record(future.result())
                except BrokenProcessPool:
                    broken.add(i)
                    record(crashed(task))
                bar.update(1)
            for i in broken:
                for future, (g, task) in list(in_flight.items()):
                    if g == i:
                        del in_flight[future]
                        record(crashed(task))
                        bar.update(1)
                pools[i].shutdown(wait=False, cancel_futures=True)
                pools[i] = _pool(groups[i][1], groups[i][2])
    except KeyboardInterrupt:
        for pool in pools.values():
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        raise
    finally:
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def format_failures(report: RunReport) -> list[str]:
    """Per-codec failure counts with reasons."""
    by_codec: dict[str, list[tuple[str, str, int]]] = {}
    for (label, stage, error), count in report.failures.items():
        by_codec.setdefault(label, []).append((stage, error, count))
    lines = []
    for label, items in sorted(by_codec.items()):
        lines.append(f"  {label}: {sum(c for *_, c in items)} failed")
        for stage, error, count in sorted(items, key=lambda x: -x[2]):
            lines.append(f"    {count} x {stage}: {error}")
    return lines

