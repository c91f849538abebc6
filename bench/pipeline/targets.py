"""Target-bpp matching (JPEG AI CTC style): per image and codec, the quality whose bpp is nearest.

Bits per pixel is taken to be monotone in a codec's quality (increasing or decreasing). Integer
and continuous quality ranges (``QUALITY_RANGE``) are bisected; codecs with a discrete set of
qualities (learned models) are bisected over that set. Each probe is one encode; its size is
cached in the store, so a repeated search costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    if grid is not None:
        lo_q, hi_q = grid[0], grid[-1]
    elif bounds is not None:
        lo_q, hi_q = bounds
    else:
        raise TypeError("search_quality needs a grid or bounds")
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
    count = round((hi - lo) / step)
    return [lo + i * step for i in range(count + 1)], None
