"""Running tasks in worker processes, one task per worker at a time.

The execution layer: this module (the local process pool, ``LocalExecutor``),
``cluster`` (the same interface on Dask: the client side) and ``dask_worker`` (what a Dask worker
runs). It runs jobs; what a job does is the pipeline's.

Because each worker runs one task at a time, the parent knows exactly which task a worker was
running when it died or overran its time: only that task fails (``crash`` or ``timeout``), the
worker is replaced, and nothing else in flight is lost. Three kinds of worker:

* ``cpu``: ``workers`` forked processes (fast start; the adapters are already imported);
* ``gpu``: one spawned process that owns the GPU (CUDA does not survive ``fork``);
* ``fresh``: one spawned process that never encodes, for decode-independence checks.

Concurrency is also limited by memory: a task starts only if the estimated peak memory of the
tasks running plus its own fits in the budget (one task always runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from ..model import Job

POOLS = ("cpu", "gpu", "fresh")
PR_SET_PDEATHSIG = 1
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
READY = "bench-worker-ready"  # a new worker's first message: its start-up is not part of any job's time


def init_worker(torch_threads: int) -> None:
    """In a new worker: die with the parent, leave Ctrl-C to the parent, share the cores."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's pipe closing ends the worker instead
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _large_allocations_from_the_heap()
    os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:
        pass


def _large_allocations_from_the_heap() -> None:
    """Keep image-sized buffers in the malloc heap instead of mmap/munmap per allocation.

    Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive thresholds:
    every float copy of an image is then a fresh mmap with page faults, making the metrics 2-3x
    slower (measured on Kodak). Fixed thresholds of 64 MiB (mmap) and 256 MiB (trim) undo that.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
        libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):  # not glibc
        pass


def _serve(conn: Connection, threads: int, environ: dict[str, str] | None = None,
           path: list[str] | None = None) -> None:
    """A worker's loop: receive (func, task), send func(task), until the pipe closes.

    ``environ`` and ``path``: the parent's environment and ``sys.path`` now (a forkserver child
    would otherwise have those of the moment the fork server started).
    """
    os.setpgid(0, 0)  # its own process group: a timeout or a cancel kills the job's children too (ffmpeg, vvencapp)
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    if path is not None:
        sys.path[:] = path
    init_worker(threads)
    conn.send(READY)
    while True:
        try:
            func, task = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(func(task))


def cpu_start_method() -> str:
    """``fork`` (fast; adapters already imported), unless this process has loaded torch: GNU OpenMP's
    thread pool does not survive fork, so workers then fork from a clean fork server instead."""
    if not sys.platform.startswith("linux"):
        return "spawn"
    return "forkserver" if "torch" in sys.modules else "fork"


@contextlib.contextmanager
def _main_script_hidden(hide: bool) -> Iterator[None]:
    """Start a spawned worker without re-running the caller's script in it.

    ``spawn`` imports the parent's ``__main__`` in the child; a user script that calls
    ``run_benchmark`` without an ``if __name__ == "__main__"`` guard would run again there.
    Workers need nothing from ``__main__`` (their target is ``_serve``).
    """
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__")
                             if hide and main and k in main.__dict__}
    if saved and main is not None:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class _Worker:
    def __init__(self, method: str, threads: int):
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["bench.pipeline.worker"])  # the jobs' module: forked workers have it loaded
        self.conn, child = ctx.Pipe()
        state = (dict(os.environ), list(sys.path)) if method != "fork" else (None, None)
        # typeshed types get_context(str) as BaseContext, which lacks Process; every real context has it
        self.proc = ctx.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child, threads, *state), daemon=True, name="bench-worker")
        with _main_script_hidden(method != "fork"):
            self.proc.start()
        child.close()
        self.job: Job | None = None
        self.ready = False
        self.deadline = float("inf")

    def start(self, job: Job) -> None:
        self.job = job
        self.deadline = float("inf")
        if self.ready:
            self._start_clock()
        self.conn.send((job.func, job.task))

    def _start_clock(self) -> None:
        timeout = self.job.timeout_s if self.job is not None else None
        self.deadline = time.monotonic() + timeout if timeout else float("inf")

    def became_ready(self) -> None:
        """The worker finished starting: the job's time limit starts now."""
        self.ready = True
        self._start_clock()

    def kill(self) -> None:
        """Kill the worker and every process it started (its process group), e.g. an external encoder."""
        if self.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def failure(self) -> tuple[str, str]:
        """(stage, message) of a worker that died: ``crash`` during a job, ``worker-start`` before it was ready."""
        if not self.ready:
            return "worker-start", f"the worker process could not start ({self.death()})"
        return "crash", f"{self.death()} while running this job"

    def death(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return f"the worker process {how}"


class LocalExecutor:
    """The ``Executor`` of one machine: runs jobs in worker processes; results and failures go to
    callbacks, which may add jobs."""

    def __init__(self, cpu_workers: int, memory_budget: int | None = None, threads: int | None = None):
        self.limits = {"cpu": max(1, cpu_workers), "gpu": 1, "fresh": 1}
        self.methods = {"cpu": cpu_start_method(), "gpu": "spawn", "fresh": "spawn"}
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.limits["cpu"])
        self.memory_budget = memory_budget
        self.pending: dict[str, deque[Job]] = {p: deque() for p in POOLS}
        self.idle: dict[str, list[_Worker]] = {p: [] for p in POOLS}
        self.busy: list[_Worker] = []
        self.started = 0

    def submit(self, job: Job) -> None:
        self.pending[job.pool].append(job)

    def prestart(self, pool: str) -> None:
        """Start one worker of ``pool`` now, so that its start-up overlaps other work."""
        self.idle[pool].append(_Worker(self.methods[pool], self.threads))

    def _running_memory(self) -> int:
        return sum(w.job.task.memory_bytes for w in self.busy if w.job is not None)

    def _fits(self, job: Job) -> bool:
        if self.memory_budget is None or not self.busy:
            return True
        return self._running_memory() + job.task.memory_bytes <= self.memory_budget

    def _dispatch(self) -> None:
        for pool in POOLS:
            queue = self.pending[pool]
            while queue:
                running = sum(1 for w in self.busy if w.job is not None and w.job.pool == pool)
                if running >= self.limits[pool] or not self._fits(queue[0]):
                    break
                worker = self.idle[pool].pop() if self.idle[pool] else _Worker(self.methods[pool], self.threads)
                self.started += 1
                worker.start(queue.popleft())
                self.busy.append(worker)

    def run(self, on_result: Callable[[Job, Any], None], on_failure: Callable[[Job, str, str], None],
            keep_workers: bool = False) -> None:
        """Run until no job is pending or running. ``on_failure(job, stage, message)``: crash or timeout.

        ``keep_workers``: leave idle workers running for a later ``run`` (their caches stay warm).
        """
        done = False
        try:
            while True:
                self._dispatch()
                if not self.busy:
                    if any(self.pending.values()):
                        continue
                    done = True
                    return
                timeout = max(0.0, min(w.deadline for w in self.busy) - time.monotonic())
                ready = set(wait([w.conn for w in self.busy] + [w.proc.sentinel for w in self.busy],
                                 timeout=None if timeout == float("inf") else timeout))
                now = time.monotonic()
                finished = []
                for worker in list(self.busy):
                    job = worker.job
                    assert job is not None
                    result, failure = None, None
                    if worker.conn in ready or worker.proc.sentinel in ready:
                        try:
                            if worker.conn.poll():
                                result = worker.conn.recv()
                                if isinstance(result, str) and result == READY:
                                    worker.became_ready()
                                    continue
                            else:
                                failure = worker.failure()
                        except (EOFError, OSError):
                            failure = worker.failure()
                    elif now >= worker.deadline:
                        failure = ("timeout", f"no result after {job.timeout_s:g} s (the limit per job; "
                                              "raise it with --timeout); the worker was stopped")
                    else:
                        continue
                    self.busy.remove(worker)
                    worker.job = None
                    if failure is None:
                        self.idle[job.pool].append(worker)
                    else:
                        worker.kill()
                    finished.append((job, result, failure))
                self._dispatch()  # the next jobs start before the results are stored
                for job, result, failure in finished:
                    if failure is None:
                        on_result(job, result)
                    else:
                        on_failure(job, *failure)
        finally:
            if not (done and keep_workers):
                self.shutdown()

    def run_one(self, job: Job) -> tuple[Any, tuple[str, str] | None]:
        """Run one job, keeping the workers: (result, None) or (None, (stage, message))."""
        outcome: list = [None, None]

        def on_result(_: Job, result: Any) -> None:
            outcome[0] = result

        def on_failure(_: Job, stage: str, message: str) -> None:
            outcome[1] = (stage, message)

        self.submit(job)
        self.run(on_result, on_failure, keep_workers=True)
        return outcome[0], outcome[1]

    def shutdown(self) -> None:
        """Stop every worker now (used at the end, on Ctrl-C and on SIGTERM)."""
        workers = self.busy + [w for pool in POOLS for w in self.idle[pool]]
        for worker in workers:
            worker.kill()
        self.busy = []
        self.idle = {p: [] for p in POOLS}


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None (no memory limit on concurrency)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
