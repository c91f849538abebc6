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
import glob
import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import re
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import compressai
import numpy as np
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from compressai.zoo import image as zoo

from bench.adapters import Option, import_file, in_run_directory

# codec name -> CompressAI architecture; CODEC_NAMES lets the harness find them without importing torch.
CODEC_NAMES = ("bmshj2018-factorized", "hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn",
               "learned")
ARCHITECTURES = {name: "bmshj2018-hyperprior" if name == "hyperprior" else name for name in CODEC_NAMES[:-1]}
CHECKPOINT_ENV = "BENCH_CHECKPOINTS"
FORMAT_VERSION = 1
HEADER = struct.Struct(">BBHHHHB")
PAD_MULTIPLE = 64
ENCODER_PARTS = ("g_a", "h_a", "h_s", "h_mean_s", "h_scale_s", "context_prediction", "entropy_parameters")
DECODER_PARTS = ("h_s", "h_mean_s", "h_scale_s", "context_prediction", "entropy_parameters", "g_s")
CHECKPOINT_NAME = re.compile(r"^q(\d+)(?!\d).*\.(pth\.tar|pth|pt|tar)$")
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")
MAX_QUALITIES = 255  # the quality index is one byte of the bitstream header


class CheckpointError(Exception):
    """A checkpoint file or folder cannot be used; the message names the file and the problem."""


# --- bitstream -------------------------------------------------------------------------------
def pack(quality: int, height: int, width: int, shape, strings) -> bytes:
    """One self-describing blob from ``model.compress`` output (batch size 1)."""
    streams = [s[0] for s in strings]
    header = HEADER.pack(FORMAT_VERSION, quality, height, width, int(shape[0]), int(shape[1]), len(streams))
    lengths = struct.pack(f">{len(streams)}I", *(len(s) for s in streams))
    return header + lengths + b"".join(streams)


def header_bytes(num_streams: int) -> int:
    return HEADER.size + 4 * num_streams


def unpack(data: bytes) -> tuple[int, int, int, list[int], list[list[bytes]]]:
    """Inverse of ``pack``: (quality, height, width, latent shape, strings)."""
    if len(data) < HEADER.size:
        raise ValueError(f"bitstream too short ({len(data)} bytes) for its {HEADER.size}-byte header")
    version, quality, height, width, lh, lw, n = HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(f"unknown bitstream format version {version}")
    lengths = struct.unpack_from(f">{n}I", data, HEADER.size)
    pos, strings = header_bytes(n), []
    for length in lengths:
        strings.append([data[pos : pos + length]])
        pos += length
    if pos != len(data):
        raise ValueError(f"bitstream length {len(data)} does not match its header ({pos})")
    return quality, height, width, [lh, lw], strings


# --- weights ---------------------------------------------------------------------------------
def checkpoint_folder(architecture: str, checkpoints: str) -> Path | None:
    """The folder of ``architecture``'s checkpoints within ``checkpoints``, or None."""
    if not checkpoints:
        return None
    root = in_run_directory(checkpoints)
    if (root / architecture).is_dir():
        return root / architecture
    if root.is_dir() and root.name == architecture:
        return root
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {root} does not exist")
    return None


def checkpoint_files(folder: Path) -> dict[int, Path]:
    """quality -> checkpoint file, from names like ``q3-lambda0.0067.pth.tar``."""
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = CHECKPOINT_NAME.match(path.name)
        if match and path.is_file():
            quality = int(match.group(1))
            if quality in files:
                raise CheckpointError(f"{folder}: two checkpoints for quality {quality} ({files[quality].name}, "
                                      f"{path.name}); keep one per quality")
            files[quality] = path
    return files


def zoo_file(architecture: str, metric: str, quality: int) -> tuple[str, Path]:
    """(download URL, torch hub cache path) of a CompressAI zoo checkpoint."""
    try:
        url = zoo.model_urls[architecture][metric][quality]
    except KeyError:
        raise CheckpointError(f"CompressAI has no pretrained {architecture} for metric {metric!r}, "
                              f"quality {quality}") from None
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]


def read_state_dict(path: Path) -> dict:
    """A state_dict from a checkpoint file, refusing arbitrary pickles (``weights_only=True``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: (\S+ \S+)", str(exc))
        if found:
            raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): it pickles {found.group(1)}, "
                                  "not only tensors; re-save it as a plain state_dict") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or not a torch.save file)") from None
    except Exception as exc:  # torch.load raises many types on corrupt input
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "network", "model_state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return checkpoint


def model_from_state_dict(architecture: str, state_dict: dict, source: str) -> torch.nn.Module:
    try:
        model = zoo.model_architectures[architecture].from_state_dict(state_dict)
    except (KeyError, RuntimeError, ValueError, IndexError, AttributeError) as exc:
        message = str(exc).strip().splitlines()[0][:300]
        raise CheckpointError(f"{source}: not a {architecture} state_dict ({type(exc).__name__}: {message})") from None
    model.update()  # builds entropy-coder tables only if the checkpoint lacks them
    return model.eval()


def weight_files(weights: str) -> list[Path]:
    """The checkpoint files of a ``weights`` option, in rate order (quality i = the i-th file).

    ``weights``: files joined with ``+`` (order given), a glob (matches in name order) or a folder
    (its ``.pth.tar``/``.pth``/``.pt``/``.tar`` files in name order).
    """
    if "+" in weights:
        files = [in_run_directory(p) for p in weights.split("+") if p.strip()]
        for path in files:
            if not path.is_file():
                raise CheckpointError(f"weights: checkpoint file {path} does not exist")
    elif glob.has_magic(weights):
        files = sorted((Path(p) for p in glob.glob(str(in_run_directory(weights))) if Path(p).is_file()),
                       key=lambda p: (p.name, str(p)))
        if not files:
            raise CheckpointError(f"weights: the pattern {weights} matches no file")
    elif in_run_directory(weights).is_dir():
        folder = in_run_directory(weights)
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
        if not files:
            raise CheckpointError(f"weights: folder {folder} holds no checkpoint file "
                                  f"({', '.join('*' + s for s in CHECKPOINT_SUFFIXES)})")
    elif in_run_directory(weights).is_file():
        files = [in_run_directory(weights)]
    else:
        raise CheckpointError(f"weights: {weights} is no file, folder or pattern that exists")
    if len(files) > MAX_QUALITIES:
        raise CheckpointError(f"weights: {len(files)} checkpoint files; at most {MAX_QUALITIES} rate points")
    return files


def weight_file(weights: str, quality: int) -> Path:
    """The checkpoint of quality index ``quality`` (1 = the first file of ``weights``)."""
    files = weight_files(weights)
    if not 1 <= quality <= len(files):
        raise CheckpointError(f"weights: no checkpoint for quality {quality} ({len(files)} files: 1-{len(files)})")
    return files[quality - 1]


def model_module(spec: str):
    """(module, attribute name) of a ``model`` option: ``pkg.module:NAME`` or ``path/file.py:NAME``."""
    target, sep, attr = spec.strip().rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ValueError(f"model={spec!r}: expected MODULE:NAME or path/to/file.py:NAME")
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = in_run_directory(target).resolve()
        if not path.is_file():
            raise ValueError(f"model={spec!r}: file {path} does not exist")
        module = import_file(path)  # once per process, as the harness imports adapter files
    else:
        module = importlib.import_module(target)
    if not hasattr(module, attr):
        raise ValueError(f"model={spec!r}: {getattr(module, '__file__', target)} defines no {attr!r}")
    return module, attr


def build_user_model(spec: str, quality: int, state_dict: dict | None, source: str, device: str) -> torch.nn.Module:
    """A model from a factory (``NAME(quality[, device=...])``) or a class, with the state_dict loaded if given."""
    module, attr = model_module(spec)
    obj = getattr(module, attr)
    try:
        if isinstance(obj, type):
            if state_dict is None:
                raise CheckpointError(f"model={spec}: {attr} is a class; give its checkpoints with weights=")
            model = obj.from_state_dict(state_dict) if hasattr(obj, "from_state_dict") else obj()
        else:
            kwargs = {"device": device} if "device" in inspect.signature(obj).parameters else {}
            model = obj(quality, **kwargs)
        if state_dict is not None:
            model.load_state_dict(state_dict)
    except CheckpointError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise CheckpointError(f"{source}: cannot build {spec} for quality {quality} "
                              f"({type(exc).__name__}: {message})") from None
    missing = [m for m in ("compress", "decompress") if not callable(getattr(model, m, None))]
    if missing:
        raise CheckpointError(f"model={spec}: {attr} gave a {type(model).__name__} without {', '.join(missing)} "
                              "(the CompressAI CompressionModel API)")
    if hasattr(model, "update"):
        model.update()  # builds entropy-coder tables only if the weights lack them
    return model.eval()


_MODELS: dict[tuple, torch.nn.Module] = {}


def load_model(architecture: str, metric: str, quality: int, checkpoints: str, device: str, weights: str = "",
               model: str = "") -> torch.nn.Module:
    """The model for one quality, loaded once per process and device (a device string as given) and kept.

    ``model`` (a user model spec) replaces ``architecture``; ``weights`` replaces ``checkpoints``.
    """
    key = (architecture, metric, quality, checkpoints, device, weights, model)
    if key not in _MODELS:
        if model in zoo.model_architectures:  # learned:model=<zoo architecture>:weights=...
            path = weight_file(weights, quality)
            loaded = model_from_state_dict(model, read_state_dict(path), str(path))
        elif model:
            user_file = weight_file(weights, quality) if weights else None
            state_dict = read_state_dict(user_file) if user_file else None
            loaded = build_user_model(model, quality, state_dict, str(user_file or model), device)
        elif weights:
            path = weight_file(weights, quality)
            loaded = model_from_state_dict(architecture, read_state_dict(path), str(path))
        elif (folder := checkpoint_folder(architecture, checkpoints)) is not None:
            files = checkpoint_files(folder)
            if quality not in files:
                have = ", ".join(f"q{q}" for q in sorted(files)) or "none"
                raise CheckpointError(f"{folder}: no checkpoint for quality {quality} (has {have})")
            loaded = model_from_state_dict(architecture, read_state_dict(files[quality]), str(files[quality]))
        else:
            url, cached = zoo_file(architecture, metric, quality)
            if not cached.is_file():
                try:
                    torch.hub.download_url_to_file(url, str(cached), progress=False)
                except (urllib.error.URLError, OSError) as exc:
                    raise CheckpointError(f"cannot download {url} to {cached} ({exc})") from None
            state_dict = zoo.load_pretrained(read_state_dict(cached))
            loaded = model_from_state_dict(architecture, state_dict, str(cached))
        _MODELS[key] = loaded.to(device)
    return _MODELS[key]


def url_reachable(url: str, timeout: float = 5.0) -> str | None:
    """None if ``url`` answers, else the reason."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def files_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def complexity(model: torch.nn.Module, size: int = 256) -> dict[str, float]:
    """Parameter count and encoder / decoder kMAC per pixel (torch.utils.flop_counter, one forward).

    Parts are CompressAI's module names (g_a, h_a, ...); a model without them gets the kMAC per
    pixel of its whole forward pass instead.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, size, size))
    per_part: dict[str, int] = {}
    total = 0
    for name, counts in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 1:
            total = sum(counts.values())
        if len(parts) == 2:
            per_part[parts[1]] = sum(counts.values())

    def kmac(names) -> float:
        return sum(per_part.get(n, 0) for n in names) / 2 / (size * size) / 1000

    counts = {"parameters": int(sum(p.numel() for p in model.parameters()))}
    if any(n in per_part for n in ENCODER_PARTS + DECODER_PARTS):
        return {**counts, "encoder_kmac_per_pixel": round(kmac(ENCODER_PARTS), 2),
                "decoder_kmac_per_pixel": round(kmac(DECODER_PARTS), 2)}
    return {**counts, "forward_kmac_per_pixel": round(total / 2 / (size * size) / 1000, 2)}


def weights_description(weights: str) -> tuple[str, list[int]]:
    """(description with the files' sha256, qualities 1..n) of a ``weights`` option."""
    files = weight_files(weights)
    return (f"files {' + '.join(f.name for f in files)} (sha256 {files_digest(files)})",
            list(range(1, len(files) + 1)))


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
            missing = [zoo_file(self.architecture, metric, q) for q in self.QUALITIES]
            missing = [(url, path) for url, path in missing if not path.is_file()]
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
