"""The argument parser: one function per subcommand (``build_parser``), and the option types that
parse lists (codecs, qualities, target bit rates)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .argtypes import count as _count
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .argtypes import timeout as _timeout
from .commands import (
    cmd_codecs,
    cmd_crops,
    cmd_datasets,
    cmd_figure4,
    cmd_metrics,
    cmd_report,
    cmd_tools,
    cmd_train,
    cmd_verify,
    cmd_worker,
    csv_list,
)
from .run import cmd_run

BD_METHODS = ("pchip", "akima", "cubic")  # = bench.analysis.METHODS (tested); analysis loads scipy, slowly
BD_BOOTSTRAP = 10_000  # = bench.analysis.BOOTSTRAP (tested)


def _qualities(text: str) -> list[float]:
    """``5,10,95`` or ranges ``10..90/10``: finite numbers (argparse type)."""
    from ..adapters import AdapterError, parse_qualities

    values: list[float] = []
    try:
        for item in csv_list(text):
            values += parse_qualities(item, "--qualities")
    except AdapterError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--qualities: ")) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def _bpp_targets(text: str) -> list[float]:
    """Positive finite bits per pixel, comma-separated (argparse type)."""
    try:
        values = [float(v) for v in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bpp values separated by commas, got {text!r}") from None
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"target bpp must be positive numbers, got {text!r}")
    return values



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


def _task_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task-model", default=None, metavar="FILE.py:FUNC",
                   help="also score your own task model: FUNC() returns a torch.nn.Module fed float32 RGB in [0, 1] "
                        "of shape (1, 3, H, W); classifier logits (1, K) give task-top1@DIGEST and task-kl@DIGEST, "
                        "a torchvision-style detection list gives task-f1@DIGEST (needs --task-weights)")
    p.add_argument("--task-weights", default=None, metavar="WEIGHTS",
                   help="the state dict loaded into --task-model's module (torch.load weights_only, strict); "
                        "DIGEST in the metric names is that of the model file, function and weights")


def _listing_commands(command: Command) -> None:
    """``codecs`` and ``datasets``: what is available here."""
    p = command("codecs", "list codecs: name, library version, options, default sweep, availability")
    _codecs_dir_option(p)
    _device_option(p)
    p.set_defaults(func=cmd_codecs)

    p = command("datasets", "list known datasets, whether each is present locally, and the data folder")
    p.set_defaults(func=cmd_datasets)

    p = command("metrics", "list the quality metrics: default or opt-in, direction, unit, library and version, "
                           "definition")
    p.set_defaults(func=cmd_metrics)


def _run_command(command: Command) -> None:
    """``run``: measure a dataset with codecs."""
    from ..datasets import manifest_names
    from ..metrics import CTC_METRICS, DEFAULT_METRICS, METRICS, TASK_SETS

    manifests = ", ".join(name for name in manifest_names() if name != "kodak")
    p = command("run", "encode/decode/score a dataset with codecs; store and export results")
    p.add_argument("--dataset", default="kodak",
                   help=f"kodak (default), {manifests}, sample, or a folder of images (recursive)")
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
                   help=f"comma-separated metrics or sets: 'default' ({','.join(DEFAULT_METRICS)}; the default), "
                        f"'ctc' (the JPEG AI test-condition set: {','.join(CTC_METRICS)}); "
                        f"'tasks' (the machine-task sets {','.join(TASK_SETS)}); "
                        f"also: {','.join(m for m in METRICS if m not in DEFAULT_METRICS + CTC_METRICS)}")
    p.add_argument("--tasks", default=None, metavar="TASK,...",
                   help=f"also score machine tasks on every decoded image against the original's output (coding for "
                        f"machines), adding their metric sets to --metrics: {','.join(TASK_SETS)}")
    _task_model_options(p)
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


