"""``make perf``: harness speed against CompressAI's bench, harness overhead, HEIF container overhead.

1. Times our JPEG + WebP 19-point sweep with PSNR and MS-SSIM, CompressAI's metrics, on a dataset
   (fresh result store, ``--jobs N``) and
   ``python -m compressai.utils.bench {jpeg,webp} DIR -q 5,...,95 -j N`` for the same points,
   and prints the speed ratio (target: >= 2x).
2. Prints the harness overhead = wall time / (sum of encode + decode + metric seconds / jobs) - 1
   (target: <= 5 %).
3. Prints the mean HEIF container bytes (outside the HEVC payload) of the ``hevc`` adapter.
4. CLI start-up: wall times of ``python -m bench --help``, ``python -m bench run --codecs nosuch``
   and a fully cached ``run --dataset sample --codecs jpeg``, as ratios to ``python -c "import
   torch"`` (target: <= 0.3x each); ``--cli`` runs only this part.
5. The same JPEG + WebP sweep on a Dask ``LocalCluster`` of ``--jobs`` workers next to the local pool
   (``--cluster`` alone; target: at most 10 % slower on one machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .adapters import BUILTIN_CODECS_DIR, Adapter, discover, import_file, select
from .datasets import resolve_dataset
from .images import load_image
from .runner import default_jobs, run_benchmark

SWEEP: list[float] = list(range(5, 100, 5))
COMPRESSAI_METRICS = ("psnr-rgb", "ms-ssim-rgb")  # what CompressAI's bench computes


def time_ours(dataset, jobs: int, make_executor=None) -> tuple[float, float]:
    """(wall seconds, summed encode+decode+metric seconds) of a fresh JPEG+WebP sweep."""
    configs, _ = select([a for a in discover() if isinstance(a, Adapter)], ["jpeg", "webp"])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = run_benchmark(dataset, configs, out, qualities=SWEEP, jobs=jobs, progress=False, log=lambda *_: None,
                               metrics=COMPRESSAI_METRICS, make_executor=make_executor)
        wall = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"our run had {report.failed} failures")
    return wall, report.work_s


def time_compressai(folder: Path, jobs: int) -> float:
    """Wall seconds of CompressAI's bench for JPEG and WebP on the same sweep."""
    qps = ",".join(str(q) for q in SWEEP)
    start = time.perf_counter()
    for codec in ("jpeg", "webp"):
        cmd = [sys.executable, "-m", "compressai.utils.bench", codec, str(folder), "-q", qps, "-j", str(jobs)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        json.loads(result.stdout)  # a complete result was produced
    return time.perf_counter() - start


def heif_overhead(dataset, quality: int = 47) -> tuple[float, float]:
    """Mean (container bytes, file bytes) of hevc-coded images at one quality."""
    module = import_file(BUILTIN_CODECS_DIR / "hevc.py")
    overheads, sizes = [], []
    for source in dataset.sources:
        data = module.encode(load_image(source.path).rgb, quality)
        overheads.append(module.container_overhead_bytes(data))
        sizes.append(len(data))
    return sum(overheads) / len(overheads), sum(sizes) / len(sizes)


def wall_seconds(cmd: list[str], repeat: int = 3, expect: int = 0) -> float:
    """Median wall seconds of a command (run ``repeat`` times; its exit status must be ``expect``)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != expect:
            raise SystemExit(f"{' '.join(cmd)} exited {result.returncode}, expected {expect}:\n{result.stderr[-2000:]}")
    return statistics.median(times)


def cli_times(repeat: int = 3) -> list[tuple[str, float, float]]:
    """(command, median seconds, ratio to ``import torch``) for the CLI's quick paths."""
    python = sys.executable
    torch_s = wall_seconds([python, "-c", "import torch"], repeat)
    rows = [("python -c 'import torch'", torch_s, 1.0)]
    with tempfile.TemporaryDirectory() as out:
        run = [python, "-m", "bench", "run", "--dataset", "sample", "--codecs", "jpeg", "--quiet", "--out", out]
        subprocess.run(run, capture_output=True, check=True)  # fills the cache (not timed)
        for label, cmd, expect in (
            ("python -m bench --help", [python, "-m", "bench", "--help"], 0),
            ("python -m bench run --codecs nosuch", [python, "-m", "bench", "run", "--codecs", "nosuch"], 2),
            ("cached run --dataset sample --codecs jpeg", run, 0),
        ):
            seconds = wall_seconds(cmd, repeat, expect)
            rows.append((label, seconds, seconds / torch_s))
    return rows


def print_cli_times(repeat: int = 3) -> None:
    print(f"CLI start-up (median of {repeat}; target <= 0.3x of importing torch):")
    for label, seconds, ratio in cli_times(repeat):
        print(f"  {label:<45} {seconds:6.2f} s  {ratio:5.2f}x")


def print_cluster_times(dataset, jobs: int) -> None:
    """The same JPEG + WebP sweep through a Dask LocalCluster of ``jobs`` workers next to the local pool."""
    from distributed import Client, LocalCluster

    from .cluster import DaskExecutor

    start = time.perf_counter()
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"CPU": 1}, env={"BENCH_THREADS": str(max(1, default_jobs() // jobs))}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(jobs)
        started = time.perf_counter() - start
        dask_wall, _ = time_ours(dataset, jobs, make_executor=lambda: DaskExecutor(client))
    pool_wall, _ = time_ours(dataset, jobs)
    print(f"Dask LocalCluster ({jobs} workers): {dask_wall:8.1f} s wall (+{started:.1f} s to start the cluster); "
          f"local pool -j {jobs}: {pool_wall:.1f} s -> {100 * (dask_wall / pool_wall - 1):+.1f} % (target <= +10 %)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--skip-compressai", action="store_true", help="only time our harness")
    parser.add_argument("--cli", action="store_true", help="only time the command line's start-up")
    parser.add_argument("--cluster", action="store_true", help="only time the sweep on a Dask LocalCluster vs the pool")
    args = parser.parse_args(argv)
    if args.cli:
        print_cli_times()
        return 0
    if args.cluster:
        print_cluster_times(resolve_dataset(args.dataset), args.jobs)
        return 0

    dataset = resolve_dataset(args.dataset)
    folders = {s.path.parent for s in dataset.sources}
    n = len(dataset.sources)
    print(f"{dataset.name}: {n} images, JPEG + WebP x {len(SWEEP)} qualities = {2 * len(SWEEP) * n} encodes, "
          f"{args.jobs} job(s)")
    wall, work = time_ours(dataset, args.jobs)
    ideal = work / args.jobs
    print(f"ours:       {wall:8.1f} s wall; encode+decode+metrics {work:.1f} s -> "
          f"overhead {100 * (wall / ideal - 1):.1f} % (target <= 5 %)")
    if not args.skip_compressai:
        if len(folders) != 1:
            raise SystemExit("CompressAI's bench needs all images in one folder")
        theirs = time_compressai(folders.pop(), args.jobs)
        print(f"CompressAI: {theirs:8.1f} s wall (python -m compressai.utils.bench, same points, -j {args.jobs})")
        print(f"speed-up:   {theirs / wall:8.2f}x (target >= 2x)")
    container, size = heif_overhead(dataset)
    print(f"HEIF container overhead of hevc at quality 47: {container:.0f} bytes of {size:.0f} per image "
          f"({100 * container / size:.1f} % of the file)")
    print_cli_times()
    print_cluster_times(dataset, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
