"""Running a benchmark on a Dask cluster (Dask distributed; dask-jobqueue for SLURM/PBS/SGE).

Dask does the scheduling, retries, work stealing, resources and the dashboard; this module (the
client side) only turns the run's jobs into Dask tasks and their results back into store rows (the
client is the only writer of ``results.sqlite``); what runs on the workers is
``bench.execution.dask_worker``.

* Each Dask task runs one job, or a few short jobs of one codec configuration and image (see
  ``batch_size``), with a deterministic key derived from what they measure, so the same job never
  runs twice at once. CPU jobs ask for the resource ``CPU=1``, CUDA jobs for ``GPU=1``:
  conventional codecs never occupy a GPU worker.
* Images travel as content (scattered once per image, written to the worker's local directory,
  verified by pixel hash in the job's process), never as a path only the client can see.
* On the worker, each task runs in a child process of that worker (``bench.execution``): a codec
  that crashes or overruns ``--timeout`` is one ``crash``/``timeout`` row, while a worker that
  dies as a whole (machine lost, SIGKILL) has its tasks retried elsewhere by Dask; a task that
  kills workers again and again (Dask's ``allowed-failures``) is split into its jobs, and a job
  that does so on its own is one ``crash`` row.
* Every task carries the client's code identity (``bench.code_identity``): the worker resolves
  the codec's version itself (library, binaries, weights: the adapter's ``setup``, once per worker
  process and configuration) and its job process compares the harness and adapter files. A worker
  that differs refuses the task, the run says which worker and file, and the job runs on another
  worker; when no worker is left for it, the run ends with exit status 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..code_identity import CodeMismatch
from ..errors import BenchError
from ..model import Job, Log, Refused
from . import POOLS
from .dask_worker import TaskFailed, local_cluster, run_isolated, worker_config_env

RESOURCE = {"cpu": "CPU", "gpu": "GPU", "fresh": "CPU"}
IN_FLIGHT_PER_SLOT = 2  # Dask tasks in flight per worker slot
BATCH_S = 5.0  # expected seconds of work per Dask task when jobs are short (see DaskExecutor)
MAX_BATCH = 32
POLL_S = 2.0
WORKER_WAIT_S = 60.0  # how long pending jobs wait for a worker of their kind to (re)join (a nanny restart, a new node)


class ClusterError(BenchError):
    """The cluster cannot be used (no scheduler, no suitable worker)."""


class SchedulerLost(ClusterError):
    """The scheduler went away during the run: what finished is stored, the rest is not measured."""

    exit_status = 1

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"lost the Dask scheduler{f' ({detail})' if detail else ''}; every finished measurement "
                         "is saved: run the same command again to continue")


def task_key(job: Job) -> str:
    """A deterministic Dask key from what the job measures."""
    task = job.task
    what = getattr(task, "key", None) or getattr(task, "ident", None)
    extra = getattr(task, "metrics", ()) or getattr(task, "targets", ())
    digest = hashlib.sha256(repr((job.func.__name__, what, extra, task.options)).encode()).hexdigest()[:24]
    return f"bench-{job.func.__name__.replace('_', '-')}-{digest}"


def batch_key(jobs: list[Job]) -> str:
    """The Dask key of a batch: its job's key, or one derived from all its jobs' keys."""
    if len(jobs) == 1:
        return task_key(jobs[0])
    digest = hashlib.sha256("\n".join(task_key(j) for j in jobs).encode()).hexdigest()[:24]
    return f"bench-{jobs[0].func.__name__.replace('_', '-')}-batch-{digest}"


def _same_batch(a: Job, b: Job) -> bool:
    return (a.func, a.task.label, a.task.image.image_hash, a.timeout_s, a.pool) == \
        (b.func, b.task.label, b.task.image.image_hash, b.timeout_s, b.pool)


def batch_size(job: Job, pending: int, slots: int) -> int:
    """How many jobs like ``job`` one Dask task runs: about ``BATCH_S`` of expected work (at most
    ``MAX_BATCH`` jobs), and never so many that some of the ``slots`` would be left without work."""
    if not job.expected_s:
        return 1
    by_time = int(BATCH_S / job.expected_s)
    balance = math.ceil(pending / (IN_FLIGHT_PER_SLOT * max(1, slots)))
    return max(1, min(MAX_BATCH, by_time, balance))


class DaskExecutor:
    """The ``Executor`` interface (submit, run) on a Dask cluster.

    Short jobs of one codec configuration and image are grouped into one Dask task (see
    ``batch_size``): Dask's own cost per task, a few milliseconds of scheduler and client time,
    would otherwise be a noticeable part of jobs that take tens of milliseconds. Each job in a task
    still runs in its own child process and gets its own result or failure.

    A worker that refuses a codec's jobs (its code differs from the client's) gets none of them
    again; they run on the other workers (Dask's ``workers=`` restriction).
    """

    def __init__(self, client, log: Log = print):
        self.client = client
        self.log = log
        self.refused: dict[str, dict[str, str]] = {}  # codec label -> {worker address: reason}
        self.pending: dict[str, deque[Job]] = {p: deque() for p in POOLS}
        self.solo: set[int] = set()  # id() of jobs to run alone: their batch killed workers
        self.images: dict[str, Any] = {}  # image hash -> scattered future, while jobs in flight need it
        self.image_users: Counter[str] = Counter()
        self._workers_cache: tuple[float, dict[str, list[str]]] | None = None
        self._no_workers_since: dict[str, float] = {}  # resource kind -> when its last worker went

    def submit(self, job: Job) -> None:
        self.pending[job.pool].append(job)

    def _workers(self) -> dict[str, list[str]]:
        """Resource kind -> connected workers' addresses, one per task slot (asked at most every POLL_S seconds)."""
        now = time.monotonic()
        if self._workers_cache is None or now - self._workers_cache[0] > POLL_S:
            slots: dict[str, list[str]] = {"CPU": [], "GPU": []}
            for address, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
                for name, amount in (info.get("resources") or {}).items():
                    if name in slots:
                        slots[name] += [address] * int(amount)
            self._workers_cache = (now, slots)
        return self._workers_cache[1]

    def _slots(self) -> dict[str, int]:
        """Task slots per resource kind among the connected workers."""
        return {kind: len(addresses) for kind, addresses in self._workers().items()}

    def _worker_of_kind(self, kind: str, slots: int, pending: int) -> bool:
        """Whether a worker with ``kind`` slots is connected. Without one, jobs wait up to
        ``WORKER_WAIT_S`` seconds for one to join (a worker that a job killed is restarted by its
        nanny), then the run ends with ``ClusterError``."""
        if slots:
            self._no_workers_since.pop(kind, None)
            return True
        since = self._no_workers_since.setdefault(kind, time.monotonic())
        if time.monotonic() - since > WORKER_WAIT_S:
            raise ClusterError(f"no connected worker advertises the {kind} resource needed by {pending} job(s) "
                               f"(waited {WORKER_WAIT_S:g} s): start workers with `python -m bench worker` "
                               f"(or `dask worker ... --resources {kind}=N`)")
        return False

    def _allowed(self, job: Job) -> list[str] | None:
        """Workers that may run ``job`` (None: any): all but those that refused its codec."""
        refused = self.refused.get(job.task.label)
        if not refused:
            return None
        allowed = sorted({w for w in self._workers()[RESOURCE[job.pool]] if w not in refused})
        if not allowed:
            raise CodeMismatch(f"no connected worker has the client's code for {job.task.label}: " + "; ".join(
                f"worker {w}: {why}" for w, why in sorted(refused.items())) + "; every finished measurement is "
                "saved: give the workers the client's code, then run the same command again")
        return allowed

    def _refused(self, job: Job, refusal: Refused) -> None:
        """Run a refused job on another worker; say once per worker and codec why."""
        label = job.task.label
        if refusal.worker not in self.refused.setdefault(label, {}):
            self.refused[label][refusal.worker] = refusal.reason
            self.log(f"warning: {refusal.message(label)}; they run on other workers")
        self.pending[job.pool].appendleft(job)

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

    def _take(self, pool: str, slots: int) -> list[Job]:
        """The next batch of pending jobs of ``pool`` (consecutive jobs of one codec and image)."""
        queue = self.pending[pool]
        batch = [queue.popleft()]
        if id(batch[0]) not in self.solo:
            size = batch_size(batch[0], len(queue) + 1, slots)
            while queue and len(batch) < size and _same_batch(queue[0], batch[0]) and id(queue[0]) not in self.solo:
                batch.append(queue.popleft())
        return batch

    def _submit(self, jobs: list[Job]):
        first = jobs[0]
        return self.client.submit(run_isolated, first.func, [j.task for j in jobs], self._image(first.task),
                                  first.timeout_s, first.pool, key=batch_key(jobs),
                                  resources={RESOURCE[first.pool]: 1}, pure=False,
                                  workers=self._allowed(first), allow_other_workers=False)

    def run(self, on_result: Callable[[Job, Any], None], on_failure: Callable[[Job, str, str], None]) -> None:
        from distributed import wait
        from distributed.client import FuturesCancelledError

        in_flight: dict = {}  # future -> its batch of jobs
        try:
            while any(self.pending.values()) or in_flight:
                self._fill(in_flight)
                if not in_flight:  # waiting for workers to join
                    time.sleep(POLL_S)
                    continue
                try:
                    done, _ = wait(list(in_flight), timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished yet: look at the workers again
                    continue
                except FuturesCancelledError:  # handled one by one below
                    done = {f for f in in_flight if f.status in ("cancelled", "error", "finished")}
                for future in done:
                    self._finished(future, in_flight.pop(future), on_result, on_failure)
        except OSError as exc:
            raise SchedulerLost(str(exc)) from None
        finally:
            for future in in_flight:
                future.cancel()

    def _fill(self, in_flight: dict) -> None:
        """Submit pending batches up to ``IN_FLIGHT_PER_SLOT`` per connected worker slot of their kind."""
        slots = self._slots()
        for pool in POOLS:
            kind = RESOURCE[pool]
            if self.pending[pool] and not self._worker_of_kind(kind, slots[kind], len(self.pending[pool])):
                continue
            limit = max(1, IN_FLIGHT_PER_SLOT * slots[kind])
            while self.pending[pool] and sum(1 for b in in_flight.values() if RESOURCE[b[0].pool] == kind) < limit:
                batch = self._take(pool, slots[kind])
                in_flight[self._submit(batch)] = batch

    def _finished(self, future, batch: list[Job], on_result: Callable[[Job, Any], None],
                  on_failure: Callable[[Job, str, str], None]) -> None:
        """A finished Dask task: its jobs' results and failures, or its batch pending again (its worker
        was lost; a batch that killed workers is split to find the job that does)."""
        from concurrent.futures import CancelledError

        from distributed.client import FutureCancelledError

        self._done_with_image(batch[0])
        try:
            results = future.result()
        except (FutureCancelledError, CancelledError):
            if self.client.status != "running":
                raise SchedulerLost() from None
            self._forget_lost_image(batch[0])  # its only copy was on a worker that died
            self.pending[batch[0].pool].extendleft(reversed(batch))
            return
        except Exception as exc:
            name = type(exc).__name__
            if name == "KilledWorker" and len(batch) > 1:  # find the job that kills workers
                self.solo.update(id(j) for j in batch)
                self.pending[batch[0].pool].extendleft(reversed(batch))
                return
            for job in batch:
                on_failure(job, "crash" if name == "KilledWorker" else "setup", f"{name}: {exc}")
            return
        finally:
            future.release()
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, Refused):
                self._refused(job, result)
            elif isinstance(result, TaskFailed):
                on_failure(job, result.stage, result.message)
            else:
                on_result(job, result)


def connect(scheduler: str | None, scheduler_file: str | None, cluster: str | None, jobs: int, workers: int | None,
            adaptive: bool, log: Log):
    """A Dask client: to a scheduler address or file, or to a cluster this process starts."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("running on a cluster needs Dask: pip install 'codec-bench[cluster]'") from None
    try:
        if scheduler or scheduler_file:
            return Client(scheduler, scheduler_file=scheduler_file), None  # timeout: Dask's comm.timeouts.connect
        if cluster == "local":
            started = local_cluster(jobs, "127.0.0.1:0")
        else:
            started = _jobqueue_cluster(cluster, workers, adaptive)
        client = Client(started)
        log(f"Dask dashboard: {client.dashboard_link}")
        return client, started
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler {scheduler or scheduler_file or cluster}: {exc}") from None


class _LostConnectionLogs(logging.Filter):
    """Drops what Dask's client logs when its connection to the scheduler breaks for good: the
    tracebacks of the broken connection and its "Failed to reconnect" line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (OSError, asyncio.CancelledError)):
            return False
        return not (record.name == "distributed.client" and record.getMessage().startswith("Failed to reconnect"))


def one_line_when_lost() -> None:
    """Once connected (Dask imported, its loggers configured), for the rest of this process (a
    ``bench run`` with a cluster): a lost scheduler is the run's one line (``SchedulerLost``), not
    Dask's tracebacks of the broken connection first, which its client also logs after it was
    closed. Dask's other log lines stay."""
    names = [name for name in logging.Logger.manager.loggerDict if name.split(".")[0] in ("distributed", "tornado")]
    for handler in {h for name in ["", *names] for h in logging.getLogger(name).handlers}:
        if not any(isinstance(f, _LostConnectionLogs) for f in handler.filters):
            handler.addFilter(_LostConnectionLogs())


def _jobqueue_cluster(kind: str | None, workers: int | None, adaptive: bool):
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError("--cluster slurm/pbs/sge needs dask-jobqueue: pip install 'codec-bench[cluster]'") from None
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
    if kind not in classes:
        raise ClusterError(f"unknown --cluster {kind!r} (local, {', '.join(classes)})")
    # Queue, cores, memory, walltime come from Dask's jobqueue configuration file (~/.config/dask/jobqueue.yaml).
    import dask

    prologue = list(dask.config.get(f"jobqueue.{kind}.job-script-prologue", None) or [])
    prologue += [f"export {name}={value}" for name, value in worker_config_env().items()]
    cluster = getattr(dask_jobqueue, classes[kind])(worker_extra_args=["--resources", "CPU=1"],
                                                    job_script_prologue=prologue)
    if adaptive:
        cluster.adapt(minimum=1, maximum=workers or 10)
    else:
        cluster.scale(workers or 1)
    return cluster


def gpu_available(client) -> bool:
    """Whether any connected worker advertises the GPU resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return any((info.get("resources") or {}).get("GPU") for info in workers.values())


def wait_for_workers(client) -> None:
    """Dask's ``Client.wait_for_workers`` for one worker (``WORKER_WAIT_S``), with the run's error when none comes."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"no Dask worker connected within {WORKER_WAIT_S:g} s") from None
