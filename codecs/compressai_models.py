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
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import urllib.error
import urllib.request
from pathlib import Path

import compressai
import numpy as np
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from compressai.zoo import image as zoo

from bench.adapters import Option

# codec name -> CompressAI architecture; CODEC_NAMES lets the harness find them without importing torch.
CODEC_NAMES = ("bmshj2018-factorized", "hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn")
ARCHITECTURES = {name: "bmshj2018-hyperprior" if name == "hyperprior" else name for name in CODEC_NAMES}
CHECKPOINT_ENV = "BENCH_CHECKPOINTS"
FORMAT_VERSION = 1
HEADER = struct.Struct(">BBHHHHB")
PAD_MULTIPLE = 64
ENCODER_PARTS = ("g_a", "h_a", "h_s", "h_mean_s", "h_scale_s", "context_prediction", "entropy_parameters")
DECODER_PARTS = ("h_s", "h_mean_s", "h_scale_s", "context_prediction", "entropy_parameters", "g_s")
CHECKPOINT_NAME = re.compile(r"^q(\d+)(?!\d).*\.(pth\.tar|pth|pt|tar)$")


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
    root = Path(checkpoints).expanduser()
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
        raise CheckpointError(f"CompressAI has no pretrained {architecture} for metric {metric!r}, quality {quality}") from None
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


_MODELS: dict[tuple, torch.nn.Module] = {}


def load_model(architecture: str, metric: str, quality: int, checkpoints: str, device: str) -> torch.nn.Module:
    """The model for one quality, loaded once per process and kept."""
    key = (architecture, metric, quality, checkpoints, device)
    if key not in _MODELS:
        folder = checkpoint_folder(architecture, checkpoints)
        if folder is not None:
            files = checkpoint_files(folder)
            if quality not in files:
                have = ", ".join(f"q{q}" for q in sorted(files)) or "none"
                raise CheckpointError(f"{folder}: no checkpoint for quality {quality} (has {have})")
            model = model_from_state_dict(architecture, read_state_dict(files[quality]), str(files[quality]))
        else:
            url, cached = zoo_file(architecture, metric, quality)
            if not cached.is_file():
                try:
                    torch.hub.download_url_to_file(url, str(cached), progress=False)
                except (urllib.error.URLError, OSError) as exc:
                    raise CheckpointError(f"cannot download {url} to {cached} ({exc})") from None
            state_dict = zoo.load_pretrained(read_state_dict(cached))
            model = model_from_state_dict(architecture, state_dict, str(cached))
        _MODELS[key] = model.to(device)
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
    """Parameter count and encoder / decoder kMAC per pixel (torch.utils.flop_counter, one forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, size, size))
    per_part: dict[str, int] = {}
    for name, counts in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 2:
            per_part[parts[1]] = sum(counts.values())

    def kmac(names) -> float:
        return sum(per_part.get(n, 0) for n in names) / 2 / (size * size) / 1000

    return {"parameters": int(sum(p.numel() for p in model.parameters())),
            "encoder_kmac_per_pixel": round(kmac(ENCODER_PARTS), 2),
            "decoder_kmac_per_pixel": round(kmac(DECODER_PARTS), 2)}


# --- the adapters ----------------------------------------------------------------------------
def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; raises ValueError otherwise."""
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise ValueError("must be auto, cpu, cuda or cuda:N")


def _to_tensor(rgb: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


def _to_rgb(x_hat: torch.Tensor) -> np.ndarray:
    """Like CompressAI's eval_model: (x * 255).clamp(0, 255).round(), as uint8 H x W x 3."""
    return (x_hat[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class CompressAIModel:
    """One CompressAI architecture as a codec adapter."""

    FAMILY = "learned"

    def __init__(self, name: str, architecture: str):
        self.NAME = name
        self.architecture = architecture
        self.VERSION = f"CompressAI {compressai.__version__}, torch {torch.__version__}"
        self.DESCRIPTION = (f"{architecture} (CompressAI {compressai.__version__}), rANS bitstream with an "
                            f"{HEADER.size}-byte header + 4 bytes per stream; input padded to multiples of 64")
        self.OPTIONS = {
            "metric": Option("mse", choices=("mse", "ms-ssim"), help="distortion the zoo weights were trained for"),
            # Read from the environment at setup, not at import; the weights' hash enters the version.
            "checkpoints": Option("", key=False, help=f"checkpoint folder (default ${CHECKPOINT_ENV}; empty: zoo)"),
            "device": Option("auto", validate=check_device, help="auto, cpu, cuda or cuda:N"),
        }
        self.QUALITIES = sorted(zoo.cfgs[architecture])

    def setup(self, metric: str, checkpoints: str, device: str) -> dict:
        """Find the weights; raises (codec unavailable) with the reason if there are none.

        ``checkpoints`` empty means ``$BENCH_CHECKPOINTS`` (read now), else the zoo; the folder
        found is returned as the resolved option, its files' hash goes into the version.
        """
        checkpoints = checkpoints or os.environ.get(CHECKPOINT_ENV, "")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but torch sees no CUDA device")
        folder = checkpoint_folder(self.architecture, checkpoints)
        if folder is not None:
            files = checkpoint_files(folder)
            if not files:
                raise CheckpointError(f"{folder}: no checkpoint files named q<quality>*.pth.tar")
            digest = files_digest(list(files.values()))
            weights, identity = f"checkpoints {folder} (sha256 {digest})", f"checkpoints sha256 {digest}"
            qualities = sorted(files)
        else:
            missing = [zoo_file(self.architecture, metric, q) for q in self.QUALITIES]
            missing = [(url, path) for url, path in missing if not path.is_file()]
            if missing and (reason := url_reachable(missing[0][0])):
                raise CheckpointError(
                    f"no weights: no {CHECKPOINT_ENV} checkpoints, zoo file {missing[0][1].name} not in "
                    f"{missing[0][1].parent} and {missing[0][0]} unreachable ({reason})")
            weights = identity = f"CompressAI zoo, metric {metric}"
            qualities = self.QUALITIES
        model = load_model(self.architecture, metric, qualities[0], checkpoints, "cpu")
        return {"version": f"{self.VERSION}; weights: {identity}", "qualities": qualities,
                "options": {"checkpoints": checkpoints}, "info": {"weights": weights, **complexity(model)}}

    def prepare(self, quality: int, metric: str, checkpoints: str, device: str) -> None:
        """Load the model before the harness starts timing (once per worker and quality)."""
        load_model(self.architecture, metric, int(quality), checkpoints, device)

    def encode(self, rgb: np.ndarray, quality: int, metric: str, checkpoints: str, device: str) -> bytes:
        model = load_model(self.architecture, metric, int(quality), checkpoints, device)
        x = _to_tensor(rgb, device)
        height, width = x.shape[2:]
        pad, _ = compute_padding(height, width, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            out = model.compress(F.pad(x, pad, mode="constant", value=0))
        return pack(int(quality), height, width, out["shape"], out["strings"])

    def decode(self, data: bytes, metric: str, checkpoints: str, device: str) -> np.ndarray:
        quality, height, width, shape, strings = unpack(data)
        model = load_model(self.architecture, metric, quality, checkpoints, device)
        _, unpad = compute_padding(height, width, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            x_hat = model.decompress(strings, shape)["x_hat"]
        return _to_rgb(F.pad(x_hat, unpad))


torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False

ADAPTERS = [CompressAIModel(name, ARCHITECTURES[name]) for name in CODEC_NAMES]
