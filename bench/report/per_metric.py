"""The report's "BD-rate per metric (JPEG AI style)" section: codecs against the anchor, one column per
metric (``analysis.per_metric``), each cell "value [low, high]" with the marks of the BD tables
(``bd.bd_cell``), a last column "average over metrics", a legend saying how it was computed, and
small-multiple RD plots (one panel per metric). Writes bd_rate_per_metric.csv and rd_per_metric.png/.svg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..analysis import mean_curves
from ..analysis.per_metric import AVERAGE, per_metric_bd, per_metric_set, stored_metrics
from ..analysis.stats import SEED
from ..metrics import METRICS
from ..store.export import write_csv
from .bd import bd_cell
from .document import Block, Caption, Figure, Heading, Notes, Paragraph, Table
from .inputs import Basis
from .plots import per_metric_figure, save_figure

TITLE = "BD-rate per metric (JPEG AI style)"
CSV_NAME = "bd_rate_per_metric.csv"
FIGURE_STEM = "rd_per_metric"
AVERAGE_HEADER = "average over metrics"


@dataclass(frozen=True)
class PerMetric:
    """The section's table (``analysis.per_metric.per_metric_bd``'s rows), its blocks and the files written."""

    table: pd.DataFrame
    blocks: list[Block]  # heading, caption, legend, table, footnotes, figure
    written: list[Path]  # bd_rate_per_metric.csv, rd_per_metric.png and .svg


def per_metric_view(basis: Basis) -> PerMetric:
    """Compute the per-metric table against the report's anchor, write its CSV and figure, make its blocks."""
    stored, request = basis.stored, basis.request
    columns, averaged = per_metric_set(stored_metrics(stored.per_image))
    table = per_metric_bd(stored.per_image, request.anchor, columns, averaged, request.method, request.bootstrap)
    written = [write_csv(table, stored.out / CSV_NAME)]
    heading = Heading(2, TITLE)
    if table.empty:
        return PerMetric(table, [heading, Paragraph(no_table_text(request.anchor, stored.per_image))], written)
    panels = [(metric, list(mean_curves(stored.summary, metric, stored.n_images).values())) for metric in columns]
    title = f"{basis.scope}: mean RD curves per metric; anchor {request.anchor}"
    paths = save_figure(per_metric_figure(panels, stored.families, request.anchor, title),
                        stored.out / FIGURE_STEM)
    caption = Caption(f"BD-rate (%) per metric against {request.anchor}, per image then averaged over images "
                      f"(JPEG AI CTC style); interpolation: {request.method}; {basis.scope}.")
    header, rows, notes = per_metric_rows(table, basis.table, stored.families)
    legend = per_metric_legend(request.anchor, request.method, columns, averaged, request.bootstrap)
    blocks: list[Block] = [heading, caption, Paragraph(legend), Table(header, rows), Notes(notes),
                           Figure("RD curves per metric", paths[0])]
    return PerMetric(table, blocks, written + paths)


def no_table_text(anchor: str, per_image: pd.DataFrame) -> str:
    """Why there is no per-metric table: a published anchor, or no measured codec besides the anchor."""
    if anchor not in set(per_image["codec"]):
        return (f"No per-metric table: the anchor {anchor} is a published curve, without the per-image data "
                "that the per-image aggregation needs; choose a measured anchor (e.g. --anchor jpeg).")
    return f"No per-metric table: no measured codec besides the anchor {anchor}."


def _with_marks(table: pd.DataFrame, bd: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``value`` (the BD-rate) and the ``p_holm`` and ``spread`` of the same cells of the
    report's BD table (per image, BD-rate, the table's method), for ``bd_cell``'s ns and ≈ marks."""
    sub = bd[(bd["aggregation"] == "per-image") & (bd["kind"] == "bd-rate")
             & bd["method"].isin(set(table["method"]))]
    marks = sub.reindex(columns=["codec", "metric", "method", "p_holm", "spread"])
    merged = table.merge(marks, on=["codec", "metric", "method"], how="left")
    return merged.assign(value=merged["bd_rate_pct"])


def per_metric_rows(table: pd.DataFrame, bd: pd.DataFrame, families: dict[str, str]) -> tuple[list[str],
                                                                                               list[list[str]],
                                                                                               list[str]]:
    """Header, one row per codec (best average first, no average last) and numbered footnotes."""
    cells = _with_marks(table, bd)
    metrics = [m for m in dict.fromkeys(cells["metric"]) if m != AVERAGE]
    outside = set(cells.loc[cells["in_average"].eq(False), "metric"])
    averages = cells[cells["metric"] == AVERAGE].set_index("codec")["value"]
    codecs = sorted(averages.index, key=lambda c: (pd.isna(averages[c]), 0 if pd.isna(averages[c]) else averages[c], c))
    notes: list[str] = []
    rows = []
    for codec in codecs:
        row = [codec, families.get(codec, "")]
        for metric in [*metrics, AVERAGE]:
            hit = cells[(cells["codec"] == codec) & (cells["metric"] == metric)].iloc[0]
            cell = bd_cell(hit)
            if isinstance(hit["note"], str) and hit["note"]:
                notes.append(f"{codec}, {AVERAGE_HEADER if metric == AVERAGE else metric}: {hit['note']}")
                cell += f" [{len(notes)}]"
            row.append(cell)
        rows.append(row)
    header = ["codec", "family", *(m + (" (not averaged)" if m in outside else "") for m in metrics), AVERAGE_HEADER]
    return header, rows, notes


def per_metric_legend(anchor: str, method: str, columns: list[str], averaged: list[str], bootstrap: int) -> str:
    """How the per-metric table was computed: anchor, aggregation, intervals, what the average covers."""
    lower = [m for m in columns if m in METRICS and not METRICS[m].higher_is_better]
    direction = (f" Lower-is-better metrics ({', '.join(lower)}) are compared with their quality axis reversed, "
                 "so negative is a saving there too." if lower else "")
    if bootstrap:
        intervals = (f"Brackets: 95 % expanded percentile bootstrap interval over images ({bootstrap} resamples, seed "
                     f"{SEED}), as in Table 2; ns and ≈ as there. The average's interval resamples the images "
                     "jointly (the same resample for every metric), recomputes each metric's mean over the resampled "
                     "images and averages them.")
    else:
        intervals = "No intervals (--bootstrap 0)."
    return (f"Each cell: the codec's BD-rate against {anchor} on that metric, computed per image and averaged over "
            f"the images ({method} interpolation; the values of Table 2 of the Bjøntegaard deltas); negative = fewer "
            f"bits at equal quality.{direction} {intervals} Average over metrics: the mean of the row's BD-rates over "
            f"{', '.join(averaged)}. Columns: the JPEG AI CTC metrics stored in this run, or every stored metric "
            "when it has none of them (MS-SSIM as ms-ssim-db). Published curves have no per-image data and are not "
            "in this table. Figure: the mean curves per metric, the anchor in black. Every value, interval and note "
            f"is in {CSV_NAME}.")
