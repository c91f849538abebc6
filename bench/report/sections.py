"""The report's sections after the figures, as blocks or table rows: target bit rates, cross-device
decoding, encode/decode times, learned-codec complexity, settings and provenance; and the
fair-comparison warnings that come from them (off-target codecs, timings from several hosts).

Everything here turns DataFrames and stored rows into text; nothing reads the store or writes files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from ..analysis import cross_device
from ..analysis.fairness import off_target, target_flag
from ..metrics import METRICS
from ..model import ImageRecord, StoredCodec
from ..pipeline.provenance import git_commit
from .document import Block, Caption, Heading, Paragraph, Table

NOT_MEASURED = "not measured"
TIMING_HEADER = ["codec", "host", "device", "encode mean s", "encode median s", "encode MP/s",
                 "decode mean s", "decode median s", "decode MP/s"]
CODEC_HEADER = ["codec", "family", "library version", "options", "qualities"]
COMPLEXITY_HEADER = ["codec", "parameters", "encoder kMAC/pixel", "decoder kMAC/pixel", "weights"]
CROSS_DEVICE_CAPTION = (
    "Each bitstream (image × quality) encoded and decoded on the first device is decoded again on the "
    "second (run --decode-device). identical = the same pixels; differing = another image (max |diff| in "
    "pixel levels, PSNR of that decode against the original beside the measured one); failed = the "
    "other device raised. Per-image rows: cross_device.csv.")


def target_blocks(means: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> list[Block]:
    """One table per target bpp: codecs with their mean achieved bpp, mean metrics, and a flag when
    the achieved bpp is off the target (more than 10 % or 0.02 bpp) with the codec's measured range."""
    metrics = [m for m in METRICS if m in means.columns and m != "ms-ssim-rgb"]
    blocks: list[Block] = [
        Paragraph("Per image and codec, the quality whose bpp is nearest the target (JPEG AI CTC style); "
                  "means over images, achieved bpp beside the target. ms-ssim-db is that of the mean MS-SSIM. "
                  "A codec more than 10 % (or 0.02 bpp) from the target is flagged: compare it at this rate "
                  "with care.")]
    for target, rows in means.groupby("target_bpp", sort=True):
        table = [[r["codec"], r["family"], f"{r['mean_bpp']:.3f}", *(f"{r[m]:.4g}" for m in metrics),
                  target_flag(r["codec"], r["mean_bpp"], target, ranges) or "ok"]
                 for _, r in rows.iterrows()]
        blocks += [Caption(f"Target {target:g} bpp"),
                   Table(["codec", "family", "mean bpp", *metrics, "at the target?"], table)]
    return blocks


def target_warnings(means: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """One line per codec and target bpp it misses."""
    return [f"target {r['target_bpp']:g} bpp: {r['codec']} "
            + target_flag(r["codec"], r["mean_bpp"], r["target_bpp"], ranges).removeprefix("⚠ ")
            for _, r in means.iterrows() if off_target(r["mean_bpp"], r["target_bpp"])]


def cross_device_blocks(rows: list[dict]) -> list[Block]:
    """Heading, caption and table of the cross-device decodes (``Store.cross_device_rows``); [] without any."""
    if not rows:
        return []
    table = cross_device.summary(rows)
    return [Heading(2, "Cross-device decoding"), Caption(CROSS_DEVICE_CAPTION),
            Table(cross_device.HEADER, cross_device.table_rows(table))]


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


def codec_rows(codecs: list[StoredCodec], options: dict[str, str], per_image: pd.DataFrame) -> list[list[str]]:
    """Per measured codec: family, library version (and source), options and the qualities measured."""
    return [[c.label, c.family, c.version + source_marker(c.info), options[c.label],
             ", ".join(f"{q:g}" for q in sorted(set(per_image.loc[per_image["codec"] == c.label, "quality"])))]
            for c in codecs]


def complexity_rows(codecs: list[StoredCodec]) -> list[list[str]]:
    """Parameters, kMAC per pixel and weights of the codecs that state them (not published bitstreams)."""
    return [[c.label, f"{c.info.get('parameters', ''):,}" if c.info.get("parameters") else "",
             str(c.info.get("encoder_kmac_per_pixel", "")), str(c.info.get("decoder_kmac_per_pixel", "")),
             str(c.info.get("weights", ""))] for c in codecs if c.info and not c.info.get("source")]


def resolution_summary(images: list[ImageRecord]) -> str:
    """``2 × 768x512, 1 × 512x768``: image sizes, most frequent first."""
    counts = Counter(f"{i.width}x{i.height}" for i in images)
    return ", ".join(f"{n} × {res}" for res, n in sorted(counts.items(), key=lambda x: -x[1]))


def settings_rows(dataset: str, n_images: int, images: list[ImageRecord], run: dict, anchor: str, method: str,
                  references: list[str], ref_notes: dict[str, str]) -> list[list[str]]:
    """The settings and provenance table: dataset, the latest run's machine and software, commits, options."""
    refs = ", ".join(Path(p).name for p in references) or "none"
    if ref_notes:
        refs += " (" + "; ".join(f"{k}: {v}" for k, v in ref_notes.items()) + ")"
    return [
        ["dataset", f"{dataset}: {n_images} images ({resolution_summary(images)})"],
        ["measured (latest run)", f"{run.get('date', '?')} on {run.get('cpu', '?')} ({run.get('cores', '?')} cores, "
                                  f"{run.get('os', '?')}), {run.get('jobs', '?')} jobs, GPU: {run.get('cuda', '?')}"],
        ["software", f"Python {run.get('python', '?')}, numpy {run.get('numpy', '?')}, torch {run.get('torch', '?')}"],
        ["project commit", f"{run.get('commit', '?')} (measured), {git_commit()} (report)"],
        ["anchor / method", f"{anchor} / {method}"],
        ["published references", refs],
    ]
