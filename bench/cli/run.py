"""``bench run``: its option handling (paths, metrics, the user's task model, codecs, results folder),
the run on local worker processes or a Dask cluster, and its closing lines and exit status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BenchError
from .commands import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_TERMINATED, csv_list

if TYPE_CHECKING:
    from ..model import TaskModelSpec


# --- metrics and the user's task model ------------------------------------------------------------
def check_task_model_options(args: argparse.Namespace, scheduler: str | None) -> None:
    """One-line refusals, before anything starts: ``--task-model`` and ``--task-weights`` go together, and
    not to a Dask cluster (its workers would need the files; the digest check would refuse other copies)."""
    if bool(args.task_model) != bool(args.task_weights):
        given, needed = (("--task-model", "--task-weights WEIGHTS") if args.task_model
                         else ("--task-weights", "--task-model FILE.py:FUNC"))
        raise BenchError(f"{given} needs {needed} too")
    if args.task_model and not args.dry_run and (scheduler or args.scheduler_file or args.cluster):
        raise BenchError("--task-model runs on this machine's worker processes only, not with --scheduler, "
                         "--scheduler-file or --cluster (every worker would need the model and weights files)")


def task_model(args: argparse.Namespace) -> TaskModelSpec | None:
    """The probed spec of ``--task-model FILE.py:FUNC --task-weights WEIGHTS`` (loads it once here), or None."""
    if not args.task_model:
        return None
    from ..metrics.own_task import probe
    from ..metrics.own_task_spec import task_model_spec

    return probe(task_model_spec(args.task_model, args.task_weights))


def run_metrics(args: argparse.Namespace, model: TaskModelSpec | None) -> tuple[str, ...]:
    """``--metrics`` (default: the default set) plus the sets of ``--tasks`` plus the task model's metrics."""
    from ..metrics import register_task_model, resolve_metrics

    own = register_task_model(model) if model is not None else ()
    names = csv_list(args.metrics) if args.metrics else ["default"]
    return resolve_metrics([*names, *own], tasks=csv_list(args.tasks) if args.tasks else None)


# --- the run --------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    scheduler = args.scheduler or os.environ.get("BENCH_SCHEDULER")
    check_task_model_options(args, scheduler)
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
    model = task_model(args)
    metrics = run_metrics(args, model)
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
                           decode_device=args.decode_device or "", task_model=model)
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
