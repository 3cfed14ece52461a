"""Sliding-window tiling of large scenes (shared by every task's tiled inference)."""
from typing import List, Tuple, Union

Window = Tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive)


def _pair(v: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sliding_windows(height: int, width: int, tile: Union[int, Tuple[int, int]],
                    overlap: Union[int, Tuple[int, int]] = 0) -> List[Window]:
    """Windows of size ``tile`` (h, w) covering a ``height x width`` scene.

    Neighbouring windows overlap by at least ``overlap`` pixels; the last
    row/column of windows is shifted back to end exactly at the border (no
    padding, every window has the full tile size unless the scene itself is
    smaller than a tile, in which case the window is the whole scene).

    Args:
        height (int): Scene height.
        width (int): Scene width.
        tile (int | tuple[int, int]): Window size (h, w).
        overlap (int | tuple[int, int]): Minimum overlap (h, w), smaller than
            the tile.

    Returns:
        list[tuple[int, int, int, int]]: ``(x0, y0, x1, y1)`` windows, row-major.
    """
    th, tw = _pair(tile)
    oh, ow = _pair(overlap)
    if th <= 0 or tw <= 0:
        raise ValueError(f'tile must be positive, got {tile}')
    if not (0 <= oh < th and 0 <= ow < tw):
        raise ValueError(f'overlap {overlap} must be >= 0 and smaller than tile {tile}')
    if height <= 0 or width <= 0:
        raise ValueError(f'scene size must be positive, got {height}x{width}')

    def starts(size, t, o):
        if size <= t:
            return [0]
        step = t - o
        out = list(range(0, size - t, step))
        out.append(size - t)
        return out

    return [(x0, y0, min(x0 + tw, width), min(y0 + th, height))
            for y0 in starts(height, th, oh) for x0 in starts(width, tw, ow)]
