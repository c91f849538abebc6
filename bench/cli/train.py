"""``python -m bench train``: train a CompressAI model for one rate-distortion trade-off λ.

CompressAI's ``RateDistortionLoss`` (λ·255²·MSE + bpp, or λ·(1 − MS-SSIM) + bpp) plus the
entropy bottleneck's auxiliary loss, each with its own Adam optimizer (as CompressAI's example
trainer), on random crops with random horizontal and vertical flips of the images under
``--data``. Every ``--save-minutes`` and at the end it writes

* ``<out>/q<Q>-lambda<λ>.pth.tar``: the state_dict after ``model.update(force=True)``, which the
  ``codecs/compressai_models.py`` adapters load as is (point ``BENCH_CHECKPOINTS`` at the parent
  folder of ``<out>`` when ``<out>`` is named after the architecture);
* ``<out>/train-state-q<Q>-lambda<λ>.pt``: model, optimizers and step, for ``--resume``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BenchError
from .argtypes import positive_float, positive_int

# CompressAI's λ for its zoo qualities 1-8, per distortion metric.
ZOO_LAMBDAS = {
    "mse": {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800},
    "ms-ssim": {1: 2.40, 2: 4.58, 3: 8.73, 4: 16.64, 5: 31.73, 6: 60.50, 7: 115.37, 8: 220.00},
}


class TrainError(BenchError):
    """Training cannot start or continue (bad data, checkpoint or arguments)."""


def quality_for_lambda(lmbda: float, metric: str = "mse") -> int:
    """The zoo quality whose λ (for that metric) is nearest in log scale to ``lmbda``."""
    table = ZOO_LAMBDAS[metric]
    return min(table, key=lambda q: abs(math.log(table[q] / lmbda)))


def checkpoint_name(quality: int, lmbda: float) -> str:
    return f"q{quality}-lambda{lmbda:.4f}.pth.tar"


class CropDataset:
    """Random ``patch`` x ``patch`` crops with random flips from every image under a folder."""

    def __init__(self, folder: Path, patch: int):
        from ..datasets import folder_sources
        from ..datasets.images import ImageError, load_image

        self.patch = patch
        self.images = []
        for source in folder_sources(folder):
            try:
                rgb = load_image(source.path).rgb
            except ImageError as exc:
                print(f"warning: skipping {exc}", file=sys.stderr)
                continue
            if min(rgb.shape[:2]) >= patch:
                self.images.append(rgb)
        if not self.images:
            raise TrainError(f"no readable image of at least {patch}x{patch} pixels under {folder}")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: random.Random) -> np.ndarray:
        rgb = self.images[rng.randrange(len(self.images))]
        y = rng.randrange(rgb.shape[0] - self.patch + 1)
        x = rng.randrange(rgb.shape[1] - self.patch + 1)
        crop = rgb[y : y + self.patch, x : x + self.patch]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        return crop

    def batch(self, size: int, rng: random.Random):
        import torch

        crops = np.stack([self.sample(rng) for _ in range(size)])
        return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)


def build_model(arch: str, quality: int, channels: tuple[int, ...] | None):
    from compressai.zoo import image as zoo

    if arch not in zoo.model_architectures:
        raise TrainError(f"unknown architecture {arch!r} (choose from {', '.join(zoo.model_architectures)})")
    args = channels if channels else zoo.cfgs[arch][quality]
    return zoo.model_architectures[arch](*args)


def optimizers(model, lr: float, aux_lr: float):
    """Main parameters and the entropy bottleneck quantiles, each with an Adam (CompressAI's recipe)."""
    import torch

    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=aux_lr)


def save(model, opt, aux_opt, step: int, out: Path, quality: int, lmbda: float, arch: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    state = {"arch": arch, "lambda": lmbda, "quality": quality, "step": step,
             "model": model.state_dict(), "optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict()}
    _atomic_save(state, out / f"train-state-q{quality}-lambda{lmbda:.4f}.pt")
    model.update(force=True)
    path = out / checkpoint_name(quality, lmbda)
    _atomic_save(model.state_dict(), path)
    return path


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)


def resolve_device(device: str) -> str:
    import torch

    from ..adapters import auto_device

    if device == "auto":
        return auto_device()
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda requested but torch sees no CUDA device")
    return device


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    first_loss: float
    last_loss: float


def train(args: argparse.Namespace) -> TrainResult:
    import torch
    from compressai.losses import RateDistortionLoss
    from tqdm import tqdm

    device = resolve_device(args.device)
    quality = args.quality or quality_for_lambda(args.lmbda, args.metric)
    channels = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = build_model(args.arch, quality, channels).to(device).train()
    data = CropDataset(Path(args.data), args.patch_size)
    opt, aux_opt = optimizers(model, args.lr, args.aux_lr)
    step = 0
    if args.resume:
        step = _resume(model, opt, aux_opt, Path(args.resume), args.arch)
    criterion = RateDistortionLoss(lmbda=args.lmbda, metric=args.metric)
    out = Path(args.out)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else math.inf
    total = step + args.steps if args.steps else None
    last_save = time.monotonic()
    bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, disable=args.quiet)
    first_loss = last_loss = math.nan
    print(f"training {args.arch} (quality {quality}, λ={args.lmbda}) on {len(data)} images, device {device}",
          file=sys.stderr)
    while (total is None or step < total) and time.monotonic() < deadline:
        x = data.batch(args.batch_size, rng).to(device)
        opt.zero_grad()
        aux_opt.zero_grad()
        out_net = model(x)
        losses = criterion(out_net, x)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_opt.step()
        step += 1
        last_loss = losses["loss"].item()
        first_loss = last_loss if math.isnan(first_loss) else first_loss
        if "mse_loss" in losses:
            quality_text = f"{10 * math.log10(1 / max(losses['mse_loss'].item(), 1e-10)):.2f} dB"
        else:
            quality_text = f"ms-ssim {losses['ms_ssim_loss'].item():.4f}"
        bar.set_postfix(loss=f"{losses['loss'].item():.4f}", bpp=f"{losses['bpp_loss'].item():.3f}",
                        psnr=quality_text, aux=f"{aux_loss.item():.1f}")
        bar.update(1)
        if time.monotonic() - last_save > 60 * args.save_minutes:
            save(model, opt, aux_opt, step, out, quality, args.lmbda, args.arch)
            model.train()
            last_save = time.monotonic()
    bar.close()
    path = save(model, opt, aux_opt, step, out, quality, args.lmbda, args.arch)
    print(f"{step} steps; checkpoint {path}", file=sys.stderr)
    return TrainResult(path, step, first_loss, last_loss)


def _resume(model, opt, aux_opt, path: Path, arch: str) -> int:
    """Continue from a training-state file, or start from a plain state_dict's weights."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(f"{path}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        if state.get("arch") != arch:
            raise TrainError(f"{path} trains {state.get('arch')!r}, not {arch!r}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        return int(state["step"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise TrainError(f"{path}: not a {arch} state_dict of this size ({str(exc).splitlines()[0]})") from None
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments (help texts name each default once)."""
    p.add_argument("--arch", default="bmshj2018-hyperprior", help="CompressAI architecture (default: %(default)s)")
    p.add_argument("--lambda", dest="lmbda", type=positive_float, required=True, metavar="λ",
                   help="rate-distortion trade-off λ (required; CompressAI's MSE qualities 1-4 use "
                        "0.0018, 0.0035, 0.0067, 0.0130)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder of training images, searched recursively (required)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="checkpoint folder, named after the architecture (required)")
    limit = p.add_mutually_exclusive_group(required=True)
    limit.add_argument("--minutes", type=positive_float, metavar="M",
                       help="train for this many minutes (this or --steps)")
    limit.add_argument("--steps", type=positive_int, metavar="S",
                       help="train for this many more steps (this or --minutes)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto (default) = cuda when torch sees a GPU")
    p.add_argument("--resume", metavar="FILE", help="training-state file to continue, or a state_dict to start from")
    p.add_argument("--quality", type=positive_int, metavar="Q", help="zoo quality index in the file name and for N, M "
                                                            "(default: the zoo quality whose λ is nearest)")
    p.add_argument("--channels", metavar="N,M",
                   help="channel counts instead of the zoo's for that quality, e.g. 64,96")
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"],
                   help="distortion of the loss (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="crops per step (default: %(default)s)")
    p.add_argument("--patch-size", type=positive_int, default=256, help="crop side in pixels (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="learning rate of the model (default: %(default)s)")
    p.add_argument("--aux-lr", type=positive_float, default=1e-3,
                   help="learning rate of the auxiliary (entropy bottleneck) loss (default: %(default)s)")
    p.add_argument("--clip", type=positive_float, default=1.0, help="gradient norm clipping (default: %(default)s)")
    p.add_argument("--save-minutes", type=positive_float, default=10.0,
                   help="minutes between checkpoints (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
