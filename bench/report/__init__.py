"""``python -m bench report DIR``: every table, plot and the report, rebuilt from stored results.

The report layer; its modules: ``build`` (``build_report``: the steps, in order), ``inputs`` (the
request and the store's data as typed records), ``document`` (the typed blocks of report.md and
report.html and their two renderings), ``bd`` (the BD tables), ``per_metric`` (the BD-rate per
metric, JPEG AI style), ``figures`` (RD and speed figures), ``sections`` (target bit rates,
cross-device decoding, timings, complexity, settings), ``summary`` (the report's opening),
``figure4`` and ``figure4_view`` (Conventional vs End2End), ``plots`` (matplotlib figures),
``interactive`` (report.html), ``crops`` (rate-matched crops, through the measured path) and
``verify`` (our curves against published ones).

Reads only the result store (and published reference JSONs given with ``--reference``); never
encodes. Writes per_image.csv, summary.csv, <codec>.json, bd_rate.csv, bd_rate.md,
bd_rate_per_metric.csv, rd_per_metric.png/.svg, rd_<metric>.png/.svg, speed_<metric>.png/.svg, the
Conventional vs End2End files (figure4_bd_rate.csv, figure4_timeline.csv, figure4_rd_<metric>,
figure4_timeline_<metric>, figure4_cost_psnr-rgb .png/.svg), cross_device.csv (after
``run --decode-device``), report.md and the interactive, self-contained report.html. Rebuilding
gives identical files apart from the build date line.
"""

from __future__ import annotations

from .bd import BD_TABLES, add_notes, anchored_bd_table, bd_blocks, bd_cell, bd_pivot, uncertainty_legend
from .build import build_report
from .document import (
    Block,
    BulletList,
    Caption,
    Figure,
    Heading,
    Links,
    Notes,
    Paragraph,
    Table,
    Warnings,
    html_table,
    markdown_table,
    render_html,
    render_markdown,
)
from .figure4_view import Figure4View, figure4_view
from .inputs import ReportError
from .sections import mixed_host_warnings, target_blocks, target_warnings, timing_rows

__all__ = [
    "BD_TABLES",
    "Block",
    "BulletList",
    "Caption",
    "Figure",
    "Figure4View",
    "Heading",
    "Links",
    "Notes",
    "Paragraph",
    "ReportError",
    "Table",
    "Warnings",
    "add_notes",
    "anchored_bd_table",
    "bd_blocks",
    "bd_cell",
    "bd_pivot",
    "build_report",
    "figure4_view",
    "html_table",
    "markdown_table",
    "mixed_host_warnings",
    "render_html",
    "render_markdown",
    "target_blocks",
    "target_warnings",
    "timing_rows",
    "uncertainty_legend",
]
