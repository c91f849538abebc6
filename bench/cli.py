"""Command line: ``python -m bench {codecs,datasets,run,report,crops,train} ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .adapters import AdapterError, Unavailable, discover, native_quality, select
from .datasets import DatasetError, data_root, load_manifest, manifest_names, resolve_dataset
from .analysis import BOOTSTRAP, METHODS
from .export import export_results
from .metrics import DEFAULT_METRICS, METRICS, resolve_metrics
from .report import ReportError, build_report
from .runner import default_jobs, format_failures, run_benchmark
from .store import Store, StoreError

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _qualities(text: str) -> list[float]:
    try:
        return [float(q) for q in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def cmd_codecs(args: argparse.Namespace) -> int:
    try:
        configs, unavailable = select(discover(args.codecs_dir), None, device=args.device)
    except AdapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = [(c.name, c) for c in configs] + [(u.name, u) for u in unavailable]
    for name, item in sorted(rows, key=lambda r: r[0]):
        if isinstance(item, Unavailable):
            print(f"{name:<16} {'':<12} unavailable: {item.reason}")
            continue
        a = item.adapter
        print(f"{name:<16} {a.family:<12} available")
        print(f"    version:     {item.version}")
        print(f"    description: {a.description}")
        print(f"    options:     {', '.join(f'{k}={v}' for k, v in item.options.items()) or '-'}")
        print(f"    qualities:   {','.join(str(native_quality(q)) for q in item.qualities)}")
        for key, value in item.info.items():
            print(f"    {key + ':':<12} {value}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    print(f"data folder: {data_root()} (set BENCH_DATA to change)")
    print(f"{'sample':<20} colour photos shipped with scikit-image (no download)")
    for name in manifest_names():
        print(f"{name:<20} {load_manifest(name).get('description', '')}")
    print("or any folder of images (searched recursively)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .cluster import ClusterError

    client = cluster = None
    try:
        scheduler = args.scheduler or os.environ.get("BENCH_SCHEDULER")
        if not args.dry_run and (scheduler or args.scheduler_file or args.cluster):
            from .cluster import connect, gpu_available, wait_for_workers

            client, cluster = connect(scheduler, args.scheduler_file, args.cluster, args.jobs, args.workers,
                                      args.adaptive, print)
            wait_for_workers(client)
            if args.device == "auto":  # CUDA when any worker advertises a GPU
                args.device = "cuda" if gpu_available(client) else "cpu"
        return _run(args, client)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _run(args: argparse.Namespace, client) -> int:
    try:
        available = discover(args.codecs_dir)
        configs, skipped = select(available, _csv(args.codecs) if args.codecs else None, device=args.device)
        dataset = resolve_dataset(args.dataset, allow_download=not args.no_download)
        metrics = resolve_metrics(_csv(args.metrics) if args.metrics else None)
    except (AdapterError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for item in skipped:
        print(f"skipping codec {item.name}: unavailable ({item.reason})")
    if not configs:
        print("error: no available codec to run", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out or Path("results") / dataset.name)
    targets = tuple(args.target_bpp or ())
    if args.dry_run:
        from .runner import plan_run

        plan = plan_run(dataset, configs, out, args.qualities, metrics, targets, not args.no_retry_failures)
        print("\n".join(plan.lines(args.workers or args.jobs)))
        return 0
    make_executor = None
    if client is not None:
        from .cluster import DaskExecutor, check_versions

        allowed = check_versions(client, configs, print)
        make_executor = lambda: DaskExecutor(client, allowed)  # noqa: E731
    try:
        report = run_benchmark(dataset, configs, out, qualities=args.qualities, jobs=args.jobs,
                               progress=not args.quiet, metrics=metrics, targets=targets,
                               timeout_s=args.timeout, retry_failures=not args.no_retry_failures,
                               check_decode=args.decode_check, make_executor=make_executor)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _run_summary(report, out, dataset.name, bool(args.codecs) and bool(skipped))


def cmd_worker(args: argparse.Namespace) -> int:
    """Start Dask workers for this project on this machine: CPU workers and one per GPU."""
    import subprocess

    cores = os.cpu_count() or 1
    base = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler, "--nthreads", "1"]
    commands = []
    if args.jobs:
        env = {**os.environ, "BENCH_THREADS": str(max(1, cores // args.jobs))}
        commands.append((base + ["--nworkers", str(args.jobs), "--resources", "CPU=1", "--name", f"cpu-{os.getpid()}"],
                         env))
    for gpu in _csv(args.gpus or ""):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "BENCH_THREADS": "2"}
        commands.append((base + ["--nworkers", "1", "--resources", "GPU=1", "--name", f"gpu{gpu}-{os.getpid()}"],
                         env))
    if not commands:
        print("error: nothing to start (--jobs 0 and no --gpus)", file=sys.stderr)
        return EXIT_USAGE
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in commands]
    print(f"started {len(procs)} dask worker command(s) for {args.scheduler}: "
          f"{args.jobs} CPU worker(s), GPUs {args.gpus or 'none'}; Ctrl-C stops them")
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        return EXIT_INTERRUPTED


def _run_summary(report, out: Path, dataset: str, requested_skipped: bool) -> int:
    """Export, print the closing lines and return the exit code: 0 only when everything asked for is stored."""
    export_error = None
    written: list[Path] = []
    try:
        with Store(out, writer=False) as store:
            written = export_results(store, dataset, out).paths
    except (OSError, StoreError) as exc:
        export_error = str(exc)
    for message, count in report.warnings.items():
        print(f"warning ({count}x): {message}")
    print(f"{report.done} measured, {report.cached_jobs} cached, {report.failed} failed in {report.wall_s:.1f} s; "
          f"results in {out}/ ({', '.join(p.name for p in written[:2])}, "
          f"{sum(p.suffix == '.json' for p in written)} JSON)")
    if report.failures:
        print("failures per codec (retried on the next run):")
        print("\n".join(format_failures(report)))
    if report.kept_failures:
        print(f"{report.kept_failures} measurement(s) failed in an earlier run and were not retried "
              "(--no-retry-failures)")
    if report.skipped_images:
        print(f"{len(report.skipped_images)} image(s) skipped (unreadable)")
    if export_error:
        print(f"error: writing the result files failed ({export_error}); the previous files are left intact and "
              f"every measurement is in {out / 'results.sqlite'}", file=sys.stderr)
    if report.interrupted:
        print("interrupted: every finished measurement is saved; run the same command again to continue")
        return EXIT_TERMINATED if report.terminated else EXIT_INTERRUPTED
    if not report.images:
        print("error: no image could be loaded", file=sys.stderr)
    elif requested_skipped:
        print("error: a requested codec was skipped (unavailable)", file=sys.stderr)
    complete = report.complete and not requested_skipped and export_error is None
    return 0 if complete else EXIT_INCOMPLETE


def cmd_report(args: argparse.Namespace) -> int:
    try:
        with Store(args.results, writer=False) as store:
            if store.live_writer:
                print(f"note: a run (pid {store.live_writer}) is writing to {args.results}; this report shows a "
                      "consistent snapshot of what it has stored so far")
        written = build_report(args.results, anchor=args.anchor, references=args.reference, method=args.method,
                               bootstrap=args.bootstrap)
    except (ReportError, StoreError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = next(p for p in written if p.name == "report.html")
    print(f"wrote {len(written)} files in {args.results}/; open {report}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import VerifyError, parse_percent, verify

    try:
        comparisons, text = verify(args.results, args.reference, args.as_codecs, args.qualities,
                                   args.tolerance_db, parse_percent(args.tolerance_bpp))
    except (VerifyError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    return 0 if all(c.ok for c in comparisons) else 1


def cmd_crops(args: argparse.Namespace) -> int:
    from .crops import CropsError, build_crops, parse_box

    try:
        box = parse_box(args.box) if args.box else None
        path = build_crops(args.results, args.image, args.bpp, box, _csv(args.codecs) if args.codecs else None,
                           args.codecs_dir, force=args.force)
    except CropsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainError, train

    try:
        train(args)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; the last periodic checkpoint is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Side-by-side benchmark of conventional and learned image codecs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def codecs_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--codecs-dir", action="append", default=[], metavar="DIR",
                       help="extra folder of codec adapter modules (repeatable)")

    def device_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="device of codecs that have one (learned codecs); auto (default) = cuda when torch sees a GPU")

    p = sub.add_parser("codecs", help="list codecs: name, library version, options, default sweep, availability")
    codecs_dir(p)
    device_option(p)
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("datasets", help="list known datasets and the data folder")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("run", help="encode/decode/score a dataset with codecs; store and export results")
    p.add_argument("--dataset", default="kodak",
                   help="kodak (default), clic-pro-valid, clic-mobile-valid, sample, or a folder of images (recursive)")
    p.add_argument("--codecs", default=None,
                   help="comma-separated codecs, each NAME or NAME:option=value[:...], e.g. jpeg,hevc:chroma=420 "
                        "(default: all available)")
    p.add_argument("--qualities", type=_qualities, default=None,
                   help="comma-separated quality values for every codec (default: each codec's own sweep)")
    p.add_argument("--jobs", type=int, default=default_jobs(), help="worker processes (default: all cores, %(default)s)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated metrics (default: {','.join(DEFAULT_METRICS)}; "
                        f"also: {','.join(m for m in METRICS if m not in DEFAULT_METRICS)})")
    p.add_argument("--target-bpp", type=_qualities, default=None, metavar="BPP,...",
                   help="also measure, per image and codec, the quality whose bpp is nearest each target "
                        "(e.g. 0.06,0.12,0.25,0.5,0.75); writes target_bpp.csv and target_bpp_summary.csv")
    p.add_argument("--out", default=None, help="results folder (default: results/<dataset>)")
    device_option(p)
    p.add_argument("--no-download", action="store_true", help="never download dataset files")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="limit per job; a job over it is a 'timeout' failure and its worker is replaced "
                        "(default: the adapter's TIMEOUT_S, else 600; 0 = no limit)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (measurements total, cached, to run, per codec) and an estimate of CPU/GPU "
                        "hours and wall time from stored timings; measure nothing")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the jobs on this Dask scheduler's workers, e.g. tcp://host:8786 (or $BENCH_SCHEDULER)")
    p.add_argument("--scheduler-file", metavar="FILE", help="Dask scheduler file (instead of --scheduler)")
    p.add_argument("--cluster", choices=["local", "slurm", "pbs", "sge"],
                   help="start a Dask cluster: local (--jobs worker processes, dashboard on loopback) or a "
                        "dask-jobqueue cluster configured by Dask's jobqueue configuration file")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="jobqueue workers to start (with --adaptive: the maximum); for --dry-run: workers to "
                        "estimate the wall time for")
    p.add_argument("--adaptive", action="store_true", help="scale the jobqueue cluster adaptively")
    p.add_argument("--no-retry-failures", action="store_true",
                   help="keep the failures of earlier runs instead of retrying them")
    p.add_argument("--decode-check", choices=["sample", "all", "off"], default="sample",
                   help="decode bitstreams again in a process that never encoded: one image per codec and "
                        "quality (sample, the default), every job (all) or none (off)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    codecs_dir(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="start Dask workers for this project on this machine (CPU and GPU)")
    p.add_argument("scheduler", help="scheduler address, e.g. tcp://host:8786")
    p.add_argument("--jobs", type=int, default=default_jobs(), help="CPU worker processes (default: all cores)")
    p.add_argument("--gpus", default=None, help="comma-separated GPU indices: one worker process per GPU")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="rebuild BD-rate tables, RD plots and report.md/.html from stored results")
    p.add_argument("results", help="results folder of a run (holds results.sqlite)")
    p.add_argument("--anchor", default="jpeg", help="codec (or published curve) the others are compared against (default: %(default)s)")
    p.add_argument("--reference", nargs="*", default=[], metavar="FILE",
                   help="published CompressAI-format JSON curves to overlay and compare, labelled '(published)'")
    p.add_argument("--method", default="pchip", choices=METHODS, help="BD interpolation shown in the tables (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, metavar="N",
                   help="bootstrap resamples over images for the 95 %% intervals, and sign flips for p "
                        "(default: %(default)s; 0 = none)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("verify", help="compare our curves with published CompressAI-format curves; exit 0 if within "
                                      "tolerance, 1 if not, 2 on usage errors")
    p.add_argument("results", help="results folder of a run (holds results.sqlite)")
    p.add_argument("--reference", nargs="+", required=True, metavar="FILE", help="published CompressAI-format JSON curves")
    p.add_argument("--as", dest="as_codecs", nargs="+", default=None, metavar="CODEC",
                   help="our codec for each reference file, in order (default: the file's stem or name)")
    p.add_argument("--qualities", type=_qualities, default=None, metavar="Q,...",
                   help="quality settings of reference files that do not list them (applied to files with exactly "
                        "that many points), e.g. 5,10,...,95 for CompressAI's jpeg.json and webp.json")
    p.add_argument("--tolerance-db", type=float, default=0.15, help="max |PSNR-RGB difference| per point in dB "
                   "(default: %(default)s)")
    p.add_argument("--tolerance-bpp", default="0.5%", help="max |bpp difference| at the same quality setting "
                   "(default: %(default)s)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("crops", help="rate-matched visual comparison: one crop from every codec near a bpp")
    p.add_argument("results", help="results folder of a run")
    p.add_argument("--image", help="image name (default: the first image)")
    p.add_argument("--bpp", type=float, default=0.25, help="target bits per pixel (default: %(default)s)")
    p.add_argument("--box", help="crop x,y,w,h in pixels (default: the most detailed quarter-size window)")
    p.add_argument("--codecs", help="comma-separated codec labels (default: all in the store)")
    p.add_argument("--force", action="store_true",
                   help="make the crops even when --bpp is outside every codec's measured range for the image")
    codecs_dir(p)
    p.set_defaults(func=cmd_crops)

    from .train import add_arguments

    p = sub.add_parser("train", help="train a CompressAI model for one λ into a checkpoint folder the adapters load",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
