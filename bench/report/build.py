"""``build_report``: the report's steps, in order.

Read the request and the store (``inputs``), write the BD tables (bd_rate.csv, bd_rate.md) and the
BD-rate per metric (``per_metric``: bd_rate_per_metric.csv, rd_per_metric.png/.svg) and the machine tasks
(``tasks``: bd_rate_tasks.csv, rd_tasks.png/.svg), draw the RD and
speed figures (``figures``) and the Conventional vs End2End section (``figure4_view``), then assemble
the blocks of the opening (summary), the figures and the tail sections, and write them as report.md
and, with the interactive views, report.html.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..analysis import BOOTSTRAP
from ..atomic import write_text_atomic
from ..store.export import write_csv
from .bd import bd_blocks
from .document import (
    Block,
    BulletList,
    Figure,
    Heading,
    Links,
    Paragraph,
    Table,
    Warnings,
    render_html,
    render_markdown,
)
from .figure4_view import Figure4View, figure4_view
from .figures import Figures, HoverCurves, rd_and_speed_figures
from .inputs import Basis, load_stored, make_basis, read_request
from .interactive import page, per_image_section, speed_section, thumbnail
from .per_metric import PerMetric, per_metric_view
from .sections import (
    CODEC_HEADER,
    COMPLEXITY_HEADER,
    TIMING_HEADER,
    codec_rows,
    complexity_rows,
    cross_device_blocks,
    resolution_summary,
    settings_rows,
    target_blocks,
    timing_rows,
)
from .summary import family_sentences, main_metrics, metric_name, summary_rows
from .tasks import tasks_view


@dataclass(frozen=True)
class Tail:
    """The sections after the figures; report.html puts its static figure links between the two parts."""

    body: list[Block]  # target bit rates, crops, BD per metric, BD tables, cross-device decoding, timings, complexity
    provenance: list[Block]  # settings and provenance, the codecs' versions and options


def build_report(results_dir: str | Path, anchor: str = "jpeg", references: list[str] | None = None,
                 method: str = "pchip", bootstrap: int = BOOTSTRAP) -> list[Path]:
    """Rebuild every table, plot and the report from the store in ``results_dir``."""
    request = read_request(anchor, references, method, bootstrap)
    basis = make_basis(load_stored(Path(results_dir)), request)
    bd = bd_blocks(basis.table, anchor, method, basis.stored.families, basis.scope, bootstrap)
    per_metric, tasks = per_metric_view(basis), tasks_view(basis)
    sections, section_files = [*per_metric.blocks, *tasks.blocks], [*per_metric.written, *tasks.written]
    written = [*basis.stored.exported, *write_bd_files(basis, bd, per_metric), *section_files]
    figures = rd_and_speed_figures(basis)
    f4 = figure4_view(basis, figures.rd_curves)
    written += figures.written + f4.written
    opening = opening_blocks(basis, figures.rd_curves, basis.warnings + f4.warnings)
    tail = tail_sections(basis, bd, sections)
    built = f"Report built {time.strftime('%Y-%m-%d %H:%M:%S %Z')}."
    markdown = write_markdown(basis, opening, figures, f4, tail, built)
    return [*written, markdown, write_html(basis, opening, figures, f4, tail, built, section_files)]


def write_bd_files(basis: Basis, bd: list[Block], per_metric: PerMetric) -> list[Path]:
    """bd_rate.csv (every method and aggregation) and bd_rate.md (the report's BD tables, then the BD-rate
    per metric)."""
    out = basis.stored.out
    write_csv(basis.table, out / "bd_rate.csv")
    heading = Heading(1, f"Bjøntegaard deltas against {basis.request.anchor}")
    write_text_atomic(out / "bd_rate.md", render_markdown([heading, *bd, *per_metric.blocks]))
    return [out / "bd_rate.csv", out / "bd_rate.md"]


def compared_text(basis: Basis) -> str:
    """The opening sentence: the codecs by family, the images, the anchor and how BD-rate is read."""
    stored, request = basis.stored, basis.request
    by_family: dict[str, list[str]] = {}
    for label in basis.labels:
        by_family.setdefault(stored.families.get(label, "published"), []).append(label)
    return (f"{len(set(stored.per_image['codec']))} codecs on {stored.dataset} ({stored.n_images} images: "
            f"{resolution_summary(stored.images)}) — "
            + "; ".join(f"{family}: {', '.join(names)}" for family, names in sorted(by_family.items()))
            + f". Anchor: {request.anchor}. BD-rate = bits at equal quality against the anchor on the mean curves "
              f"({request.method} interpolation), in brackets its 95 % bootstrap interval over images where there "
              "is one; negative = fewer bits, best first.")


def headline_table(basis: Basis, headline: list[str]) -> Table:
    """BD-rate against the anchor on the main metrics, best first; published bitstreams say so by the family."""
    header = ["codec", "family", *(f"BD-rate {metric_name(m)}" for m in headline)]
    cells = summary_rows(basis.table, headline, basis.request.method, basis.request.anchor, basis.stored.families)
    sources = {c.label: c.info["source"] for c in basis.stored.codecs if c.info.get("source")}
    for row in cells:  # e.g. "learned (published bitstreams)": not run here
        row[1] += f" ({sources[row[0]]})" if row[0] in sources else ""
    return Table(header, cells)


def opening_blocks(basis: Basis, rd_curves: dict[str, HoverCurves], warnings: list[str]) -> list[Block]:
    """The summary: what was compared, the fair-comparison warnings, one sentence per family, the BD-rate table."""
    headline = main_metrics(basis.metrics)
    curves_by_label = {c.label: c for c, _ in rd_curves[headline[0]]}
    sentences = family_sentences(basis.table, curves_by_label, headline[0], basis.request.method,
                                 basis.request.anchor, basis.stored.families)
    blocks: list[Block] = [Paragraph(compared_text(basis))]
    if warnings:
        blocks.append(Warnings(warnings))
    return [*blocks, BulletList(sentences), headline_table(basis, headline)]


def speed_note(basis: Basis) -> str:
    """How to read the speed figures (report.md and the interactive speed view)."""
    anchor, method = basis.request.anchor, basis.request.method
    return (f"One line per codec: BD-rate against {anchor} (mean curves, {method}) against encode (filled) and "
            f"decode (hollow) time in seconds per megapixel (total seconds / total megapixels of the sweep, "
            f"log scale; decode only where the encode time was not measured, e.g. published bitstreams); "
            f"learned codecs also against kMAC per pixel. Measured on {basis.host}; devices per codec in the hover "
            "and the timing table.")


def tail_sections(basis: Basis, bd: list[Block], sections: list[Block]) -> Tail:
    """Target bit rates, crops, ``sections`` (BD-rate per metric, machine tasks), BD tables, cross-device
    decoding, timings, complexity; settings and provenance.
    Writes cross_device.csv (per image) where the store holds cross-device decodes."""
    stored, request = basis.stored, basis.request
    body: list[Block] = []
    if not stored.targets.empty:
        body += [Heading(2, "At target bit rates"), *target_blocks(stored.targets, basis.ranges)]
    crops = sorted(stored.out.glob("crops_*.png"))
    if crops:
        body += [Heading(2, "Rate-matched crops"), *[Figure(p.stem, p) for p in crops]]
    body += [*sections, Heading(2, "Bjøntegaard deltas"), *bd]
    if stored.cross_device:
        write_csv(pd.DataFrame(stored.cross_device), stored.out / "cross_device.csv")
    body += cross_device_blocks(stored.cross_device)
    body += [Heading(2, "Encode and decode time per image"), Table(TIMING_HEADER, timing_rows(stored.per_image))]
    complexity = complexity_rows(stored.codecs)
    if complexity:
        body += [Heading(2, "Learned codec complexity"), Table(COMPLEXITY_HEADER, complexity)]
    settings = settings_rows(stored.dataset, stored.n_images, stored.images, stored.run, request.anchor,
                             request.method, request.references, basis.ref_notes)
    return Tail(body, [Heading(2, "Settings and provenance"), Table(["", ""], settings),
                       Table(CODEC_HEADER, codec_rows(stored.codecs, basis.options, stored.per_image))])


def write_markdown(basis: Basis, opening: list[Block], figures: Figures, f4: Figure4View, tail: Tail,
                   built: str) -> Path:
    """report.md: the summary, the RD and speed figures, Conventional vs End2End, the tail, the build date."""
    blocks = [Heading(1, f"Codec benchmark: {basis.scope}"), Heading(2, "Summary"), *opening,
              Heading(2, "Rate–distortion curves"), *[Figure(m, p) for m, p in figures.rd_plots]]
    if figures.speed_plots:
        blocks += [Heading(2, "Speed against coding efficiency"), Paragraph(speed_note(basis)),
                   *[Figure(n, p) for n, p in figures.speed_plots]]
    blocks += [*f4.blocks, *tail.body, *tail.provenance, Paragraph(built)]
    path = basis.stored.out / "report.md"
    write_text_atomic(path, render_markdown(blocks))
    return path


def static_links(figures: Figures, f4: Figure4View, section_files: list[Path]) -> list[Block]:
    """report.html's list of the static figures (PNG and SVG) beside it."""
    names = ([p.name for _, p in figures.rd_plots] + [p.with_suffix(".svg").name for _, p in figures.rd_plots]
             + [p.name for p in section_files if p.suffix in (".png", ".svg")]
             + [p.name for _, p in figures.speed_plots] + [p.name for p in f4.written if p.suffix == ".png"])
    return [Heading(2, "Static figures (PNG and SVG, for papers)"), Links(names)]


def write_html(basis: Basis, opening: list[Block], figures: Figures, f4: Figure4View, tail: Tail,
               built: str, section_files: list[Path]) -> Path:
    """report.html: the summary beside the RD viewer, the per-image, speed and Conventional vs End2End
    views, then the tail with the static figures' links; the figures' data embedded as JSON."""
    stored = basis.stored
    images = sorted(i.name for i in stored.images)
    data = {"metrics": basis.metrics, "rd": figures.rd, "per_image": figures.per_image, "speed": figures.speed,
            "images": images, "figure4": f4.figures,
            "thumbs": {i.name: thumbnail(i.path, i.image_hash) for i in stored.images}}
    sections = [per_image_section(basis.metrics, images)]
    if figures.speed:
        sections.append(speed_section(basis.metrics, speed_note(basis)))
    sections += [f4.html, render_html([*tail.body, *static_links(figures, f4, section_files), *tail.provenance])]
    top = "<section id='summary'><h2>Summary</h2>" + render_html(opening) + "</section>"
    text = page(f"Codec benchmark: {stored.dataset}", f"<h1>Codec benchmark: {html.escape(basis.scope)}</h1>", top,
                sections, data, html.escape(built))
    path = stored.out / "report.html"
    write_text_atomic(path, text)
    return path
