"""The report's "Machine tasks (coding for machines)" section: per machine task metric (bench/metrics/tasks.py),
the BD-rate at equal task fidelity against the anchor (per image, then averaged, with 95 % intervals; the
``analysis.per_metric`` table) next to PSNR-RGB's, how many images each task could score (the original must
yield something: a face, text, keypoints), a flag where that is too few, the codecs' order by each task
against their order by PSNR, and one RD panel per task metric. Writes bd_rate_tasks.csv and rd_tasks.png/.svg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import Curve
from ..analysis.per_metric import AVERAGE, per_metric_bd, stored_metrics
from ..metrics import is_task_metric
from ..store.export import write_csv
from .document import Block, BulletList, Caption, Figure, Heading, Notes, Paragraph, Table
from .inputs import Basis
from .per_metric import per_metric_rows
from .plots import per_metric_figure, save_figure

TITLE = "Machine tasks (coding for machines)"
CSV_NAME = "bd_rate_tasks.csv"
FIGURE_STEM = "rd_tasks"
COMPARED_WITH = "psnr-rgb"  # the fidelity to people shown beside the task columns
MIN_TASK_IMAGES = 10  # fewer images with output in the original: the task's numbers are flagged as unstable


@dataclass(frozen=True)
class TasksView:
    table: pd.DataFrame  # analysis.per_metric.per_metric_bd's rows for the task metrics and COMPARED_WITH
    blocks: list[Block]  # empty when the run stored no task metric
    written: list[Path]


def task_metrics(stored: list[str]) -> list[str]:
    """The stored metrics that score a machine task (built-in or the user's own model), in registry order."""
    return [m for m in stored if is_task_metric(m)]


def coverage(per_image: pd.DataFrame, metric: str) -> tuple[int, int]:
    """(images where the task scored something, images in the run): an image counts when any of its rows
    has a finite value, i.e. when its original yielded an output for the task."""
    finite = per_image.assign(_ok=np.isfinite(per_image[metric].to_numpy(float))).groupby("image")["_ok"].any()
    return int(finite.sum()), int(per_image["image"].nunique())


def coverage_lines(per_image: pd.DataFrame, metrics: list[str]) -> list[str]:
    """One line per task metric: the count of images it scores, flagged below MIN_TASK_IMAGES."""
    lines = []
    for metric in metrics:
        scored, total = coverage(per_image, metric)
        flag = (f" — too few for a stable number (fewer than {MIN_TASK_IMAGES}); read it as an indication only"
                if scored < MIN_TASK_IMAGES else "")
        others = " (the others' originals give the task nothing)" if scored < total else ""
        lines.append(f"{metric}: {scored} of {total} images{others}{flag}")
    return lines


def task_curves(per_image: pd.DataFrame, metric: str) -> list[Curve]:
    """Per codec, the mean curve over the images that score the task (mean bpp and mean score per quality,
    at the qualities measured on all of them); the summary's means are over every image, so NaN here."""
    scored = per_image[np.isfinite(per_image[metric].to_numpy(float))]
    curves = []
    for codec, rows in scored.groupby("codec", sort=True):
        points = rows.groupby("quality").agg(bpp=("bpp", "mean"), value=(metric, "mean"), n=("image", "nunique"))
        points = points[points["n"] == rows["image"].nunique()].sort_values("bpp")
        curves.append(Curve(str(codec), points["bpp"].to_numpy(float), points["value"].to_numpy(float)))
    return curves


def rankings(table: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Per task metric, the codecs (the anchor included) from fewest to most bits at equal fidelity, and whether
    that order differs from their order on COMPARED_WITH (codecs with a BD-rate on both only)."""
    values = table[table["metric"] != AVERAGE].pivot_table(index="codec", columns="metric", values="bd_rate_pct")
    if COMPARED_WITH not in values or table.empty:
        return []
    values.loc[table["anchor"].iloc[0]] = 0.0  # the anchor: 0 % against itself on every metric
    lines = []
    for metric in metrics:
        both = values[[metric, COMPARED_WITH]].dropna() if metric in values else pd.DataFrame()
        if len(both) < 2:
            continue
        by_task = list(both[metric].sort_values().index)
        by_psnr = list(both[COMPARED_WITH].sort_values().index)
        verdict = "the same order as PSNR" if by_task == by_psnr else f"PSNR orders them {' < '.join(by_psnr)}"
        lines.append(f"{metric}: {' < '.join(by_task)} ({verdict})")
    return lines


def tasks_view(basis: Basis) -> TasksView:
    """The section against the report's anchor, its CSV and figure; nothing when no task metric is stored."""
    stored, request = basis.stored, basis.request
    metrics = task_metrics(stored_metrics(stored.per_image))
    if not metrics:
        return TasksView(pd.DataFrame(), [], [])
    columns = [*metrics, *([COMPARED_WITH] if COMPARED_WITH in stored.per_image else [])]
    table = per_metric_bd(stored.per_image, request.anchor, columns, metrics, request.method, request.bootstrap)
    written = [write_csv(table, stored.out / CSV_NAME)]
    blocks: list[Block] = [Heading(2, TITLE), Paragraph(METHOD), BulletList(coverage_lines(stored.per_image, metrics))]
    if not table.empty:
        header, rows, notes = per_metric_rows(table, basis.table, stored.families)
        blocks += [Caption(f"BD-rate (%) at equal task fidelity against {request.anchor}, per image then averaged "
                           f"over the images that score the task ({request.method}); {COMPARED_WITH} for "
                           f"comparison; {basis.scope}. Every value and interval is in {CSV_NAME}."),
                   Table(header, rows), Notes(notes), BulletList(rankings(table, metrics))]
    panels = [(m, task_curves(stored.per_image, m)) for m in metrics]
    paths = save_figure(per_metric_figure(panels, stored.families, request.anchor,
                                          f"{basis.scope}: task fidelity against bpp; anchor {request.anchor}"),
                        stored.out / FIGURE_STEM)
    return TasksView(table, [*blocks, Figure("Task fidelity per metric", paths[0])], written + paths)


METHOD = ("Each task runs on the original and on every decoded image, and the decoded image's output is scored "
          "against the original's, which stands in for ground truth (pseudo ground truth, as MPEG's Video Coding for "
          "Machines does without labels): a score of 1 (0 for ocr-cer) means the task sees in the decoded image what "
          "it sees in the original, not that it is right. The BD-rate is the bit-rate change at equal task fidelity "
          "(how VCM reports its anchors: bits for the same mAP); a curve that stays flat (e.g. every face found at "
          "every rate) has no BD-rate, with the reason in a footnote. Models and versions: docs/metrics.md, "
          "\"Machine tasks\"; the averages' column is over the task metrics only.")
