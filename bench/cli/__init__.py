"""Command line: ``python -m bench {codecs,datasets,run,worker,report,figure4,verify,tools,crops,train} ...``.

The top layer; its modules: this one (the parser and the commands), ``argtypes`` (numeric option
types), and the commands that are scripts of their own: ``train``, ``perf`` (``make perf``) and
``gpu_check``.

Only light modules are imported here: each command imports what it needs (pandas, matplotlib,
the selected codecs' libraries, torch) when it runs, so ``--help``, usage errors and ``datasets``
answer at once. User errors (``BenchError``) are printed once, in ``main``, with exit status 2;
``--debug`` shows their traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import BenchError
from .argtypes import count as _count
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .argtypes import timeout as _timeout

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
BD_METHODS = ("pchip", "akima", "cubic")  # = bench.analysis.METHODS (tested); analysis loads scipy, slowly
BD_BOOTSTRAP = 10_000  # = bench.analysis.BOOTSTRAP (tested)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _qualities(text: str) -> list[float]:
    """``5,10,95`` or ranges ``10..90/10``: finite numbers (argparse type)."""
    from ..adapters import AdapterError, parse_qualities

    values: list[float] = []
    try:
        for item in _csv(text):
            values += parse_qualities(item, "--qualities")
    except AdapterError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--qualities: ")) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def _bpp_targets(text: str) -> list[float]:
    """Positive finite bits per pixel, comma-separated (argparse type)."""
    try:
        values = [float(v) for v in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bpp values separated by commas, got {text!r}") from None
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"target bpp must be positive numbers, got {text!r}")
    return values


def _metrics(names: list[str] | None) -> tuple[str, ...]:
    from ..metrics import resolve_metrics

    return resolve_metrics(names)


# --- commands ------------------------------------------------------------------------------
def cmd_codecs(args: argparse.Namespace) -> int:
    from ..adapters import Catalog, Unavailable, native_quality, select

    configs, unavailable = select(Catalog(args.codecs_dir), None, device=args.device)
    rows: list = sorted([(c.name, c) for c in configs] + [(u.name, u) for u in unavailable], key=lambda r: r[0])
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, item in rows:
        if isinstance(item, Unavailable):
            print(f"{name:<{width}} {'':<12} unavailable: {item.reason}")
            continue
        a = item.adapter
        print(f"{name:<{width}} {a.family:<12} available")
        print(f"    version:     {item.version}")
        print(f"    description: {a.description}")
        options = [f"{k}={v} ({a.spec(k).describe()})" for k, v in item.options.items()]
        print(f"    options:     {', '.join(options) or '-'}")
        print(f"    qualities:   {','.join(str(native_quality(q)) for q in item.qualities)}")
        if a.quality_range is not None:
            lo, hi, step = (native_quality(v) for v in a.quality_range)
            print(f"    range:       {lo}..{hi}" + (f" in steps of {step}" if step else " (continuous)"))
        for key, value in item.info.items():
            print(f"    {key + ':':<12} {value}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from ..datasets import data_root, load_manifest, local_status, manifest_names

    print(f"data folder: {data_root()} (set BENCH_DATA to change)")
    names = ["sample", *manifest_names()]
    width = max(len(n) for n in names) + 2
    for name in names:
        description = ("colour photos shipped with scikit-image (no download)" if name == "sample"
                       else load_manifest(name).get("description", ""))
        print(f"{name:<{width}} {description}")
        print(f"{'':<{width}} {local_status(name)}")
    print("or any folder of images (searched recursively)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    scheduler = args.scheduler or os.environ.get("BENCH_SCHEDULER")
    if args.dry_run or not (scheduler or args.scheduler_file or args.cluster):
        return _run(args, None)
    from ..execution.cluster import connect, gpu_available, one_line_when_lost, wait_for_workers

    client = cluster = None
    try:
        client, cluster = connect(scheduler, args.scheduler_file, args.cluster, args.jobs, args.workers,
                                  args.adaptive, print)
        one_line_when_lost()
        wait_for_workers(client)
        if args.device == "auto":  # CUDA when any worker advertises a GPU
            args.device = "cuda" if gpu_available(client) else "cpu"
        return _run(args, client)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def absolute_paths(args: argparse.Namespace) -> Path:
    """Resolve every path of a run against the working directory now, and return it: an adapter's
    ``setup`` that changes the working directory cannot move the results or the dataset."""
    cwd = Path.cwd()
    if args.out:
        args.out = str(cwd / args.out)
    if Path(args.dataset).expanduser().is_dir():
        args.dataset = str(cwd / Path(args.dataset).expanduser())
    args.codecs_dir = [str(cwd / d) for d in args.codecs_dir]
    if os.environ.get("BENCH_DATA"):
        os.environ["BENCH_DATA"] = str(cwd / Path(os.environ["BENCH_DATA"]).expanduser())
    return cwd


def _run(args: argparse.Namespace, client) -> int:
    from ..adapters import Catalog, select
    from ..datasets import resolve_dataset

    cwd = absolute_paths(args)

    metrics = _metrics(_csv(args.metrics) if args.metrics else None)
    catalog = Catalog(args.codecs_dir)
    specs = _csv(args.codecs) if args.codecs else None
    known = set(catalog.names())
    published, left_out = published_specs(args.published or [], known)
    configs, skipped = select(catalog, specs, device=args.device, qualities=args.qualities)
    if published:
        more, more_skipped = select(catalog, published, device=args.device)
        configs, skipped = configs + more, skipped + more_skipped
    if specs is None:  # every available codec: say which built tools' codecs are left out
        skipped = [u for u in skipped if u.name != PUBLISHED_KIND]  # a kind that needs dir=, not a codec
        left_out += tool_lines(known, {c.name for c in configs})
    dataset = resolve_dataset(args.dataset, allow_download=not args.no_download)
    for line in left_out:
        print(line)
    for item in skipped:
        print(f"skipping codec {item.name}: unavailable ({item.reason})")
    if not configs:
        raise BenchError("no available codec to run")
    out = results_folder(args.out, args.dataset, dataset, cwd)
    targets = tuple(args.target_bpp or ())
    if args.dry_run:
        from ..pipeline.runner import plan_run

        plan = plan_run(dataset, configs, out, None, metrics, targets, not args.no_retry_failures)
        print("\n".join(plan.lines(args.workers or args.jobs)))
        return 0
    make_executor = None
    if client is not None:
        from ..execution.cluster import DaskExecutor

        make_executor = lambda: DaskExecutor(client)  # noqa: E731
    from ..pipeline.runner import run_benchmark

    report = run_benchmark(dataset, configs, out, jobs=args.jobs, progress=not args.quiet, metrics=metrics,
                           targets=targets, timeout_s=args.timeout, retry_failures=not args.no_retry_failures,
                           check_decode=args.decode_check, make_executor=make_executor,
                           decode_device=args.decode_device or "")
    return _run_summary(report, out, dataset.name, bool(args.codecs) and bool(skipped))


def results_folder(given: str | None, dataset_arg: str, dataset, cwd: Path = Path()) -> Path:
    """``--out``, else ``results/<dataset>`` (a folder dataset: plus a digest of its resolved path, so
    two folders of the same name never share results). Refuses a file, and a folder inside the
    dataset (its files would be measured as images by the next run)."""
    if given:
        out = Path(given)
    elif Path(dataset_arg).is_dir():
        import hashlib

        digest = hashlib.sha256(str(Path(dataset_arg).resolve()).encode()).hexdigest()[:8]
        out = cwd / "results" / f"{dataset.name}-{digest}"
    else:
        out = cwd / "results" / dataset.name
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    folders = {str(s.path.resolve().parent) for s in dataset.sources}
    if folders:
        root = Path(os.path.commonpath(sorted(folders)))
        if out.resolve().is_relative_to(root):
            raise BenchError(f"--out {out} is inside the dataset folder {root}: choose a results folder outside it "
                             "(its plots would be measured as images by the next run)")
    return out


PUBLISHED_KIND = "published"  # the codec kind that measures a folder of published bitstreams (published:dir=)
TOOL_CODECS = {"vvc": ("vvenc", "vvc")}  # codec -> (tool it needs, `make` target that builds it)


def published_specs(folders: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """``published:dir=FOLDER`` for each folder that exists, and one line for each folder left out and why."""
    specs, lines = [], []
    for folder in folders:
        if not folder:
            continue
        name = Path(folder).name
        if not Path(folder).is_dir():
            lines.append(f"{name}: {folder} not found (published bitstreams left out; set PUBLISHED=DIR or "
                         f"--published DIR)")
        elif PUBLISHED_KIND not in known:
            lines.append(f"{name}: left out, this checkout has no '{PUBLISHED_KIND}' codec kind")
        else:
            specs.append(f"{PUBLISHED_KIND}:dir={folder}")
    return specs, lines


def tool_lines(known: set[str], selected: set[str], built=None) -> list[str]:
    """``vvc: not built (make vvc)`` for a codec built from source that is not run and has no adapter to
    say why (an adapter that is present but unavailable says so itself)."""
    if built is None:
        from ..adapters.tools import built
    lines = []
    for codec, (tool, target) in TOOL_CODECS.items():
        if codec in selected or codec in known:
            continue
        lines.append(f"{codec}: not built (make {target})" if built(tool) is None
                     else f"{codec}: {tool} is built, but this checkout has no {codec} adapter")
    return lines


def cmd_worker(args: argparse.Namespace) -> int:
    """Start Dask workers for this project on this machine: CPU workers and one per GPU."""
    import subprocess

    from ..execution.cluster import worker_config_env

    cores = os.cpu_count() or 1
    base = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler, "--nthreads", "1"]
    commands = []
    dask_env = {**worker_config_env(), **os.environ}  # the user's own DASK_* settings win
    if args.jobs:
        env = {**dask_env, "BENCH_THREADS": str(args.threads or max(1, cores // args.jobs))}
        commands.append(([*base, "--nworkers", str(args.jobs), "--resources", "CPU=1", "--name", f"cpu-{os.getpid()}"],
                         env))
    for gpu in _csv(args.gpus or ""):
        env = {**dask_env, "CUDA_VISIBLE_DEVICES": gpu, "BENCH_THREADS": "2"}
        commands.append(([*base, "--nworkers", "1", "--resources", "GPU=1", "--name", f"gpu{gpu}-{os.getpid()}"],
                         env))
    if not commands:
        raise BenchError("nothing to start (--jobs 0 and no --gpus)")
    import signal

    terminated = []

    def stop(signum, frame) -> None:  # SIGTERM stops the Dask workers (and so their jobs) like Ctrl-C
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in commands]
    print(f"started {len(procs)} dask worker command(s) for {args.scheduler}: "
          f"{args.jobs} CPU worker(s), GPUs {args.gpus or 'none'}; Ctrl-C or SIGTERM stops them")
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _run_summary(report, out: Path, dataset: str, requested_skipped: bool) -> int:
    """Export, print the closing lines and return the exit code: 0 only when everything asked for is stored."""
    from ..pipeline.runner import format_failures
    from ..store import Store, StoreError
    from ..store.export_state import current_export, record_export

    export_error = None
    written: list[Path] = []
    try:
        with Store(out, writer=False) as store:
            fingerprint = store.content_fingerprint(dataset)
            written = current_export(out, fingerprint) or []
            if not written:
                from ..store.export import export_results

                written = export_results(store, dataset, out).paths
                record_export(out, fingerprint, written)
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


def cmd_figure4(args: argparse.Namespace) -> int:
    """``report`` with the Figure-4 default published curves when no ``--reference`` is given."""
    from ..report.figure4 import default_references

    if args.reference is None:
        files, line = default_references(args.reference_dir)
        print(line)
        args.reference = [str(f) for f in files]
    elif args.reference_dir:
        raise BenchError("give --reference FILE ... or --reference-dir DIR, not both")
    return cmd_report(args)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import build_report
    from ..store import Store

    with Store(args.results, writer=False) as store:
        if store.live_writer:
            print(f"note: a run (pid {store.live_writer}) is writing to {args.results}; this report shows a "
                  "consistent snapshot of what it has stored so far")
    try:
        written = build_report(args.results, anchor=args.anchor, references=args.reference or [],
                               method=args.method, bootstrap=args.bootstrap)
    except KeyError as exc:  # bench.analysis: the anchor has no complete curve for a metric
        raise BenchError(str(exc.args[0]) if exc.args else str(exc)) from None
    report = next(p for p in written if p.name == "report.html")
    print(f"wrote {len(written)} files in {args.results}/; open {report}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..report.verify import parse_percent, verify

    comparisons, text = verify(args.results, args.reference, args.as_codecs, args.qualities,
                               args.tolerance_db, parse_percent(args.tolerance_bpp))
    print(text)
    return 0 if all(c.ok for c in comparisons) else EXIT_INCOMPLETE


def cmd_tools(args: argparse.Namespace) -> int:
    from ..adapters import tools

    if args.action == "build":
        tools.build_group(args.tool, args.source)
        return 0
    for name in tools.RECIPES:
        folder = tools.built(name)
        print(f"{name:10} {folder if folder else 'not built (make ' + tools.RECIPES[name].group + ')'}")
    return 0


def cmd_crops(args: argparse.Namespace) -> int:
    from ..report.crops import build_crops, parse_box

    box = parse_box(args.box) if args.box else None
    path = build_crops(args.results, args.image, args.bpp, box, _csv(args.codecs) if args.codecs else None,
                       args.codecs_dir, force=args.force)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    train(args)
    return 0


# --- parser --------------------------------------------------------------------------------
Command = Callable[[str, str], argparse.ArgumentParser]  # adds a subcommand: (name, help) -> its parser


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per task, each added by its own function below."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of errors instead of one line")
    parser = argparse.ArgumentParser(
        prog="codec-bench" if Path(sys.argv[0]).name == "codec-bench" else "python -m bench",
        description="Side-by-side benchmark of conventional and learned image codecs.",
    )
    # Its own action (not the shared parent's, whose default stays SUPPRESS so a subcommand keeps it).
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors instead of one line")
    parser.set_defaults(interrupted="interrupted")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[debug])

    for add in (_listing_commands, _run_command, _worker_command, _report_commands, _verify_command,
                _tools_command, _crops_command, _train_command):
        add(command)
    return parser


def _codecs_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codecs-dir", action="append", default=[], metavar="DIR",
                   help="extra folder of codec adapter modules (repeatable)")


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="device of codecs that have one (learned codecs); auto (default) = cuda when torch "
                        "sees a GPU")


def _report_options(p: argparse.ArgumentParser, reference_help: str, reference_default: list | None) -> None:
    p.add_argument("results", metavar="DIR", help="results folder of a run (holds results.sqlite)")
    p.add_argument("--anchor", default="jpeg",
                   help="codec (or published curve) the others are compared against (default: %(default)s)")
    p.add_argument("--reference", nargs="*", default=reference_default, metavar="FILE", help=reference_help)
    p.add_argument("--method", default="pchip", choices=BD_METHODS,
                   help="BD interpolation shown in the tables (default: %(default)s)")
    p.add_argument("--bootstrap", type=_count, default=BD_BOOTSTRAP, metavar="N",
                   help="bootstrap resamples over images for the 95 %% intervals, and sign flips for p "
                        "(default: %(default)s; 0 = none)")


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the jobs on this Dask scheduler's workers, e.g. tcp://host:8786 (or $BENCH_SCHEDULER)")
    p.add_argument("--scheduler-file", metavar="FILE", help="Dask scheduler file (instead of --scheduler)")
    p.add_argument("--cluster", choices=["local", "slurm", "pbs", "sge"],
                   help="start a Dask cluster: local (--jobs worker processes, dashboard on loopback) or a "
                        "dask-jobqueue cluster configured by Dask's jobqueue configuration file")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="jobqueue workers to start (with --adaptive: the maximum); for --dry-run: workers to "
                        "estimate the wall time for")
    p.add_argument("--adaptive", action="store_true", help="scale the jobqueue cluster adaptively")


def _listing_commands(command: Command) -> None:
    """``codecs`` and ``datasets``: what is available here."""
    p = command("codecs", "list codecs: name, library version, options, default sweep, availability")
    _codecs_dir_option(p)
    _device_option(p)
    p.set_defaults(func=cmd_codecs)

    p = command("datasets", "list known datasets, whether each is present locally, and the data folder")
    p.set_defaults(func=cmd_datasets)


def _run_command(command: Command) -> None:
    """``run``: measure a dataset with codecs."""
    from ..metrics import DEFAULT_METRICS, METRICS

    p = command("run", "encode/decode/score a dataset with codecs; store and export results")
    p.add_argument("--dataset", default="kodak",
                   help="kodak (default), clic-pro-valid, clic-mobile-valid, sample, or a folder of images (recursive)")
    p.add_argument("--codecs", default=None, metavar="SPEC,...",
                   help="comma-separated codecs, each NAME or NAME:option=value[:...]; q= sets that codec's "
                        "qualities, as FROM..TO/STEP or Q1/Q2/..., e.g. "
                        "'jpeg:q=10..90/10,hevc:chroma=420:q=22..47/5' (default: all available codecs)")
    p.add_argument("--qualities", type=_qualities, default=None, metavar="Q,...",
                   help="quality values for every codec without q= (one scale: codecs whose range does not "
                        "hold them are refused), e.g. 10,50,90 or 10..90/10 (default: each codec's own sweep)")
    p.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores, %(default)s)")
    p.add_argument("--metrics", default=None, metavar="NAME,...",
                   help=f"comma-separated metrics (default: {','.join(DEFAULT_METRICS)}; "
                        f"also: {','.join(m for m in METRICS if m not in DEFAULT_METRICS)})")
    p.add_argument("--target-bpp", type=_bpp_targets, default=None, metavar="BPP,...",
                   help="also measure, per image and codec, the quality whose bpp is nearest each target "
                        "(e.g. 0.06,0.12,0.25,0.5,0.75); writes target_bpp.csv and target_bpp_summary.csv")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default: results/<dataset>; a folder dataset: results/<name>-<digest of its "
                        "path>)")
    _device_option(p)
    p.add_argument("--no-download", action="store_true", help="never download dataset files")
    p.add_argument("--timeout", type=_timeout, default=None, metavar="SECONDS",
                   help="limit per job; a job over it is a 'timeout' failure and its worker is replaced "
                        "(default: the adapter's TIMEOUT_S, else 600; 0 = no limit)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (measurements total, cached, to run, per codec) and an estimate of CPU/GPU "
                        "hours and wall time from stored timings; measure nothing")
    _cluster_options(p)
    p.add_argument("--no-retry-failures", action="store_true",
                   help="keep the failures of earlier runs instead of retrying them")
    p.add_argument("--decode-check", choices=["sample", "all", "off"], default="sample",
                   help="decode bitstreams again in a process that never encoded: one image per codec and "
                        "quality (sample, the default), every job (all) or none (off)")
    p.add_argument("--decode-device", default=None, metavar="DEVICE",
                   help="learned codecs also decode each bitstream on this torch device (cpu, cuda, cuda:1, ...) "
                        "and the report tabulates whether it gives the same image")
    p.add_argument("--published", action="append", default=[], metavar="DIR",
                   help="also measure the published bitstreams in DIR (codec published:dir=DIR), repeatable; a DIR "
                        "that does not exist is left out with one line (make bench: PUBLISHED=DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _codecs_dir_option(p)
    p.set_defaults(func=cmd_run, interrupted="interrupted: every finished measurement is saved; "
                                              "run the same command again to continue")


def _worker_command(command: Command) -> None:
    """``worker``: Dask workers for cluster runs."""
    p = command("worker", "start Dask workers for this project on this machine (CPU and GPU)")
    p.add_argument("scheduler", help="scheduler address, e.g. tcp://host:8786")
    p.add_argument("--jobs", type=_count, default=os.cpu_count() or 1,
                   help="CPU worker processes (default: all cores, %(default)s; 0 = none)")
    p.add_argument("--gpus", default=None, metavar="I,...",
                   help="comma-separated GPU indices: one worker process per GPU")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads per CPU worker process (default: cores / --jobs); lower it when this "
                        "machine runs other work, as more threads than cores make OpenMP spin")
    p.set_defaults(func=cmd_worker)


def _report_commands(command: Command) -> None:
    """``report`` and ``figure4``: tables, plots and the report from stored results."""
    p = command("report", "rebuild BD-rate tables, RD plots and report.md/.html from stored results")
    _report_options(p, "published CompressAI-format JSON curves to overlay and compare, labelled '(published)'", [])
    p.set_defaults(func=cmd_report)

    p = command("figure4", "the report, with the Conventional vs End2End view's published curves "
                           "(End2End milestones and VTM) added by default")
    _report_options(p, "published CompressAI-format JSON curves (default: the Figure-4 set, "
                      "paper-bmshj2018-factorized, paper-bmshj2018-hyperprior, paper-mbt2018, "
                      "compressai-cheng2020-attn_mse_cuda, paper-elic2022_mse and vtm.json, from --reference-dir)",
                   None)
    p.add_argument("--reference-dir", default=None, metavar="DIR",
                   help="folder of CompressAI's Kodak result files (default: ../shared/reference/compressai-kodak "
                        "beside the working directory or the checkout, when present)")
    p.set_defaults(func=cmd_figure4)


def _verify_command(command: Command) -> None:
    """``verify``: our curves against published ones."""
    p = command("verify", "compare our curves with published CompressAI-format curves, and codecs measured from "
                          "published bitstreams with their publisher's table; exit 0 if within tolerance, 1 if "
                          "not, 2 on usage errors")
    p.add_argument("results", metavar="DIR", help="results folder of a run (holds results.sqlite)")
    p.add_argument("--reference", nargs="*", default=[], metavar="FILE",
                   help="published CompressAI-format JSON curves (needed unless the run measured published "
                        "bitstreams, which are always checked: |Δbpp| < 1e-4, |ΔPSNR-RGB| < 0.01 dB per image)")
    p.add_argument("--as", dest="as_codecs", nargs="+", default=None, metavar="CODEC",
                   help="our codec for each reference file, in order (default: the file's stem or name)")
    p.add_argument("--qualities", type=_qualities, default=None, metavar="Q,...",
                   help="quality settings of reference files that do not list them (applied to files with exactly "
                        "that many points), e.g. 5,10,...,95 for CompressAI's jpeg.json and webp.json")
    p.add_argument("--tolerance-db", type=_positive_float, default=0.15,
                   help="max |PSNR-RGB difference| per point in dB (default: %(default)s)")
    p.add_argument("--tolerance-bpp", default="0.5%",
                   help="max |bpp difference| at the same quality setting (default: %(default)s)")
    p.set_defaults(func=cmd_verify)


def _tools_command(command: Command) -> None:
    """``tools``: external codec tools built from source."""
    p = command("tools", "build external codec tools from source into the per-user tool folder, or list them")
    p.add_argument("action", choices=["build", "list"],
                   help="build: build a tool unless it is built already; list: where each built tool is")
    p.add_argument("tool", nargs="?", default="vvc", choices=["vvc", "coolchic"],
                   help="vvc (vvenc and vvdec) or coolchic (Cool-chic's decoder); default: %(default)s")
    p.add_argument("--source", metavar="PATH",
                   help="source tarball or folder (default: $VVC_SRC / $COOLCHIC_SRC, else ../shared/src)")
    p.set_defaults(func=cmd_tools)


def _crops_command(command: Command) -> None:
    """``crops``: the rate-matched visual comparison."""
    p = command("crops", "rate-matched visual comparison: one crop from every codec near a bpp")
    p.add_argument("results", metavar="DIR", help="results folder of a run")
    p.add_argument("--image", help="image name (default: the first image)")
    p.add_argument("--bpp", type=_positive_float, default=0.25, help="target bits per pixel (default: %(default)s)")
    p.add_argument("--box", metavar="X,Y,W,H",
                   help="crop in pixels (default: the most detailed quarter-size window)")
    p.add_argument("--codecs", metavar="LABEL,...", help="comma-separated codec labels (default: all in the store)")
    p.add_argument("--force", action="store_true",
                   help="make the crops even when --bpp is outside every codec's measured range for the image")
    _codecs_dir_option(p)
    p.set_defaults(func=cmd_crops)


def _train_command(command: Command) -> None:
    """``train``: a CompressAI model for one λ."""
    from .train import add_arguments

    p = command("train", "train a CompressAI model for one λ into a checkpoint folder the adapters load")
    add_arguments(p)
    p.set_defaults(func=cmd_train, interrupted="interrupted; the last periodic checkpoint is kept")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # undecodable file names and adapter messages print escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(args.interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (sqlite3.Error, OSError) as exc:
        if args.debug or not storage_error(exc):
            raise
        print(f"error: {storage_message(exc, getattr(args, 'out', None) or getattr(args, 'results', None))}",
              file=sys.stderr)
        return EXIT_USAGE


def storage_error(exc: BaseException) -> bool:
    """A full disk, a read-only file system or a damaged store: the user's to fix, said in one line."""
    if isinstance(exc, sqlite3.Error):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def storage_message(exc: BaseException, folder: str | None) -> str:
    from ..store import DB_NAME, storage_problem

    return storage_problem(exc, Path(folder or ".") / DB_NAME)


if __name__ == "__main__":
    sys.exit(main())
