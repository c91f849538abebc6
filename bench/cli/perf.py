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
6. Metrics (``--section metrics`` runs it alone; see ``metrics_section``): the default metric set
   through ``compute_metrics`` against the libraries called one by one, side by side on JPEG q=50
   reconstructions (target >= 5x), the same for the opt-in metrics, and metric time against codec
   encode + decode time on a JPEG + WebP sweep (target <= 1x); both ratios are repeated at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from ..adapters import BUILTIN_CODECS_DIR, Adapter, discover, import_file, select
from ..datasets import resolve_dataset
from ..datasets.images import load_image
from ..pipeline.runner import default_jobs, run_benchmark

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
    from distributed import Client

    from ..execution.cluster import DaskExecutor
    from ..execution.dask_worker import local_cluster

    start = time.perf_counter()
    with local_cluster(jobs, None) as cluster, Client(cluster) as client:
        client.wait_for_workers(jobs)
        started = time.perf_counter() - start
        dask_wall, _ = time_ours(dataset, jobs, make_executor=lambda: DaskExecutor(client))
    pool_wall, _ = time_ours(dataset, jobs)
    print(f"Dask LocalCluster ({jobs} workers): {dask_wall:8.1f} s wall (+{started:.1f} s to start the cluster); "
          f"local pool -j {jobs}: {pool_wall:.1f} s -> {100 * (dask_wall / pool_wall - 1):+.1f} % (target <= +10 %)")


# --- metrics section ------------------------------------------------------------------------
METRIC_SWEEP = [5, 25, 50, 75, 95]  # a subset of SWEEP keeps the section short


def _library_default_set(ref, rec) -> None:
    """The default metrics computed by calling each library on its own, as a user script would:
    numpy PSNR (RGB and BT.709 luma), pytorch-msssim ms_ssim and ssim, piq haarpsi and gmsd."""
    import numpy as np
    import piq
    import torch
    from pytorch_msssim import ms_ssim, ssim

    diff = ref.astype(np.float64) - rec
    float(np.mean(diff * diff))
    luma = np.asarray((0.2126, 0.7152, 0.0722))
    diff_y = ref.astype(np.float64) @ luma - rec.astype(np.float64) @ luma
    float(np.mean(diff_y * diff_y))
    x, y = (torch.from_numpy(a.copy()).float().unsqueeze(0).permute(0, 3, 1, 2) for a in (ref, rec))
    with torch.no_grad():
        ms_ssim(x, y, data_range=255).item()
        ssim(x, y, data_range=255).item()
        piq.haarpsi(y, x, data_range=255.0).item()
        piq.gmsd(y, x, data_range=255.0).item()


def _library_opt_in(name: str, ref, rec) -> None:
    import torch

    if name == "ssimulacra2":
        from ssimulacra2 import compute_ssimulacra2

        from ..metrics import _png

        compute_ssimulacra2(_png(ref), _png(rec))
        return
    import piq

    x, y = (torch.from_numpy(a.copy()).float().unsqueeze(0).permute(0, 3, 1, 2) for a in (ref, rec))
    with torch.no_grad():
        {"vif": piq.vif_p, "fsim": piq.fsim}[name](y, x, data_range=255.0).item()


def _jpeg_pair(rgb, quality: int = 50):
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _side_by_side(first_is_library: bool, library, ours) -> tuple[float, float]:
    """Wall seconds of (library(), ours()), run in the order given (alternate it between calls)."""
    seconds = {}
    for side, run in ((("lib", library), ("ours", ours)) if first_is_library else (("ours", ours), ("lib", library))):
        start = time.perf_counter()
        run()
        seconds[side] = time.perf_counter() - start
    return seconds["lib"], seconds["ours"]


def metrics_section(dataset, opt_in_images: int = 6, device: str = "cpu") -> None:
    """Print the metric engine's speed against the libraries and against the codecs.

    All timings are taken in this process, side by side (the two sides alternate per image), so
    the ratios hold on a loaded machine even when the absolute times do not.
    """
    import torch

    from ..datasets.images import pixel_sha256
    from ..metrics import DEFAULT_METRICS, compute_metrics

    images = [load_image(s.path).rgb for s in dataset.sources]
    keys = [pixel_sha256(rgb) for rgb in images]
    pairs = [(rgb, _jpeg_pair(rgb)) for rgb in images]
    print(f"metrics: {len(images)} images against JPEG q=50, {torch.get_num_threads()} torch thread(s), "
          f"device {device}")
    _library_default_set(*pairs[0])  # warm-up: imports, allocator
    compute_metrics(*pairs[0], DEFAULT_METRICS, device=device)
    lib_s = ours_s = cached_s = 0.0
    per_metric: dict[str, float] = {}
    for i, ((ref, rec), key) in enumerate(zip(pairs, keys, strict=True)):
        lib, ours = _side_by_side(i % 2 == 0, partial(_library_default_set, ref, rec),
                                  partial(compute_metrics, ref, rec, DEFAULT_METRICS, ref_key=key, timings=per_metric,
                                          device=device))
        lib_s, ours_s = lib_s + lib, ours_s + ours
        start = time.perf_counter()  # again: the original's statistics are now cached, as in a sweep
        compute_metrics(ref, rec, DEFAULT_METRICS, ref_key=key, device=device)
        cached_s += time.perf_counter() - start
    n = len(pairs)
    print(f"  default set ({','.join(DEFAULT_METRICS)}): libraries one by one {1000 * lib_s / n:.1f} ms/image, "
          f"compute_metrics {1000 * ours_s / n:.1f} ms/image -> {lib_s / ours_s:.2f}x (target >= 5x)")
    print(f"  with the original's statistics cached (every further reconstruction of an image): "
          f"{1000 * cached_s / n:.1f} ms/image -> {lib_s / cached_s:.2f}x")
    print("  compute_metrics per metric (ms/image): "
          + ", ".join(f"{k} {1000 * v / n:.1f}" for k, v in per_metric.items()))
    _opt_in_metrics(pairs[:opt_in_images], device)
    from .perf_ctc import PERF_IMAGES, ctc_section, print_costs

    ctc_section(pairs[:PERF_IMAGES], _side_by_side)
    print_costs(pairs[:PERF_IMAGES])
    against_codecs = _metrics_against_codecs(images, keys, device)
    first = lib_s / ours_s
    print(f"  goals: (a) default set, first reconstruction: {first:.2f}x faster than the libraries (target >= 5x: "
          f"{'met' if first >= 5 else 'NOT met'}); (b) metrics {against_codecs:.2f}x the codec encode+decode time "
          f"(target <= 1x: {'met' if against_codecs <= 1 else 'NOT met'})")


def _opt_in_metrics(pairs: list, device: str) -> None:
    """The opt-in metrics' time against their libraries', side by side."""
    from ..metrics import compute_metrics

    for name in ("vif", "fsim", "ssimulacra2"):
        lib_s = ours_s = 0.0
        for i, (ref, rec) in enumerate(pairs):
            lib, ours = _side_by_side(i % 2 == 0, partial(_library_opt_in, name, ref, rec),
                                      partial(compute_metrics, ref, rec, (name,), device=device))
            lib_s, ours_s = lib_s + lib, ours_s + ours
        m = len(pairs)
        print(f"  {name} ({m} images): library {1000 * lib_s / m:.0f} ms/image, compute_metrics "
              f"{1000 * ours_s / m:.0f} ms/image -> {lib_s / ours_s:.2f}x")


def _metrics_against_codecs(images: list, keys: list[str], device: str) -> float:
    """The default metrics' time against the codecs' on a JPEG + WebP sweep (seconds, and the ratio, returned)."""
    import numpy as np

    from ..metrics import DEFAULT_METRICS, compute_metrics

    configs, _ = select([a for a in discover() if isinstance(a, Adapter)], ["jpeg", "webp"])
    codec_s: dict[str, float] = {}
    metric_s: dict[str, float] = {}
    for rgb, key in zip(images, keys, strict=True):
        for config in configs:
            for quality in METRIC_SWEEP:
                start = time.perf_counter()
                rec = np.asarray(config.decode(config.encode(rgb, quality)))
                mid = time.perf_counter()
                compute_metrics(rgb, rec, DEFAULT_METRICS, ref_key=key, device=device)
                end = time.perf_counter()
                codec_s[config.name] = codec_s.get(config.name, 0.0) + mid - start
                metric_s[config.name] = metric_s.get(config.name, 0.0) + end - mid
    total_codec, total_metric = sum(codec_s.values()), sum(metric_s.values())
    print(f"  JPEG + WebP sweep, qualities {','.join(map(str, METRIC_SWEEP))} (a subset of the 19-point sweep), "
          f"{len(images) * len(METRIC_SWEEP) * len(configs)} encodes:")
    for name in codec_s:
        print(f"    {name}: encode+decode {codec_s[name]:.1f} s, metrics {metric_s[name]:.1f} s -> "
              f"{metric_s[name] / codec_s[name]:.1f}x the codec time")
    print(f"    both: metrics {total_metric:.1f} s against encode+decode {total_codec:.1f} s -> "
          f"{total_metric / total_codec:.2f}x the codec time (target <= 1x)")
    return total_metric / total_codec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli.perf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--skip-compressai", action="store_true", help="only time our harness")
    parser.add_argument("--cli", action="store_true", help="only time the command line's start-up")
    parser.add_argument("--cluster", action="store_true", help="only time the sweep on a Dask LocalCluster vs the pool")
    parser.add_argument("--section", choices=("all", "harness", "metrics"), default="all",
                        help="run one section only (default: all); --cli = the CLI start-up only")
    parser.add_argument("--metric-threads", type=int, default=1,
                        help="torch threads for the metrics section (default 1, as a worker of a run with "
                             "--jobs = cores)")
    parser.add_argument("--metric-device", default="cpu", help="device for the metrics section (cpu, cuda[:n])")
    args = parser.parse_args(argv)
    if args.cli:
        print_cli_times()
        return 0
    if args.cluster:
        print_cluster_times(resolve_dataset(args.dataset), args.jobs)
        return 0
    if args.section == "metrics":
        import torch

        torch.set_num_threads(args.metric_threads)
        metrics_section(resolve_dataset(args.dataset), device=args.metric_device)
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
    if args.section == "all":
        import torch

        torch.set_num_threads(args.metric_threads)
        metrics_section(dataset, device=args.metric_device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
