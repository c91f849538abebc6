"""Conventional vs End2End (the article's "Figure 4"): families, anchors, years and the timeline.

Pure functions over what the report already has (the stored rows' codec list, the curve labels,
and ``analysis.table.bd_table`` DataFrames); nothing here reads files or encodes.

- Every curve gets a family (``conventional`` or ``learned`` = End2End) and a source: ``measured``
  (run here), ``published bitstreams`` (a published codec's real bitstreams measured here, its
  codec info says ``{"source": "published bitstreams"}``) or ``published curve`` (a CompressAI-
  format JSON given with ``--reference``: no per-image data, so no interval).
- Two anchors: VVC (a ``vvc`` row, else a ``vtm`` row, else the published VTM curve, said so)
  and JPEG (a ``jpeg`` row, else the published JPEG curve).
- ``PUBLICATIONS`` dates each End2End method (year of first publication, citation); the timeline
  is BD-rate against each anchor by that year, each point marked measured or published.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..model import StoredCodec

CONVENTIONAL_NAMES = ("jpeg", "mozjpeg", "jpeg2000", "webp", "hevc", "x265", "bpg", "hm", "vvc", "vvenc", "vtm",
                      "avif", "av1", "jxl")
TIMELINE_METRICS = ("psnr-rgb", "ms-ssim-db")
TABLE_METRICS = ("psnr-rgb", "psnr-y", "ms-ssim-db")
MEASURED, BITSTREAMS, PUBLISHED = "measured", "published bitstreams", "published curve"
FAMILY_TITLES = {"conventional": "Conventional", "learned": "End2End"}
# Blues for conventional codecs, reds/oranges for End2End: the family is read from the colour.
FAMILY_COLOURS = {
    "conventional": ("#1f4e9c", "#4a90d9", "#17becf", "#2c7fb8", "#6baed6", "#08306b", "#3f6fb5", "#5ab4ac",
                     "#4d6d8c", "#74a9cf"),
    "learned": ("#d62728", "#ff7f0e", "#a63603", "#e377c2", "#c51b8a", "#fd8d3c", "#8c2d04", "#f768a1",
                "#b2182b", "#e6550d"),
}


@dataclass(frozen=True)
class Publication:
    """When and where an End2End method was first published."""

    method: str
    year: int  # year of first publication (the timeline's x)
    citation: str


FACTORIZED = Publication(
    "factorized prior (Ballé et al.)", 2016,
    "Ballé, Laparra, Simoncelli, \"End-to-end optimized image compression\", ICLR 2017 (arXiv:1611.01704, "
    "Nov. 2016); CompressAI's bmshj2018-factorized is that model as the factorized-prior baseline of Ballé et al. 2018")
HYPERPRIOR = Publication(
    "scale hyperprior (Ballé et al.)", 2018,
    "Ballé, Minnen, Singh, Hwang, Johnston, \"Variational image compression with a scale hyperprior\", "
    "ICLR 2018 (arXiv:1802.01436)")
MBT2018 = Publication(
    "joint autoregressive + hierarchical priors (Minnen et al.)", 2018,
    "Minnen, Ballé, Toderici, \"Joint autoregressive and hierarchical priors for learned image compression\", "
    "NeurIPS 2018 (arXiv:1809.02736)")
MBT2018_MEAN = Publication(
    "mean-scale hyperprior (Minnen et al.)", 2018,
    "Minnen, Ballé, Toderici, NeurIPS 2018 (arXiv:1809.02736), the model without the context model")
CHENG2020 = Publication(
    "GMM + attention (Cheng et al.)", 2020,
    "Cheng, Sun, Takeuchi, Katto, \"Learned image compression with discretized Gaussian mixture likelihoods and "
    "attention modules\", CVPR 2020 (arXiv:2001.01568)")
MINNEN2020 = Publication(
    "channel-wise autoregressive (Minnen & Singh)", 2020,
    "Minnen, Singh, \"Channel-wise autoregressive entropy models for learned image compression\", ICIP 2020 "
    "(arXiv:2007.08739)")
CHECKERBOARD = Publication(
    "checkerboard context (He et al.)", 2021,
    "He, Zheng, Sun, Wang, Qin, \"Checkerboard context model for efficient learned image compression\", "
    "CVPR 2021 (arXiv:2103.15306)")
PARALLEL = Publication(
    "parallel context variants (in ELIC)", 2022,
    "He et al., CVPR 2022 (arXiv:2203.10886): earlier models re-trained with parallel context models")
ELIC = Publication(
    "ELIC (He et al.)", 2022,
    "He, Yang, Peng, Ma, Qin, Wang, \"ELIC: efficient learned image compression with unevenly grouped "
    "space-channel contextual adaptive coding\", CVPR 2022 (arXiv:2203.10886)")
COOLCHIC = Publication(
    "Cool-chic (Ladune et al.)", 2023,
    "Ladune, Philippe, Henry, Clare, Leguay, \"COOL-CHIC: coordinate-based low complexity hierarchical image "
    "codec\", ICCV 2023 (arXiv:2212.05458)")
COOLCHIC_34 = Publication(
    "Cool-chic 3.4 (Orange)", 2025,
    "Cool-chic 3.4.1 (\"happy new year release\"), Orange-OpenSource/Cool-Chic commit 96ac6d4, dated 2025-02-20 "
    "(the date git archive gives ../shared/src/coolchic-3.4.1.tar.gz); method: Ladune et al., ICCV 2023")

# Pattern (searched in the normalised curve label, then in the codec's adapter name) -> publication;
# the first match wins, so specific patterns come before general ones.
PUBLICATIONS: tuple[tuple[str, Publication], ...] = (
    (r"cool-?chic-?3\.4", COOLCHIC_34),
    (r"cool-?chic", COOLCHIC),
    (r"checkerboard", CHECKERBOARD),
    (r"parallel", PARALLEL),
    (r"elic", ELIC),
    (r"minnen2020|cc10", MINNEN2020),
    (r"cheng2020", CHENG2020),
    (r"mbt2018-mean", MBT2018_MEAN),
    (r"mbt2018", MBT2018),
    (r"factorized", FACTORIZED),
    (r"hyperprior", HYPERPRIOR),
)


# `python -m bench figure4`'s published curves when no --reference is given: one per End2End
# milestone, plus the VVC anchor at 4:4:4 (CompressAI's Kodak files, ../shared/reference/README.md).
DEFAULT_REFERENCES = (
    "paper-bmshj2018-factorized.json",  # 2016, the paper's curve
    "paper-bmshj2018-hyperprior.json",  # 2018
    "paper-mbt2018.json",  # 2018
    "compressai-cheng2020-attn_mse_cuda.json",  # 2020: CompressAI's trained cheng2020-attn (no paper file)
    "paper-elic2022_mse.json",  # 2022
    "vtm.json",  # VTM, 4:4:4: the VVC anchor when no vvc rows were measured
)
REFERENCE_FOLDER = Path("shared") / "reference" / "compressai-kodak"


def default_reference_dirs() -> list[Path]:
    """Where the default published curves are looked for: ``shared/reference/compressai-kodak`` beside the
    working directory, then beside the checkout."""
    return [Path.cwd().parent / REFERENCE_FOLDER, Path(__file__).resolve().parents[3] / REFERENCE_FOLDER]


def default_references(folder: str | Path | None = None) -> tuple[list[Path], str]:
    """(the DEFAULT_REFERENCES files found, one line saying where they came from or why there are none)."""
    folders = [Path(folder)] if folder else default_reference_dirs()
    for place in folders:
        files = [place / name for name in DEFAULT_REFERENCES if (place / name).is_file()]
        if files:
            missing = len(DEFAULT_REFERENCES) - len(files)
            lacking = f"; {missing} of its files are missing" if missing else ""
            return files, (f"Figure 4: {len(files)} published curves from {place} (the default set{lacking}; "
                           "--reference replaces it)")
    return [], (f"Figure 4: no published curves ({' or '.join(str(p) for p in folders)} not found); only the codecs "
                "measured here are shown (pass --reference FILE ... to add published curves)")


def normalised(label: str) -> str:
    """``official bmshj2018-factorized (published)`` -> ``bmshj2018-factorized``: lower case, without the
    published mark and CompressAI's ``official``/``paper-``/``compressai-`` prefixes."""
    name = label.lower().removesuffix("(published)").strip()
    return re.sub(r"^(official|paper-|compressai-)\s*", "", name)


def publication(label: str, codec_name: str = "") -> Publication | None:
    """The End2End method a curve belongs to (``PUBLICATIONS``), or None when unknown."""
    for text in (normalised(label), codec_name.lower()):
        for pattern, pub in PUBLICATIONS:
            if text and re.search(pattern, text):
                return pub
    return None


# --- families, sources and anchors -----------------------------------------------------------
@dataclass(frozen=True)
class CurveInfo:
    """What the Figure-4 view needs to know about one curve."""

    label: str
    family: str  # conventional | learned
    source: str  # MEASURED | BITSTREAMS | PUBLISHED
    codec_name: str = ""  # the adapter's name (measured rows)
    decoded: str = ""  # published bitstreams: where they were decoded


def reference_family(label: str) -> str:
    """A published curve's family from its name: conventional if its first word is a standard codec."""
    words = re.findall(r"[a-z0-9]+", normalised(label))
    return "conventional" if words and words[0] in CONVENTIONAL_NAMES else "learned"


def curve_infos(codecs: list[StoredCodec], measured: set[str], ref_labels: list[str]) -> dict[str, CurveInfo]:
    """label -> CurveInfo for the measured codecs (``Store.codecs()``) and published curves."""
    out = {}
    for c in codecs:
        if c.label not in measured:
            continue
        info = c.info
        bitstreams = str(info.get("source", "")).lower() == BITSTREAMS
        out[c.label] = CurveInfo(c.label, c.family, BITSTREAMS if bitstreams else MEASURED, c.codec,
                                    str(info.get("decoded", "")) if bitstreams else "")
    for label in ref_labels:
        out[label] = CurveInfo(label, reference_family(label), PUBLISHED)
    return out


def source_text(info: CurveInfo) -> str:
    """``measured``, ``published curve``, ``published bitstreams, decoded here (...)`` or
    ``published bitstreams, supplied images (...)`` (the row's ``info["decoded"]``)."""
    if info.source == BITSTREAMS and info.decoded:
        return f"{BITSTREAMS}, " + (f"decoded {info.decoded}" if info.decoded.startswith("here") else info.decoded)
    return info.source


@dataclass(frozen=True)
class Anchor:
    """The curve standing for VVC or JPEG, and how it was chosen (None: no such curve)."""

    name: str  # VVC | JPEG
    label: str | None
    note: str


def pick_anchor(name: str, infos: dict[str, CurveInfo]) -> Anchor:
    """The VVC anchor (``vvc`` rows, else ``vtm`` rows, else the published VTM curve) or the JPEG
    anchor (``jpeg`` rows, else the published JPEG curve). Among several configurations of one
    codec, the one with the default options (label = codec name) is preferred."""
    wanted = {"VVC": (("vvc", "vtm"), "vtm"), "JPEG": (("jpeg",), "jpeg")}[name]
    codec_names, published_word = wanted
    for codec in codec_names:
        rows = sorted((label for label, i in infos.items() if i.source == MEASURED and i.codec_name == codec),
                      key=lambda label: (label != codec, label))
        if rows:
            how = "measured here" + (f" ({codec}, not vvc)" if name == "VVC" and codec != "vvc" else "")
            return Anchor(name, rows[0], f"{name} anchor: {rows[0]}, {how}.")
    published = sorted(label for label, i in infos.items()
                       if i.source == PUBLISHED and re.findall(r"[a-z0-9]+", normalised(label))[:1] == [published_word])
    if published:
        why = ("no vvc rows in this store (make vvc, then make bench), so the published VTM curve is the VVC anchor; "
               "CompressAI's VTM was run on 4:4:4 Y'CbCr" if name == "VVC" else
               "no jpeg rows in this store, so the published JPEG curve is the JPEG anchor")
        return Anchor(name, published[0], f"{name} anchor: {published[0]} ({why}); published: no interval.")
    hint = ("run the vvc codec (make vvc) or pass --reference .../vtm.json" if name == "VVC"
            else "run the jpeg codec or pass --reference .../jpeg.json")
    return Anchor(name, None, f"No {name} anchor: {hint}.")


# --- BD values against the anchors -----------------------------------------------------------
def bd_row(table: pd.DataFrame, codec: str, metric: str, method: str) -> pd.Series | None:
    """The mean-curve BD-rate row of ``codec`` for ``metric`` and ``method``, or None."""
    hit = table[(table["codec"] == codec) & (table["metric"] == metric) & (table["method"] == method)
                & (table["aggregation"] == "mean-curve") & (table["kind"] == "bd-rate")]
    return None if hit.empty else hit.iloc[0]


def bd_value(row: pd.Series | None) -> float | None:
    return None if row is None or pd.isna(row["value"]) else float(row["value"])


def table_rows(infos: dict[str, CurveInfo], tables: dict[str, pd.DataFrame], anchors: dict[str, Anchor],
               method: str, cell: Callable[[pd.Series], str], chroma: dict[str, str]) -> list[list[str]]:
    """One row per curve (conventional first, then End2End; measured before published): codec, family,
    source, chroma format, then BD-rate (mean curves, %) against each anchor for PSNR-RGB, PSNR-Y and
    MS-SSIM (dB), formatted by ``cell`` (value, 95 % interval or "no CI")."""
    order = {MEASURED: 0, BITSTREAMS: 1, PUBLISHED: 2}
    rows = []
    for label, info in sorted(infos.items(), key=lambda kv: (kv[1].family != "conventional",
                                                             order[kv[1].source], kv[0])):
        row = [label, FAMILY_TITLES.get(info.family, info.family), source_text(info), chroma.get(label, "")]
        for name, anchor in anchors.items():
            for metric in TABLE_METRICS:
                if anchor.label is None or name not in tables:
                    row.append("—")
                elif label == anchor.label:
                    row.append("anchor")
                else:
                    hit = bd_row(tables[name], label, metric, method)
                    if hit is None:
                        row.append("—")  # the metric is not in a published file
                    else:
                        row.append(cell(hit) if pd.notna(hit["value"]) else _no_value(hit))
        rows.append(row)
    return rows


def _no_value(row: pd.Series) -> str:
    """``n/a (reason)`` with the first clause of the row's note; ``—`` when the anchor lacks the metric."""
    note = row["note"] if isinstance(row["note"], str) else ""
    if note.startswith("n/a (anchor has no"):
        return "—"
    return f"n/a ({note.split('; ')[0]})" if note else "n/a"


def table_header(anchors: dict[str, Anchor]) -> list[str]:
    names = {"psnr-rgb": "PSNR-RGB", "psnr-y": "PSNR-Y", "ms-ssim-db": "MS-SSIM dB"}
    return ["codec", "family", "source", "chroma", *(f"vs {name}: {names[m]}" for name in anchors
                                                     for m in TABLE_METRICS)]


# --- the timeline --------------------------------------------------------------------------------
TIMELINE_COLUMNS = ["label", "method", "year", "citation", "source", "anchor", "anchor_label", "metric", "bd_rate",
                    "ci_low", "ci_high", "note"]


def timeline_points(infos: dict[str, CurveInfo], tables: dict[str, pd.DataFrame], anchors: dict[str, Anchor],
                    method: str, codec_names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per End2End curve with a known year, anchor and metric: its BD-rate (%) on the mean
    curves, the 95 % interval where there is one (published curves: none), and its source."""
    rows = []
    for label, info in sorted(infos.items()):
        pub = publication(label, info.codec_name or (codec_names or {}).get(label, ""))
        if info.family != "learned" or pub is None:
            continue
        for name, anchor in anchors.items():
            if anchor.label is None or name not in tables:
                continue
            for metric in TIMELINE_METRICS:
                hit = bd_row(tables[name], label, metric, method)
                value = bd_value(hit)
                if hit is None or value is None:
                    continue
                rows.append({"label": label, "method": pub.method, "year": pub.year, "citation": pub.citation,
                             "source": info.source, "anchor": name, "anchor_label": anchor.label, "metric": metric,
                             "bd_rate": value, "ci_low": _float(hit.get("ci_low")),
                             "ci_high": _float(hit.get("ci_high")),
                             "note": hit["note"] if isinstance(hit["note"], str) else ""})
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def _float(value) -> float:
    return float(value) if value is not None and pd.notna(value) else math.nan


def undated(infos: dict[str, CurveInfo], codec_names: dict[str, str] | None = None) -> list[str]:
    """End2End curves without a publication year (not on the timeline)."""
    return sorted(label for label, info in infos.items()
                  if info.family == "learned" and publication(label, info.codec_name or
                                                              (codec_names or {}).get(label, "")) is None)


def timeline_sentences(points: pd.DataFrame, metric: str = "psnr-rgb") -> list[str]:
    """Per anchor, the earliest year an End2End curve beats it (BD-rate < 0) and by how much."""
    out = []
    for anchor, g in points[points["metric"] == metric].groupby("anchor", sort=False):
        winners = g[g["bd_rate"] < 0].sort_values(["year", "bd_rate"])
        label = g["anchor_label"].iloc[0]
        if winners.empty:
            best = g.sort_values("bd_rate").iloc[0]
            out.append(f"Against {anchor} ({label}): no End2End curve here beats it on {metric}; the best is "
                       f"{best['label']} ({best['year']}, {best['bd_rate']:+.1f} %, {best['source']}).")
            continue
        first = winners.iloc[0]
        out.append(f"Against {anchor} ({label}): End2End beats it on {metric} from {first['year']} "
                   f"({first['label']}, {first['bd_rate']:+.1f} %, {first['source']}); "
                   f"best: {g.sort_values('bd_rate').iloc[0]['label']} "
                   f"({g['bd_rate'].min():+.1f} %).")
    return out


# --- colours --------------------------------------------------------------------------------------
def family_colours(infos: dict[str, CurveInfo]) -> dict[str, str]:
    """label -> colour from its family's palette (blues: conventional, reds/oranges: End2End)."""
    out = {}
    for family in sorted({i.family for i in infos.values()}):
        palette = FAMILY_COLOURS.get(family, ("#555555",))
        members = sorted(label for label, i in infos.items() if i.family == family)
        out.update({label: palette[k % len(palette)] for k, label in enumerate(members)})
    return out


def display_name(info: CurveInfo) -> str:
    """Legend text: the label, marked ``(published bitstreams)`` where it is one."""
    return f"{info.label} (published bitstreams)" if info.source == BITSTREAMS else info.label
