"""The Bjøntegaard-delta tables of the report and of bd_rate.md.

``anchored_bd_table`` is ``analysis.table.bd_table`` against the report's anchor (measured or published),
``add_notes`` appends a reference's dataset warning to its rows, and ``bd_blocks`` turns the tidy
table into the three tables of the report (BD-rate on the mean curves, BD-rate per image, BD-quality):
cells with their 95 % interval and marks (``bd_cell``), a legend saying how they were computed, and
numbered footnotes.
"""

from __future__ import annotations

import math
from itertools import product

import pandas as pd

from ..analysis import AGGREGATIONS, BOOTSTRAP, METHODS, bd_metrics
from ..analysis.stats import ALPHA, SEED
from ..analysis.table import NO_IMAGES, bd_table
from ..metrics import METRICS
from ..model import Curve
from .document import Block, Caption, Notes, Paragraph, Table


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def bd_cell(row: pd.Series) -> str:
    """Value, 95 % interval and marks: ns (not significant after Holm), ≈ (within the method spread)."""
    value = None if pd.isna(row["value"]) else float(row["value"])
    cell = _fmt(value)
    if value is None:
        return cell
    if pd.notna(row.get("ci_low")) and pd.notna(row.get("ci_high")):
        cell += f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    elif row.get("source") == "published" or NO_IMAGES in str(row.get("note")):
        cell += " no CI"
    if pd.notna(row.get("p_holm")) and row["p_holm"] >= ALPHA:
        cell += " ns"
    if pd.notna(row.get("spread")) and abs(value) < row["spread"]:
        cell += " ≈"
    return cell


def bd_pivot(table: pd.DataFrame, kind: str, aggregation: str, method: str,
             families: dict[str, str]) -> tuple[list[str], list[list[str]], list[str]]:
    """Codecs x metrics cells for one kind/aggregation/method, with numbered footnotes."""
    sub = table[(table["kind"] == kind) & (table["aggregation"] == aggregation) & (table["method"] == method)]
    metrics = [m for m in METRICS if m in set(sub["metric"])]
    notes: list[str] = []
    rows = []
    for codec in sorted(set(sub["codec"]), key=lambda c: (c.endswith("(published)"), c)):
        row = [codec, families.get(codec, "published")]
        for metric in metrics:
            hit = sub[(sub["codec"] == codec) & (sub["metric"] == metric)]
            if hit.empty:
                row.append("—")  # metric not in a published file
                continue
            cell, note = bd_cell(hit.iloc[0]), hit.iloc[0]["note"]
            note = note if isinstance(note, str) else ""
            if pd.notna(hit.iloc[0]["value"]):  # "no CI" in the cell says it
                note = note.replace(NO_IMAGES, "").strip("; ")
            if note:
                notes.append(f"{codec}, {metric}: {note}")
                cell += f" [{len(notes)}]"
            row.append(cell)
        rows.append(row)
    return ["codec", "family", *metrics], rows, notes


BD_TABLES = (
    ("bd-rate", "mean-curve",
     "BD-rate (%) on the mean curves (CompressAI style); negative = fewer bits at equal quality"),
    ("bd-rate", "per-image", "BD-rate (%) per image, then averaged over images (JPEG AI CTC style)"),
    ("bd-quality", "mean-curve", "BD-quality (metric units, dB) at equal rate on the mean curves; positive = better"),
)


def uncertainty_legend(table: pd.DataFrame, kind: str, aggregation: str, method: str, bootstrap: int) -> str:
    """How the interval, ns and ≈ marks of one BD table were computed."""
    if not bootstrap:
        return "No intervals or p-values (--bootstrap 0). ≈: |value| below the pchip/akima/cubic spread."
    sub = table[(table["kind"] == kind) & (table["aggregation"] == aggregation) & (table["method"] == method)]
    tests = int(sub["p"].notna().sum())
    resampled = ("both mean curves recomputed from each resample" if aggregation == "mean-curve"
                 else "the mean of the resampled per-image values")
    differences = ("mean log10-rate differences at equal quality" if kind == "bd-rate" else "BD-quality values")
    return (f"Brackets: 95 % expanded percentile bootstrap interval (Hesterberg 2015), images resampled with "
            f"replacement ({bootstrap} resamples, "
            f"seed {SEED}; {resampled}). ns: not significant, Holm-adjusted p ≥ {ALPHA} over the {tests} tests of "
            f"this table (paired sign-flip test on per-image {differences}). ≈: |value| below the spread "
            f"(max − min) of pchip/akima/cubic for that cell. no CI: published curve, no per-image data. "
            f"wins, p and p_holm are in bd_rate.csv.")


def bd_blocks(table: pd.DataFrame, anchor: str, method: str, families: dict[str, str], scope: str,
              bootstrap: int = BOOTSTRAP) -> list[Block]:
    """Caption, legend, table and footnotes for each BD table."""
    blocks: list[Block] = []
    for i, (kind, aggregation, what) in enumerate(BD_TABLES, 1):
        header, rows, notes = bd_pivot(table, kind, aggregation, method, families)
        caption = f"Table {i}. {what}. Anchor: {anchor}; interpolation: {method}; {scope}."
        blocks += [Caption(caption), Paragraph(uncertainty_legend(table, kind, aggregation, method, bootstrap)),
                   Table(header, rows), Notes(notes)]
    blocks.append(Paragraph("All interpolation methods (pchip, akima, cubic) and both aggregations are in "
                            "bd_rate.csv."))
    return blocks


def anchored_bd_table(per_image: pd.DataFrame, summary: pd.DataFrame, n_images: int, anchor: str,
                      refs: list[dict[str, Curve]], bootstrap: int = BOOTSTRAP) -> pd.DataFrame:
    """``analysis.table.bd_table``, except that metrics the anchor lacks (a published anchor without psnr-y)
    give rows without a value noted ``n/a (anchor has no <metric>)`` instead of an error."""
    metrics = bd_metrics(per_image.columns)
    if anchor in set(per_image["codec"]):
        missing: list[str] = []
    else:
        ref = next(r for r in refs if any(c.label == anchor for c in r.values()))
        missing = [m for m in metrics if m not in ref]
    table = bd_table(per_image.drop(columns=missing), summary.drop(columns=missing), n_images, anchor, refs,
                     bootstrap=bootstrap)
    rows = []
    for metric in missing:
        labels = sorted(set(per_image["codec"])) + [r[metric].label for r in refs if metric in r]
        quality_unit = METRICS[metric].unit
        for label, method, aggregation, (kind, unit) in product(labels, METHODS, AGGREGATIONS,
                                                               (("bd-rate", "%"), ("bd-quality", quality_unit))):
            rows.append({"codec": label, "anchor": anchor, "metric": metric, "method": method,
                         "aggregation": aggregation, "kind": kind, "value": math.nan, "unit": unit,
                         "source": "published" if label.endswith("(published)") else "measured",
                         "note": f"n/a (anchor has no {metric})"})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if rows else table


def add_notes(table: pd.DataFrame, notes: dict[str, str]) -> pd.DataFrame:
    """Append ``notes[codec]`` to the note of every row of that codec (e.g. a reference's dataset warning)."""
    table = table.copy()
    for codec, note in notes.items():
        hit = table["codec"] == codec
        table.loc[hit, "note"] = [f"{n}; {note}" if isinstance(n, str) and n else note for n in table.loc[hit, "note"]]
    return table

