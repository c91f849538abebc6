"""Scores of a vision task's output on a decoded image against its output on the original, which
serves as pseudo ground truth (no labels): pure functions on boxes, strings and keypoints.

- Detections (``detection_scores``): boxes are (x, y, w, h) in pixels, areas continuous (w·h, no +1);
  the decoded image's boxes are matched one to one to the original's, maximising the total IoU over
  pairs with IoU ≥ ``IOU_THRESHOLD`` (Hungarian assignment, scipy ``linear_sum_assignment``).
- Text (``reading_order``, ``character_error_rate``): recognised lines in a fixed reading order,
  and the Levenshtein distance to the original's text over its length.
- Keypoints (``repeatability``, ``matching_score``): same geometry (no homography), a keypoint is found
  again when one lies within a radius in pixels; descriptors matched by nearest neighbour with Lowe's
  ratio test.

Where the original yields nothing (no box, no text, no keypoint) every score is NaN. Where the original
yields something and the decoded image nothing, the scores are 0 (CER: 1), so a score falls as the
task fails instead of dropping out of averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5  # a detection matches when its IoU with the original's box is at least this (PASCAL VOC)
ROW_TOLERANCE_PX = 10.0  # text boxes whose tops differ by at most this are one row, read left to right (PaddleOCR)


# --- detections ---------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n x 4) with every box of ``b`` (m x 4), boxes (x, y, w, h) in pixels: n x m."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax0, ay0, aw, ah = (a[:, i:i + 1] for i in range(4))
    bx0, by0, bw, bh = (b[None, :, i] for i in range(4))
    inter_w = np.clip(np.minimum(ax0 + aw, bx0 + bw) - np.maximum(ax0, bx0), 0, None)
    inter_h = np.clip(np.minimum(ay0 + ah, by0 + bh) - np.maximum(ay0, by0), 0, None)
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


Labels = tuple[np.ndarray, np.ndarray]  # (original's, decoded's) class of each box


def match_boxes(ref: np.ndarray, dec: np.ndarray, threshold: float = IOU_THRESHOLD,
                labels: Labels | None = None) -> list[tuple[int, int, float]]:
    """One-to-one matches (original index, decoded index, IoU) with IoU ≥ ``threshold``, of maximum total IoU;
    with ``labels``, boxes of different classes never match."""
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(ref, dec)
    if labels is not None:
        same = np.asarray(labels[0]).reshape(-1, 1) == np.asarray(labels[1]).reshape(1, -1)
        iou = np.where(same, iou, 0.0)
    if iou.size == 0:
        return []
    eligible = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


@dataclass(frozen=True)
class DetectionScores:
    """Detections of a decoded image against the original's: precision, recall, F1 and mean IoU of the
    matched pairs, each in [0, 1] (NaN when the original has no detection)."""
    precision: float
    recall: float
    f1: float
    iou: float


def detection_scores(ref: np.ndarray, dec: np.ndarray, threshold: float = IOU_THRESHOLD,
                     labels: Labels | None = None) -> DetectionScores:
    """Precision = matched / decoded boxes (0 when the decoded image has none), recall = matched / original
    boxes, F1 = 2·matched / (original + decoded), IoU = mean IoU of the matched pairs (0 when none matches);
    ``labels``: matched boxes have the same class."""
    n_ref, n_dec = len(np.asarray(ref).reshape(-1, 4)), len(np.asarray(dec).reshape(-1, 4))
    if n_ref == 0:
        return DetectionScores(math.nan, math.nan, math.nan, math.nan)
    matches = match_boxes(ref, dec, threshold, labels)
    hits = len(matches)
    return DetectionScores(precision=hits / n_dec if n_dec else 0.0, recall=hits / n_ref,
                           f1=2 * hits / (n_ref + n_dec),
                           iou=float(np.mean([m[2] for m in matches])) if matches else 0.0)


# --- text -------------------------------------------------------------------------------------------
def reading_order(boxes: Sequence[np.ndarray], lines: Sequence[str], tolerance: float = ROW_TOLERANCE_PX) -> str:
    """Recognised ``lines`` (one per box, each box a polygon of (x, y) points in pixels) joined by newlines in
    reading order: by top edge, boxes whose tops lie within ``tolerance`` of a row's first one form that row,
    read by left edge."""
    items = sorted(((float(np.min(np.asarray(b)[:, 1])), float(np.min(np.asarray(b)[:, 0])), text)
                    for b, text in zip(boxes, lines, strict=True)))
    rows: list[list[tuple[float, float, str]]] = []
    for item in items:
        if rows and item[0] - rows[-1][0][0] <= tolerance:
            rows[-1].append(item)
        else:
            rows.append([item])
    return "\n".join(text for row in rows for _, _, text in sorted(row, key=lambda it: (it[1], it[0])))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance (insertions, deletions, substitutions of characters) from ``hypothesis`` to
    ``reference`` over the length of ``reference``; 0 = same text, may exceed 1; NaN for an empty reference."""
    from rapidfuzz.distance import Levenshtein

    if not reference:
        return math.nan
    return Levenshtein.distance(reference, hypothesis) / len(reference)


# --- keypoints --------------------------------------------------------------------------------------
def _nearest_distances(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a`` (n x d), the indices (n x k) and Euclidean distances (n x k) of its ``k`` nearest
    rows of ``b`` (m x d, m ≥ k), nearest first; float64 squared-distance expansion."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    part = np.argpartition(sq, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(sq, part, axis=1)
    order = np.argsort(near, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.sqrt(np.clip(np.take_along_axis(near, order, axis=1), 0, None))


def repeatability(ref_points: np.ndarray, dec_points: np.ndarray, radius: float) -> float:
    """Fraction of the original's keypoints (n x 2, x y in pixels) with a decoded keypoint within ``radius``
    pixels (same geometry); NaN without original keypoints, 0 without decoded ones."""
    if len(ref_points) == 0:
        return math.nan
    if len(dec_points) == 0:
        return 0.0
    _, dist = _nearest_distances(ref_points, dec_points, 1)
    return float(np.mean(dist[:, 0] <= radius))


def matching_score(ref_points: np.ndarray, ref_desc: np.ndarray, dec_points: np.ndarray, dec_desc: np.ndarray,
                   radius: float, ratio: float) -> float:
    """Fraction of the original's keypoints whose nearest decoded descriptor (L2) passes Lowe's ratio test
    (nearest < ``ratio`` · second nearest; a single decoded keypoint passes) and lies within ``radius`` pixels
    of the original keypoint's position; NaN without original keypoints, 0 without decoded ones."""
    if len(ref_points) == 0:
        return math.nan
    if len(dec_points) == 0:
        return 0.0
    idx, dist = _nearest_distances(ref_desc, dec_desc, min(2, len(dec_desc)))
    distinct = dist[:, 0] < ratio * dist[:, 1] if dist.shape[1] == 2 else np.ones(len(dist), bool)
    offset = np.asarray(dec_points, np.float64)[idx[:, 0]] - np.asarray(ref_points, np.float64)
    near = np.hypot(offset[:, 0], offset[:, 1]) <= radius
    return float(np.mean(distinct & near))
