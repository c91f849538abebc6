"""The commands: one ``cmd_<name>(args) -> exit status`` per subcommand, each importing what it needs
when it runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import BenchError

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def csv_list(text: str) -> list[str]:
    """``a, b,,c`` -> [a, b, c]."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _metrics(names: list[str] | None, tasks: list[str] | None = None) -> tuple[str, ...]:
    from ..metrics import resolve_metrics

    return resolve_metrics(names, tasks=tasks)


# --- commands ------------------------------------------------------------------------------
def cmd_metrics(args: argparse.Namespace) -> int:
    import importlib.metadata

    from ..metrics import METRICS, TASK_SETS, metric_set

    def library(name: str) -> str:
        if not name:
            return "closed form, computed here"
        if name.startswith("tool: "):
            return name.removeprefix("tool: ")
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} (not installed)"

    def definition(name: str) -> str:
        reason = METRICS[name].available()
        return METRICS[name].description + (f" [UNAVAILABLE here: {reason}]" if reason else "")

    rows = [(m.name, metric_set(m.name), "higher" if m.higher_is_better else "lower",
             m.unit or "-", library(m.library), definition(m.name)) for m in METRICS.values()]
    header = ("metric", "set", "better", "unit", "library", "definition")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    print("select with --metrics NAME,... or a set: 'default' (the default), 'ctc' (the JPEG AI test-condition set), "
          f"{', '.join(repr(t) for t in TASK_SETS)} or 'tasks' (machine tasks against the original's output; also "
          "--tasks); docs/metrics.md has the definitions")
    return 0


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

    metrics = _metrics(csv_list(args.metrics) if args.metrics else None, csv_list(args.tasks) if args.tasks else None)
    catalog = Catalog(args.codecs_dir)
    specs = csv_list(args.codecs) if args.codecs else None
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
        from ..pipeline.planning import plan_run

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

    from ..execution.dask_worker import worker_config_env

    cores = os.cpu_count() or 1
    base = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler, "--nthreads", "1"]
    commands = []
    dask_env = {**worker_config_env(), **os.environ}  # the user's own DASK_* settings win
    if args.jobs:
        env = {**dask_env, "BENCH_THREADS": str(args.threads or max(1, cores // args.jobs))}
        commands.append(([*base, "--nworkers", str(args.jobs), "--resources", "CPU=1", "--name", f"cpu-{os.getpid()}"],
                         env))
    for gpu in csv_list(args.gpus or ""):
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
    path = build_crops(args.results, args.image, args.bpp, box, csv_list(args.codecs) if args.codecs else None,
                       args.codecs_dir, force=args.force)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    train(args)
    return 0


# --- parser --------------------------------------------------------------------------------


