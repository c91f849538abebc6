"""Machine-task metrics (coding for machines): the real models on small real images, scores against
hand-computed cases and independent computations, NaN where the original yields nothing, one task run
per original and per reconstruction, and ``bench run --tasks``."""

from __future__ import annotations

import csv
import io
import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFont

from bench.cli import main
from bench.metrics import DEFAULT_METRICS, METRIC_SETS, METRICS, TASK_SETS, compute_metrics, resolve_metrics
from bench.metrics import tasks as task_module
from bench.metrics.task_scores import (
    box_iou,
    character_error_rate,
    detection_scores,
    match_boxes,
    matching_score,
    reading_order,
    repeatability,
)

from .conftest import SHARED

TASK_METRICS = METRIC_SETS["tasks"]
LINES = ("CODEC BENCH", "read by machines")  # drawn on the test scene, read back by the OCR
TRAIN = SHARED / "datasets" / "train"
URBAN_TEXT = ("urban100_img_060.png", "urban100_img_083.png", "urban100_img_094.png")  # photos with signs


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def png_round_trip(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """The astronaut (a frontal face; SIFT keypoints) at 384 x 384 with a dark band at the bottom holding two
    lines of low-contrast text, 20 px (Pillow's bundled font): read exactly by the OCR, blurred by JPEG q=5."""
    img = Image.fromarray(skimage.data.astronaut()).resize((384, 384), Image.LANCZOS)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 294, 384, 384), fill=(40, 40, 60))
    font = ImageFont.load_default(size=20)
    for i, line in enumerate(LINES):
        draw.text((16, 300 + 34 * i), line, fill=(140, 140, 150), font=font)
    return np.asarray(img)


# --- scores against hand-computed cases and independent computations --------------------------------------
def test_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5], [2, 2, 5, 5], [0, 5, 5, 10]])
    # half overlap: 50 / 150; identical; disjoint; contained 25 / 100; a corner strip 25 / (100 + 50 - 25)
    assert box_iou(a, b)[0] == pytest.approx([1 / 3, 1.0, 0.0, 0.25, 25 / 125])


def rasterised_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two integer (x, y, w, h) boxes by counting pixels on a grid."""
    grid = np.zeros((2, 64, 64), bool)
    for mask, (x, y, w, h) in zip(grid, (a, b), strict=True):
        mask[y:y + h, x:x + w] = True
    union = np.logical_or(*grid).sum()
    return float(np.logical_and(*grid).sum() / union) if union else 0.0


def test_iou_equals_counting_pixels():
    rng = np.random.default_rng(1)
    boxes = np.column_stack([rng.integers(0, 30, (40, 2)), rng.integers(1, 30, (40, 2))])
    iou = box_iou(boxes[:20], boxes[20:])
    expected = [[rasterised_iou(a, b) for b in boxes[20:]] for a in boxes[:20]]
    assert iou == pytest.approx(np.array(expected), abs=1e-12)


def test_one_missed_and_one_spurious_detection():
    ref = np.array([[0, 0, 10, 10], [50, 50, 20, 20], [100, 0, 10, 10]])  # the third is missed
    dec = np.array([[50, 50, 20, 20], [2, 0, 10, 10], [200, 200, 8, 8]])  # shifted by 2 px; the third spurious
    scores = detection_scores(ref, dec)
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert scores.iou == pytest.approx((1.0 + 80 / 120) / 2)  # 8 x 10 overlap over 120 px union
    nothing = detection_scores(ref, np.zeros((0, 4)))
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.iou) == (0.0, 0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in vars(detection_scores(np.zeros((0, 4)), dec)).values())


def test_iou_threshold_is_inclusive_and_matching_one_to_one():
    ref = np.array([[0, 0, 10, 10]])
    assert match_boxes(ref, np.array([[0, 0, 10, 5]])) == [(0, 0, 0.5)]  # IoU exactly 0.5 matches
    assert detection_scores(ref, np.array([[0, 0, 10, 10], [0, 0, 10, 10]])).precision == 0.5  # a duplicate


def best_matching_total(iou: np.ndarray, threshold: float = 0.5) -> float:
    """Largest total IoU of a one-to-one matching over pairs with IoU >= threshold, by enumeration."""
    n, m = iou.shape
    best = 0.0
    for cols in itertools.permutations(range(max(n, m)), n):
        best = max(best, sum(iou[r, c] for r, c in enumerate(cols) if c < m and iou[r, c] >= threshold))
    return best


def test_matching_is_the_best_one_to_one_assignment():
    """Against enumeration of every assignment, on random clusters of overlapping boxes (greedy
    matching by largest IoU first is not always optimal)."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        ref = np.column_stack([rng.integers(0, 8, (4, 2)), rng.integers(8, 14, (4, 2))])
        dec = np.column_stack([rng.integers(0, 8, (3, 2)), rng.integers(8, 14, (3, 2))])
        matches = match_boxes(ref, dec)
        assert len({r for r, _, _ in matches}) == len({c for _, c, _ in matches}) == len(matches)
        assert sum(m[2] for m in matches) == pytest.approx(best_matching_total(box_iou(ref, dec)))


def levenshtein(a: str, b: str) -> int:
    """Edit distance by the textbook dynamic programme."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_character_error_rate():
    assert character_error_rate("kitten", "sitting") == pytest.approx(3 / 6)
    assert character_error_rate("CODEC\nBENCH", "") == 1.0
    assert character_error_rate("abc", "abc") == 0.0
    assert character_error_rate("ab", "xyzw") == 2.0  # insertions count: it may exceed 1
    assert math.isnan(character_error_rate("", "anything"))
    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = ("".join(rng.choice(list("ab cd\n"), rng.integers(1, 12))) for _ in range(2))
        assert character_error_rate(a, b) == levenshtein(a, b) / len(a)


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    def box(x: float, y: float) -> np.ndarray:
        return np.array([[x, y], [x + 40, y], [x + 40, y + 20], [x, y + 20]])

    boxes = [box(200, 103), box(10, 0), box(100, 98), box(120, 6), box(10, 100)]
    lines = ["row2c", "row1a", "row2b", "row1b", "row2a"]
    assert reading_order(boxes, lines) == "row1a\nrow1b\nrow2a\nrow2b\nrow2c"
    assert reading_order([], []) == ""


def test_repeatability_and_matching_by_hand():
    ref = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    dec = np.array([[1.0, 1.0], [10.0, 13.0]])
    assert repeatability(ref, dec, 2.5) == pytest.approx(1 / 3)  # 1.41 px: found; 3 px: not; 10 px: not
    assert repeatability(ref, dec, 3.0) == pytest.approx(2 / 3)  # the radius is inclusive
    ref_desc = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    dec_desc = np.array([[0.0, 1.0], [10.0, 0.0]])
    # keypoint 0: nearest 1 vs 10.05 -> distinct, 1.41 px away: a match; keypoint 1: distinct but 3 px away;
    # keypoint 2: 9 vs 14.1 -> 0.64 < 0.8 distinct, but its match is 27 px away
    assert matching_score(ref, ref_desc, dec, dec_desc, 2.5, 0.8) == pytest.approx(1 / 3)
    assert matching_score(ref, ref_desc, dec, dec_desc, 3.0, 0.8) == pytest.approx(2 / 3)
    assert matching_score(ref, ref_desc, dec, dec_desc, 3.0, 0.6) == pytest.approx(2 / 3)  # 2 fails 0.64 < 0.6
    assert matching_score(ref, ref_desc, dec, dec_desc, 30.0, 0.6) == pytest.approx(2 / 3)
    assert matching_score(ref, ref_desc, dec, dec_desc, 30.0, 0.8) == pytest.approx(1.0)
    assert repeatability(ref, dec[:0], 2.5) == 0.0 and math.isnan(repeatability(ref[:0], dec, 2.5))


def test_keypoint_scores_equal_kdtree_and_opencv_brute_force_matcher(scene):
    """On real SIFT features (the scene against JPEG q=30): repeatability against scipy's k-d tree, the
    matching score against OpenCV's BFMatcher knnMatch with the ratio test."""
    import cv2
    from scipy.spatial import cKDTree

    ref, dec = task_module.sift_features(scene), task_module.sift_features(jpeg(scene, 30))
    radius, ratio = task_module.KEYPOINT_RADIUS_PX, task_module.LOWE_RATIO
    assert 200 < len(ref.points) <= task_module.SIFT_FEATURES + 10
    dist, _ = cKDTree(dec.points).query(ref.points)
    assert repeatability(ref.points, dec.points, radius) == np.mean(dist <= radius)
    hits = 0
    for first, second in cv2.BFMatcher(cv2.NORM_L2).knnMatch(ref.descriptors, dec.descriptors, k=2):
        offset = dec.points[first.trainIdx] - ref.points[first.queryIdx]
        hits += first.distance < ratio * second.distance and math.hypot(*offset) <= radius
    assert matching_score(ref.points, ref.descriptors, dec.points, dec.descriptors, radius, ratio) == pytest.approx(
        hits / len(ref.points), abs=1.5 / len(ref.points))  # float32 distances: a tie may fall either way


# --- the models on real images ----------------------------------------------------------------------------
def test_the_scene_holds_a_face_the_drawn_text_and_keypoints(scene):
    assert len(task_module.detect_faces(scene)) == 1
    assert task_module.read_text(scene) == "\n".join(LINES)


def test_lossless_round_trip_scores_perfect_fidelity(scene):
    perfect = {"face-f1": 1.0, "face-precision": 1.0, "face-recall": 1.0, "face-iou": 1.0, "ocr-cer": 0.0,
               "sift-repeatability": 1.0, "sift-matching": 1.0}
    for rec in (scene.copy(), png_round_trip(scene)):
        assert compute_metrics(scene, rec, TASK_METRICS, ref_key="scene-lossless") == perfect


def test_heavy_jpeg_scores_lower_on_every_task(scene):
    light, heavy = (compute_metrics(scene, jpeg(scene, q), TASK_METRICS, ref_key="scene-jpeg") for q in (95, 5))
    assert heavy["face-iou"] < light["face-iou"] - 0.02 and heavy["face-f1"] <= light["face-f1"]
    assert heavy["ocr-cer"] > light["ocr-cer"] + 0.1
    assert heavy["sift-repeatability"] < light["sift-repeatability"] - 0.1
    assert heavy["sift-matching"] < light["sift-matching"] - 0.1
    for name in TASK_METRICS:  # each in the declared direction, or tied (F1 with one large face)
        better_or_equal = light[name] >= heavy[name] if METRICS[name].higher_is_better else light[name] <= heavy[name]
        assert better_or_equal, (name, light[name], heavy[name])


def test_nothing_in_the_original_gives_nan_without_a_warning():
    coffee = skimage.data.coffee()[::2, ::2].copy()  # no face
    flat = np.full((96, 128, 3), 128, np.uint8)  # no face, no text, no keypoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_coffee = compute_metrics(coffee, jpeg(coffee, 20), TASK_SETS["faces"])
        on_flat = [compute_metrics(flat, rec, TASK_METRICS, ref_key="flat") for rec in (flat.copy(), jpeg(flat, 5))]
    assert not caught, [str(w.message) for w in caught]
    assert all(math.isnan(v) for v in on_coffee.values())
    assert all(math.isnan(v) for m in on_flat for v in m.values()) and set(on_flat[0]) == set(TASK_METRICS)


def test_each_task_runs_once_per_original_and_once_per_reconstruction(scene, monkeypatch):
    calls = {name: 0 for name in ("detect_faces", "read_text", "sift_features")}

    def counted(name: str):
        real = getattr(task_module, name)

        def run(rgb: np.ndarray, **options):
            calls[name] += 1
            return real(rgb, **options)

        return run

    for name in calls:
        monkeypatch.setattr(task_module, name, counted(name))
    recs = [jpeg(scene, q) for q in (20, 50, 80)]
    for rec in recs:
        compute_metrics(scene, rec, TASK_METRICS, ref_key="scene-counted")
    assert calls == {name: 1 + len(recs) for name in calls}  # every metric of a task shares the pair's run


def test_ocr_runs_on_the_jobs_cuda_device_only_with_onnxruntimes_cuda_provider(monkeypatch):
    import onnxruntime
    import torch
    from rapidocr import RapidOCR

    assert task_module.ocr_cuda_device(torch.device("cpu")) is None
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert task_module.ocr_cuda_device(torch.device("cuda:1")) is None  # CPU-only onnxruntime: OCR on the CPU
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: both)
    assert task_module.ocr_cuda_device(torch.device("cuda:1")) == 1
    assert task_module.ocr_cuda_device(torch.device("cuda")) == 0
    assert "EngineConfig.onnxruntime.use_cuda" not in task_module.ocr_params(None)
    config = RapidOCR(params=task_module.ocr_params(1)).cfg.EngineConfig.onnxruntime  # the keys RapidOCR reads
    assert config.use_cuda is True and config.cuda_ep_cfg.device_id == 1


# --- registry, sets, CLI ----------------------------------------------------------------------------------
def test_sets_directions_and_descriptions():
    assert METRIC_SETS["tasks"] == tuple(n for names in TASK_SETS.values() for n in names)
    assert resolve_metrics(["default", "faces"]) == (*DEFAULT_METRICS, *TASK_SETS["faces"])
    assert resolve_metrics(None, tasks=["ocr"]) == (*DEFAULT_METRICS, "ocr-cer")  # run --tasks keeps the default
    assert resolve_metrics(["psnr-rgb"], tasks=["features"]) == ("psnr-rgb", *TASK_SETS["features"])
    assert resolve_metrics(["face-iou"]) == ("face-f1", "face-iou")  # one detection run per pair, charged to F1
    assert resolve_metrics(["sift-matching"]) == ("sift-repeatability", "sift-matching")
    assert [n for n in TASK_METRICS if not METRICS[n].higher_is_better] == ["ocr-cer"]
    assert not any(METRICS[n].default for n in TASK_METRICS)
    assert {METRICS[n].library for n in TASK_METRICS} == {"opencv-python-headless", "rapidocr"}
    sift = METRICS["sift-matching"].description
    assert f"{task_module.SIFT_FEATURES} strongest" in sift and f"{task_module.KEYPOINT_RADIUS_PX} px" in sift
    assert f"ratio test {task_module.LOWE_RATIO}" in sift
    assert all(not METRICS[n].available() for n in TASK_METRICS)


def test_unknown_task_is_a_one_line_error(capsys, tmp_path):
    assert main(["run", "--dataset", "sample", "--codecs", "jpeg", "--tasks", "faces,face",
                 "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("error: unknown task 'face' (known: faces, ocr, features); "
                                       "did you mean 'faces'?\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_run_with_tasks_stores_their_columns(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--dataset", "sample", "--codecs", "jpeg:q=30/90", "--tasks", "faces,features", "--jobs", "1",
                 "--out", str(out), "--quiet"]) == 0
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    wanted = (*DEFAULT_METRICS, *TASK_SETS["faces"], *TASK_SETS["features"])
    assert set(wanted) <= set(rows[0]) and "ocr-cer" not in rows[0]
    assert len(rows) == 10
    for row in rows:
        if row["image"] == "astronaut":
            assert float(row["face-f1"]) == 1.0
        if row["image"] == "coffee":  # no face: NaN, stored empty
            assert row["face-f1"] == row["face-iou"] == ""
        assert 0 < float(row["sift-matching"]) <= float(row["sift-repeatability"]) <= 1


# --- photos with text (beside a developer's checkout) -----------------------------------------------------
@pytest.fixture
def urban_text() -> list[Path]:
    paths = [TRAIN / name for name in URBAN_TEXT]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"Urban100 photos with text not available at {TRAIN} (missing {', '.join(missing)})")
    return paths


@pytest.mark.slow
def test_heavy_jpeg_raises_the_cer_on_photos_with_signs(urban_text):
    for path in urban_text:
        ref = np.asarray(Image.open(path).convert("RGB"))
        assert task_module.read_text(ref), f"{path.name}: no text found in the original"
        light, heavy = (compute_metrics(ref, jpeg(ref, q), ("ocr-cer",), ref_key=path.name)["ocr-cer"]
                        for q in (95, 5))
        assert heavy > light and heavy > 0.3, (path.name, light, heavy)
