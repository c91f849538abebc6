"""``python -m bench.gpu_check``: a learned codec on CUDA against the CPU, with the same weights.

For every image of a dataset and every quality of the checkpoint set: encode and decode on each
device (timed, CUDA synchronised), then decode the CUDA bitstream on the CPU and compare it with
the CUDA decode. Prints images per second per device, the CUDA speed-up, how many bitstreams
are identical across devices, and how decoded images differ. Exits 2 when CUDA is absent.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .adapters import BUILTIN_CODECS_DIR, import_file
from .datasets import resolve_dataset
from .images import load_image


def _adapters():
    return import_file(BUILTIN_CODECS_DIR / "compressai_models.py")


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare_devices(codec, images: list[np.ndarray], qualities: list[int], checkpoints: str,
                    devices: tuple[str, str]) -> dict:
    """Timings per device and cross-device agreement for every image and quality."""
    seconds = {d: 0.0 for d in devices}
    same_bytes = max_diff = mismatched = runs = 0
    for q in qualities:
        for rgb in images:
            streams, decoded = {}, {}
            for device in devices:
                opts = {"metric": "mse", "checkpoints": checkpoints, "device": device}
                codec.encode(rgb, q, **opts)  # warm-up: model load, kernels
                _synchronize(device)
                start = time.perf_counter()
                streams[device] = codec.encode(rgb, q, **opts)
                decoded[device] = codec.decode(streams[device], **opts)
                _synchronize(device)
                seconds[device] += time.perf_counter() - start
            a, b = devices
            runs += 1
            same_bytes += streams[a] == streams[b]
            cross = codec.decode(streams[b], metric="mse", checkpoints=checkpoints, device=a)
            diff = int(np.abs(cross.astype(np.int16) - decoded[b]).max())
            max_diff = max(max_diff, diff)
            mismatched += diff > 0
    return {"seconds": seconds, "runs": runs, "same_bytes": same_bytes, "max_diff": max_diff,
            "mismatched": mismatched}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--codec", default="hyperprior")
    parser.add_argument("--checkpoints", required=True, help="checkpoint folder (as BENCH_CHECKPOINTS)")
    parser.add_argument("--images", type=int, default=0, help="use only the first N images (0 = all)")
    parser.add_argument("--devices", default="cpu,cuda", help="reference device, device under test")
    args = parser.parse_args(argv)
    devices = tuple(args.devices.split(","))
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2
    models = _adapters()
    codec = next(a for a in models.ADAPTERS if a.NAME == args.codec)
    info = codec.setup(metric="mse", checkpoints=args.checkpoints, device="cpu")
    sources = resolve_dataset(args.dataset).sources
    images = [load_image(s.path).rgb for s in sources[: args.images or None]]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    result = compare_devices(codec, images, info["qualities"], args.checkpoints, devices)
    print(f"{args.codec}, {len(images)} images x qualities {info['qualities']}, weights {info['info']['weights']}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    rate = {d: result["runs"] / s for d, s in result["seconds"].items()}
    for device in devices:
        print(f"{device:>5}: {rate[device]:.2f} images/s (encode + decode)")
    print(f"speed-up {devices[1]} vs {devices[0]}: {rate[devices[1]] / rate[devices[0]]:.2f}x")
    print(f"identical bitstreams: {result['same_bytes']} of {result['runs']}")
    print(f"{devices[1]} bitstreams decoded on {devices[0]} vs on {devices[1]}: {result['mismatched']} of "
          f"{result['runs']} differ, max |diff| {result['max_diff']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
