"""Target-bpp matching (JPEG AI CTC style): per image and codec, the quality whose bpp is nearest.

Bits per pixel is taken to be monotone in a codec's quality (increasing or decreasing). Integer
and continuous quality ranges (``QUALITY_RANGE``) are bisected; codecs with a discrete set of
qualities (learned models) are bisected over that set. Each probe is one encode; its size is
cached in the store, so a repeated search costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

REL_TOLERANCE = 0.005  # continuous search stops within 0.5 % of the target
MAX_CONTINUOUS_STEPS = 30


def _midpoint(a: float, b: float) -> float:
    return math.sqrt(a * b) if a > 0 and b > 0 else (a + b) / 2


def search_quality(bpp_at: Callable[[float], float], target: float, grid: list[float] | None = None,
                   bounds: tuple[float, float] | None = None) -> float:
    """The quality whose bpp is nearest to ``target``.

    ``grid``: sorted candidate qualities (integers of a range, or a discrete set); ``bounds``:
    a continuous range instead. ``bpp_at`` should cache: qualities may be asked twice.
    """
    lo_q, hi_q = (grid[0], grid[-1]) if grid is not None else bounds
    increasing = bpp_at(hi_q) >= bpp_at(lo_q)
    # Orient so that bpp rises from ``a`` to ``b``.
    if grid is not None:
        ia, ib = (0, len(grid) - 1) if increasing else (len(grid) - 1, 0)
        if target <= bpp_at(grid[ia]):
            return grid[ia]
        if target >= bpp_at(grid[ib]):
            return grid[ib]
        while abs(ib - ia) > 1:
            im = (ia + ib) // 2
            if bpp_at(grid[im]) <= target:
                ia = im
            else:
                ib = im
        a, b = grid[ia], grid[ib]
    else:
        a, b = (lo_q, hi_q) if increasing else (hi_q, lo_q)
        if target <= bpp_at(a):
            return a
        if target >= bpp_at(b):
            return b
        for _ in range(MAX_CONTINUOUS_STEPS):
            m = _midpoint(a, b)
            if abs(bpp_at(m) - target) <= REL_TOLERANCE * target:
                return m
            if bpp_at(m) <= target:
                a = m
            else:
                b = m
    return a if abs(bpp_at(a) - target) <= abs(bpp_at(b) - target) else b


def quality_grid(quality_range: tuple[float, float, float] | None, qualities: tuple[float, ...]
                 ) -> tuple[list[float] | None, tuple[float, float] | None]:
    """(grid, bounds) to search for a codec: its QUALITY_RANGE, else its discrete qualities."""
    if quality_range is None:
        return sorted(qualities), None
    lo, hi, step = quality_range
    if step == 0:
        return None, (lo, hi)
    count = int(round((hi - lo) / step))
    return [lo + i * step for i in range(count + 1)], None


@dataclass(frozen=True)
class SearchTask:
    origin: str
    options: dict[str, str]
    image_file: str
    image_name: str
    label: str
    pixels: int
    targets: tuple[float, ...]
    grid: tuple[float, ...] | None
    bounds: tuple[float, float] | None
    known: dict[float, int]  # quality -> bytes, from earlier runs


@dataclass
class SearchOutcome:
    task: SearchTask
    chosen: dict[float, float]  # target bpp -> quality
    probes: dict[float, int]  # new quality -> bytes
    error: str = ""


def run_search(task: SearchTask) -> SearchOutcome:
    """Search every target of one image and codec (in a worker process)."""
    from .runner import _config, _image, bits_per_pixel

    sizes = dict(task.known)
    probes: dict[float, int] = {}

    def bpp_at(quality: float) -> float:
        quality = round(quality, 6)
        if quality not in sizes:
            config = _config(task.origin, task.options)
            sizes[quality] = probes[quality] = len(config.encode(_image(task.image_file), quality))
        return bits_per_pixel(sizes[quality], task.pixels, 1)

    try:
        grid = list(task.grid) if task.grid is not None else None
        chosen = {t: round(search_quality(bpp_at, t, grid, task.bounds), 6) for t in task.targets}
    except Exception as exc:
        return SearchOutcome(task, {}, probes, f"{type(exc).__name__}: {exc}")
    return SearchOutcome(task, chosen, probes)
