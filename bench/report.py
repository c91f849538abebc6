"""``python -m bench report DIR``: every table, plot and the report, rebuilt from stored results.

Reads only the result store (and published reference JSONs given with ``--reference``); never
encodes. Writes per_image.csv, summary.csv, <codec>.json, bd_rate.csv, bd_rate.md,
rd_<metric>.png/.svg, report.md and report.html. Rebuilding gives identical files apart from
the build date line.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from .analysis import BOOTSTRAP, METHODS, NO_IMAGES, Curve, bd_metrics, bd_table, load_reference, mean_curves
from .atomic import atomic_path, write_text_atomic
from .errors import BenchError
from .export import export_results
from .metrics import METRICS
from .plots import rd_figure, save_figure
from .provenance import git_commit
from .stats import ALPHA, SEED
from .store import DB_NAME, Store


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
    ("bd-rate", "mean-curve", "BD-rate (%) on the mean curves (CompressAI style); negative = fewer bits at equal quality"),
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
    """Caption, table and footnotes for each BD table (rendered by render_markdown / render_html)."""
    blocks = []
    for i, (kind, aggregation, what) in enumerate(BD_TABLES, 1):
        header, rows, notes = bd_pivot(table, kind, aggregation, method, families)
        caption = f"Table {i}. {what}. Anchor: {anchor}; interpolation: {method}; {scope}."
        blocks += [("caption", caption), ("p", uncertainty_legend(table, kind, aggregation, method, bootstrap)),
                   ("table", header, rows), ("notes", notes)]
    blocks.append(("p", "All interpolation methods (pchip, akima, cubic) and both aggregations are in bd_rate.csv."))
    return blocks


def target_blocks(means: pd.DataFrame) -> list[tuple]:
    """One table per target bpp: codecs with their mean achieved bpp and mean metrics."""
    metrics = [m for m in METRICS if m in means.columns and m != "ms-ssim-rgb"]
    blocks = [("p", "Per image and codec, the quality whose bpp is nearest the target (JPEG AI CTC style); "
                    "means over images, achieved bpp beside the target. ms-ssim-db is that of the mean MS-SSIM.")]
    for target, rows in means.groupby("target_bpp", sort=True):
        table = [[r["codec"], r["family"], f"{r['mean_bpp']:.3f}", *(f"{r[m]:.4g}" for m in metrics)]
                 for _, r in rows.iterrows()]
        blocks += [("caption", f"Target {target:g} bpp"), ("table", ["codec", "family", "mean bpp", *metrics], table)]
    return blocks


def timing_rows(per_image: pd.DataFrame) -> list[list[str]]:
    """Per codec: encode/decode mean and median seconds per image, and megapixels per second."""
    rows = []
    for codec, g in per_image.groupby("codec", sort=True):
        pixels = float((g["width"] * g["height"]).sum())
        row = [codec, ", ".join(sorted(set(g["device"])))]
        for col in ("encode_s", "decode_s"):
            row += [f"{g[col].mean():.4f}", f"{g[col].median():.4f}", f"{pixels / g[col].sum() / 1e6:.2f}"]
        rows.append(row)
    return rows


TIMING_HEADER = ["codec", "device", "encode mean s", "encode median s", "encode MP/s",
                 "decode mean s", "decode median s", "decode MP/s"]


def _resolution_summary(images: list[dict]) -> str:
    counts = Counter(f"{i['width']}x{i['height']}" for i in images)
    return ", ".join(f"{n} × {res}" for res, n in sorted(counts.items(), key=lambda x: -x[1]))


def build_report(results_dir: str | Path, anchor: str = "jpeg", references: list[str] | None = None,
                 method: str = "pchip", bootstrap: int = BOOTSTRAP) -> list[Path]:
    """Rebuild every table, plot and the report from the store in ``results_dir``."""
    out = Path(results_dir)
    if not (out / DB_NAME).is_file():
        raise ReportError(f"no result store {out / DB_NAME}; run `python -m bench run --out {out}` first")
    if bootstrap < 0:
        raise ReportError(f"--bootstrap must be 0 (no intervals) or a positive number of resamples, not {bootstrap}")
    if method not in METHODS:
        raise ReportError(f"unknown interpolation method {method!r} (choose from {', '.join(METHODS)})")
    try:
        refs = [load_reference(p) for p in references or []]
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    with Store(out, writer=False) as store:
        dataset = (store.get_meta("dataset") or {}).get("name")
        if not dataset:
            raise ReportError(f"{out / DB_NAME} holds no run yet")
        exported = export_results(store, dataset, out)
        codecs = store.codecs()
        images = store.images(dataset)
        run = store.get_meta("run", {})
    per_image, summary, n_images = exported.per_image, exported.summary, exported.n_images
    if per_image.empty:
        raise ReportError(f"{out}: no measurements stored for dataset {dataset!r}")
    families = {c["label"]: c["family"] for c in codecs}
    measured = set(per_image["codec"])
    labels = sorted(measured) + [r[next(iter(r))].label for r in refs if r]
    if anchor not in labels:
        raise ReportError(f"anchor {anchor!r} not among the curves ({', '.join(labels)})")
    scope = f"{dataset}, {n_images} images"

    table = bd_table(per_image, summary, n_images, anchor, refs, bootstrap=bootstrap)
    written = list(exported.paths)
    with atomic_path(out / "bd_rate.csv") as tmp:
        table.to_csv(tmp, index=False)
    bd = bd_blocks(table, anchor, method, families, scope, bootstrap)
    write_text_atomic(out / "bd_rate.md", render_markdown([("h1", f"Bjøntegaard deltas against {anchor}"), *bd]))
    written += [out / "bd_rate.csv", out / "bd_rate.md"]

    plots = []
    for metric in bd_metrics(per_image.columns):
        curves: list[Curve] = list(mean_curves(summary, metric, n_images).values())
        curves += [r[metric] for r in refs if metric in r]
        fig = rd_figure(curves, families, metric, f"{dataset} ({n_images} images): {metric}")
        paths = save_figure(fig, out / f"rd_{metric}")
        plots.append((metric, paths[0]))
        written += paths

    codec_rows = [[c["label"], c["family"], c["version"], c["options"],
                   ",".join(f"{q:g}" for q in sorted(set(per_image.loc[per_image["codec"] == c["label"], "quality"])))]
                  for c in codecs if c["label"] in measured]
    settings = [
        ["dataset", f"{dataset}: {n_images} images ({_resolution_summary(images)})"],
        ["measured (latest run)", f"{run.get('date', '?')} on {run.get('cpu', '?')} ({run.get('cores', '?')} cores, "
                     f"{run.get('os', '?')}), {run.get('jobs', '?')} jobs, GPU: {run.get('cuda', '?')}"],
        ["software", f"Python {run.get('python', '?')}, numpy {run.get('numpy', '?')}, torch {run.get('torch', '?')}"],
        ["project commit", f"{run.get('commit', '?')} (measured), {git_commit()} (report)"],
        ["anchor / method", f"{anchor} / {method}"],
        ["published references", ", ".join(str(p) for p in references or []) or "none"],
    ]
    built = f"Report built {time.strftime('%Y-%m-%d %H:%M:%S %Z')}."
    blocks = [("h1", f"Codec benchmark: {scope}"), ("h2", "Settings"), ("table", ["", ""], settings),
              ("table", CODEC_HEADER, codec_rows), ("h2", "Bjøntegaard deltas"), *bd]
    blocks.append(("h2", "Rate–distortion curves"))
    blocks += [("figure", metric, path) for metric, path in plots]
    if not exported.targets.empty:
        blocks += [("h2", "At target bit rates"), *target_blocks(exported.targets)]
    crops = sorted(out.glob("crops_*.png"))
    if crops:
        blocks.append(("h2", "Rate-matched crops"))
        blocks += [("figure", path.stem, path) for path in crops]
    blocks += [("h2", "Encode and decode time per image"), ("table", TIMING_HEADER, timing_rows(per_image))]
    complexity = [[c["label"], str(c["info"].get("parameters", "")), str(c["info"].get("encoder_kmac_per_pixel", "")),
                   str(c["info"].get("decoder_kmac_per_pixel", "")), str(c["info"].get("weights", ""))]
                  for c in codecs if c["label"] in measured and c["info"]]
    if complexity:
        blocks += [("h2", "Learned codec complexity"), ("table", COMPLEXITY_HEADER, complexity)]
    blocks.append(("p", built))
    (out / "report.md").write_text(render_markdown(blocks))
    (out / "report.html").write_text(render_html(blocks, f"Codec benchmark: {dataset}"))
    return written + [out / "report.md", out / "report.html"]


CODEC_HEADER = ["codec", "family", "library version", "options", "qualities"]
COMPLEXITY_HEADER = ["codec", "parameters", "encoder kMAC/pixel", "decoder kMAC/pixel", "weights"]


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
        else:  # caption, p
            parts.append(args[0] + "\n")
    return "\n".join(parts)


def render_html(blocks: list[tuple], title: str) -> str:
    """A self-contained page: figures are embedded as base64 PNG."""
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
            body.append(f"<figure><img alt='{html.escape(args[0])}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(args[0])}</figcaption></figure>")
        elif kind in ("caption", "p"):
            body.append(f"<p class='{kind}'>{html.escape(args[0])}</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}img{max-width:100%}.caption{font-weight:bold}.notes{font-size:90%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
