"""The commands: one ``cmd_<name>(args) -> exit status`` per subcommand, each importing what it needs
when it runs (``run``, with its option handling, is in ``bench/cli/run.py``)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import BenchError

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def csv_list(text: str) -> list[str]:
    """``a, b,,c`` -> [a, b, c]."""
    return [t.strip() for t in text.split(",") if t.strip()]


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
          "--tasks); your own task model: run --task-model FILE.py:FUNC --task-weights WEIGHTS (metrics "
          "task-top1/task-kl/task-f1@DIGEST); docs/metrics.md has the definitions")
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


