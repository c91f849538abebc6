"""``python -m bench report DIR``: every table, plot and the report, rebuilt from stored results.

The report layer; its modules: this one (building the report), ``plots`` (matplotlib figures),
``interactive`` (report.html), ``summary`` (the report's opening), ``figure4`` (Conventional vs
End2End), ``crops`` (rate-matched crops, through the measured path) and ``verify`` (our curves
against published ones).

Reads only the result store (and published reference JSONs given with ``--reference``); never
encodes. Writes per_image.csv, summary.csv, <codec>.json, bd_rate.csv, bd_rate.md,
rd_<metric>.png/.svg, speed_<metric>.png/.svg, the Conventional vs End2End files (figure4_bd_rate.csv,
figure4_timeline.csv, figure4_rd_<metric>, figure4_timeline_<metric>, figure4_cost_psnr-rgb .png/.svg),
report.md and the interactive, self-contained report.html. Rebuilding gives identical files apart from the
build date line.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis import AGGREGATIONS, BOOTSTRAP, METHODS, NO_IMAGES, bd_metrics, bd_table, load_reference, mean_curves
from ..analysis.cross_device import report_blocks as cross_device_blocks
from ..analysis.fairness import bpp_ranges, chroma_format, off_target, published_chroma, reference_warning, target_flag
from ..analysis.stats import ALPHA, SEED
from ..atomic import write_text_atomic
from ..errors import BenchError
from ..metrics import METRICS
from ..model import Curve
from ..pipeline.provenance import git_commit
from ..store import Store, open_results
from ..store.export import export_results, write_csv
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
from .interactive import (
    colours,
    family_rd_json,
    figure4_section,
    hover_texts,
    page,
    per_image_section,
    rd_figure_json,
    speed_figure_json,
    speed_section,
    thumbnail,
    timeline_json,
)
from .plots import family_rd_figure, rd_figure, save_figure, speed_figure, timeline_figure
from .summary import (
    family_sentences,
    hosts_text,
    legend_bd,
    main_metrics,
    metric_name,
    options_text,
    speed_points,
    summary_rows,
)


class ReportError(BenchError):
    pass


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
              bootstrap: int = BOOTSTRAP) -> list[tuple]:
    """Caption, table and footnotes for each BD table (rendered by render_markdown / html_body)."""
    blocks = []
    for i, (kind, aggregation, what) in enumerate(BD_TABLES, 1):
        header, rows, notes = bd_pivot(table, kind, aggregation, method, families)
        caption = f"Table {i}. {what}. Anchor: {anchor}; interpolation: {method}; {scope}."
        blocks += [("caption", caption), ("p", uncertainty_legend(table, kind, aggregation, method, bootstrap)),
                   ("table", header, rows), ("notes", notes)]
    blocks.append(("p", "All interpolation methods (pchip, akima, cubic) and both aggregations are in bd_rate.csv."))
    return blocks


def target_blocks(means: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> list[tuple]:
    """One table per target bpp: codecs with their mean achieved bpp, mean metrics, and a flag when
    the achieved bpp is off the target (more than 10 % or 0.02 bpp) with the codec's measured range."""
    metrics = [m for m in METRICS if m in means.columns and m != "ms-ssim-rgb"]
    blocks: list[tuple] = [
        ("p", "Per image and codec, the quality whose bpp is nearest the target (JPEG AI CTC style); "
              "means over images, achieved bpp beside the target. ms-ssim-db is that of the mean MS-SSIM. "
              "A codec more than 10 % (or 0.02 bpp) from the target is flagged: compare it at this rate "
              "with care.")]
    for target, rows in means.groupby("target_bpp", sort=True):
        table = [[r["codec"], r["family"], f"{r['mean_bpp']:.3f}", *(f"{r[m]:.4g}" for m in metrics),
                  target_flag(r["codec"], r["mean_bpp"], target, ranges) or "ok"]
                 for _, r in rows.iterrows()]
        blocks += [("caption", f"Target {target:g} bpp"),
                   ("table", ["codec", "family", "mean bpp", *metrics, "at the target?"], table)]
    return blocks


def target_warnings(means: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """One line per codec and target bpp it misses."""
    return [f"target {r['target_bpp']:g} bpp: {r['codec']} "
            + target_flag(r["codec"], r["mean_bpp"], r["target_bpp"], ranges).removeprefix("⚠ ")
            for _, r in means.iterrows() if off_target(r["mean_bpp"], r["target_bpp"])]


NOT_MEASURED = "not measured"


def source_marker(info: dict) -> str:
    """`` — published bitstreams, decoded here (...)`` for codecs whose info names a source, else ``""``."""
    source = info.get("source", "")
    return f" — {source}" + (f", decoded: {info['decoded']}" if info.get("decoded") else "") if source else ""


def timing_rows(per_image: pd.DataFrame) -> list[list[str]]:
    """Per codec and host: encode/decode mean and median seconds per image, and megapixels per second."""
    rows = []
    frame = per_image.assign(host=per_image["host"] if "host" in per_image else "")
    for (codec, host), g in frame.groupby(["codec", "host"], sort=True):
        pixels = float((g["width"] * g["height"]).sum())
        row = [codec, host or "?", ", ".join(sorted(set(g["device"])))]
        for col in ("encode_s", "decode_s"):
            times = pd.to_numeric(g[col], errors="coerce")
            if times.isna().any() or not times.sum() > 0:  # published bitstreams: encode time not measured
                row += [NOT_MEASURED] * 3
                continue
            row += [f"{times.mean():.4f}", f"{times.median():.4f}", f"{pixels / times.sum() / 1e6:.2f}"]
        rows.append(row)
    return rows


def mixed_host_warnings(per_image: pd.DataFrame) -> list[str]:
    """Codecs whose timings were measured on more than one host (cluster runs): not comparable as one figure."""
    if "host" not in per_image:
        return []
    hosts = per_image.groupby("codec")["host"].agg(lambda h: sorted(set(h) - {""}))
    return [f"{codec}: encode/decode times come from {len(h)} hosts ({', '.join(h)}); compare speeds per host "
            "(timing table)" for codec, h in hosts.items() if len(h) > 1]


TIMING_HEADER = ["codec", "host", "device", "encode mean s", "encode median s", "encode MP/s",
                 "decode mean s", "decode median s", "decode MP/s"]
CODEC_HEADER = ["codec", "family", "library version", "options", "qualities"]
COMPLEXITY_HEADER = ["codec", "parameters", "encoder kMAC/pixel", "decoder kMAC/pixel", "weights"]


def _resolution_summary(images: list[dict]) -> str:
    counts = Counter(f"{i['width']}x{i['height']}" for i in images)
    return ", ".join(f"{n} × {res}" for res, n in sorted(counts.items(), key=lambda x: -x[1]))


def anchored_bd_table(per_image: pd.DataFrame, summary: pd.DataFrame, n_images: int, anchor: str,
                      refs: list[dict[str, Curve]], bootstrap: int = BOOTSTRAP) -> pd.DataFrame:
    """``analysis.bd_table``, except that metrics the anchor lacks (a published anchor without psnr-y)
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


def _image_files(store: Store, dataset: str) -> dict[str, tuple[str, str]]:
    """image name -> (stored path of the original, pixel hash)."""
    cur = store.conn.execute("SELECT name, path, image_hash FROM images WHERE dataset = ? ORDER BY name", (dataset,))
    return {name: (path, digest) for name, path, digest in cur}


def hover_curves(summary: pd.DataFrame, metric: str, n_images: int,
                 refs: list[dict[str, Curve]], options: dict[str, str]) -> list[tuple[Curve, list[str]]]:
    """Mean curves (measured, then published) with one hover text per point."""
    out = []
    curves = mean_curves(summary, metric, n_images)
    complete = summary[summary["n_images"] == n_images]
    for label, curve in curves.items():
        rows = complete[complete["codec"] == label].sort_values("bpp")
        texts = hover_texts(label, options.get(label, ""), list(rows["quality"]), list(rows["bpp"]),
                            list(rows[metric]), metric, list(rows["n_images"]))
        out.append((curve, texts))
    for ref in refs:
        if metric in ref:
            c = ref[metric]
            out.append((c, hover_texts(c.label, "", [None] * len(c.bpp), list(c.bpp), list(c.values), metric,
                                       [0] * len(c.bpp))))
    return out


def image_figures(per_image: pd.DataFrame, metric: str, families: dict[str, str], palette: dict[str, str],
                  anchor: str, options: dict[str, str]) -> dict[str, dict]:
    """image -> Plotly figure of that image's RD points, one trace per codec."""
    figures = {}
    for image, g in per_image.groupby("image", sort=True):
        curves = []
        for label, rows in g.groupby("codec", sort=True):
            rows = rows.sort_values("bpp")
            curve = Curve(label, rows["bpp"].to_numpy(float), rows[metric].to_numpy(float))
            curves.append((curve, hover_texts(label, options.get(label, ""), list(rows["quality"]), list(rows["bpp"]),
                                              list(rows[metric]), metric, [1] * len(rows))))
        figures[image] = rd_figure_json(curves, families, palette, metric, f"{image}: {metric}", anchor, {})
    return figures


F4_INTRO = ("The article's claim, End2End image compression beat DCT coding (JPEG) from 2016 and now beats VVC on "
            "still images, as figures anyone can check: RD curves coloured by family (blue: conventional, red: "
            "End2End), BD-rate against VVC and against JPEG on the mean curves ({method}; in brackets the 95 % "
            "bootstrap interval over images; published curves have no per-image data: no CI), and a timeline of "
            "the End2End methods by year of publication. Sources: measured = run here on {scope}; published "
            "bitstreams = a publisher's real bitstreams measured here (encode time not measured); published "
            "curve = a CompressAI-format file given with --reference (measured elsewhere, by its publisher).")
F4_TIMELINE_HEADER = ["curve", "year", "method", "source", "anchor", "metric", "BD-rate %", "95 % interval"]
F4_YEARS_HEADER = ["curve", "year", "method", "citation"]


@dataclass
class Figure4View:
    """The Conventional vs End2End section: Markdown blocks, HTML, Plotly figures, files and warnings."""

    md: list[tuple]
    html: str
    figures: dict[str, dict]
    written: list[Path]
    warnings: list[str]


def figure4_anchor_tables(anchors: dict[str, Anchor], table: pd.DataFrame, anchor: str, per_image: pd.DataFrame,
                          summary: pd.DataFrame, n_images: int, refs: list[dict[str, Curve]],
                          ref_notes: dict[str, str], bootstrap: int) -> dict[str, pd.DataFrame]:
    """The BD table against each Figure-4 anchor (the report's own table when it is the same anchor);
    an anchor without a complete curve is replaced in ``anchors`` by a note saying so."""
    tables = {}
    for name, a in list(anchors.items()):
        if a.label is None:
            continue
        if a.label == anchor:
            tables[name] = table
            continue
        try:
            tables[name] = add_notes(anchored_bd_table(per_image, summary, n_images, a.label, refs, bootstrap),
                                     ref_notes)
        except KeyError as exc:
            anchors[name] = Anchor(name, None, f"No {name} anchor: {exc.args[0] if exc.args else exc}.")
    return tables


def chroma_notes(codecs: list[dict], infos: dict[str, CurveInfo]) -> dict[str, tuple[str, str]]:
    """label -> (chroma format, where it was read) for every Figure-4 curve."""
    out = {}
    for c in codecs:
        if c["label"] in infos:
            options = json.loads(c["options"]) if isinstance(c["options"], str) else dict(c["options"] or {})
            out[c["label"]] = chroma_format(c["codec"], c["family"], options, c.get("info") or {})
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


def figure4_view(out: Path, per_image: pd.DataFrame, summary: pd.DataFrame, n_images: int, codecs: list[dict],
                 refs: list[dict[str, Curve]], ref_notes: dict[str, str], table: pd.DataFrame, anchor: str,
                 method: str, bootstrap: int, rd_curves: dict[str, list[tuple[Curve, list[str]]]], scope: str,
                 host: str) -> Figure4View:
    """Conventional vs End2End: RD curves by family, BD-rate against VVC and JPEG, the timeline, the
    encoder/decoder cost against VVC, years and chroma formats. Reads only what the report computed."""
    measured = set(per_image["codec"])
    ref_labels = [next(iter(r.values())).label for r in refs if r]
    infos = curve_infos(codecs, measured, ref_labels)
    anchors = {name: pick_anchor(name, infos) for name in ("VVC", "JPEG")}
    tables = figure4_anchor_tables(anchors, table, anchor, per_image, summary, n_images, refs, ref_notes, bootstrap)
    written: list[Path] = []
    tidy = [t[(t["aggregation"] == "mean-curve") & (t["kind"] == "bd-rate")].assign(anchor_name=name)
            for name, t in tables.items()]
    if tidy:
        write_csv(pd.concat(tidy, ignore_index=True), out / "figure4_bd_rate.csv")
        written.append(out / "figure4_bd_rate.csv")
    chroma = chroma_notes(codecs, infos)
    rows = table_rows(infos, tables, anchors, method, bd_cell, {k: v[0] for k, v in chroma.items()})
    points = timeline_points(infos, tables, anchors, method)
    write_csv(points, out / "figure4_timeline.csv")
    written.append(out / "figure4_timeline.csv")
    palette = family_colours(infos)
    families = {label: info.family for label, info in infos.items()}
    names = {label: display_name(info) for label, info in infos.items()}
    with_anchor = [(name, a.label) for name, a in anchors.items() if a.label is not None and name in tables]
    figures: dict[str, dict] = {}
    md_figures: list[tuple] = []
    for metric in TIMELINE_METRICS:
        if metric not in rd_curves:
            continue
        curves = rd_curves[metric]
        title = f"{scope}: {metric_name(metric)}, conventional vs End2End"
        fig = family_rd_figure([(c, names[c.label], palette[c.label], families[c.label]) for c, _ in curves],
                               metric, title)
        paths = save_figure(fig, out / f"figure4_rd_{metric}")
        written += paths
        md_figures.append(("figure", f"figure4_rd_{metric}", paths[0]))
        figures[f"rd-{metric}"] = family_rd_json(curves, names, families, palette, metric, title)
        if with_anchor and (points["metric"] == metric).any():
            title = f"End2End by year of publication: BD-rate ({metric_name(metric)}, mean curves, {method})"
            paths = save_figure(timeline_figure(points, with_anchor, metric, title), out / f"figure4_timeline_{metric}")
            written += paths
            md_figures.append(("figure", f"figure4_timeline_{metric}", paths[0]))
            figures[f"timeline-{metric}"] = timeline_json(points, with_anchor, metric, title)
    cost_anchor = next(((name, anchors[name].label) for name in ("VVC", "JPEG") if name in tables), None)
    if cost_anchor and "psnr-rgb" in rd_curves:
        name, label = cost_anchor
        cost = speed_points(per_image, codecs, tables[name], "psnr-rgb", method, str(label))
        if len(cost):
            title = f"Encoder vs decoder cost: BD-rate (PSNR-RGB) vs {label} against time per megapixel; host {host}"
            paths = save_figure(speed_figure(cost, "psnr-rgb", str(label), title), out / "figure4_cost_psnr-rgb")
            written += paths
            md_figures.append(("figure", "figure4_cost_psnr-rgb", paths[0]))
            figures["cost-psnr-rgb"] = speed_figure_json(cost, "psnr-rgb", str(label), title, palette)

    notes = [a.note for a in anchors.values()] + timeline_sentences(points)
    missing_year = undated(infos)
    if missing_year:
        notes.append("Not on the timeline (no year in bench/report/figure4.py PUBLICATIONS): "
                     f"{', '.join(missing_year)}.")
    timeline_rows = [[r["label"], str(r["year"]), r["method"], r["source"], f"{r['anchor']} ({r['anchor_label']})",
                      r["metric"], f"{r['bd_rate']:+.2f}",
                      f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if pd.notna(r["ci_low"]) else "no CI"]
                     for _, r in points.iterrows()]
    years = sorted({(pub.year, label, pub.method, pub.citation) for label, info in infos.items()
                    if info.family == "learned" and (pub := publication(label, info.codec_name))})
    blocks: list[tuple] = [
        ("caption", f"Table F1. BD-rate (%) on the mean curves against VVC and against JPEG; negative = fewer bits "
                    f"at equal quality. Interpolation: {method}; {scope}."),
        ("p", "Brackets: 95 % bootstrap interval over images (as Table 1). no CI: published curve, no per-image "
              "data. —: the metric is not in the published file of the curve or of the anchor (they hold PSNR-RGB "
              "and at most MS-SSIM; PSNR-Y only for codecs run here). The VVC row of vvenc is 4:2:0 and the "
              "published VTM curve 4:4:4: see the chroma "
              "column and compare PSNR-Y."),
        ("table", table_header({n: a for n, a in anchors.items()}), rows),
        ("caption", "Timeline points (figure4_timeline.csv): each End2End curve by its year of publication."),
        ("table", F4_TIMELINE_HEADER, timeline_rows),
        ("caption", "Years of publication (bench/report/figure4.py, PUBLICATIONS): the year a method was first "
                    "published (arXiv or proceedings), which places it on the timeline."),
        ("table", F4_YEARS_HEADER, [[label, str(year), method_, citation] for year, label, method_, citation in years]),
        ("caption", "Fairness notes: the chroma format of every codec (read from the codec's info, else its "
                    "chroma/subsampling option, else what the adapter codes)."),
        ("list", [f"{label}: {fmt} ({where})" for label, (fmt, where) in sorted(chroma.items())]),
    ]
    intro = F4_INTRO.format(method=method, scope=scope)
    md = [("h2", "Conventional vs End2End"), ("p", intro), ("list", notes), *md_figures, *blocks]
    html_text = figure4_section(list(figures), blocks_html=html_body(blocks),
                                intro_html=html_body([("p", intro), ("list", notes)]))
    return Figure4View(md, html_text, figures, written, chroma_warning(chroma, infos))


def build_report(results_dir: str | Path, anchor: str = "jpeg", references: list[str] | None = None,
                 method: str = "pchip", bootstrap: int = BOOTSTRAP) -> list[Path]:
    """Rebuild every table, plot and the report from the store in ``results_dir``."""
    out = Path(results_dir)
    if bootstrap < 0:
        raise ReportError(f"--bootstrap must be 0 (no intervals) or a positive number of resamples, not {bootstrap}")
    if method not in METHODS:
        raise ReportError(f"unknown interpolation method {method!r} (choose from {', '.join(METHODS)})")
    references = [str(p) for p in references or []]
    try:
        refs = [load_reference(p) for p in references]
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    with open_results(out, ReportError) as (store, dataset):
        exported = export_results(store, dataset, out)
        codecs = store.codecs()
        images = store.images(dataset)
        image_files = _image_files(store, dataset)
        run = store.get_meta("run", {})
        cross_device = cross_device_blocks(store, dataset, out)
    per_image, summary, n_images = exported.per_image, exported.summary, exported.n_images
    if per_image.empty:
        raise ReportError(f"{out}: no measurements stored for dataset {dataset!r}")
    families = {c["label"]: c["family"] for c in codecs}
    measured = set(per_image["codec"])
    codecs = [c for c in codecs if c["label"] in measured]
    options = {c["label"]: options_text(c["options"]) for c in codecs}
    ref_labels = [next(iter(r.values())).label for r in refs if r]
    labels = sorted(measured) + ref_labels
    if anchor not in labels:
        raise ReportError(f"anchor {anchor!r} not among the curves ({', '.join(labels)})")
    scope = f"{dataset}, {n_images} images"
    warnings_list: list[str] = []
    ref_notes = {}
    for path, ref in zip(references, refs, strict=True):
        if ref:
            label = next(iter(ref.values())).label
            warning = reference_warning(path, label, dataset, n_images)
            if warning:
                warnings_list.append(warning)
                ref_notes[label] = warning.split(": ", 1)[1]

    table = add_notes(anchored_bd_table(per_image, summary, n_images, anchor, refs, bootstrap), ref_notes)
    written = list(exported.paths)
    write_csv(table, out / "bd_rate.csv")
    bd = bd_blocks(table, anchor, method, families, scope, bootstrap)
    write_text_atomic(out / "bd_rate.md", render_markdown([("h1", f"Bjøntegaard deltas against {anchor}"), *bd]))
    written += [out / "bd_rate.csv", out / "bd_rate.md"]

    metrics = bd_metrics(per_image.columns)
    palette = colours(labels)
    host = hosts_text(per_image) or (f"{run.get('cpu', '?')} ({run.get('cores', '?')} cores), "
                                     f"GPU: {run.get('cuda', '?')}")
    plots, speed_plots = [], []
    rd_curves: dict[str, list[tuple[Curve, list[str]]]] = {}
    data: dict[str, Any] = {"metrics": metrics, "rd": {}, "per_image": {}, "speed": {}}
    for metric in metrics:
        legend = legend_bd(table, metric, method)
        curves = rd_curves[metric] = hover_curves(summary, metric, n_images, refs, options)
        title = f"{dataset} ({n_images} images): {metric}"
        fig = rd_figure([c for c, _ in curves], families, metric, title, anchor, legend)
        rd_paths = save_figure(fig, out / f"rd_{metric}")
        plots.append((metric, rd_paths[0]))
        data["rd"][metric] = rd_figure_json(curves, families, palette, metric,
                                            f"{title}; anchor {anchor}, BD-rate ({method}) in the legend", anchor,
                                            legend)
        data["per_image"][metric] = image_figures(per_image, metric, families, palette, anchor, options)
        points = speed_points(per_image, codecs, table, metric, method, anchor)
        if len(points):
            speed_title = f"{dataset}: BD-rate ({metric}) vs {anchor} against speed; host {host}"
            paths = save_figure(speed_figure(points, metric, anchor, speed_title), out / f"speed_{metric}")
            speed_plots.append((f"speed_{metric}", paths[0]))
            written += paths
            data["speed"][metric] = speed_figure_json(points, metric, anchor, speed_title, palette)
        written += rd_paths
    data["images"] = sorted(image_files)
    data["thumbs"] = {name: thumbnail(path, digest) for name, (path, digest) in image_files.items()}

    ranges = bpp_ranges(pd.concat([summary[summary["n_images"] == n_images][["codec", "bpp"]],
                                   exported.targets.rename(columns={"mean_bpp": "bpp"})[["codec", "bpp"]]
                                   if not exported.targets.empty else pd.DataFrame(columns=["codec", "bpp"])]))
    if not exported.targets.empty:
        warnings_list += target_warnings(exported.targets, ranges)
    warnings_list += mixed_host_warnings(per_image)
    f4 = figure4_view(out, per_image, summary, n_images, codecs, refs, ref_notes, table, anchor, method, bootstrap,
                      rd_curves, scope, host)
    written += f4.written
    warnings_list += f4.warnings
    data["figure4"] = f4.figures

    # --- the opening: what was compared, warnings, BD-rate against the anchor, one line per family
    by_family: dict[str, list[str]] = {}
    for label in labels:
        by_family.setdefault(families.get(label, "published"), []).append(label)
    compared = (f"{len(measured)} codecs on {dataset} ({n_images} images: {_resolution_summary(images)}) — "
                + "; ".join(f"{family}: {', '.join(names)}" for family, names in sorted(by_family.items()))
                + f". Anchor: {anchor}. BD-rate = bits at equal quality against the anchor on the mean curves "
                  f"({method} interpolation), in brackets its 95 % bootstrap interval over images where there is "
                  "one; negative = fewer bits, best first.")
    headline = main_metrics(metrics)
    summary_table = ["codec", "family", *(f"BD-rate {metric_name(m)}" for m in headline)]
    summary_cells = summary_rows(table, headline, method, anchor, families)
    sources = {c["label"]: c["info"]["source"] for c in codecs if c["info"].get("source")}
    for cells in summary_cells:  # e.g. "learned (published bitstreams)": not run here
        cells[1] += f" ({sources[cells[0]]})" if cells[0] in sources else ""
    curves_by_label = {c.label: c for c, _ in rd_curves[headline[0]]}
    sentences = family_sentences(table, curves_by_label, headline[0], method, anchor, families)

    built = f"Report built {time.strftime('%Y-%m-%d %H:%M:%S %Z')}."
    settings = settings_rows(dataset, n_images, images, run, anchor, method, references, ref_notes)
    codec_rows = [[c["label"], c["family"], c["version"] + source_marker(c["info"]), options[c["label"]],
                   ", ".join(f"{q:g}" for q in sorted(set(per_image.loc[per_image["codec"] == c["label"], "quality"])))]
                  for c in codecs]
    complexity = [[c["label"], f"{c['info'].get('parameters', ''):,}" if c["info"].get("parameters") else "",
                   str(c["info"].get("encoder_kmac_per_pixel", "")), str(c["info"].get("decoder_kmac_per_pixel", "")),
                   str(c["info"].get("weights", ""))] for c in codecs if c["info"] and not c["info"].get("source")]
    crops = sorted(out.glob("crops_*.png"))
    speed_note = (f"One line per codec: BD-rate against {anchor} (mean curves, {method}) against encode (filled) and "
                  f"decode (hollow) time in seconds per megapixel (total seconds / total megapixels of the sweep, "
                  f"log scale; decode only where the encode time was not measured, e.g. published bitstreams); "
                  f"learned codecs also against kMAC per pixel. Measured on {host}; devices per codec in the hover "
                  "and the timing table.")

    tail: list[tuple] = []
    if not exported.targets.empty:
        tail += [("h2", "At target bit rates"), *target_blocks(exported.targets, ranges)]
    if crops:
        tail += [("h2", "Rate-matched crops"), *[("figure", p.stem, p) for p in crops]]
    tail += [("h2", "Bjøntegaard deltas"), *bd]
    tail += cross_device
    tail += [("h2", "Encode and decode time per image"), ("table", TIMING_HEADER, timing_rows(per_image))]
    if complexity:
        tail += [("h2", "Learned codec complexity"), ("table", COMPLEXITY_HEADER, complexity)]
    tail += [("h2", "Settings and provenance"), ("table", ["", ""], settings), ("table", CODEC_HEADER, codec_rows)]

    opening: list[tuple] = [("p", compared)]
    if warnings_list:
        opening.append(("warnings", warnings_list))
    opening += [("list", sentences), ("table", summary_table, summary_cells)]
    md = [("h1", f"Codec benchmark: {scope}"), ("h2", "Summary"), *opening, ("h2", "Rate–distortion curves"),
          *[("figure", m, p) for m, p in plots]]
    if speed_plots:
        md += [("h2", "Speed against coding efficiency"), ("p", speed_note),
               *[("figure", n, p) for n, p in speed_plots]]
    md += f4.md
    write_text_atomic(out / "report.md", render_markdown([*md, *tail, ("p", built)]))

    header = (f"<h1>Codec benchmark: {html.escape(scope)}</h1>")
    top = "<section id='summary'><h2>Summary</h2>" + html_body(opening) + "</section>"
    sections = [per_image_section(metrics, data["images"])]
    if data["speed"]:
        sections.append(speed_section(metrics, speed_note))
    sections.append(f4.html)
    static = [("h2", "Static figures (PNG and SVG, for papers)"),
              ("links", [p.name for _, p in plots] + [p.with_suffix(".svg").name for _, p in plots]
               + [p.name for _, p in speed_plots] + [p.name for p in f4.written if p.suffix == ".png"])]
    sections.append(html_body([*tail[:-3], *static, *tail[-3:]]))
    write_text_atomic(out / "report.html",
               page(f"Codec benchmark: {dataset}", header, top, sections, data, html.escape(built)))
    return [*written, out / "report.md", out / "report.html"]


def settings_rows(dataset: str, n_images: int, images: list[dict], run: dict, anchor: str, method: str,
                  references: list[str], ref_notes: dict[str, str]) -> list[list[str]]:
    refs = ", ".join(Path(p).name for p in references) or "none"
    if ref_notes:
        refs += " (" + "; ".join(f"{k}: {v}" for k, v in ref_notes.items()) + ")"
    return [
        ["dataset", f"{dataset}: {n_images} images ({_resolution_summary(images)})"],
        ["measured (latest run)", f"{run.get('date', '?')} on {run.get('cpu', '?')} ({run.get('cores', '?')} cores, "
                                  f"{run.get('os', '?')}), {run.get('jobs', '?')} jobs, GPU: {run.get('cuda', '?')}"],
        ["software", f"Python {run.get('python', '?')}, numpy {run.get('numpy', '?')}, torch {run.get('torch', '?')}"],
        ["project commit", f"{run.get('commit', '?')} (measured), {git_commit()} (report)"],
        ["anchor / method", f"{anchor} / {method}"],
        ["published references", refs],
    ]


def render_markdown(blocks: list[tuple]) -> str:
    parts = []
    for kind, *args in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"{'#' * int(kind[1])} {args[0]}\n")
        elif kind == "table":
            parts.append(markdown_table(*args) + "\n")
        elif kind == "notes":
            if args[0]:
                parts.append("".join(f"[{i}] {n}  \n" for i, n in enumerate(args[0], 1)))
        elif kind == "figure":
            parts.append(f"![{args[0]}]({args[1].name})\n")
        elif kind in ("list", "warnings", "links"):
            mark = "**Warning:** " if kind == "warnings" else ""
            parts.append("".join(f"- {mark}{item}\n" for item in args[0]))
        else:  # caption, p
            parts.append(args[0] + "\n")
    return "\n".join(parts)


def html_body(blocks: list[tuple]) -> str:
    """HTML for report blocks; figures are embedded as base64 PNG."""
    body = []
    for kind, *args in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
        elif kind == "table":
            body.append(html_table(*args))
        elif kind == "notes" and args[0]:
            body.append("<ol class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in args[0]) + "</ol>")
        elif kind == "figure":
            data = base64.b64encode(args[1].read_bytes()).decode()
            body.append(f"<figure><img class='figure' alt='{html.escape(args[0])}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(args[0])}</figcaption></figure>")
        elif kind == "list":
            body.append("<ul class='family'>" + "".join(f"<li>{html.escape(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "warnings":
            body.append("<div class='warn'><b>Fair-comparison warnings</b><ul>"
                        + "".join(f"<li>{html.escape(i)}</li>" for i in args[0]) + "</ul></div>")
        elif kind == "links":
            links = (f"<a href='{html.escape(n)}'>{html.escape(n)}</a>" for n in args[0])
            body.append("<p>" + " · ".join(links) + "</p>")
        elif kind in ("caption", "p"):
            body.append(f"<p class='{kind}'>{html.escape(args[0])}</p>")
    return "\n".join(body)
