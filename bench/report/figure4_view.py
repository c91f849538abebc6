"""The report's Conventional vs End2End section, built from what the report computed (``figure4``
holds the pure parts: families, anchors, years, the timeline).

Writes figure4_bd_rate.csv, figure4_timeline.csv and the figure4_rd_<metric>,
figure4_timeline_<metric> and figure4_cost_psnr-rgb figures (.png/.svg); returns the section as
blocks for report.md, as HTML with Plotly JSON for report.html, and its chroma warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..analysis.fairness import chroma_format, published_chroma
from ..model import StoredCodec
from ..store.export import write_csv
from .bd import add_notes, anchored_bd_table, bd_cell
from .document import Block, BulletList, Caption, Figure, Heading, Paragraph, Table, render_html
from .figure4 import (
    PUBLISHED,
    TIMELINE_METRICS,
    Anchor,
    CurveInfo,
    curve_infos,
    display_name,
    family_colours,
    pick_anchor,
    publication,
    table_header,
    table_rows,
    timeline_points,
    timeline_sentences,
    undated,
)
from .figures import HoverCurves
from .inputs import Basis
from .interactive import family_rd_json, figure4_section, speed_figure_json, timeline_json
from .plots import family_rd_figure, save_figure, speed_figure, timeline_figure
from .summary import metric_name, speed_points

F4_INTRO = ("The article's claim, End2End image compression beat DCT coding (JPEG) from 2016 and now beats VVC on "
            "still images, as figures anyone can check: RD curves coloured by family (blue: conventional, red: "
            "End2End), BD-rate against VVC and against JPEG on the mean curves ({method}; in brackets the 95 % "
            "bootstrap interval over images; published curves have no per-image data: no CI), and a timeline of "
            "the End2End methods by year of publication. Sources: measured = run here on {scope}; published "
            "bitstreams = a publisher's real bitstreams measured here (encode time not measured); published "
            "curve = a CompressAI-format file given with --reference (measured elsewhere, by its publisher).")
F4_TIMELINE_HEADER = ["curve", "year", "method", "source", "anchor", "metric", "BD-rate %", "95 % interval"]
F4_YEARS_HEADER = ["curve", "year", "method", "citation"]
F4_TABLE_LEGEND = (
    "Brackets: 95 % bootstrap interval over images (as Table 1). no CI: published curve, no per-image "
    "data. —: the metric is not in the published file of the curve or of the anchor (they hold PSNR-RGB "
    "and at most MS-SSIM; PSNR-Y only for codecs run here). The VVC row of vvenc is 4:2:0 and the "
    "published VTM curve 4:4:4: see the chroma "
    "column and compare PSNR-Y.")


@dataclass
class Figure4View:
    """The Conventional vs End2End section: Markdown blocks, HTML, Plotly figures, files and warnings."""

    blocks: list[Block]
    html: str
    figures: dict[str, dict]
    written: list[Path]
    warnings: list[str]


@dataclass
class _Drawn:
    """The section's figures as they are saved: blocks for report.md, Plotly JSON by id, files."""

    blocks: list[Block] = field(default_factory=list)
    figures: dict[str, dict] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def add(self, stem: str, paths: list[Path], figure_id: str, figure: dict) -> None:
        self.written += paths
        self.blocks.append(Figure(stem, paths[0]))
        self.figures[figure_id] = figure


@dataclass(frozen=True)
class _Curves:
    """What the section knows of its curves: family and source, the two anchors and the BD table against each."""

    infos: dict[str, CurveInfo]
    anchors: dict[str, Anchor]
    tables: dict[str, pd.DataFrame]
    points: pd.DataFrame  # the timeline


def figure4_anchor_tables(anchors: dict[str, Anchor], basis: Basis) -> dict[str, pd.DataFrame]:
    """The BD table against each Figure-4 anchor (the report's own table when it is the same anchor);
    an anchor without a complete curve is replaced in ``anchors`` by a note saying so."""
    stored, request = basis.stored, basis.request
    tables = {}
    for name, a in list(anchors.items()):
        if a.label is None:
            continue
        if a.label == request.anchor:
            tables[name] = basis.table
            continue
        try:
            table = anchored_bd_table(stored.per_image, stored.summary, stored.n_images, a.label, request.refs,
                                      request.bootstrap)
            tables[name] = add_notes(table, basis.ref_notes)
        except KeyError as exc:
            anchors[name] = Anchor(name, None, f"No {name} anchor: {exc.args[0] if exc.args else exc}.")
    return tables


def chroma_notes(codecs: list[StoredCodec], infos: dict[str, CurveInfo]) -> dict[str, tuple[str, str]]:
    """label -> (chroma format, where it was read) for every Figure-4 curve."""
    out = {}
    for c in codecs:
        if c.label in infos:
            out[c.label] = chroma_format(c.codec, c.family, json.loads(c.options), c.info)
    for label, info in infos.items():
        if info.source == PUBLISHED:
            out[label] = (published_chroma(label, info.family), "published curve")
    return out


def chroma_warning(chroma: dict[str, tuple[str, str]], infos: dict[str, CurveInfo]) -> list[str]:
    """One warning when the codecs measured here code different chroma formats."""
    formats: dict[str, list[str]] = {}
    for label, (fmt, _) in sorted(chroma.items()):
        if infos[label].source != PUBLISHED:
            formats.setdefault(fmt.split(" (")[0], []).append(label)
    if len(formats) < 2:
        return []
    listed = "; ".join(f"{fmt}: {', '.join(labels)}" for fmt, labels in sorted(formats.items()))
    return [f"chroma formats differ ({listed}): PSNR-RGB counts the chroma a 4:2:0 codec drops, so compare "
            "PSNR-Y too (Conventional vs End2End table)"]


def _curves(basis: Basis) -> tuple[_Curves, list[Path]]:
    """Families, anchors, BD tables and timeline points; writes figure4_bd_rate.csv and figure4_timeline.csv."""
    stored, out = basis.stored, basis.stored.out
    infos = curve_infos(stored.codecs, set(stored.per_image["codec"]), basis.request.ref_labels)
    anchors = {name: pick_anchor(name, infos) for name in ("VVC", "JPEG")}
    tables = figure4_anchor_tables(anchors, basis)
    written: list[Path] = []
    tidy = [t[(t["aggregation"] == "mean-curve") & (t["kind"] == "bd-rate")].assign(anchor_name=name)
            for name, t in tables.items()]
    if tidy:
        write_csv(pd.concat(tidy, ignore_index=True), out / "figure4_bd_rate.csv")
        written.append(out / "figure4_bd_rate.csv")
    points = timeline_points(infos, tables, anchors, basis.request.method)
    write_csv(points, out / "figure4_timeline.csv")
    written.append(out / "figure4_timeline.csv")
    return _Curves(infos, anchors, tables, points), written


def _family_figures(basis: Basis, f4: _Curves, rd_curves: dict[str, HoverCurves], drawn: _Drawn) -> None:
    """Per timeline metric: RD curves coloured by family, and BD-rate by year of publication."""
    out, scope, method = basis.stored.out, basis.scope, basis.request.method
    palette = family_colours(f4.infos)
    families = {label: info.family for label, info in f4.infos.items()}
    names = {label: display_name(info) for label, info in f4.infos.items()}
    with_anchor = [(name, a.label) for name, a in f4.anchors.items() if a.label is not None and name in f4.tables]
    for metric in TIMELINE_METRICS:
        if metric not in rd_curves:
            continue
        curves = rd_curves[metric]
        title = f"{scope}: {metric_name(metric)}, conventional vs End2End"
        fig = family_rd_figure([(c, names[c.label], palette[c.label], families[c.label]) for c, _ in curves],
                               metric, title)
        drawn.add(f"figure4_rd_{metric}", save_figure(fig, out / f"figure4_rd_{metric}"), f"rd-{metric}",
                  family_rd_json(curves, names, families, palette, metric, title))
        if with_anchor and (f4.points["metric"] == metric).any():
            title = f"End2End by year of publication: BD-rate ({metric_name(metric)}, mean curves, {method})"
            fig = timeline_figure(f4.points, with_anchor, metric, title)
            drawn.add(f"figure4_timeline_{metric}", save_figure(fig, out / f"figure4_timeline_{metric}"),
                      f"timeline-{metric}", timeline_json(f4.points, with_anchor, metric, title))


def _cost_figure(basis: Basis, f4: _Curves, rd_curves: dict[str, HoverCurves], drawn: _Drawn) -> None:
    """Encoder vs decoder cost (PSNR-RGB) against VVC, else JPEG, where there are speed points."""
    cost_anchor = next(((name, f4.anchors[name].label) for name in ("VVC", "JPEG") if name in f4.tables), None)
    if not cost_anchor or "psnr-rgb" not in rd_curves:
        return
    name, label = cost_anchor
    stored = basis.stored
    cost = speed_points(stored.per_image, stored.codecs, f4.tables[name], "psnr-rgb", basis.request.method, str(label))
    if len(cost):
        title = f"Encoder vs decoder cost: BD-rate (PSNR-RGB) vs {label} against time per megapixel; host {basis.host}"
        fig = speed_figure(cost, "psnr-rgb", str(label), title)
        drawn.add("figure4_cost_psnr-rgb", save_figure(fig, stored.out / "figure4_cost_psnr-rgb"), "cost-psnr-rgb",
                  speed_figure_json(cost, "psnr-rgb", str(label), title, family_colours(f4.infos)))


def _notes(f4: _Curves) -> list[str]:
    """The anchors' notes, the timeline's sentences and the End2End curves without a year."""
    notes = [a.note for a in f4.anchors.values()] + timeline_sentences(f4.points)
    missing_year = undated(f4.infos)
    if missing_year:
        notes.append("Not on the timeline (no year in bench/report/figure4.py PUBLICATIONS): "
                     f"{', '.join(missing_year)}.")
    return notes


def _tables(f4: _Curves, chroma: dict[str, tuple[str, str]], method: str, scope: str) -> list[Block]:
    """Table F1 (BD-rate against VVC and JPEG), the timeline points, the years and the chroma formats."""
    rows = table_rows(f4.infos, f4.tables, f4.anchors, method, bd_cell, {k: v[0] for k, v in chroma.items()})
    timeline_rows = [[r["label"], str(r["year"]), r["method"], r["source"], f"{r['anchor']} ({r['anchor_label']})",
                      r["metric"], f"{r['bd_rate']:+.2f}",
                      f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if pd.notna(r["ci_low"]) else "no CI"]
                     for _, r in f4.points.iterrows()]
    years = sorted({(pub.year, label, pub.method, pub.citation) for label, info in f4.infos.items()
                    if info.family == "learned" and (pub := publication(label, info.codec_name))})
    return [
        Caption(f"Table F1. BD-rate (%) on the mean curves against VVC and against JPEG; negative = fewer bits "
                f"at equal quality. Interpolation: {method}; {scope}."),
        Paragraph(F4_TABLE_LEGEND),
        Table(table_header(dict(f4.anchors)), rows),
        Caption("Timeline points (figure4_timeline.csv): each End2End curve by its year of publication."),
        Table(F4_TIMELINE_HEADER, timeline_rows),
        Caption("Years of publication (bench/report/figure4.py, PUBLICATIONS): the year a method was first "
                "published (arXiv or proceedings), which places it on the timeline."),
        Table(F4_YEARS_HEADER, [[label, str(year), method_, citation] for year, label, method_, citation in years]),
        Caption("Fairness notes: the chroma format of every codec (read from the codec's info, else its "
                "chroma/subsampling option, else what the adapter codes)."),
        BulletList([f"{label}: {fmt} ({where})" for label, (fmt, where) in sorted(chroma.items())]),
    ]


def figure4_view(basis: Basis, rd_curves: dict[str, HoverCurves]) -> Figure4View:
    """Conventional vs End2End: RD curves by family, BD-rate against VVC and JPEG, the timeline, the
    encoder/decoder cost against VVC, years and chroma formats. Reads only what the report computed."""
    f4, written = _curves(basis)
    chroma = chroma_notes(basis.stored.codecs, f4.infos)
    drawn = _Drawn()
    _family_figures(basis, f4, rd_curves, drawn)
    _cost_figure(basis, f4, rd_curves, drawn)
    tables = _tables(f4, chroma, basis.request.method, basis.scope)
    intro: list[Block] = [Paragraph(F4_INTRO.format(method=basis.request.method, scope=basis.scope)),
                          BulletList(_notes(f4))]
    blocks = [Heading(2, "Conventional vs End2End"), *intro, *drawn.blocks, *tables]
    html_text = figure4_section(list(drawn.figures), blocks_html=render_html(tables), intro_html=render_html(intro))
    return Figure4View(blocks, html_text, drawn.figures, written + drawn.written, chroma_warning(chroma, f4.infos))
