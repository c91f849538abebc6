"""``python -m bench.cli.gpu_check``: cross-device decoding and CUDA speed of a learned codec, in one script.

Two runs of the harness with ``--decode-device`` (each into its own folder under ``--out``):

1. encode on the device under test (default ``cuda``), decode there and on the reference (``cpu``);
2. encode on the reference, decode there and on the device under test.

Prints, per direction, how many bitstreams decode to the identical image on the other device
(the report's cross-device table), and images per second (encode + decode, from the stored
per-image times) on each device. Exits 2 when CUDA is asked for and absent, 1 when a
measurement failed. Sized for Kodak x 4 qualities in a few minutes on one GPU, e.g.::

    python -m bench.cli.gpu_check --dataset kodak --checkpoints ../shared/models/bmshj2018-hyperprior
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..adapters import discover, select
from ..analysis.cross_device import markdown, summary
from ..datasets import Dataset, resolve_dataset
from ..pipeline.runner import run_benchmark
from ..store import Store


def run_direction(dataset: Dataset, spec: str, encode_device: str, decode_device: str, out: Path, jobs: int,
                  progress: bool) -> dict:
    """One run: encode on ``encode_device``, also decode on ``decode_device``; counts and seconds from the store."""
    configs, skipped = select(discover(), [f"{spec}:device={encode_device}"])
    if skipped:
        raise SystemExit(f"error: codec {spec} unavailable: {skipped[0].reason}")
    report = run_benchmark(dataset, configs, out, jobs=jobs, progress=progress, metrics=("psnr-rgb",),
                           check_decode="off", decode_device=decode_device, log=lambda message: None)
    with Store(out, writer=False) as store:
        rows = store.cross_device_rows(dataset.name)
        measured = [r for r in store.rows(dataset.name) if r["label"] == configs[0].label]
    seconds = sum(r["encode_s"] + r["decode_s"] for r in measured)
    return {"table": summary(rows), "failed": report.failed, "images": len(measured),
            "images_per_s": len(measured) / seconds if seconds else float("nan"),
            "devices": sorted({r["device"] for r in measured})}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.cli.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--codec", default="hyperprior", help="codec spec without device (default: %(default)s)")
    parser.add_argument("--checkpoints", default="", help="checkpoint folder (as BENCH_CHECKPOINTS)")
    parser.add_argument("--images", type=int, default=0, help="use only the first N images (0 = all)")
    parser.add_argument("--devices", default="cpu,cuda", help="reference device, device under test")
    parser.add_argument("--out", default="results/gpu-check", help="results folder (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (CUDA jobs use one GPU worker)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    reference, under_test = args.devices.split(",")
    if any(d.startswith("cuda") for d in (reference, under_test)) and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2
    dataset = resolve_dataset(args.dataset)
    if args.images:
        dataset = replace(dataset, sources=dataset.sources[: args.images])
    spec = f"{args.codec}:checkpoints={args.checkpoints}" if args.checkpoints else args.codec
    spec += "" if ":name=" in spec else f":name={args.codec.split(':')[0]}"  # a short label in the tables
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    results = {}
    for encode_device, decode_device in ((under_test, reference), (reference, under_test)):
        folder = Path(args.out) / f"encode-{encode_device.replace(':', '-')}"
        results[encode_device] = result = run_direction(dataset, spec, encode_device, decode_device, folder,
                                                        args.jobs, not args.quiet)
        print(f"\n{args.codec} encoded on {encode_device}, decoded on {encode_device} and {decode_device} "
              f"({dataset.name}, {result['images']} image x quality measurements, results in {folder}):")
        print(markdown(result["table"]))
    print()
    for device in (reference, under_test):
        r = results[device]
        print(f"{device:>6}: {r['images_per_s']:.2f} images/s (encode + decode; measured on {', '.join(r['devices'])})")
    print(f"speed-up {under_test} vs {reference}: "
          f"{results[under_test]['images_per_s'] / results[reference]['images_per_s']:.2f}x")
    return 1 if any(r["failed"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
