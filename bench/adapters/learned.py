"""Helpers for learned (End2End) adapters built on CompressAI models: the bitstream container
(header + rANS streams, every byte counted), finding and loading weights (checkpoint sets, the
CompressAI zoo, a user's model and weight files), their digests for the cache key, and the model's
complexity (parameters, kMAC per pixel). ``codecs/compressai_models.py`` is the adapter built on
them; an adapter for another learned model can use them too (name this module in its ``CODE_FILES``
so that its version follows them).
"""

from __future__ import annotations

import functools
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

import torch
from compressai.zoo import image as zoo

from ..code_identity import file_digest
from .contract import in_run_directory
from .discovery import import_file

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


@functools.lru_cache(maxsize=64)
def _zoo_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a zoo file, once per process and version of the file (``setup`` checks every quality's
    file, then each quality's model load checks its own)."""
    return file_digest(path)


def zoo_hash_problem(cached: Path) -> str | None:
    """None if a cached zoo file's SHA-256 starts with the hex its name carries (torch.hub's
    ``name-<sha256 prefix>.ext``, checked by torch only when it downloads), else the problem."""
    found = torch.hub.HASH_REGEX.search(cached.name)
    if not found or not found.group(1):
        return None
    stat = cached.stat()
    digest = _zoo_digest(str(cached), stat.st_size, stat.st_mtime_ns)
    if digest.startswith(found.group(1)):
        return None
    return (f"{cached}: SHA-256 {digest[:len(found.group(1))]}..., not {found.group(1)}... as its name "
            f"says: not CompressAI's published file; delete it to download it again")


def zoo_checkpoint(architecture: str, metric: str, quality: int) -> Path:
    """A zoo checkpoint from torch.hub's cache, downloaded (hash-checked) if absent, verified if present."""
    url, cached = zoo_file(architecture, metric, quality)
    if not cached.is_file():
        found = torch.hub.HASH_REGEX.search(cached.name)
        try:
            torch.hub.download_url_to_file(url, str(cached), hash_prefix=found.group(1) if found else None,
                                           progress=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:  # RuntimeError: torch's hash mismatch
            raise CheckpointError(f"cannot download {url} to {cached} ({exc})") from None
    if problem := zoo_hash_problem(cached):
        raise CheckpointError(problem)
    return cached


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
            cached = zoo_checkpoint(architecture, metric, quality)
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
