"""The report's opening: what was compared, BD-rate against the anchor (best first), one sentence
per codec family, and the speed-against-efficiency points.

Everything here reads the tidy BD table (``analysis.table.bd_table``'s DataFrame) by its ``codec``,
``metric``, ``method``, ``aggregation``, ``kind``, ``value`` and ``note`` columns only, so
columns added to it later pass through untouched.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from ..analysis import bd_rate
from ..metrics import METRICS
from ..model import Curve, StoredCodec

MAIN_METRICS = ("psnr-rgb", "ms-ssim-db", "psnr-y")
METRIC_NAMES = {"psnr-rgb": "PSNR-RGB", "psnr-y": "PSNR-Y", "ms-ssim-db": "MS-SSIM (dB)", "ms-ssim-rgb": "MS-SSIM"}
FAMILY_ORDER = ("learned", "conventional", "published")


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.upper())


def main_metrics(metrics: list[str]) -> list[str]:
    """The metrics of the summary: PSNR-RGB, MS-SSIM (dB), PSNR-Y where present, else the first three."""
    chosen = [m for m in MAIN_METRICS if m in metrics]
    return chosen or metrics[:3]


def options_text(options: str | dict) -> str:
    """``{"chroma": "444", "preset": "slow"}`` -> ``chroma=444, preset=slow`` (``defaults`` if none)."""
    values = json.loads(options) if isinstance(options, str) else options
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "defaults"


def bd_values(table: pd.DataFrame, metric: str, method: str, aggregation: str = "mean-curve",
              kind: str = "bd-rate") -> dict[str, tuple[float | None, str]]:
    """codec -> (value or None, note) for one metric, method, aggregation and kind."""
    sub = table[(table["metric"] == metric) & (table["method"] == method) & (table["aggregation"] == aggregation)
                & (table["kind"] == kind)]
    out = {}
    for _, row in sub.iterrows():
        value = row["value"]
        note = row["note"] if isinstance(row["note"], str) else ""
        out[row["codec"]] = (None if pd.isna(value) else float(value), note)
    return out


def percent(value: float | None) -> str:
    """``-25.34`` -> ``−25.3 %`` (typographic minus), ``n/a`` for no value."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1f} %".replace("-", "−")


def legend_bd(table: pd.DataFrame, metric: str, method: str) -> dict[str, str]:
    """codec -> BD-rate text for legends, e.g. ``−25.3 %`` or ``n/a``."""
    return {codec: percent(value) for codec, (value, _) in bd_values(table, metric, method).items()}


def summary_rows(table: pd.DataFrame, metrics: list[str], method: str, anchor: str,
                 families: dict[str, str]) -> list[list[str]]:
    """One row per curve: codec, family, BD-rate per metric; best (lowest) first on the first metric."""
    values = {m: bd_values(table, m, method) for m in metrics}
    codecs = sorted({c for v in values.values() for c in v} | {anchor})

    def key(codec: str) -> tuple:
        value = 0.0 if codec == anchor else values[metrics[0]].get(codec, (None, ""))[0]
        return (value is None, value or 0.0, codec)

    intervals = {m: bd_intervals(table, m, method) for m in metrics}
    rows = []
    for codec in sorted(codecs, key=key):
        cells = ["anchor" if codec == anchor else percent(values[m].get(codec, (None, ""))[0])
                 + intervals[m].get(codec, "") for m in metrics]
        rows.append([codec, families.get(codec, "published"), *cells])
    return rows


def bd_intervals(table: pd.DataFrame, metric: str, method: str) -> dict[str, str]:
    """codec -> `` [low, high]`` of the mean-curve BD-rate's 95 % interval where the table has one."""
    if "ci_low" not in table or "ci_high" not in table:
        return {}
    sub = table[(table["metric"] == metric) & (table["method"] == method) & (table["aggregation"] == "mean-curve")
                & (table["kind"] == "bd-rate")]
    return {r["codec"]: f" [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]".replace("-", "−")
            for _, r in sub.iterrows() if pd.notna(r["ci_low"]) and pd.notna(r["ci_high"])}


def family_sentences(table: pd.DataFrame, curves: dict[str, Curve], metric: str, method: str, anchor: str,
                     families: dict[str, str]) -> list[str]:
    """One sentence per family (its best codec against the anchor), then best learned vs best conventional."""
    values = bd_values(table, metric, method)
    values[anchor] = (0.0, "")
    name = metric_name(metric)
    best: dict[str, str] = {}
    sentences = []
    for family in FAMILY_ORDER:
        members = sorted(c for c in values if families.get(c, "published") == family)
        scored = sorted((v, c) for c in members if (v := values[c][0]) is not None)
        if not members:
            continue
        if not scored:
            sentences.append(f"No {family} codec has a BD-rate against {anchor} for {name} "
                             f"({values[members[0]][1] or 'no value'}).")
            continue
        value, codec = scored[0]
        best[family] = codec
        against = "the anchor" if codec == anchor else f"{percent(value)} against {anchor} at equal {name}"
        kind = "curve" if family == "published" else "codec"
        if len(members) == 1:
            sentences.append(f"Only {family} {kind}: {codec} ({against}).")
        else:
            sentences.append(f"Best {family} {kind}: {codec} ({against}; of {', '.join(members)}).")
    if "learned" in best and "conventional" in best:
        learned, conventional = best["learned"], best["conventional"]
        info = METRICS.get(metric)
        d = bd_rate(curves[conventional], curves[learned], method, info.higher_is_better if info else True)
        result = percent(d.value) + " bits" if d.value is not None else f"n/a ({d.note})"
        sentences.append(f"Best learned codec vs best conventional codec ({learned} vs {conventional}): "
                         f"{result} at equal {name}.")
    return sentences


def speed_points(per_image: pd.DataFrame, codecs: list[StoredCodec], table: pd.DataFrame, metric: str, method: str,
                 anchor: str) -> pd.DataFrame:
    """One row per measured codec with a BD-rate: encode/decode megapixels per second (total pixels over
    total seconds of the sweep) and seconds per megapixel (its inverse), devices, kMAC per pixel (learned
    codecs) and BD-rate (%) against the anchor. A codec whose encode time was not measured (published
    bitstreams: NaN) has NaN encode columns; its decode time stands alone."""
    values = bd_values(table, metric, method)
    values[anchor] = (0.0, "")
    stored = {c.label: c for c in codecs}
    rows = []
    for codec, g in per_image.groupby("codec", sort=True):
        value = values.get(codec, (None, ""))[0]
        if value is None:
            continue
        pixels = float((g["width"] * g["height"]).sum())
        extra = stored[codec].info if codec in stored else {}
        encode_mps, decode_mps = (_mps(pixels, g[col]) for col in ("encode_s", "decode_s"))
        rows.append({
            "codec": codec, "family": stored[codec].family if codec in stored else "",
            "device": ", ".join(sorted(set(g["device"]))), "host": hosts_text(g), "bd_rate": value,
            "encode_mps": encode_mps, "decode_mps": decode_mps,
            "encode_s_per_mp": 1 / encode_mps, "decode_s_per_mp": 1 / decode_mps,
            "encoder_kmac": float(extra.get("encoder_kmac_per_pixel", math.nan)),
            "decoder_kmac": float(extra.get("decoder_kmac_per_pixel", math.nan)),
            "source": str(extra.get("source", "")),
        })
    columns = ["codec", "family", "device", "host", "bd_rate", "encode_mps", "decode_mps", "encode_s_per_mp",
               "decode_s_per_mp", "encoder_kmac", "decoder_kmac", "source"]
    return pd.DataFrame(rows, columns=columns)


def _mps(pixels: float, seconds: pd.Series) -> float:
    """Megapixels per second over a sweep; NaN when any time is missing (not measured) or the total is 0."""
    times = pd.to_numeric(seconds, errors="coerce")
    total = float(times.sum())
    if times.isna().any() or total <= 0:
        return math.nan
    return pixels / total / 1e6


def hosts_text(rows: pd.DataFrame) -> str:
    """``host (machine)`` of the measurements in ``rows`` (stores before host provenance: empty)."""
    if "host" not in rows or "machine" not in rows:
        return ""
    pairs = sorted({(h, m) for h, m in zip(rows["host"], rows["machine"], strict=True) if h or m})
    return "; ".join(f"{h} ({m})" if h and m else h or m for h, m in pairs)
