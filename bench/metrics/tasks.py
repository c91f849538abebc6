"""Coding for machines: a vision task run on the original and on the decoded image, the decoded
image's output scored against the original's, which serves as pseudo ground truth (no labels needed,
as the MPEG VCM literature does when none exist). Scores are in ``bench/metrics/task_scores.py``.

| metric | better | task and score |
|---|---|---|
| ``face-f1``, ``face-precision``, ``face-recall`` | higher | OpenCV Haar frontal faces, one-to-one at IoU ≥ 0.5 |
| ``face-iou`` | higher | mean IoU of the matched face boxes (0 when none matches) |
| ``ocr-cer`` | lower | RapidOCR text in reading order: Levenshtein distance / length of the original's text |
| ``sift-repeatability`` | higher | OpenCV SIFT keypoints of the original with a decoded one within 2.5 px |
| ``sift-matching`` | higher | ... whose ratio-test descriptor match lands within 2.5 px of the same position |

The task runs once per original and process: its output is kept with the original's statistics
(``engine.ref_stats``: an LRU of a few originals keyed by the caller's pixel hash ``ref_key``), and
once per reconstruction: the scores of all metrics of a task come from one run per pair. Where the
original yields nothing (no face, no text, no keypoint) the task's metrics are NaN, without a warning.
Models load once per process; in a worker (``OMP_NUM_THREADS`` set) OpenCV and ONNX Runtime use
that many threads. OCR runs on the job's CUDA device when ONNX Runtime has its CUDA provider
(``onnxruntime-gpu``); the pip wheels of OpenCV have no CUDA, so faces and SIFT run on the CPU.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .optional import MetricUnavailable
from .per_object import PerObject
from .task_scores import DetectionScores, character_error_rate, detection_scores, matching_score, reading_order
from .task_scores import repeatability as keypoint_repeatability

if TYPE_CHECKING:
    import torch

    from .engine import Pair

FACE_CASCADE = "haarcascade_frontalface_default.xml"  # in opencv-python-headless's cv2.data.haarcascades
# OpenCV's default scale step (each detection scale 1.1x the previous): finer steps cost time, coarser ones
# make a box's size jump between scales, so that mild distortions would move boxes below IoU 0.5.
FACE_SCALE_FACTOR = 1.1
# Overlapping raw detections a face needs: OpenCV's default 3 keeps many spurious hits on textured photos,
# which would make the pseudo ground truth mostly noise; 5 is the customary value for photos.
FACE_MIN_NEIGHBORS = 5
# Smallest face (pixels, width and height): the cascade's 24x24 window finds mostly texture below ~30 px.
FACE_MIN_SIZE = (30, 30)
SIFT_FEATURES = 1000  # strongest SIFT keypoints kept per image (speed, and a fixed budget per image)
KEYPOINT_RADIUS_PX = 2.5  # a keypoint is found again within this distance (same geometry, no homography)
LOWE_RATIO = 0.8  # nearest descriptor distance < 0.8 x second nearest (Lowe 2004)
OCR_PARAMS: dict[str, Any] = {"Global.log_level": "error"}  # rapidocr's defaults otherwise (no INFO/WARNING lines)
TASKS = ("faces", "ocr", "features")
MODULES = {"faces": ("cv2",), "ocr": ("rapidocr", "onnxruntime", "rapidfuzz"), "features": ("cv2",)}
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "rapidocr": "rapidocr", "onnxruntime": "onnxruntime",
                 "rapidfuzz": "rapidfuzz"}


def installed(task: str) -> None:
    """``MetricUnavailable`` naming what to install when a module ``task`` needs is missing (not imported)."""
    missing = [DISTRIBUTIONS[m] for m in MODULES[task] if importlib.util.find_spec(m) is None]
    if missing:
        raise MetricUnavailable(f"the {task} task needs {', '.join(missing)}: pip install {' '.join(missing)}")


def _threads() -> int:
    """Threads per model: the worker's ``OMP_NUM_THREADS``, else 0 (the library's default)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def _cv2() -> Any:
    import cv2

    if _threads():
        cv2.setNumThreads(_threads())
    return cv2


# --- the tasks on one image -------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    cv2 = _cv2()
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, FACE_CASCADE))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load {FACE_CASCADE} from {cv2.data.haarcascades}")
    return cascade


def detect_faces(rgb: np.ndarray) -> np.ndarray:
    """Frontal faces in a uint8 RGB image: (n, 4) boxes (x, y, w, h) in pixels, float64."""
    cv2 = _cv2()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    boxes = _cascade().detectMultiScale(gray, scaleFactor=FACE_SCALE_FACTOR, minNeighbors=FACE_MIN_NEIGHBORS,
                                        minSize=FACE_MIN_SIZE)
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def ocr_cuda_device(device: torch.device) -> int | None:
    """The CUDA device index OCR runs on for a job on ``device``: its index when ``device`` is CUDA and ONNX
    Runtime has the CUDA provider (``onnxruntime-gpu``), else None (the CPU)."""
    if device.type != "cuda":
        return None
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return None
    return device.index or 0


def ocr_params(cuda_device: int | None) -> dict[str, Any]:
    """RapidOCR's parameters: quiet, the worker's thread count, and the CUDA device when one is given."""
    params = dict(OCR_PARAMS)
    if _threads():
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = _threads()
    if cuda_device is not None:
        params["EngineConfig.onnxruntime.use_cuda"] = True
        params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = cuda_device
    return params


@functools.lru_cache(maxsize=2)
def _ocr_engine(cuda_device: int | None) -> Any:
    from rapidocr import RapidOCR

    return RapidOCR(params=ocr_params(cuda_device))


def read_text(rgb: np.ndarray, cuda_device: int | None = None) -> str:
    """The text RapidOCR recognises in a uint8 RGB image, lines in reading order joined by newlines."""
    result = _ocr_engine(cuda_device)(np.ascontiguousarray(rgb[..., ::-1]))  # an ndarray is read as BGR
    if not getattr(result, "txts", None):
        return ""
    return reading_order(list(result.boxes), list(result.txts))


@functools.lru_cache(maxsize=1)
def _sift() -> Any:
    return _cv2().SIFT_create(nfeatures=SIFT_FEATURES)


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (n, 2) x, y in pixels
    descriptors: np.ndarray  # (n, 128) float32


def sift_features(rgb: np.ndarray) -> Keypoints:
    """SIFT keypoints (at most about ``SIFT_FEATURES``) and descriptors of a uint8 RGB image's grey levels."""
    cv2 = _cv2()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    keypoints, descriptors = _sift().detectAndCompute(gray, None)
    points = np.asarray([k.pt for k in keypoints], np.float64).reshape(-1, 2)
    return Keypoints(points, np.zeros((0, 128), np.float32) if descriptors is None else descriptors)


# --- per original and per pair ----------------------------------------------------------------------
_REF_OUTPUT = PerObject()  # per original's statistics (cached across reconstructions by ref_key): {task: output}
_PAIR_SCORES = PerObject()  # per pair: {task: scores}


def original_output(pair: Pair, task: str, run: Callable[[np.ndarray], Any]) -> Any:
    """The task's output on the original, computed once per original's statistics."""
    outputs = _REF_OUTPUT.get(pair.stats, dict)
    if task not in outputs:
        outputs[task] = run(pair.ref)
    return outputs[task]


def scores_once(pair: Pair, task: str, score: Callable[[Pair], Any]) -> Any:
    """``score(pair)``, computed once per pair and task."""
    scores = _PAIR_SCORES.get(pair, dict)
    if task not in scores:
        scores[task] = score(pair)
    return scores[task]


def _face_scores(pair: Pair) -> DetectionScores:
    ref = original_output(pair, "faces", detect_faces)
    if len(ref) == 0:  # NaN scores: the decoded image is not run
        return detection_scores(ref, np.zeros((0, 4)))
    return detection_scores(ref, detect_faces(pair.rec))


def face(field: str) -> Callable[[Pair], float]:
    """One of ``DetectionScores``'s fields (precision, recall, f1, iou) for the face task."""
    def compute(pair: Pair) -> float:
        return float(getattr(scores_once(pair, "faces", _face_scores), field))

    return compute


def _cer(pair: Pair) -> float:
    read = functools.partial(read_text, cuda_device=ocr_cuda_device(pair.stats.device))
    ref = original_output(pair, "ocr", read)
    return character_error_rate(ref, read(pair.rec)) if ref else math.nan


def ocr_cer(pair: Pair) -> float:
    """Character error rate of the decoded image's text against the original's."""
    return float(scores_once(pair, "ocr", _cer))


def _feature_scores(pair: Pair) -> tuple[float, float]:
    ref = original_output(pair, "features", sift_features)
    if len(ref.points) == 0:
        return math.nan, math.nan
    dec = sift_features(pair.rec)
    return (keypoint_repeatability(ref.points, dec.points, KEYPOINT_RADIUS_PX),
            matching_score(ref.points, ref.descriptors, dec.points, dec.descriptors, KEYPOINT_RADIUS_PX, LOWE_RATIO))


def sift(field: str) -> Callable[[Pair], float]:
    """``repeatability`` or ``matching`` of the decoded image's SIFT keypoints against the original's."""
    index = ("repeatability", "matching").index(field)

    def compute(pair: Pair) -> float:
        return float(scores_once(pair, "features", _feature_scores)[index])

    return compute
