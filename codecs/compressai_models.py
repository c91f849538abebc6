"""End2End learned codecs: CompressAI image models with real rANS bitstreams.

Architectures (CompressAI zoo names): bmshj2018-factorized, bmshj2018-hyperprior (codec name
``hyperprior``: Ballé et al. 2018, "Variational image compression with a scale hyperprior"),
mbt2018-mean, mbt2018, cheng2020-anchor, cheng2020-attn; qualities 1-8 (cheng2020: 1-6).

Weights, in this order:
 a) a checkpoint set: option ``checkpoints`` or the ``BENCH_CHECKPOINTS`` environment variable
    names a folder; for an architecture, ``<folder>/<architecture>/`` is used if it exists, else
    the folder itself when its name is the architecture's (e.g. ``.../bmshj2018-hyperprior``).
    It holds one CompressAI state_dict per quality, named ``q<Q>...pth.tar`` (or ``.pth``/``.pt``),
    loaded with ``torch.load(weights_only=True)``; N and M are inferred by ``from_state_dict``.
 b) CompressAI's pretrained zoo weights (``pretrained=True``), from the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``) or downloaded into it.

Bitstream (every byte counts in bpp): an 11-byte header, 4 bytes per stream, then the streams::

    B  format version (1)        B  quality (model index)
    H  image height              H  image width            (big-endian uint16)
    H  latent height             H  latent width            (the shape ``compress`` returns)
    B  number of streams n       n x I  stream lengths (uint32), then the n streams

The image is zero-padded (centred) to a multiple of 64 before ``compress`` and cropped back
after ``decompress``, as CompressAI's ``eval_model`` does; decoding uses only these bytes.

Own checkpoints without renaming (as ``eval_model checkpoint -p FILE...``): option ``weights`` =
a folder (its checkpoint files in name order), a glob (matches in name order) or files joined
with ``+`` (in rate order); quality i is the i-th file. Own models without an adapter: codec
``learned`` with ``model=pkg.module:NAME`` or ``model=path/file.py:NAME``, NAME being a factory
``NAME(quality[, device=...]) -> model`` or a ``CompressionModel`` subclass, plus ``weights``.
Option ``name`` sets the label. The sha256 of the weight files (and of the model's source file)
is part of the version, so retrained weights or edited models never reuse stale rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import re
from pathlib import Path
from typing import ClassVar

import compressai
import numpy as np
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from compressai.zoo import image as zoo

from bench.adapters import Option
from bench.adapters.learned import (
    CHECKPOINT_ENV,
    HEADER,
    PAD_MULTIPLE,
    CheckpointError,
    checkpoint_files,
    checkpoint_folder,
    complexity,
    files_digest,
    load_model,
    model_module,
    pack,
    unpack,
    url_reachable,
    weights_description,
    zoo_file,
    zoo_hash_problem,
)

# codec name -> CompressAI architecture; CODEC_NAMES lets the harness find them without importing torch.
CODEC_NAMES = ("bmshj2018-factorized", "hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn",
               "learned")
ARCHITECTURES = {name: "bmshj2018-hyperprior" if name == "hyperprior" else name for name in CODEC_NAMES[:-1]}
CODE_FILES = ["bench.adapters.learned"]  # the bitstream, weights and complexity helpers: part of the version

# --- the adapters ----------------------------------------------------------------------------
def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``cpu:N`` (a separately loaded CPU model); raises
    ValueError otherwise."""
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"(cuda|cpu):\d+", device):
        raise ValueError("must be auto, cpu, cuda, cuda:N or cpu:N")


def _to_tensor(rgb: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


def _to_rgb(x_hat: torch.Tensor) -> np.ndarray:
    """Like CompressAI's eval_model: (x * 255).clamp(0, 255).round(), as uint8 H x W x 3."""
    return (x_hat[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@contextlib.contextmanager
def one_thread():
    """Torch on one thread for the work ``setup`` does in the harness's main process.

    GNU OpenMP is not fork-safe: a worker forked from a process that ran a multi-threaded
    parallel region hangs in its own first one (e.g. every job of ``--jobs 1`` on 2+ cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA device")


class LearnedCodec:
    """Encode/decode shared by the learned adapters; subclasses say how to load a quality's model."""

    FAMILY = "learned"
    VERSION = f"CompressAI {compressai.__version__}, torch {torch.__version__}"

    def _model(self, quality: int, device: str, options: dict) -> torch.nn.Module:
        raise NotImplementedError

    def prepare(self, quality: int, device: str = "cpu", **options) -> None:
        """Load the model before the harness starts timing (once per worker, quality and device)."""
        self._model(int(quality), device, options)

    def encode(self, rgb: np.ndarray, quality: int, device: str = "cpu", **options) -> bytes:
        model = self._model(int(quality), device, options)
        x = _to_tensor(rgb, device)
        height, width = x.shape[2:]
        pad, _ = compute_padding(height, width, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            # torch's nn.Module.__getattr__ types model.compress as Tensor | Module
            out = model.compress(F.pad(x, pad, mode="constant", value=0))  # type: ignore[operator]
        return pack(int(quality), height, width, out["shape"], out["strings"])

    def decode(self, data: bytes, device: str = "cpu", **options) -> np.ndarray:
        quality, height, width, shape, strings = unpack(data)
        model = self._model(quality, device, options)
        _, unpad = compute_padding(height, width, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            x_hat = model.decompress(strings, shape)["x_hat"]  # type: ignore[operator]  # as compress above
        return _to_rgb(F.pad(x_hat, unpad))


class CompressAIModel(LearnedCodec):
    """One CompressAI architecture as a codec adapter (zoo weights, a checkpoint set or ``weights`` files)."""

    def __init__(self, name: str, architecture: str):
        self.NAME = name
        self.architecture = architecture
        self.DESCRIPTION = (f"{architecture} (CompressAI {compressai.__version__}), rANS bitstream with an "
                            f"{HEADER.size}-byte header + 4 bytes per stream; input padded to multiples of 64")
        self.OPTIONS = {
            "metric": Option("mse", choices=("mse", "ms-ssim"), help="distortion the zoo weights were trained for"),
            # Read from the environment at setup, not at import; the weights' hash enters the version.
            "checkpoints": Option("", key=False, help=f"checkpoint folder (default ${CHECKPOINT_ENV}; empty: zoo)"),
            "weights": Option("", help="checkpoint files: a+b (rate order), a glob or a folder (name order)"),
            "name": Option("", help="label in tables, plots and file names"),
            "device": Option("auto", validate=check_device, help="auto, cpu, cuda or cuda:N"),
        }
        self.QUALITIES = sorted(zoo.cfgs[architecture])

    def _model(self, quality: int, device: str, options: dict) -> torch.nn.Module:
        return load_model(self.architecture, options.get("metric", "mse"), quality, options.get("checkpoints", ""),
                          device, options.get("weights", ""))

    def setup(self, metric: str = "mse", checkpoints: str = "", device: str = "cpu", weights: str = "",
              name: str = "") -> dict:
        """Find the weights; raises (codec unavailable) with the reason if there are none.

        ``weights`` (files) wins over ``checkpoints``; ``checkpoints`` empty means
        ``$BENCH_CHECKPOINTS`` (read now), else the zoo; the folder found is returned as the
        resolved option, the files' hash goes into the version.
        """
        checkpoints = checkpoints or os.environ.get(CHECKPOINT_ENV, "")
        _check_device(device)
        folder = None if weights else checkpoint_folder(self.architecture, checkpoints)
        if weights:
            described, qualities = weights_description(weights)
            identity = described
        elif folder is not None:
            files = checkpoint_files(folder)
            if not files:
                raise CheckpointError(f"{folder}: no checkpoint files named q<quality>*.pth.tar")
            digest = files_digest(list(files.values()))
            described, identity = f"checkpoints {folder} (sha256 {digest})", f"checkpoints sha256 {digest}"
            qualities = sorted(files)
        else:
            zoo_files = [zoo_file(self.architecture, metric, q) for q in self.QUALITIES]
            if problems := [p for _, path in zoo_files if path.is_file() and (p := zoo_hash_problem(path))]:
                raise CheckpointError(problems[0])
            missing = [(url, path) for url, path in zoo_files if not path.is_file()]
            if missing and (reason := url_reachable(missing[0][0])):
                raise CheckpointError(
                    f"no weights: no {CHECKPOINT_ENV} checkpoints, zoo file {missing[0][1].name} not in "
                    f"{missing[0][1].parent} and {missing[0][0]} unreachable ({reason})")
            described = identity = f"CompressAI zoo, metric {metric}"
            qualities = self.QUALITIES
        with one_thread():
            counts = complexity(load_model(self.architecture, metric, qualities[0], checkpoints, "cpu", weights))
        return {"version": f"{self.VERSION}; weights: {identity}", "qualities": qualities,
                "options": {"checkpoints": checkpoints}, "info": {"weights": described, **counts}}


class UserModel(LearnedCodec):
    """``learned:model=pkg.module:NAME:weights=...``: a model built by the user's own code.

    ``model`` may also name a CompressAI architecture (``learned:model=mbt2018-mean:weights=...``).
    """

    NAME = "learned"
    DESCRIPTION = ("your own CompressAI-API model (model=MODULE:NAME or path/file.py:NAME, weights=FILES), "
                   f"rANS bitstream with an {HEADER.size}-byte header + 4 bytes per stream; input padded to "
                   "multiples of 64")
    OPTIONS: ClassVar[dict[str, Option]] = {
        "model": Option("", help="pkg.module:NAME or path/file.py:NAME (a factory or a CompressionModel class)"),
        "weights": Option("", help="checkpoint files: a+b (rate order), a glob or a folder (name order)"),
        "name": Option("", help="label in tables, plots and file names"),
        "device": Option("auto", validate=check_device, help="auto, cpu, cuda or cuda:N"),
    }
    QUALITIES: ClassVar[list[int]] = [1]

    def _model(self, quality: int, device: str, options: dict) -> torch.nn.Module:
        return load_model("", "", quality, "", device, options.get("weights", ""), options["model"])

    def setup(self, model: str = "", weights: str = "", name: str = "", device: str = "cpu") -> dict:
        """The model's source and weights (hashed into the version) and its default sweep."""
        if not model:
            raise ValueError("codec 'learned' needs model=MODULE:NAME or model=path/file.py:NAME "
                             "(e.g. --codecs learned:model=mymodels.py:build:weights=ckpt/:name=mine)")
        _check_device(device)
        if model in zoo.model_architectures:
            if not weights:
                raise ValueError(f"model={model} (a CompressAI architecture) needs weights=FILES")
            module, attr, code = None, model, f"{model} (CompressAI {compressai.__version__})"
        else:
            module, attr = model_module(model)
            source = Path(inspect.getfile(module))
            code = f"{model} (source sha256 {hashlib.sha256(source.read_bytes()).hexdigest()[:12]})"
        if weights:
            described, qualities = weights_description(weights)
        else:
            described = f"loaded by {attr} itself"
            qualities = [int(q) for q in getattr(module, "QUALITIES", range(1, 9))]
        with one_thread():
            loaded = load_model("", "", qualities[0], "", "cpu", weights, model)
            try:
                counts: dict[str, object] = dict(complexity(loaded))
            except Exception as exc:  # a model whose forward pass differs from CompressAI's
                counts = {"complexity": f"not counted ({type(exc).__name__}: {exc})"[:200]}
        return {"version": f"{self.VERSION}; model {code}; weights: {described}", "qualities": qualities,
                "info": {"model": code, "weights": described, **counts}}


torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False

ADAPTERS = [*(CompressAIModel(name, ARCHITECTURES[name]) for name in CODEC_NAMES if name != "learned"), UserModel()]
