"""Your own task model (``run --task-model FILE.py:FUNC --task-weights WEIGHTS``): tiny models that the tests
write and save themselves; scores against direct torch computations and hand-made cases, one model run per
original and per reconstruction, one-line errors, and results never shared between models (by digest)."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.analysis.per_metric import choose_metric_set
from bench.cli import main
from bench.metrics import (
    METRICS,
    compute_metrics,
    is_task_metric,
    metric_set,
    own_task,
    register_stored,
    register_task_model,
)
from bench.metrics.own_task_spec import TaskModelError, parse_name, task_model_spec
from bench.metrics.task_scores import detection_scores
from bench.model import TaskModelSpec
from bench.report.tasks import CSV_NAME as TASKS_CSV
from bench.report.tasks import task_metrics

from .conftest import photo

MODELS = '''
import torch
from torch import nn


class Pool(nn.Module):
    """A classifier: the image averaged over a 4 x 4 grid, then a linear layer to 10 logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


class Cells(nn.Module):
    """A detector: the cells of a 4 x 4 grid brighter than `level`, as boxes labelled by their brightest channel."""

    def __init__(self):
        super().__init__()
        self.level = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        h, w = x.shape[2:]
        cells = nn.functional.adaptive_avg_pool2d(x, 4)[0]
        rows, cols = torch.nonzero(cells.mean(0) > self.level, as_tuple=True)
        boxes = torch.stack([cols * w / 4, rows * h / 4, (cols + 1) * w / 4, (rows + 1) * h / 4], 1).float()
        return [{"boxes": boxes, "scores": torch.ones(len(boxes)), "labels": cells[:, rows, cols].argmax(0)}]


class Mean(nn.Module):
    """Neither kind: a dict holding the mean."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return {"mean": x.mean() * self.scale}


def classifier():
    return Pool()


def detector():
    return Cells()


def neither():
    return Mean()
'''


@pytest.fixture(autouse=True)
def registry():
    """Leave ``METRICS`` as it was: the tests register their models' metrics in this process."""
    saved = dict(METRICS)
    yield
    METRICS.clear()
    METRICS.update(saved)


def save(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """``models.py`` and its weights: ``classifier.pt`` (seed 0), ``classifier-1.pt`` (seed 1), ``detector.pt``
    (level 0.3), ``neither.pt``."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "models.py").write_text(MODELS)
    namespace: dict = {}
    exec(MODELS, namespace)
    for seed, name in ((0, "classifier.pt"), (1, "classifier-1.pt")):
        torch.manual_seed(seed)
        save(namespace["classifier"](), folder / name)
    detector = namespace["detector"]()
    with torch.no_grad():
        detector.level.fill_(0.3)
    save(detector, folder / "detector.pt")
    save(namespace["neither"](), folder / "neither.pt")
    return folder


def probed(models: Path, function: str, weights: str) -> TaskModelSpec:
    """The spec of ``models.py:function`` with ``weights``, probed for its kind."""
    return own_task.probe(task_model_spec(f"{models / 'models.py'}:{function}", str(models / weights)))


def register(models: Path, function: str, weights: str) -> tuple[str, ...]:
    """Probe ``models.py:function`` with ``weights`` and register its metrics, as ``bench run`` does."""
    return register_task_model(probed(models, function, weights))


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def direct_logits(models: Path, weights: str, rgb: np.ndarray) -> torch.Tensor:
    """The classifier run here with torch alone: float32 RGB / 255, (1, 3, H, W)."""
    namespace: dict = {}
    exec(MODELS, namespace)
    model = namespace["classifier"]()
    model.load_state_dict(torch.load(models / weights, weights_only=True))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255)


# --- classifier ---------------------------------------------------------------------------------------
def test_classifier_metrics_are_named_by_digest_and_lossless_scores_perfect_agreement(models):
    names = register(models, "classifier", "classifier.pt")
    assert [parse_name(n)[0] for n in names] == ["task-top1", "task-kl"]  # type: ignore[index]
    assert len({parse_name(n)[1] for n in names}) == 1  # type: ignore[index]
    assert METRICS[names[0]].higher_is_better and not METRICS[names[1]].higher_is_better
    assert METRICS[names[1]].unit == "nats" and metric_set(names[0]) == "own task"
    rgb = photo(192, 256)
    values = compute_metrics(rgb, rgb.copy(), names, ref_key="own-lossless")
    assert values[names[0]] == 1.0 and abs(values[names[1]]) <= 1e-6


def test_heavy_jpeg_kl_equals_torch_computed_here(models):
    names = register(models, "classifier", "classifier.pt")
    for name in ("astronaut", "coffee", "chelsea"):
        rgb = photo(160, 224, name)
        rec = jpeg(rgb, 5)
        values = compute_metrics(rgb, rec, names, ref_key=f"own-jpeg-{name}")
        ref, dec = (direct_logits(models, "classifier.pt", img).double() for img in (rgb, rec))
        kl = float(torch.sum(torch.softmax(ref, 1) * (torch.log_softmax(ref, 1) - torch.log_softmax(dec, 1))))
        assert kl > 0 and values[names[1]] == pytest.approx(kl, rel=1e-6, abs=1e-12), name
        assert values[names[0]] == float(int(ref.argmax()) == int(dec.argmax()))


def test_model_runs_once_per_original_and_once_per_reconstruction(models, monkeypatch):
    names = register(models, "classifier", "classifier.pt")
    calls = []
    real = own_task.run_model
    monkeypatch.setattr(own_task, "run_model", lambda spec, x: calls.append(x.shape) or real(spec, x))
    rgb = photo(128, 160)
    for quality in (20, 50, 80):
        compute_metrics(rgb, jpeg(rgb, quality), names, ref_key="own-counted")
    assert len(calls) == 1 + 3  # both metrics of a pair share its run; the original's output is kept


# --- detector -----------------------------------------------------------------------------------------
def test_detector_lossless_f1_is_one_and_an_original_without_boxes_is_nan(models):
    spec = probed(models, "detector", "detector.pt")
    (name,) = register_task_model(spec)
    assert spec.kind == "detector" and parse_name(name)[0] == "task-f1"  # type: ignore[index]
    rgb = photo(192, 256)
    assert len(own_task.detect(spec, torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()).boxes) > 0
    assert compute_metrics(rgb, rgb.copy(), (name,), ref_key="own-det")[name] == 1.0
    assert 0.0 <= compute_metrics(rgb, jpeg(rgb, 5), (name,), ref_key="own-det")[name] <= 1.0
    dark = np.full((64, 96, 3), 20, np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(compute_metrics(dark, jpeg(dark, 5), (name,))[name])
    assert not caught, [str(w.message) for w in caught]


def test_labels_keep_classes_apart():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert detection_scores(box, box, labels=(np.array([1]), np.array([1]))).f1 == 1.0
    assert detection_scores(box, box, labels=(np.array([1]), np.array([2]))).f1 == 0.0
    two = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0]])  # the same place, two classes
    scores = detection_scores(two, two[::-1], labels=(np.array([1, 2]), np.array([2, 1])))
    assert scores.f1 == 1.0 and scores.iou == 1.0


def test_detections_are_thresholded_and_converted_to_xywh():
    out = {"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.0, 0.0, 5.0, 5.0]]), "scores": torch.tensor([0.5, 0.49]),
           "labels": torch.tensor([3, 4])}
    found = own_task.detections(out)
    assert found.boxes.tolist() == [[1.0, 2.0, 10.0, 20.0]] and found.labels.tolist() == [3]  # type: ignore[union-attr]


# --- errors, identity ---------------------------------------------------------------------------------
def test_an_output_of_neither_kind_is_one_line_naming_it(models):
    with pytest.raises(TaskModelError) as err:
        register(models, "neither", "neither.pt")
    message = str(err.value)
    assert "\n" not in message and "neither() of" in message and "a dict {'mean': a torch.float32 tensor of shape ()}" \
        in message and "(1, K)" in message


def test_changed_files_are_refused_by_a_process_that_loads_the_model(models):
    spec = probed(models, "classifier", "classifier.pt")
    (models / "classifier.pt").write_bytes((models / "classifier-1.pt").read_bytes())
    own_task._loaded.cache_clear()  # as in a worker that starts after the change (a loaded model is kept)
    with pytest.raises(TaskModelError, match="changed since the run started"):
        own_task.loaded(spec, "cpu")


def test_stored_names_are_known_without_their_model():
    register_stored(["psnr-rgb", "task-kl@0123abcd", "task-top1@0123abcd", "task-kl@xyz", "task-f2@0123abcd"])
    assert METRICS["task-kl@0123abcd"].unit == "nats" and not METRICS["task-kl@0123abcd"].higher_is_better
    assert "task-kl@xyz" not in METRICS and "task-f2@0123abcd" not in METRICS
    assert "not loaded" in METRICS["task-top1@0123abcd"].available()
    with pytest.raises(TaskModelError):
        METRICS["task-top1@0123abcd"].compute(None)  # type: ignore[arg-type]


def test_own_task_metrics_are_machine_tasks_not_people_metrics():
    assert is_task_metric("task-kl@0123abcd") and is_task_metric("face-f1") and not is_task_metric("psnr-rgb")
    assert not is_task_metric("task-kl@xyz")
    columns, _ = choose_metric_set(["psnr-rgb", "task-kl@0123abcd", "sift-matching"], (), ())
    assert columns == ["psnr-rgb"]
    assert task_metrics(["psnr-rgb", "task-kl@0123abcd", "sift-matching"]) == ["task-kl@0123abcd", "sift-matching"]


@pytest.mark.slow
def test_report_shows_the_own_model_among_the_machine_tasks(models, tmp_path):
    out = tmp_path / "out"
    task = ["--task-model", f"{models / 'models.py'}:classifier", "--task-weights", str(models / "classifier.pt")]
    argv = run(out, *task)
    argv[argv.index("jpeg:q=30")] = "jpeg:q=10/30/50/70/90,webp:q=10/30/50/70/90"
    assert main(argv) == 0 and main(["report", str(out), "--anchor", "jpeg"]) == 0
    tasks = set(pd.read_csv(out / TASKS_CSV)["metric"])
    own = {m for m in tasks if parse_name(m)}
    assert {parse_name(m)[0] for m in own} == {"task-top1", "task-kl"}  # type: ignore[index]
    assert not own & set(pd.read_csv(out / "bd_rate_per_metric.csv")["metric"])
    assert all(f"{m}: 5 of 5 images" in (out / "report.md").read_text() for m in own)


def run(out: Path, *task: str) -> list[str]:
    return ["run", "--dataset", "sample", "--codecs", "jpeg:q=30", "--metrics", "psnr-rgb", "--jobs", "1", "--quiet",
            "--out", str(out), *task]


@pytest.mark.parametrize("case", ["no weights", "missing weights", "wrong weights", "no function", "no model"])
def test_errors_are_one_line_naming_the_file(models, tmp_path, capsys, case):
    file, weights = f"{models / 'models.py'}", str(models / "classifier.pt")
    options, expected = {
        "no weights": (["--task-model", f"{file}:classifier"], "--task-model needs --task-weights WEIGHTS too"),
        "missing weights": (["--task-model", f"{file}:classifier", "--task-weights", str(tmp_path / "gone.pt")],
                            f"task weights file {tmp_path / 'gone.pt'} not found"),
        "wrong weights": (["--task-model", f"{file}:detector", "--task-weights", weights],
                          f"task weights file {weights} does not load into detector() of {file}"),
        "no function": (["--task-model", f"{file}:clasifier", "--task-weights", weights],
                        f"task model file {file} has no function 'clasifier'; did you mean 'classifier'?"),
        "no model": (["--task-model", f"{tmp_path / 'gone.py'}:build", "--task-weights", weights],
                     f"task model file {tmp_path / 'gone.py'} not found"),
    }[case]
    assert main(run(tmp_path / "out", *options)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_cluster_is_refused_in_one_line(models, tmp_path, capsys):
    options = ["--task-model", f"{models / 'models.py'}:classifier", "--task-weights", str(models / "classifier.pt"),
               "--scheduler", "tcp://127.0.0.1:1"]
    assert main(run(tmp_path / "out", *options)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --task-model runs on this machine's worker processes only") and err.count("\n") == 1


def per_image(out: Path) -> list[dict[str, str]]:
    with open(out / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_other_weights_never_reuse_the_first_models_stored_values(models, tmp_path, capsys):
    out, file = tmp_path / "out", f"{models / 'models.py'}:classifier"
    first, second = (["--task-model", file, "--task-weights", str(models / w)] for w in ("classifier.pt",
                                                                                         "classifier-1.pt"))
    assert main(run(out, *first)) == 0
    assert "5 measured, 0 cached" in capsys.readouterr().out
    rows = per_image(out)
    (a_top1, a_kl) = [c for c in rows[0] if c.startswith("task-")]
    assert main(run(out, *second)) == 0
    assert "5 measured, 0 cached" in capsys.readouterr().out  # the other model's metrics measured, not reused
    assert main(run(out, *first)) == 0
    assert "0 measured, 5 cached" in capsys.readouterr().out  # the first model again: its stored values
    again = per_image(out)
    b_columns = [c for c in again[0] if c.startswith("task-") and c not in (a_top1, a_kl)]
    assert [parse_name(c)[0] for c in b_columns] == ["task-top1", "task-kl"]  # type: ignore[index]
    assert [r[a_kl] for r in again] == [r[a_kl] for r in rows]
    assert all(float(r[a_kl]) != float(r[b_columns[1]]) for r in again)
    assert all(float(r[c]) in (0.0, 1.0) for r in again for c in (a_top1, b_columns[0]))
