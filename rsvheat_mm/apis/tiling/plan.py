"""The window plan of a scene: overlapping windows, in rows, in the order they are run.

Streaming needs to know when a part of the scene is final. Windows come in
rows (all windows of a row share ``y0`` and ``y1``) and run left to right,
top to bottom, so:

* a row of windows finishes the scene rows above the next row's ``y0``
  (``final_y``); the rows below it, down to ``y1``, are shared with the
  next row of windows;
* inside a row, a window finishes the columns left of the next window's
  ``x0``.

The blender (``blend.py``) keeps only those unfinished pixels, so its memory
depends on the window size and the scene *width* times the overlap, not on
the scene's area.
"""
from typing import Iterator, List, NamedTuple, Tuple, Union

from rsvheat_mm.utils.tiling import Window, sliding_windows

__all__ = ['WindowRow', 'WindowPlan']


class WindowRow(NamedTuple):
    """One row of windows.

    Attributes:
        y0, y1 (int): Top and bottom (exclusive) of every window of the row.
        final_y (int): Scene rows above it are final after this row (the
            next row's ``y0``; the scene height for the last row).
        windows (tuple): ``(x0, y0, x1, y1)`` windows, left to right.
    """
    y0: int
    y1: int
    final_y: int
    windows: Tuple[Window, ...]


class WindowPlan:
    """Overlapping windows of a ``height x width`` scene, grouped in rows.

    Args:
        height (int), width (int): Scene size.
        tile (int | tuple[int, int]): Window size (h, w).
        overlap (int | tuple[int, int]): Minimum overlap (h, w) of neighbours.
    """

    def __init__(self, height: int, width: int, tile: Union[int, Tuple[int, int]],
                 overlap: Union[int, Tuple[int, int]] = 0) -> None:
        self.height, self.width = int(height), int(width)
        self.tile = (tile, tile) if isinstance(tile, int) else tuple(int(t) for t in tile)
        self.windows: List[Window] = sliding_windows(height, width, tile, overlap)
        by_top = {}
        for win in self.windows:
            by_top.setdefault(win[1], []).append(win)
        tops = sorted(by_top)
        self.rows: List[WindowRow] = []
        for i, y0 in enumerate(tops):
            row = tuple(sorted(by_top[y0]))
            self.rows.append(WindowRow(y0, row[0][3], tops[i + 1] if i + 1 < len(tops)
                                       else self.height, row))

    @classmethod
    def whole(cls, height: int, width: int) -> 'WindowPlan':
        """One window covering the scene."""
        return cls(height, width, (height, width), 0)

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[Window]:
        """Windows in run order (row by row, left to right)."""
        for row in self.rows:
            yield from row.windows

    def owned(self) -> Iterator[Tuple[Window, Window]]:
        """``(window, core)`` pairs: the cores (the part of each window left of
        the next window and above the next row) tile the scene exactly once,
        e.g. to count pixels of overlapping windows without double counting."""
        for row in self.rows:
            for k, win in enumerate(row.windows):
                x1 = row.windows[k + 1][0] if k + 1 < len(row.windows) else self.width
                yield win, (win[0], row.y0, x1, row.final_y)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.height}x{self.width}, tile={self.tile}, '
                f'{len(self.rows)} rows, {len(self.windows)} windows)')
