"""Cross-device decode table: bitstreams encoded on one device and decoded on another (``--decode-device``).

The bug learned-codec users report most is a bitstream that decodes to garbage on another
device (CompressAI #279, #309, #320): float differences in the entropy parameters desynchronise
the range coder. ``run --decode-device`` decodes every learned-codec bitstream on a second
device too; this module summarises what the store holds, per codec and device pair (the report's
section on it is ``bench.report.sections.cross_device_blocks``).
"""

from __future__ import annotations

import pandas as pd

HEADER = ["codec", "encode → decode", "bitstreams", "identical", "differing", "failed", "max abs diff",
          "mean PSNR-RGB same device (dB)", "mean PSNR-RGB other device (dB)", "first error"]


def summary(rows: list[dict]) -> pd.DataFrame:
    """Per codec and (encode, decode) device pair: counts of identical / differing / failed decodes.

    ``rows``: ``Store.cross_device_rows`` (one per image and quality). PSNR means are over the
    decodes that did not fail (``inf`` where every decode is lossless).
    """
    columns = ["codec", "encode_device", "decode_device", "bitstreams", "identical", "differing", "failed",
               "max_abs_diff", "psnr_rgb_measured", "psnr_rgb_cross", "first_error"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    out = []
    for (codec, enc, dec), g in frame.groupby(["codec", "encode_device", "decode_device"], sort=True):
        ok = g[g["identical"].notna()]
        errors = g.loc[g["error"] != "", "error"]
        out.append({"codec": codec, "encode_device": enc, "decode_device": dec, "bitstreams": len(g),
                    "identical": int((ok["identical"] == 1).sum()), "differing": int((ok["identical"] == 0).sum()),
                    "failed": int(g["identical"].isna().sum()),
                    "max_abs_diff": int(ok["max_abs_diff"].max()) if len(ok) else None,
                    "psnr_rgb_measured": float(ok["psnr_rgb_measured"].mean()) if len(ok) else None,
                    "psnr_rgb_cross": float(ok["psnr_rgb_cross"].mean()) if len(ok) else None,
                    "first_error": errors.iloc[0] if len(errors) else ""})
    return pd.DataFrame(out, columns=columns)


def _cell(value, digits: int = 2) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def table_rows(table: pd.DataFrame) -> list[list[str]]:
    return [[r["codec"], f"{r['encode_device']} → {r['decode_device']}", str(r["bitstreams"]), str(r["identical"]),
             str(r["differing"]), str(r["failed"]),
             "n/a" if pd.isna(r["max_abs_diff"]) else str(int(r["max_abs_diff"])),
             _cell(r["psnr_rgb_measured"]), _cell(r["psnr_rgb_cross"]), r["first_error"][:120]]
            for _, r in table.iterrows()]


def markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table_rows(table)])

