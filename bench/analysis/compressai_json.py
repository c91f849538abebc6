"""Reading CompressAI-format result files (the JSON that CompressAI's plot tool reads and that
papers publish; ``bench.store.export`` writes them): one reader for every use (published curves in
reports, ``verify``, the fair-comparison checks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResultFile:
    path: Path
    name: str  # the file's ``name``, else its stem
    results: dict[str, list[Any]]  # e.g. bpp, psnr-rgb, ms-ssim-rgb, quality: one value per point
    dataset: str | None  # the dataset it declares (at the top, or in ``meta`` as CompressAI's newer files do)
    n_images: int | None


def read_result_file(path: str | Path) -> ResultFile:
    """The file's curve and what it declares; ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        results = doc["results"]
        if not isinstance(results, dict) or not isinstance(results["bpp"], list):
            raise TypeError("'results' must map names to lists, with a 'bpp' list")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a CompressAI-format result file ({type(exc).__name__}: {exc})") from None
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    dataset, n_images = doc.get("dataset", meta.get("dataset")), doc.get("n_images", meta.get("n_images"))
    return ResultFile(path, str(doc.get("name") or path.stem), results,
                      dataset if isinstance(dataset, str) else None, n_images if isinstance(n_images, int) else None)
