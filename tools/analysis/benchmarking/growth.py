"""Growth of a figure with the pixel count: power-law fits for the scaling
study and the budget predictions."""
import math
from typing import Optional, Sequence

__all__ = ['growth_exponent', 'extrapolate']


def growth_exponent(pixels: Sequence[float], values: Sequence[Optional[float]],
                    min_pixels: float = 0) -> Optional[float]:
    """Least-squares slope of ``log(value)`` against ``log(pixels)``.

    Only points with ``pixels >= min_pixels`` and a positive value are used;
    None when fewer than two distinct pixel counts remain. A slope ``a``
    means the figure grows like ``N ** a`` in the pixel count ``N``.
    """
    pts = [(math.log(p), math.log(v)) for p, v in zip(pixels, values)
           if v is not None and v > 0 and p >= min_pixels]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx)**2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx


def extrapolate(pixels: Sequence[float], values: Sequence[float], target: float,
                min_exponent: float = 1.0) -> Optional[float]:
    """Predict the value at ``target`` pixels from the last two points.

    Power law through the two largest measured sizes, with the exponent
    clamped below at ``min_exponent`` (nothing these backbones do grows
    slower than the pixel count). None with fewer than two points.
    """
    pts = sorted((p, v) for p, v in zip(pixels, values) if v is not None and v > 0)
    if len(pts) < 2 or pts[-1][0] == pts[-2][0]:
        return None
    (p0, v0), (p1, v1) = pts[-2], pts[-1]
    expo = max(min_exponent, math.log(v1 / v0) / math.log(p1 / p0))
    return v1 * (target / p1)**expo
