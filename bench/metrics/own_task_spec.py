"""Your own task model, its light half (no torch): the spec of ``bench run --task-model FILE.py:FUNC
--task-weights WEIGHTS``, its digest and the names of its metrics. The model runs in ``own_task.py``.

A model is named by a digest of its file, its function's name and its weights (``DIGEST_CHARS`` hex
digits of SHA-256), and its metrics carry it: ``task-top1@<digest>`` and ``task-kl@<digest>`` for a
classifier, ``task-f1@<digest>`` for a detector. Stored values are kept per metric name, so another
model (another file, function or weights) is another metric: it never reuses the first one's values,
and both keep their columns side by side. Only FILE.py itself is hashed, not modules it imports.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import BenchError
from ..model import TaskModelSpec
from .optional import MetricUnavailable

DIGEST_CHARS = 8
DETECTION_SCORE_THRESHOLD = 0.5  # a detector's boxes with a score at least this count (torchvision's convention)
KINDS = {"classifier": ("task-top1", "task-kl"), "detector": ("task-f1",)}
# metric (without its digest) -> (higher is better, unit, definition)
OWN_METRICS = {
    "task-top1": (True, "", "your classifier's top-1 class on the decoded image is the original's (1) or not (0); "
                  "its mean over images is the top-1 agreement"),
    "task-kl": (False, "nats", "KL(p_original || p_decoded) of your classifier's softmax outputs; lower is better"),
    "task-f1": (True, "", f"F1 of your detector's boxes (score >= {DETECTION_SCORE_THRESHOLD}) on the decoded image "
                "against the original's: one-to-one at IoU >= 0.5, same labels when it gives labels"),
}
NAME = re.compile(rf"^({'|'.join(OWN_METRICS)})@([0-9a-f]{{{DIGEST_CHARS}}})$")


class TaskModelError(BenchError, MetricUnavailable):
    """The task model cannot be used (file, function, weights or output): one line naming the file and the
    problem. A ``BenchError`` for the command line; an ``ImportError`` so that a worker fails the job
    rather than store NaN."""


def digest_of(file: str | Path, function: str, weights: str | Path) -> str:
    """SHA-256 of the model file's bytes, the function's name and the weights file's bytes, ``DIGEST_CHARS`` hex."""
    sha = hashlib.sha256()
    sha.update(Path(file).read_bytes() + b"\0" + function.encode() + b"\0")
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:DIGEST_CHARS]


def task_model_spec(model: str, weights: str) -> TaskModelSpec:
    """The spec of ``--task-model FILE.py:FUNC --task-weights WEIGHTS`` (paths resolved against the working
    directory), its kind not probed yet; ``TaskModelError`` for a malformed spec or a missing file."""
    file, sep, function = model.strip().rpartition(":")
    if not sep or not file or not function.isidentifier():
        raise TaskModelError(f"--task-model {model!r}: expected path/to/file.py:FUNCTION")
    path, weights_path = Path(file).expanduser().resolve(), Path(weights).expanduser().resolve()
    if not path.is_file():
        raise TaskModelError(f"task model file {path} not found (--task-model)")
    if not weights_path.is_file():
        raise TaskModelError(f"task weights file {weights_path} not found (--task-weights)")
    return TaskModelSpec(str(path), function, str(weights_path), digest_of(path, function, weights_path))


def metric_names(spec: TaskModelSpec) -> tuple[str, ...]:
    """The metrics of a probed model: ``task-top1@<digest>``, ``task-kl@<digest>`` or ``task-f1@<digest>``."""
    return tuple(f"{base}@{spec.digest}" for base in KINDS[spec.kind])


def parse_name(name: str) -> tuple[str, str] | None:
    """(metric without digest, digest) of an own-task metric name, else None."""
    found = NAME.match(name)
    return (found.group(1), found.group(2)) if found else None
