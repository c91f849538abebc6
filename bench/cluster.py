"""Running a benchmark on a Dask cluster (Dask distributed; dask-jobqueue for SLURM/PBS/SGE).

Dask does the scheduling, retries, work stealing, resources and the dashboard; this module only
turns the run's jobs into Dask tasks and their results back into store rows (the client is the
only writer of ``results.sqlite``).

* Each job is one Dask task with a deterministic key derived from what it measures, so the same
  job never runs twice at once. CPU jobs ask for the resource ``CPU=1``, CUDA jobs for ``GPU=1``:
  conventional codecs never occupy a GPU worker.
* Images travel as content (scattered once per image, verified by pixel hash on the worker),
  never as a path only the client can see.
* On the worker, each task runs in a child process of that worker (``bench.execution``): a codec
  that crashes or overruns ``--timeout`` is one ``crash``/``timeout`` row, while a worker that
  dies as a whole (machine lost, SIGKILL) has its tasks retried elsewhere by Dask; a task that
  kills workers again and again (Dask's ``allowed-failures``) is one ``crash`` row.
* Workers whose resolved codec versions (library versions, adapter code, binaries, weights)
  differ from the client's get no job of that codec, and the run says which worker and version.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

from .errors import BenchError
from .execution import POOLS, Executor, Job

RESOURCE = {"cpu": "CPU", "gpu": "GPU", "fresh": "CPU"}
IN_FLIGHT_PER_SLOT = 2
POLL_S = 2.0


class ClusterError(BenchError):
    """The cluster cannot be used (no scheduler, no suitable worker, scheduler lost)."""


@dataclass(frozen=True)
class TaskFailed:
    """Returned by a cluster task whose job crashed or overran its time in the worker's child process."""

    stage: str
    message: str


# --- worker side -------------------------------------------------------------------------
_ISOLATION: Executor | None = None


def run_isolated(func: Callable, task: Any, rgb, timeout_s: float | None, pool: str) -> Any:
    """On a Dask worker: run one job in a child process of this worker (kept between tasks)."""
    global _ISOLATION
    from .worker import run_with_image

    if _ISOLATION is None:
        # Dask's worker processes are daemonic, and multiprocessing refuses children to daemons. The
        # children here die with this worker anyway (parent-death signal), which is what daemon means.
        import multiprocessing

        multiprocessing.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
        _ISOLATION = Executor(1, threads=int(os.environ.get("BENCH_THREADS", "1")))
        _ISOLATION.prestart("fresh")  # the decode-check process starts while the first jobs run
    result, failure = _ISOLATION.run_one(Job(run_with_image, (func, task, rgb), timeout_s, pool))
    return TaskFailed(*failure) if failure else result


def worker_versions(codecs: list[tuple[str, str, dict[str, str]]]) -> dict[str, str]:
    """On a worker: label -> resolved version of each (label, origin, options), or ``error: ...``."""
    from .adapters import configure, load_origin

    out = {}
    for label, origin, options in codecs:
        try:
            out[label] = configure(load_origin(origin), dict(options)).version
        except Exception as exc:  # a worker that cannot even load the codec gets no job of it
            out[label] = f"error: {type(exc).__name__}: {exc}"
    return out


# --- client side -------------------------------------------------------------------------
def task_key(job: Job) -> str:
    """A deterministic Dask key from what the job measures."""
    task = job.task
    what = getattr(task, "key", None) or getattr(task, "ident", None)
    extra = getattr(task, "metrics", ()) or getattr(task, "targets", ())
    digest = hashlib.sha256(repr((job.func.__name__, what, extra, task.options)).encode()).hexdigest()[:24]
    return f"bench-{job.func.__name__.replace('_', '-')}-{digest}"


class DaskExecutor:
    """The ``Executor`` interface (submit, run) on a Dask cluster."""

    def __init__(self, client, allowed: dict[str, list[str] | None] | None = None):
        self.client = client
        self.allowed = allowed or {}  # codec label -> worker addresses allowed (None: any)
        self.pending: dict[str, deque[Job]] = {p: deque() for p in POOLS}
        self.images: dict[str, Any] = {}  # image hash -> scattered future, while jobs in flight need it
        self.image_users: Counter[str] = Counter()
        self._slots_cache: tuple[float, dict[str, int]] | None = None

    def submit(self, job: Job) -> None:
        self.pending[job.pool].append(job)

    def _slots(self) -> dict[str, int]:
        """Task slots per resource kind among the connected workers (asked at most every POLL_S seconds)."""
        now = time.monotonic()
        if self._slots_cache is None or now - self._slots_cache[0] > POLL_S:
            self._slots_cache = (now, self._count_slots())
        return self._slots_cache[1]

    def _count_slots(self) -> dict[str, int]:
        totals = {"CPU": 0.0, "GPU": 0.0}
        for info in self.client.scheduler_info(n_workers=-1)["workers"].values():
            for name, amount in (info.get("resources") or {}).items():
                if name in totals:
                    totals[name] += amount
        return {kind: int(v) for kind, v in totals.items()}

    def _image(self, task) -> Any:
        """The image as a future on every worker (broadcast: tasks are not pulled towards one worker).

        Only images of jobs in flight are kept on the workers; jobs come image by image within a
        codec, so an image is rarely sent twice.
        """
        ref = task.image
        if ref.image_hash not in self.images:
            import numpy as np

            [future] = self.client.scatter([np.load(ref.npy)], hash=False, broadcast=True)
            self.images[ref.image_hash] = future
        self.image_users[ref.image_hash] += 1
        return self.images[ref.image_hash]

    def _done_with_image(self, job: Job) -> None:
        digest = job.task.image.image_hash
        self.image_users[digest] -= 1
        if self.image_users[digest] <= 0:
            del self.image_users[digest]
            self.images.pop(digest, None)  # dropping the last reference frees it on the workers

    def _forget_lost_image(self, job: Job) -> None:
        future = self.images.get(job.task.image.image_hash)
        if future is not None and future.status != "finished":
            del self.images[job.task.image.image_hash]

    def _submit(self, job: Job):
        label = job.task.label
        return self.client.submit(run_isolated, job.func, job.task, self._image(job.task), job.timeout_s,
                                  "fresh" if job.pool == "fresh" else ("gpu" if job.pool == "gpu" else "cpu"),
                                  key=task_key(job), resources={RESOURCE[job.pool]: 1}, pure=False,
                                  workers=self.allowed.get(label), allow_other_workers=False)

    def run(self, on_result: Callable[[Job, Any], None], on_failure: Callable[[Job, str, str], None]) -> None:
        from concurrent.futures import CancelledError

        from distributed import wait
        from distributed.client import FutureCancelledError, FuturesCancelledError

        in_flight: dict = {}  # future -> job
        try:
            while any(self.pending.values()) or in_flight:
                slots = self._slots()
                for pool in POOLS:
                    kind = RESOURCE[pool]
                    if self.pending[pool] and slots[kind] == 0:
                        raise ClusterError(f"no connected worker advertises the {kind} resource needed by "
                                           f"{len(self.pending[pool])} job(s): start workers with `python -m bench "
                                           f"worker` (or `dask worker ... --resources {kind}=N`)")
                    limit = max(1, IN_FLIGHT_PER_SLOT * slots[kind])
                    while self.pending[pool] and sum(1 for j in in_flight.values() if RESOURCE[j.pool] == kind) < limit:
                        job = self.pending[pool].popleft()
                        in_flight[self._submit(job)] = job
                try:
                    done, _ = wait(list(in_flight), timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished yet: look at the workers again
                    continue
                except FuturesCancelledError:  # handled one by one below
                    done = {f for f in in_flight if f.status in ("cancelled", "error", "finished")}
                for future in done:
                    job = in_flight.pop(future)
                    self._done_with_image(job)
                    try:
                        result = future.result()
                    except (FutureCancelledError, CancelledError):
                        if self.client.status != "running":
                            raise ClusterError("lost the Dask scheduler; every finished measurement is saved: run "
                                               "the same command again to continue") from None
                        self._forget_lost_image(job)  # its only copy was on a worker that died
                        self.pending[job.pool].appendleft(job)
                        continue
                    except Exception as exc:
                        name = type(exc).__name__
                        stage = "crash" if name == "KilledWorker" else "setup"
                        on_failure(job, stage, f"{name}: {exc}")
                        continue
                    finally:
                        future.release()
                    if isinstance(result, TaskFailed):
                        on_failure(job, result.stage, result.message)
                    else:
                        on_result(job, result)
        except OSError as exc:
            raise ClusterError(f"lost the Dask scheduler ({exc}); every finished measurement is saved: run the "
                               "same command again to continue") from None
        finally:
            for future in in_flight:
                future.cancel()


def check_versions(client, configs, log: Callable[[str], None]) -> dict[str, list[str] | None]:
    """Compare each worker's resolved codec versions with the client's; label -> allowed workers."""
    specs = [(c.label, c.adapter.origin, c.key_options) for c in configs]  # each worker finds its own binaries
    answers = client.run(worker_versions, specs)
    allowed: dict[str, list[str] | None] = {}
    for config in configs:
        good = [addr for addr, versions in answers.items() if versions.get(config.label) == config.version]
        for addr, versions in sorted(answers.items()):
            if versions.get(config.label) != config.version:
                log(f"warning: worker {addr} gets no {config.label} job: its version is "
                    f"{versions.get(config.label)!r}, the client's {config.version!r}")
        allowed[config.label] = good if len(good) < len(answers) else None
        if not good:
            raise ClusterError(f"no worker has {config.label} in the client's version {config.version!r}")
    return allowed


def connect(scheduler: str | None, scheduler_file: str | None, cluster: str | None, jobs: int, workers: int | None,
            adaptive: bool, log: Callable[[str], None]):
    """A Dask client: to a scheduler address or file, or to a cluster this process starts."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("running on a cluster needs Dask: pip install 'codec-bench[cluster]'") from None
    try:
        if scheduler or scheduler_file:
            return Client(scheduler, scheduler_file=scheduler_file, timeout="30s"), None
        if cluster == "local":
            threads = max(1, (os.cpu_count() or 1) // jobs)
            started = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", resources={"CPU": 1},
                                   env={"BENCH_THREADS": str(threads)})
        else:
            started = _jobqueue_cluster(cluster, workers, adaptive)
        client = Client(started)
        log(f"Dask dashboard: {client.dashboard_link}")
        return client, started
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler {scheduler or scheduler_file or cluster}: {exc}") from None


def _jobqueue_cluster(kind: str | None, workers: int | None, adaptive: bool):
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError("--cluster slurm/pbs/sge needs dask-jobqueue: pip install 'codec-bench[cluster]'") from None
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
    if kind not in classes:
        raise ClusterError(f"unknown --cluster {kind!r} (local, {', '.join(classes)})")
    # Queue, cores, memory, walltime come from Dask's jobqueue configuration file (~/.config/dask/jobqueue.yaml).
    cluster = getattr(dask_jobqueue, classes[kind])(worker_extra_args=["--resources", "CPU=1"])
    if adaptive:
        cluster.adapt(minimum=1, maximum=workers or 10)
    else:
        cluster.scale(workers or 1)
    return cluster


def gpu_available(client) -> bool:
    """Whether any connected worker advertises the GPU resource."""
    return any((info.get("resources") or {}).get("GPU") for info in client.scheduler_info(n_workers=-1)["workers"].values())


def wait_for_workers(client, timeout_s: float = 60) -> None:
    """Dask's ``Client.wait_for_workers`` for one worker, with the run's error when none comes."""
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError:
        raise ClusterError(f"no Dask worker connected within {timeout_s:g} s") from None
