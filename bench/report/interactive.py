"""The interactive, self-contained report.html: Plotly figures drawn from embedded JSON.

The page works offline from ``file://``: plotly.js (the copy bundled in the ``plotly`` Python
package) and every figure's data are inside the file. The figures are built here as plain
Plotly JSON (traces and layouts) and drawn by a short script: a metric selector switches the RD,
per-image and speed figures together, an image selector the per-image figure and thumbnail.
Element ids are fixed, and the JSON is written with sorted keys, so rebuilding gives the same
page apart from the build date.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import Curve
from .plots import TIMELINE_CAP, ZOOM_MAX_BPP, axis_label, legend_label, zoom_range

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
DASHES = {"conventional": "dash", "learned": "solid"}
THUMB_WIDTH = 384  # pixels
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def colours(labels: list[str]) -> dict[str, str]:
    """One colour per curve label, the same in every figure."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _finite(values) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


def hover_texts(label: str, options: str, quality: list, bpp: list, values: list, metric: str,
                n_images: list) -> list[str]:
    """One hover text per point: codec, options, quality, bpp, value and number of images."""
    texts = []
    for q, b, v, n in zip(quality, bpp, values, n_images, strict=True):
        lines = [f"<b>{html.escape(label)}</b>"]
        if options:
            lines.append(f"options: {html.escape(options)}")
        if q is not None:
            lines.append(f"quality: {q:g}")
        lines.append(f"{b:.4f} bpp")
        lines.append(f"{metric}: {v:.4f}" if v is not None and math.isfinite(v) else f"{metric}: n/a")
        lines.append(f"{n} image{'s' if n != 1 else ''}" if n else "images: not stated (published)")
        texts.append("<br>".join(lines))
    return texts


def rd_trace(curve: Curve, family: str, colour: str, name: str, anchor: bool, texts: list[str]) -> dict:
    """A Plotly scatter trace (lines and markers) of one RD curve, sorted by bpp."""
    order = np.argsort(curve.bpp, kind="stable")
    if curve.published:
        line = {"color": colour, "dash": "dot", "width": 2}
        marker = {"symbol": "square-open", "size": 7, "color": colour}
    else:
        line = {"color": colour, "dash": DASHES.get(family, "dashdot"), "width": 4 if anchor else 2}
        marker = {"symbol": "diamond" if anchor else "circle", "size": 9 if anchor else 6, "color": colour}
    return {
        "type": "scatter", "mode": "lines+markers", "name": name, "legendgroup": curve.label,
        "x": _finite(curve.bpp[order]), "y": _finite(curve.values[order]),
        "text": [texts[i] for i in order], "hovertemplate": "%{text}<extra></extra>",
        "line": line, "marker": marker, "meta": curve.label,
    }


def rd_layout(metric: str, title: str, zoom: tuple[float, float] | None) -> dict:
    return {
        "title": {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": "bits per pixel (bpp)"}, "rangemode": "tozero", "zeroline": False},
        "yaxis": {"title": {"text": axis_label(metric)}},
        "hovermode": "closest", "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
        "legend": {"font": {"size": 11}, "itemclick": "toggle", "itemdoubleclick": "toggleothers"},
        "meta": {"zoom": list(zoom) if zoom else None, "zoom_max_bpp": ZOOM_MAX_BPP},
        "plot_bgcolor": "#fafafa",
    }


def rd_figure_json(curves: list[tuple[Curve, list[str]]], families: dict[str, str], palette: dict[str, str],
                   metric: str, title: str, anchor: str, bd: dict[str, str]) -> dict:
    """``curves``: (curve, its hover texts) -> a Plotly figure, the anchor marked, BD-rate in the legend."""
    traces = [rd_trace(c, families.get(c.label, ""), palette[c.label], legend_label(c.label, anchor, bd),
                       c.label == anchor, texts) for c, texts in curves]
    return {"data": traces, "layout": rd_layout(metric, title, zoom_range([c for c, _ in curves]))}


def speed_figure_json(points: pd.DataFrame, metric: str, anchor: str, title: str, palette: dict[str, str]) -> dict:
    """BD-rate against encode and decode time per megapixel on one panel (log x; encode filled, decode
    hollow, joined per codec; decode only where the encode time was not measured); learned codecs also
    against kMAC/pixel."""
    learned = points.dropna(subset=["encoder_kmac"])
    panels = [("time", "seconds per megapixel (log): filled = encode, hollow = decode", "log")]
    if not learned.empty:
        panels.append(("encoder_kmac", "encoder / decoder kMAC per pixel (learned)", "linear"))
    bounds = [0.0, 0.6, 1.0] if len(panels) == 2 else [0.0, 1.0]
    low, high = float(min(points["bd_rate"].min(), 0)), float(max(points["bd_rate"].max(), 0))
    pad = 0.08 * (high - low or 1.0)
    y_range = [low - pad, high + pad]  # the same BD-rate axis on every panel
    layout = {"title": {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
              "hovermode": "closest", "showlegend": False,
              "margin": {"l": 60, "r": 10, "t": 50, "b": 50}}
    traces = []
    for i, (column, axis_title, kind) in enumerate(panels, 1):
        suffix = "" if i == 1 else str(i)
        layout[f"xaxis{suffix}"] = {"title": {"text": axis_title}, "type": kind,
                                    **({"rangemode": "tozero"} if kind == "linear" else {}),
                                    "domain": [bounds[i - 1] + 0.04, bounds[i] - 0.03], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"title": {"text": f"BD-rate vs {anchor} (%, {metric})" if i == 1 else ""},
                                    "anchor": f"x{suffix}", "zeroline": True, "range": y_range}
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        if column == "time":
            traces += [_time_trace(row, palette, axes) for _, row in points.iterrows()]
            continue
        for col, symbol in (("encoder_kmac", "circle"), ("decoder_kmac", "x")):
            for _, row in learned.iterrows():
                what = "encoder" if col == "encoder_kmac" else "decoder"
                text = (f"<b>{html.escape(row['codec'])}</b> ({row['family']}, {row['device']})<br>"
                        f"{what}: {row[col]:.4g} kMAC/pixel<br>BD-rate: {row['bd_rate']:+.1f} %")
                traces.append({
                    "type": "scatter", "mode": "markers+text", "x": [float(row[col])], "y": [float(row["bd_rate"])],
                    "text": [row["codec"] if symbol != "x" else ""], "textposition": "top center",
                    "hovertext": [text], "hovertemplate": "%{hovertext}<extra></extra>", "name": row["codec"],
                    **axes, "marker": {"size": 11, "color": palette.get(row["codec"], "#444"), "symbol": symbol},
                })
    return {"data": traces, "layout": layout}


def _time_trace(row: pd.Series, palette: dict[str, str], axes: dict[str, str]) -> dict:
    """One codec on the time panel: encode (filled) and decode (hollow) seconds per megapixel at its
    BD-rate, joined by a line; decode only when the encode time was not measured."""
    shape = "circle" if row["family"] == "learned" else "square"
    points = [(kind, float(row[f"{kind}_s_per_mp"])) for kind in ("encode", "decode")
              if pd.notna(row[f"{kind}_s_per_mp"])]
    host = f"<br>host: {html.escape(row['host'])}" if row.get("host") else ""
    texts = []
    for kind, seconds in points:
        text = (f"<b>{html.escape(row['codec'])}</b> ({row['family']}, {row['device']}){host}<br>"
                f"{kind}: {seconds:.4g} s per megapixel<br>BD-rate: {row['bd_rate']:+.1f} %")
        if len(points) == 1:
            text += "<br>encode time not measured" + (f" ({html.escape(row['source'])})" if row.get("source") else "")
        texts.append(text)
    colour = palette.get(row["codec"], "#444")
    return {
        "type": "scatter", "mode": "lines+markers+text", "x": [s for _, s in points],
        "y": [float(row["bd_rate"])] * len(points), "name": row["codec"],
        "text": [row["codec"] + (" (decode only)" if len(points) == 1 else "")] + [""] * (len(points) - 1),
        "textposition": "top center", "hovertext": texts, "hovertemplate": "%{hovertext}<extra></extra>", **axes,
        "line": {"color": colour, "width": 1}, "meta": [kind for kind, _ in points],
        "marker": {"size": 11, "color": colour, "symbol": [shape if kind == "encode" else f"{shape}-open"
                                                             for kind, _ in points]},
    }


def family_rd_json(curves: list[tuple[Curve, list[str]]], names: dict[str, str], families: dict[str, str],
                   palette: dict[str, str], metric: str, title: str) -> dict:
    """The Conventional vs End2End RD figure: colour by family (``palette``), legend grouped by family
    (conventional first), published curves dashed with hollow markers, measured ones solid."""
    traces = []
    for curve, texts in sorted(curves, key=lambda c: (families.get(c[0].label) != "conventional", c[0].label)):
        family = families.get(curve.label, "learned")
        trace = rd_trace(curve, family, palette[curve.label], names.get(curve.label, curve.label), False, texts)
        trace["line"]["dash"] = "dash" if curve.published else "solid"
        trace["marker"]["symbol"] = ("square" if family == "conventional" else "circle") + (
            "-open" if curve.published else "")
        trace["legendgroup"] = family
        trace["legendgrouptitle"] = {"text": "Conventional" if family == "conventional" else "End2End"}
        traces.append(trace)
    layout = rd_layout(metric, title, zoom_range([c for c, _ in curves]))
    layout["legend"]["groupclick"] = "toggleitem"
    return {"data": traces, "layout": layout}


def timeline_json(points: pd.DataFrame, anchors: list[tuple[str, str]], metric: str, title: str) -> dict:
    """BD-rate (%) of End2End codecs by year, one panel per anchor ((name, label)): measured points filled
    diamonds with their 95 % interval, published ones hollow circles; a line at 0 = the anchor. Points
    above ``TIMELINE_CAP`` sit on it as triangles with their value in the label (and the hover)."""
    layout: dict = {"title": {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
                    "hovermode": "closest", "showlegend": False, "margin": {"l": 60, "r": 10, "t": 50, "b": 50},
                    "shapes": [], "annotations": []}
    traces = []
    width = 1 / max(len(anchors), 1)
    for i, (name, label) in enumerate(anchors, 1):
        suffix = "" if i == 1 else str(i)
        rows = points[(points["anchor"] == name) & (points["metric"] == metric)].sort_values(["year", "label"])
        layout[f"xaxis{suffix}"] = {"title": {"text": "year of publication"}, "dtick": 1,
                                    "domain": [(i - 1) * width + 0.05, i * width - 0.02], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"title": {"text": f"BD-rate vs {name} (%, {metric})"}, "anchor": f"x{suffix}",
                                    "zeroline": True, "zerolinewidth": 2, "zerolinecolor": "#000"}
        layout["annotations"].append({"text": f"= {html.escape(name)} ({html.escape(label)}); below: fewer bits",
                                      "x": 0, "xref": f"x{suffix} domain", "y": 0, "yref": f"y{suffix}",
                                      "showarrow": False, "xanchor": "left", "yanchor": "bottom",
                                      "font": {"size": 10}})
        for source, symbol in (("measured", "diamond"), ("published", "circle-open")):
            sub = rows[(rows["source"] == "published curve") == (source == "published")]
            if sub.empty:
                continue
            ci = sub["ci_low"].notna() & sub["ci_high"].notna()
            texts = [f"<b>{html.escape(r['label'])}</b> ({r['source']})<br>{html.escape(r['method'])}, {r['year']}"
                     f"<br>BD-rate vs {html.escape(name)}: {r['bd_rate']:+.1f} %"
                     + (f" [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" if c else " (no CI)")
                     + f"<br>{html.escape(r['citation'])}" for (_, r), c in zip(sub.iterrows(), ci, strict=True)]
            traces.append({
                "type": "scatter", "mode": "markers+text", "name": f"{source} vs {name}",
                "x": [int(y) for y in sub["year"]], "y": [min(float(v), TIMELINE_CAP) for v in sub["bd_rate"]],
                "text": [str(label).removesuffix(" (published)")
                         + (f" ({v:+.0f} %, off the axis)" if v > TIMELINE_CAP else "")
                         for label, v in zip(sub["label"], sub["bd_rate"], strict=True)],
                "textposition": "middle right",
                "hovertext": texts, "hovertemplate": "%{hovertext}<extra></extra>",
                "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "meta": list(sub["source"]),
                "marker": {"size": 12, "color": "#d62728",
                           "symbol": [("triangle-up" + symbol.removeprefix("circle").removeprefix("diamond"))
                                      if v > TIMELINE_CAP else symbol for v in sub["bd_rate"]]},
                **({"error_y": {"type": "data", "symmetric": False,
                                "array": [float(h - v) if c and v <= TIMELINE_CAP else 0.0 for h, v, c in
                                          zip(sub["ci_high"], sub["bd_rate"], ci, strict=True)],
                                "arrayminus": [float(v - lo) if c and v <= TIMELINE_CAP else 0.0 for lo, v, c in
                                               zip(sub["ci_low"], sub["bd_rate"], ci, strict=True)]}}
                   if ci.any() else {}),
            })
    return {"data": traces, "layout": layout}


def thumbnail(path: str | None, expected_hash: str) -> dict:
    """``{"src": data URI}`` of a small JPEG of the original, or ``{"missing": reason}``."""
    from PIL import Image

    from ..datasets.images import pixel_sha256

    if not path or not Path(path).is_file():
        return {"missing": f"original file {path or '(path not stored)'} is gone: no thumbnail"}
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as exc:
        return {"missing": f"original file {path} cannot be read ({exc}): no thumbnail"}
    if pixel_sha256(rgb) != expected_hash:
        return {"missing": f"original file {path} changed since it was measured: no thumbnail"}
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return {"src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()}


def embed_json(data) -> str:
    """JSON safe inside a <script> element (sorted keys: deterministic)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;padding:0 1.2em 2em;max-width:1500px;color:#222}
h1{font-size:1.45em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
.lead{margin:.2em 0 .6em;color:#333}
.top{display:grid;grid-template-columns:minmax(360px,6fr) 7fr;gap:1.5em;align-items:start}
#summary{min-width:0;overflow-x:auto}#summary table{font-size:.88em}
.top h2{margin-top:.3em}
@media (max-width:1100px){.top{grid-template-columns:1fr}}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:.4em .8em;margin:.6em 0}
.warn li{margin:.2em 0}.family li{margin:.25em 0}
select.metric{max-width:16em}
.controls{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin:.3em 0}
.hint{color:#666;font-size:.85em;margin:.2em 0}
.plot{width:100%;height:560px}.f4grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}
@media (max-width:1100px){.f4grid{grid-template-columns:1fr}}.speed{width:100%;height:470px}
.imageview{display:grid;grid-template-columns:400px 1fr;gap:1em;align-items:start}
.thumb{max-width:384px;border:1px solid #ccc}.missing{color:#b03a2e}
img.figure{max-width:100%}.caption{font-weight:bold}.notes{font-size:90%}
footer{color:#666;font-size:.85em;margin-top:2em}
"""

SCRIPT = """
(function(){
const D = JSON.parse(document.getElementById('bench-data').textContent);
const CONFIG = %(config)s;
let metric = D.metrics[0];
let image = D.images.length ? D.images[0] : null;
function drawRd(){
  const fig = D.rd[metric];
  Plotly.react('rd-plot', fig.data, JSON.parse(JSON.stringify(fig.layout)), CONFIG);
}
function drawImage(){
  if (!image) return;
  const fig = D.per_image[metric][image];
  Plotly.react('image-plot', fig.data, JSON.parse(JSON.stringify(fig.layout)), CONFIG);
  const t = D.thumbs[image], img = document.getElementById('thumb'), msg = document.getElementById('thumb-missing');
  if (t.src){ img.src = t.src; img.style.display = ''; msg.textContent = ''; }
  else { img.removeAttribute('src'); img.style.display = 'none'; msg.textContent = t.missing; }
}
function drawSpeed(){
  const fig = D.speed[metric];
  const div = document.getElementById('speed-plot');
  if (!div) return;
  if (!fig){ Plotly.purge(div); div.textContent = 'No BD-rate against the anchor for ' + metric + '.'; return; }
  div.textContent = '';
  Plotly.react(div, fig.data, JSON.parse(JSON.stringify(fig.layout)), CONFIG);
}
function setMetric(m){
  metric = m;
  document.querySelectorAll('select.metric').forEach(s => { s.value = m; });
  drawRd(); drawImage(); drawSpeed();
}
document.querySelectorAll('select.metric').forEach(s => s.addEventListener('change', e => setMetric(e.target.value)));
const imageSelect = document.getElementById('image-select');
if (imageSelect) imageSelect.addEventListener('change', e => { image = e.target.value; drawImage(); });
document.getElementById('zoom-all').addEventListener('click', () => {
  Plotly.relayout('rd-plot', {'xaxis.autorange': true, 'yaxis.autorange': true});
});
document.getElementById('zoom-low').addEventListener('click', () => {
  const z = D.rd[metric].layout.meta.zoom, update = {'xaxis.range': [0, D.rd[metric].layout.meta.zoom_max_bpp]};
  if (z) update['yaxis.range'] = z;
  Plotly.relayout('rd-plot', update);
});
setMetric(metric);
Object.keys(D.figure4 || {}).forEach(id => {
  const fig = D.figure4[id];
  Plotly.react('f4-' + id, fig.data, JSON.parse(JSON.stringify(fig.layout)), CONFIG);
});
})();
"""


def metric_select(metrics: list[str], element_id: str) -> str:
    options = "".join(f"<option value='{html.escape(m)}'>{html.escape(axis_label(m))}</option>" for m in metrics)
    return f"<label>metric <select class='metric' id='{element_id}'>{options}</select></label>"


def page(title: str, header: str, summary: str, sections: list[str], data: dict, footer: str) -> str:
    """The whole report page: summary and RD viewer side by side at the top, then ``sections``."""
    import plotly.offline

    rd = (f"<section id='rd'><h2>Rate–distortion curves</h2><div class='controls'>"
          f"{metric_select(data['metrics'], 'rd-metric')}"
          "<button id='zoom-all' type='button'>all rates</button>"
          f"<button id='zoom-low' type='button'>0–{ZOOM_MAX_BPP:g} bpp</button></div>"
          "<div id='rd-plot' class='plot'></div>"
          "<p class='hint'>Hover a point for its values. Click a legend entry to hide or show that curve, "
          "double-click one to show it alone. Drag to zoom, double-click the plot to reset. "
          "Legend: BD-rate against the anchor on the mean curves (negative = fewer bits at equal quality).</p>"
          "</section>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style>\n<script>{plotly.offline.get_plotlyjs()}</script>\n</head><body>\n"
            f"{header}\n<div class='top'>{summary}{rd}</div>\n" + "\n".join(sections) +
            f"\n<footer>{footer}</footer>\n"
            f"<script type='application/json' id='bench-data'>{embed_json(data)}</script>\n"
            f"<script>{SCRIPT % {'config': json.dumps(PLOT_CONFIG, sort_keys=True)}}</script>\n</body></html>\n")


def per_image_section(metrics: list[str], images: list[str]) -> str:
    options = "".join(f"<option value='{html.escape(i)}'>{html.escape(i)}</option>" for i in images)
    return ("<section id='per-image'><h2>One image</h2><div class='controls'>"
            f"<label>image <select id='image-select'>{options}</select></label>"
            f"{metric_select(metrics, 'image-metric')}</div>"
            "<div class='imageview'><div><img id='thumb' class='thumb' alt='original image'>"
            "<p id='thumb-missing' class='missing'></p></div><div id='image-plot' class='plot'></div></div>"
            "<p class='hint'>This image's own RD points (no averaging). Published curves have no per-image "
            "data.</p></section>")


def speed_section(metrics: list[str], note: str) -> str:
    return ("<section id='speed'><h2>Speed against coding efficiency</h2><div class='controls'>"
            f"{metric_select(metrics, 'speed-metric')}</div><div id='speed-plot' class='speed'></div>"
            f"<p class='hint'>{html.escape(note)}</p></section>")


def figure4_section(ids: list[str], blocks_html: str, intro_html: str) -> str:
    """The Conventional vs End2End section: an introduction, a plot div per figure id (``f4-<id>``,
    drawn from ``D.figure4``; RD plots two by two), then the tables and notes."""
    rd = "".join(f"<div id='f4-{html.escape(i)}' class='plot'></div>" for i in ids if i.startswith("rd-"))
    others = "".join(f"<div id='f4-{html.escape(i)}' class='speed'></div>" for i in ids if not i.startswith("rd-"))
    return (f"<section id='figure4'><h2>Conventional vs End2End</h2>{intro_html}<div class='f4grid'>{rd}</div>"
            f"{others}<p class='hint'>Blue: conventional codecs; red/orange: End2End. Solid: measured here; "
            "dashed with hollow markers: published curves. Click a legend entry to hide or show that curve.</p>"
            f"{blocks_html}</section>")
