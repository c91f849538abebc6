"""The run: dataset -> jobs in worker processes -> measurements in the store.

Owns the order of a run (images, target-bpp searches, measurements, decode checks), caching
(only missing rows are computed), the temporary image files workers read, and the summary.
Measuring one job is ``bench.pipeline.measure``; the worker side is ``bench.pipeline.worker``; which jobs are
needed is ``bench.pipeline.planning``; processes are ``bench.execution``.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import CodecConfig
from ..atomic import remove_partial_files
from ..code_identity import CodeMismatch
from ..datasets import Dataset
from ..execution import LocalExecutor, available_memory_bytes
from ..metrics import DEFAULT_METRICS
from ..model import DecodeCheckTask, Executor, ImageRef, Job, Log, Refused, Task, TaskModelSpec
from ..store import Store
from .inputs import check_images, image_folder, prepare_images
from .planning import order_slowest_first, plan_measurements, plan_searches
from .provenance import run_provenance
from .worker import DecodeCheckOutcome, Outcome, SearchOutcome, run_decode_check, run_search, run_task

DEFAULT_TIMEOUT_S = 600.0  # per job, unless the adapter declares TIMEOUT_S or --timeout is given



class Terminated(BaseException):
    """SIGTERM arrived: stop like Ctrl-C (workers stopped, temporary files removed)."""


@dataclass
class RunReport:
    images: list[ImageRef]
    skipped_images: list[str]
    total_jobs: int = 0
    cached_jobs: int = 0
    kept_failures: int = 0  # failed before and not retried (--no-retry-failures)
    done: int = 0
    failures: Counter = field(default_factory=Counter)  # (label, stage, error) -> count
    warnings: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    work_s: float = 0.0  # sum of encode + decode + metric seconds
    interrupted: bool = False
    terminated: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def complete(self) -> bool:
        """Every planned measurement is stored."""
        return (not self.interrupted and self.failed == 0 and self.kept_failures == 0
                and self.done + self.cached_jobs == self.total_jobs and bool(self.images))


@dataclass
class Execution:
    """How jobs run: a local process pool (default) or a given executor (e.g. a Dask cluster's)."""

    jobs: int
    timeouts: dict[str, float | None]  # codec label -> seconds per job (None: no limit)
    progress: bool = True
    log: Log = print
    make_executor: Callable[[], Executor] | None = None

    def executor(self) -> Executor:
        if self.make_executor is not None:
            return self.make_executor()
        budget = available_memory_bytes()
        return LocalExecutor(self.jobs, int(budget * 0.8) if budget else None)


def default_jobs() -> int:
    return os.cpu_count() or 1


# --- the run -----------------------------------------------------------------------------
@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread, so that clean-up runs."""
    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def timeout_for(config: CodecConfig, timeout_s: float | None) -> float | None:
    """Seconds a job may take: ``--timeout`` if given (0 = none), else the adapter's TIMEOUT_S, else the default."""
    if timeout_s is not None:
        return timeout_s or None
    return getattr(config.adapter, "timeout_s", None) or DEFAULT_TIMEOUT_S


def run_benchmark(
    dataset: Dataset,
    configs: list[CodecConfig],
    out_dir: str | Path,
    qualities: list[float] | None = None,
    jobs: int | None = None,
    progress: bool = True,
    log: Log = print,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    targets: tuple[float, ...] = (),
    timeout_s: float | None = None,
    retry_failures: bool = True,
    check_decode: str = "sample",
    make_executor: Callable[[], Executor] | None = None,
    decode_device: str = "",
    task_model: TaskModelSpec | None = None,
) -> RunReport:
    """Measure every (image, codec, quality) not yet in the store of ``out_dir``.

    A stored measurement that lacks some of ``metrics`` is encoded and decoded again and only the missing
    metrics are added (reconstructions are not stored). With ``targets`` (bpp), each image and codec is also
    measured at the quality whose bpp is nearest each target. Failures of earlier runs are retried unless
    ``retry_failures`` is false. ``make_executor``: where jobs run (default: local worker processes; see
    ``bench.execution.cluster`` for Dask). ``decode_device``: learned codecs also decode each bitstream on that
    device (the ``cross_device`` table). ``task_model``: the user's probed task model ``metrics`` name.
    """
    jobs = max(1, jobs or default_jobs())
    started = time.perf_counter()
    with Store(out_dir) as store, image_folder() as folder, _sigterm_as_exception():
        remove_partial_files(Path(out_dir))  # left by a killed run: this run holds the folder's lock now
        store.claim_dataset(dataset.name, dataset.description)
        report = RunReport([], [])
        try:
            images, records, report.skipped_images = prepare_images(dataset, folder, log)
            report.images = images
            check_images(configs, images)
            store.register_images(dataset.name, records)
            for config in configs:
                a = config.adapter
                store.register_codec(config.label, a.name, config.options_key, config.version, a.family,
                                     a.description, config.info)
                store.add_sweep(a.name, config.options_key, config.version,
                                config.qualities if qualities is None else qualities)
            store.set_meta("run", run_provenance(jobs))
            execution = Execution(jobs, {c.label: timeout_for(c, timeout_s) for c in configs}, progress, log,
                                  make_executor)
            chosen = _search_targets(store, images, configs, targets, execution, report) if targets else {}
            tasks, report.cached_jobs, report.kept_failures = plan_measurements(
                store, images, configs, qualities, chosen, metrics, retry_failures, check_decode, decode_device,
                task_model)
            report.total_jobs = len(tasks) + report.cached_jobs + report.kept_failures
            log(f"{dataset.name}: {len(images)} images, {len(configs)} codec(s), {report.total_jobs} measurements "
                f"({report.cached_jobs} cached, {len(tasks)} to run) with {jobs} job(s)")
            _measure_all(store, order_slowest_first(tasks, store), report, execution)
        except KeyboardInterrupt:
            report.interrupted = True
        except Terminated:
            report.interrupted = report.terminated = True
    report.wall_s = time.perf_counter() - started
    return report


def _refusal_stops_the_run(on_result: Callable[[Job, Any], None]) -> Callable[[Job, object], None]:
    """A local worker refuses a job when the code on this machine changed since the run started (a
    worker started later runs other code): the run stops; every finished measurement is kept.
    (A cluster's executor runs refused jobs on other workers and never passes a ``Refused`` on.)"""
    def handle(job: Job, result: object) -> None:
        if isinstance(result, Refused):
            raise CodeMismatch(f"{result.message(job.task.label)}: the code changed since this run started; every "
                               "finished measurement is saved: run the same command again to continue")
        on_result(job, result)
    return handle


def _progress_bar(total: int, enabled: bool, label: str, unit: str = "job"):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit=unit, disable=not enabled or total == 0, dynamic_ncols=True,
                smoothing=0.05)


def _measure_all(store: Store, tasks: list[tuple[Task, float]], report: RunReport, execution: Execution) -> None:
    """Run the measurement tasks (with their expected seconds); a sampled job's row is stored only once
    its decode check passes."""
    executor = execution.executor()
    labels = sorted({t.label for t, _ in tasks})
    bar = _progress_bar(len(tasks), execution.progress, "measuring " + (
        ", ".join(labels) if len(labels) <= 3 else f"{len(labels)} codecs"))
    recorder = _Recorder(store, report, executor, execution.timeouts, bar)
    for task, seconds in tasks:
        executor.submit(Job(run_task, task, execution.timeouts[task.label], "gpu" if task.on_gpu else "cpu", seconds))
    try:
        executor.run(_refusal_stops_the_run(recorder.on_result), recorder.on_failure)
    finally:
        bar.close()


class _Recorder:
    """Stores what the executor returns: rows, failures, warnings; holds a sampled row until its
    fresh-process decode check passes, and discards a configuration whose decoder fails it."""

    def __init__(self, store: Store, report: RunReport, executor: Executor, timeouts: dict[str, float | None],
                 bar: Any):
        self.store, self.report, self.executor, self.timeouts, self.bar = store, report, executor, timeouts, bar
        self.waiting: dict[int, Outcome] = {}  # id(decode-check task) -> the measurement it verifies
        self.condemned: dict[tuple[str, str, str], str] = {}  # configurations whose decoder failed the check

    def fail(self, task: Task, stage: str, error: str) -> None:
        self.store.add_failure(task.key, task.image.name, stage, error)
        self.report.failures[(task.label, stage, error)] += 1

    def condemn(self, task: Task, error: str) -> None:
        """A decoder that does not decode from the bytes makes every row of its configuration wrong."""
        self.fail(task, "decode-not-from-bytes", error)
        config = task.key.ident.as_tuple()[1:]
        reason = f"another image of this codec configuration failed the decode check ({error})"
        self.condemned[config] = reason
        discarded = self.store.discard_configuration(*config, "decode-not-from-bytes", reason)
        if discarded:
            self.report.failures[(task.label, "decode-not-from-bytes", reason)] += discarded
            self.report.done -= min(self.report.done, discarded)

    def stored(self, outcome: Outcome) -> None:
        m = outcome.measurement
        assert m is not None
        reason = self.condemned.get(outcome.task.key.ident.as_tuple()[1:])
        if reason:
            self.fail(outcome.task, "decode-not-from-bytes", reason)
            return
        if outcome.task.metrics_only:
            self.store.add_metrics(outcome.task.key, m.metrics, m.metric_seconds, m.cross_device)
        else:
            self.store.add(m)
            self.report.work_s += sum(s for s in (m.encode_s, m.decode_s, m.metric_s) if s == s)  # NaN: not measured
        self.report.done += 1

    def on_result(self, job: Job, result: Outcome | DecodeCheckOutcome) -> None:
        if isinstance(result, DecodeCheckOutcome):
            verified = self.waiting.pop(id(job.task))
            if result.error:
                self.condemn(verified.task, result.error)
            else:
                self.stored(verified)
            return
        self.bar.update(1)
        self._note(result)
        if result.measurement is None:
            self.fail(result.task, result.stage, result.error)
        elif result.data is not None:  # sampled: its decode check runs in a fresh process first
            check = DecodeCheckTask(**result.task.codec_fields(), key=result.task.key, data=result.data,
                                    expected_sha256=result.rec_sha256)
            self.waiting[id(check)] = result
            self.executor.submit(Job(run_decode_check, check, self.timeouts[result.task.label], "fresh"))
        else:
            self.stored(result)

    def _note(self, outcome: Outcome) -> None:
        for message in outcome.warnings:
            self.report.warnings[message] += 1
        if outcome.note:
            self.report.warnings[outcome.note] += 1
            self.report.notes.append(outcome.note)
            self.store.add_codec_note(outcome.task.key.ident, outcome.note)

    def on_failure(self, job: Job, stage: str, error: str) -> None:
        if isinstance(job.task, DecodeCheckTask):
            outcome = self.waiting.pop(id(job.task))
            if stage == "worker-start":  # the harness's fault, not the codec's: nothing is condemned
                self.fail(outcome.task, "decode-check", error)
            else:
                self.condemn(outcome.task, f"the fresh-process decode failed: {error}")
            return
        assert isinstance(job.task, Task)  # _measure_all submits measurement and decode-check jobs only
        self.bar.update(1)
        self.fail(job.task, stage, error)


def _search_targets(store: Store, images: list[ImageRef], configs: list[CodecConfig], targets: tuple[float, ...],
                    execution: Execution, report: RunReport) -> dict[tuple[str, str], list[float]]:
    """Find (and store) per image and codec the quality nearest each target bpp.

    Returns {(image hash, codec label): [qualities to measure]}. Searches already stored are reused.
    A failed search is a failure of the run (``report.failures``, stage ``target-bpp search``).
    """
    tasks, chosen = plan_searches(store, images, configs, targets)
    if not tasks:
        return chosen
    log, timeouts = execution.log, execution.timeouts
    log(f"target bpp {', '.join(f'{t:g}' for t in targets)}: searching {len(tasks)} image x codec pair(s)")
    bar = _progress_bar(len(tasks), execution.progress, "target-bpp search", unit="search")

    def on_result(job: Job, outcome: SearchOutcome) -> None:
        bar.update(1)
        task = outcome.task
        if outcome.error:
            log(f"warning: target-bpp search failed for {task.label} on {task.image.name}: {outcome.error}")
            report.failures[(task.label, "target-bpp search", outcome.error)] += 1
        store.add_search(task.ident, outcome.probes, outcome.chosen)
        key = (task.image.image_hash, task.label)
        chosen[key] = sorted(set(chosen[key]) | set(outcome.chosen.values()))

    def on_failure(job: Job, stage: str, error: str) -> None:
        bar.update(1)
        log(f"warning: target-bpp search failed for {job.task.label} on {job.task.image.name}: {stage}: {error}")
        report.failures[(job.task.label, "target-bpp search", f"{stage}: {error}")] += 1

    executor = execution.executor()
    for task in tasks:
        # a search encodes up to ~8 times per target
        limit = timeouts[task.label]
        timeout = limit and limit * 8 * len(task.targets)
        executor.submit(Job(run_search, task, timeout, "gpu" if task.on_gpu else "cpu"))
    try:
        executor.run(_refusal_stops_the_run(on_result), on_failure)
    finally:
        bar.close()
    return chosen


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
