"""The worker side of a Dask run: what a Dask worker runs for a task (``run_isolated``: the task's jobs
in a child process of the worker, as in the local pool), the version a worker resolves itself
(``worker_version``), and the settings of workers the project starts (``WORKER_CONFIG``,
``local_cluster``). The client side is ``bench.execution.cluster``."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..model import Job, Refused
from . import LocalExecutor

# Settings for workers whose tasks only wait for a child process (where the jobs run): no
# statistical profiling of the waiting thread, and slower housekeeping loops. Dask's defaults
# (sampling every 10 ms, memory checks every 100 ms, event-loop ticks every 20 ms) take CPU from the
# jobs on cores the cluster shares with them.
WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "500ms",
}


def worker_config_env() -> dict[str, str]:
    """``WORKER_CONFIG`` as Dask's environment variables, for ``dask worker`` commands."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
            for key, value in WORKER_CONFIG.items()}


def local_cluster(jobs: int, dashboard_address: str | None):
    """A ``LocalCluster`` of ``jobs`` worker processes on loopback, each with the ``CPU`` resource."""
    import dask
    from distributed import LocalCluster

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with dask.config.set(WORKER_CONFIG):  # the nannies pass the configuration to their workers
        return LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=dashboard_address, resources={"CPU": 1},
                            env={"BENCH_THREADS": str(threads)})


@dataclass(frozen=True)
class TaskFailed:
    """Returned by a cluster task whose job crashed or overran its time in the worker's child process."""

    stage: str
    message: str


_ISOLATION: LocalExecutor | None = None
_LOCAL_IMAGES: OrderedDict[str, Path] = OrderedDict()  # image hash -> .npy file on this worker
LOCAL_IMAGE_FILES = 8  # image files kept per worker (its child process caches a few in memory)


def run_isolated(func: Callable, tasks: list, rgb, timeout_s: float | None, pool: str) -> list:
    """On a Dask worker: run jobs one by one, each in a child process of this worker (kept between
    tasks); one result, ``TaskFailed`` or ``Refused`` per job.

    The child reads the image from a file in the worker's local directory (written once per image),
    rather than receiving it through the pipe with every job.
    """
    global _ISOLATION
    from distributed import get_worker

    address = get_worker().address
    first = tasks[0]  # a batch's jobs share one codec configuration and image
    version = worker_version(first.origin, first.options)
    if version != first.code.version:
        return [Refused(f"its {first.label} version is {version!r}, the client's {first.code.version!r}",
                        address)] * len(tasks)
    if _ISOLATION is None:
        # Dask's worker processes are daemonic, and multiprocessing refuses children to daemons. The
        # children here die with this worker anyway (parent-death signal), which is what daemon means.
        import multiprocessing

        multiprocessing.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
        _ISOLATION = LocalExecutor(1, threads=int(os.environ.get("BENCH_THREADS", "1")))
        _ISOLATION.prestart("fresh")  # the decode-check process starts while the first jobs run
    npy = str(_local_image_file(tasks[0].image.image_hash, rgb))  # a batch's jobs share one image
    out: list[Any] = []
    for task in tasks:
        local = replace(task, image=replace(task.image, npy=npy))
        result, failure = _ISOLATION.run_one(Job(func, local, timeout_s, pool))
        if failure:
            out.append(TaskFailed(*failure))
        elif isinstance(result, Refused):
            out.append(replace(result, worker=address))
        else:  # every outcome names its task: give back the client's (its image path is the client's)
            out.append(replace(result, task=task))
    return out


def _local_image_file(image_hash: str, rgb) -> Path:
    """The image as a .npy file in this Dask worker's local directory (which Dask removes with the
    worker); the child process checks the pixel hash when it loads it."""
    path = _LOCAL_IMAGES.get(image_hash)
    if path is not None and path.exists():
        _LOCAL_IMAGES.move_to_end(image_hash)
        return path
    import numpy as np
    from distributed import get_worker

    folder = Path(get_worker().local_directory) / "bench-images"
    folder.mkdir(exist_ok=True)
    path = folder / f"{image_hash}.npy"
    with atomic_path(path) as tmp:
        np.save(tmp, rgb)
    _LOCAL_IMAGES[image_hash] = path
    while len(_LOCAL_IMAGES) > LOCAL_IMAGE_FILES:
        _LOCAL_IMAGES.popitem(last=False)[1].unlink(missing_ok=True)
    return path


_VERSIONS: dict[tuple[str, str], str] = {}  # (origin, key options) -> this worker's resolved version


def worker_version(origin: str, options: dict[str, str]) -> str:
    """On a worker: its own resolved version of a codec configuration (its library, binaries and
    weights: the adapter's ``setup`` runs here, once per worker process), or ``error: ...``."""
    from ..adapters import configure, load_origin

    key = (origin, repr(sorted(options.items())))
    if key not in _VERSIONS:
        try:
            adapter = load_origin(origin)
            keyed = {k: v for k, v in options.items() if k in adapter.key_options}  # it finds its own binaries
            _VERSIONS[key] = configure(adapter, keyed).version
        except Exception as exc:  # a worker that cannot even load the codec runs none of its jobs
            _VERSIONS[key] = f"error: {type(exc).__name__}: {exc}"
    return _VERSIONS[key]


