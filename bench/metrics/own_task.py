"""Your own task model (``bench run --task-model FILE.py:FUNC --task-weights WEIGHTS``): the model runs on
the original and on every decoded image, and the decoded image's output is scored against the original's
(pseudo ground truth), as the built-in tasks of ``tasks.py`` are.

- Loading: ``FUNC()`` returns a ``torch.nn.Module``; its state dict is loaded from WEIGHTS
  (``torch.load(weights_only=True)``, ``load_state_dict(strict=True)``), then ``.eval()``, once per
  process and device, after checking that the files still have the digest the run named its metrics by.
- Input: float32 RGB in [0, 1], shape (1, 3, H, W) at the image's own size, on the device the job's
  metrics run on (the codec's CUDA device for a CUDA codec, else the CPU), under ``torch.no_grad``.
- Output, its kind learned once by ``probe`` (the run's process, on a mid-grey square): a tensor of shape
  (1, K), K >= 2, is a classifier's logits (``task-top1``, ``task-kl``); a torchvision-style list with one
  dict holding ``boxes`` (N, 4; x0, y0, x1, y1 in pixels), ``scores`` (N) and optionally ``labels`` (N)
  is a detector's (``task-f1``, boxes with a score >= ``DETECTION_SCORE_THRESHOLD``). Anything else is
  a one-line ``TaskModelError`` naming what the model gave.

The original's output is kept with its statistics (``tasks.original_output``) and the decoded image's
scores once per pair (``tasks.scores_once``): the model runs once per original and once per decoded image.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import pickle
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import did_you_mean
from ..model import TaskModelSpec
from .own_task_spec import DETECTION_SCORE_THRESHOLD, TaskModelError, digest_of
from .task_scores import detection_scores
from .tasks import original_output, scores_once

if TYPE_CHECKING:
    from .engine import Pair

PROBE_SIDE = 128  # px: the mid-grey square the run's process feeds the model to learn its kind of output


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line, at most 300 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


# --- loading --------------------------------------------------------------------------------------------
def import_function(spec: TaskModelSpec) -> Callable[[], Any]:
    """``FUNC`` of the model file, the file imported once per process and digest."""
    name = f"bench_task_model_{spec.digest}"
    module = sys.modules.get(name)
    if module is None:
        found = importlib.util.spec_from_file_location(name, spec.file)
        if found is None or found.loader is None:
            raise TaskModelError(f"task model file {spec.file} cannot be imported (not a Python file)")
        module = importlib.util.module_from_spec(found)
        sys.modules[name] = module
        try:
            found.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise TaskModelError(f"task model file {spec.file} failed to import ({_one_line(exc)})") from None
    func = getattr(module, spec.function, None)
    if not callable(func):
        defined = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise TaskModelError(f"task model file {spec.file} has no function {spec.function!r}"
                             f"{did_you_mean(spec.function, defined)}")
    return func


def state_dict(path: str, device: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``torch.load(weights_only=True)`` onto ``device``)."""
    if not Path(path).is_file():
        raise TaskModelError(f"task weights file {path} not found (--task-weights)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: (\S+ \S+)", str(exc))
        why = f"torch.load(weights_only=True) refuses its {found.group(1)}" if found else "not a torch.save file"
        raise TaskModelError(f"task weights file {path} is not a state dict of tensors ({why})") from None
    except Exception as exc:  # torch.load raises many types on corrupt input
        raise TaskModelError(f"task weights file {path} is not a readable state dict ({_one_line(exc)})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TaskModelError(f"task weights file {path} holds a {type(state).__name__}, not a state dict "
                             "(parameter names -> tensors)")
    return dict(state)


def build(spec: TaskModelSpec, device: str) -> torch.nn.Module:
    """``FUNC()`` with the weights loaded strictly, in eval mode on ``device``."""
    func = import_function(spec)
    what = f"{spec.function}() of {spec.file}"
    try:
        model = func()
    except Exception as exc:
        raise TaskModelError(f"{what} failed ({_one_line(exc)})") from None
    if not isinstance(model, torch.nn.Module):
        raise TaskModelError(f"{what} returned a {type(model).__name__}, expected a torch.nn.Module")
    weights = state_dict(spec.weights, device)
    try:
        model.load_state_dict(weights, strict=True)
    except Exception as exc:
        raise TaskModelError(f"task weights file {spec.weights} does not load into {what} ({_one_line(exc)})") from None
    return model.to(device).eval()


@functools.lru_cache(maxsize=2)
def _loaded(spec: TaskModelSpec, device: str) -> torch.nn.Module:
    now = digest_of(spec.file, spec.function, spec.weights)
    if now != spec.digest:
        raise TaskModelError(f"task model {spec.file} or its weights {spec.weights} changed since the run started "
                             f"(digest {now}, not {spec.digest}): run again")
    return build(spec, device)


def loaded(spec: TaskModelSpec, device: str) -> torch.nn.Module:
    """The model on ``device``, built once per process; refused when its files no longer have its digest."""
    try:
        return _loaded(replace(spec, kind=""), device)
    except FileNotFoundError as exc:
        raise TaskModelError(f"task model file or weights gone since the run started: {exc.filename}") from None


# --- output kinds ---------------------------------------------------------------------------------------
def describe(out: Any, depth: int = 0) -> str:
    """What a model gave, in a few words: type, shape, keys."""
    if isinstance(out, torch.Tensor):
        return f"a {out.dtype} tensor of shape ({', '.join(str(n) for n in out.shape)})"
    if isinstance(out, Mapping) and depth < 2:
        return "a dict {" + ", ".join(f"{k!r}: {describe(v, depth + 1)}" for k, v in list(out.items())[:4]) + "}"
    if isinstance(out, (list, tuple)) and depth < 2:
        shown = ", ".join(describe(v, depth + 1) for v in out[:2]) + (", ..." if len(out) > 2 else "")
        return f"a {type(out).__name__} of {len(out)} [{shown}]"
    return f"a {type(out).__name__}"


def _is_detection(item: Any) -> bool:
    if not isinstance(item, Mapping) or not all(isinstance(item.get(k), torch.Tensor) for k in ("boxes", "scores")):
        return False
    n = len(item["boxes"])
    labels = item.get("labels")
    return (item["boxes"].shape == (n, 4) and item["scores"].shape == (n,)
            and (labels is None or (isinstance(labels, torch.Tensor) and labels.shape == (n,))))


def output_kind(out: Any, spec: TaskModelSpec) -> str:
    """``classifier`` (a float tensor of shape (1, K), K >= 2) or ``detector`` (``[{boxes, scores[, labels]}]``)."""
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.ndim == 2 and out.shape[0] == 1 \
            and out.shape[1] >= 2:
        return "classifier"
    if isinstance(out, (list, tuple)) and len(out) == 1 and _is_detection(out[0]):
        return "detector"
    raise TaskModelError(f"{spec.function}() of {spec.file} gave {describe(out)[:200]}, expected classifier logits "
                         "(a float tensor of shape (1, K), K >= 2) or a torchvision-style detection "
                         "([{'boxes': (N, 4) x0 y0 x1 y1, 'scores': (N,), 'labels': (N,) optional}])")


def probe(spec: TaskModelSpec) -> TaskModelSpec:
    """Load the model on the CPU and run it on a mid-grey ``PROBE_SIDE`` square: ``spec`` with the kind of its
    output; every loading error and an unusable output as one ``TaskModelError`` line."""
    model = loaded(spec, "cpu")
    try:
        with torch.no_grad():
            out = model(torch.full((1, 3, PROBE_SIDE, PROBE_SIDE), 0.5))
    except Exception as exc:
        raise TaskModelError(f"{spec.function}() of {spec.file} failed on a {PROBE_SIDE}x{PROBE_SIDE} RGB image "
                             f"({_one_line(exc)})") from None
    return replace(spec, kind=output_kind(out, spec))


# --- outputs and scores ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x, y, w, h in pixels, float64: those with a score >= DETECTION_SCORE_THRESHOLD
    labels: np.ndarray | None  # (n,) class of each box, when the model gives labels


def detections(item: Mapping[str, torch.Tensor]) -> Detections:
    """A torchvision-style detection as (x, y, w, h) boxes with a score at least ``DETECTION_SCORE_THRESHOLD``."""
    keep = (item["scores"] >= DETECTION_SCORE_THRESHOLD).cpu().numpy()
    xyxy = item["boxes"].detach().double().cpu().numpy()[keep]
    labels = item.get("labels")
    return Detections(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1),
                      None if labels is None else labels.cpu().numpy()[keep])


def run_model(spec: TaskModelSpec, x255: torch.Tensor) -> Any:
    """The model's output on an image given as the engine's float32 (1, 3, H, W) tensor of 0-255 values, which
    it sees divided by 255; an output of another kind than the probe's is a ``TaskModelError``."""
    out = loaded(spec, str(x255.device))((x255 / 255.0).contiguous())
    kind = output_kind(out, spec)
    if kind != spec.kind:
        raise TaskModelError(f"{spec.function}() of {spec.file} gave {kind} output on an image, {spec.kind} output "
                             "on the probe image")
    return out


def log_probabilities(spec: TaskModelSpec, x255: torch.Tensor) -> torch.Tensor:
    """A classifier's log-softmax on an image (float64, K values, on the CPU)."""
    return torch.log_softmax(run_model(spec, x255).detach().double(), dim=1)[0].cpu()


def detect(spec: TaskModelSpec, x255: torch.Tensor) -> Detections:
    """A detector's boxes on an image, those with a score at least ``DETECTION_SCORE_THRESHOLD``."""
    return detections(run_model(spec, x255)[0])


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """KL(p || q) = sum p (log p - log q), in nats, from log-probabilities (float64)."""
    return float(torch.sum(torch.exp(log_p) * (log_p - log_q)))


def _agreement(spec: TaskModelSpec, pair: Pair) -> tuple[float, float]:
    ref = original_output(pair, f"own:{spec.digest}", lambda _: log_probabilities(spec, pair.x))
    dec = log_probabilities(spec, pair.y)
    return float(int(torch.argmax(ref)) == int(torch.argmax(dec))), kl_divergence(ref, dec)


def _f1(spec: TaskModelSpec, pair: Pair) -> float:
    ref = original_output(pair, f"own:{spec.digest}", lambda _: detect(spec, pair.x))
    if len(ref.boxes) == 0:  # nothing to find again: NaN, and the decoded image is not run
        return math.nan
    dec = detect(spec, pair.y)
    labels = (ref.labels, dec.labels) if ref.labels is not None and dec.labels is not None else None
    return detection_scores(ref.boxes, dec.boxes, labels=labels).f1


def metric(spec: TaskModelSpec, base: str) -> Callable[[Pair], float]:
    """``task-top1``, ``task-kl`` or ``task-f1`` of the model ``spec`` on a pair (one model run per pair)."""
    def compute(pair: Pair) -> float:
        if base == "task-f1":
            return float(scores_once(pair, f"own:{spec.digest}", lambda p: _f1(spec, p)))
        top1, kl = scores_once(pair, f"own:{spec.digest}", lambda p: _agreement(spec, p))
        return top1 if base == "task-top1" else kl

    return compute
