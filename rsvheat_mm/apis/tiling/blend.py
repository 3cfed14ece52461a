"""Blending overlapping window probabilities into final pixels, a few at a time.

Windows are least reliable at their borders, where context is missing, so
each window's class probabilities are weighted (:func:`blend_weights`) and
overlapping windows are averaged. :class:`DenseBlender` takes the windows in
plan order and hands back every part of the scene as soon as no later window
covers it (see ``plan.py``). It holds one window of weighted sums plus the
rows shared by two rows of windows -- ``(C + 1) x (tile_h x tile_w +
overlap_h x width)`` floats -- never a scene-sized array.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from .plan import WindowPlan

__all__ = ['blend_weights', 'BlendedPatch', 'DenseBlender']


def blend_weights(h: int, w: int, blend: str = 'gaussian') -> np.ndarray:
    """Weights of a window's pixels when overlapping windows are averaged.

    ``'mean'``: all 1. ``'gaussian'``: sigma = 1/4 of the window, centre 1,
    never below 1e-3 (a scene border covered by one window keeps its value).
    """
    if blend == 'mean':
        return np.ones((h, w), np.float32)
    if blend == 'gaussian':
        gy = np.exp(-0.5 * ((np.arange(h) - (h - 1) / 2) / (h / 4)) ** 2)
        gx = np.exp(-0.5 * ((np.arange(w) - (w - 1) / 2) / (w / 4)) ** 2)
        return np.maximum(np.outer(gy, gx), 1e-3).astype(np.float32)
    raise ValueError(f"blend must be 'mean' or 'gaussian', got {blend!r}")


class BlendedPatch(NamedTuple):
    """A final part of the scene: rows ``y0:y0 + h``, columns ``x0:x0 + w``.

    Attributes:
        probs: ``(C, h, w)`` float32 weighted mean of the windows' probabilities.
        nodata: ``(h, w)`` bool, True where any window read no data.
    """
    y0: int
    x0: int
    probs: np.ndarray
    nodata: np.ndarray


class DenseBlender:
    """Weighted average of overlapping window probabilities, streamed.

    Feed every window of ``plan`` in plan order with :meth:`add`; each call
    returns the patch that became final (together the patches tile the scene
    exactly once, row band by row band, left to right).

    Args:
        plan (WindowPlan): The windows, in the order they are added.
        blend (str): ``'gaussian'`` (default) or ``'mean'``, see
            :func:`blend_weights`.
    """

    def __init__(self, plan: WindowPlan, blend: str = 'gaussian') -> None:
        blend_weights(1, 1, blend)  # validate early
        self.plan = plan
        self.blend = blend
        self._row = 0  # position of the next window: row, index in the row
        self._k = 0
        self._weights: Dict[Tuple[int, int], np.ndarray] = {}
        # Sums of the current window's columns: probabilities x weight, weight, nodata.
        self._acc = self._wsum = self._nd = None
        self._x0 = 0
        # Sums of the rows shared by two rows of windows, over the whole width: the
        # first `_carry_rows` rows come from the previous row of windows. One buffer
        # serves both rows: a column block is read before it is overwritten.
        self._shared: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._carry_rows = 0

    def _weight(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._weights:
            self._weights[(h, w)] = blend_weights(h, w, self.blend)
        return self._weights[(h, w)]

    def add(self, window, probs: np.ndarray,
            nodata: Optional[np.ndarray] = None) -> BlendedPatch:
        """Add one window's ``(C, h, w)`` probabilities (and its nodata mask);
        returns the part of the scene that became final."""
        x0, y0, x1, y1 = (int(v) for v in window)
        if self.finished:
            raise ValueError(f'window {window} added after the last window of the plan')
        row = self.plan.rows[self._row]
        if row.windows[self._k] != (x0, y0, x1, y1):
            raise ValueError(f'window {window} added out of plan order (expected '
                             f'{row.windows[self._k]})')
        h, w = y1 - y0, x1 - x0
        if probs.ndim != 3 or probs.shape[1:] != (h, w):
            raise RuntimeError(f'the model returned a {probs.shape[1:]} map for a '
                               f'{(h, w)} window')
        first, last = self._k == 0, self._k == len(row.windows) - 1
        c = probs.shape[0]
        done = row.final_y - y0  # rows of this band that are final after this row
        if self._shared is None:
            rows = max(r.y1 - r.final_y for r in self.plan.rows)
            width = self.plan.width
            self._shared = (np.zeros((c, rows, width), np.float32),
                            np.zeros((rows, width), np.float32), np.zeros((rows, width), bool))
        if first:
            self._acc = np.zeros((c, h, w), np.float32)
            self._wsum = np.zeros((h, w), np.float32)
            self._nd = np.zeros((h, w), bool)
        else:
            # keep the columns shared with the previous window, shifted to the left
            keep = self._x0 + self._acc.shape[2] - x0
            shift = x0 - self._x0
            for buf in (self._acc, self._wsum, self._nd):
                buf[..., :keep] = buf[..., shift:shift + keep]
                buf[..., keep:] = 0
        self._x0 = x0
        weight = self._weight(h, w)
        self._acc += probs * weight
        self._wsum += weight
        if nodata is not None:
            self._nd |= nodata

        # columns left of the next window are final for this row of windows
        nx = x1 if last else row.windows[self._k + 1][0]
        n = nx - x0
        acc, wsum, nd = self._acc[:, :, :n], self._wsum[:, :n], self._nd[:, :n]
        s_acc, s_w, s_nd = self._shared
        k = self._carry_rows
        if k:  # what the previous row of windows left for these rows
            acc, wsum, nd = acc.copy(), wsum.copy(), nd.copy()
            acc[:, :k] += s_acc[:, :k, x0:nx]
            wsum[:k] += s_w[:k, x0:nx]
            nd[:k] |= s_nd[:k, x0:nx]
        # what this row leaves for the next one
        s_acc[:, :h - done, x0:nx] = acc[:, done:]
        s_w[:h - done, x0:nx] = wsum[done:]
        s_nd[:h - done, x0:nx] = nd[done:]
        patch = BlendedPatch(y0, x0, acc[:, :done] / wsum[None, :done], nd[:done].copy())
        if last:
            self._carry_rows = h - done
            self._row, self._k = self._row + 1, 0
        else:
            self._k += 1
        return patch

    @property
    def finished(self) -> bool:
        """Whether every window of the plan was added."""
        return self._row == len(self.plan.rows)
