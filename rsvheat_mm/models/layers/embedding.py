"""Resizing RS-vHeat's per-stage grids (FVE, SCE, deploy conductivity).

The frequency value embedding (FVE), the spatial correction embedding (SCE)
and a deploy model's pre-activation conductivity are ``(H0, W0, C)`` grids
defined at the pretraining size. They follow other sizes in two places with
the same rule: at run time (to the feature map's size) and when a checkpoint
built for another ``pretrain_img_size`` is loaded (to the model's grid).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['resize_embedding', 'INTERP_MODES', 'GridRows', 'interpolation_matrix']

INTERP_MODES = ('bilinear', 'bicubic', 'zero_pad')


def resize_embedding(emb: Tensor, size: Tuple[int, int], mode: str = 'bilinear',
                     pad_value: Optional[Tensor] = None) -> Tensor:
    """Resize a grid of shape ``(H0, W0, C)`` to ``size``.

    ``bilinear``/``bicubic`` interpolate (align_corners=False) as the official
    RS-vHeat checkpoint loader does. ``zero_pad`` treats the grid as
    frequencies (vHeat's offline script): it keeps the low-frequency corner
    and pads the high-frequency end with ``pad_value`` (default 0) or crops
    it when the target is smaller.
    """
    if mode not in INTERP_MODES:
        raise ValueError(f'resize_embedding: mode must be one of {INTERP_MODES}, got {mode!r}')
    h0, w0 = emb.shape[0], emb.shape[1]
    h, w = size
    if (h0, w0) == (h, w):
        return emb
    if mode == 'zero_pad':
        out = emb[:h, :w]
        if h > h0 or w > w0:
            fill = emb.new_zeros((h, w, emb.shape[-1]))
            if pad_value is not None:
                fill = fill + pad_value.to(emb.dtype)
            fill[:min(h, h0), :min(w, w0)] = out
            out = fill
        return out
    grid = emb.permute(2, 0, 1).unsqueeze(0)
    # Interpolate in fp32: bicubic is not implemented for bf16 on every device.
    out = F.interpolate(grid.float(), size=(h, w), mode=mode, align_corners=False)
    return out.to(emb.dtype)[0].permute(1, 2, 0)


def interpolation_matrix(n_in: int, n_out: int, mode: str) -> Tensor:
    """``(n_out, n_in)`` weights of 1-D ``bilinear``/``bicubic`` resizing
    (align_corners=False), taken from ``F.interpolate`` itself: 2-D resizing
    in these modes is the product of the two 1-D ones."""
    eye = torch.eye(n_in)[None, None]  # float32: the very weights F.interpolate uses
    return F.interpolate(eye, size=(n_out, n_in), mode=mode, align_corners=False)[0, 0]


class GridRows:
    """Rows of ``resize_embedding(grid, size, mode, pad_value)``, band by band.

    In inference on large maps the resized grid (one activation-sized tensor
    per block) never needs to exist as a whole. The grid is resized along W
    once with ``F.interpolate`` (small: ``(H0, W, C)``); each band of output
    rows is then the 2-tap (bilinear) or 4-tap (bicubic) weighted sum of
    those rows, with the weights ``F.interpolate`` uses along H (equal to
    resizing whole up to float rounding). ``zero_pad`` crops/pads.
    ``rows(r0, r1)`` returns ``(r1 - r0, W, C)`` in float32.
    """

    def __init__(self, grid: Tensor, size: Tuple[int, int], mode: str = 'bilinear',
                 pad_value: Optional[Tensor] = None):
        if mode not in INTERP_MODES:
            raise ValueError(f'GridRows: mode must be one of {INTERP_MODES}, got {mode!r}')
        self.size = tuple(size)
        self.mode = mode
        self.pad_value = pad_value
        self.grid = grid.float()
        h0, w0, c = grid.shape
        h, w = self.size
        if mode == 'zero_pad' or (h0, w0) == (h, w):
            return
        cols = self.grid
        if w0 != w:
            cols = F.interpolate(self.grid.permute(2, 0, 1)[None], size=(h0, w), mode=mode,
                                 align_corners=False)[0].permute(1, 2, 0)
        self.cols = cols.contiguous()
        a_h = interpolation_matrix(h0, h, mode).to(grid.device)
        taps = min(h0, 2 if mode == 'bilinear' else 4)
        self.idx = a_h.abs().topk(taps, dim=1).indices
        self.weights = a_h.gather(1, self.idx)

    def rows(self, r0: int, r1: int) -> Tensor:
        h0, w0, c = self.grid.shape
        h, w = self.size
        r1 = min(r1, h)
        if (h0, w0) == (h, w):
            return self.grid[r0:r1]
        if self.mode == 'zero_pad':
            out = self.grid.new_zeros((r1 - r0, w, c))
            if self.pad_value is not None:
                out += self.pad_value.float()
            top = min(r1, h0)
            if top > r0:
                out[:top - r0, :min(w, w0)] = self.grid[r0:top, :min(w, w0)]
            return out
        idx, wts = self.idx[r0:r1], self.weights[r0:r1]
        out = self.cols[idx[:, 0]] * wts[:, 0, None, None]
        for k in range(1, idx.shape[1]):
            out.addcmul_(self.cols[idx[:, k]], wts[:, k, None, None])
        return out
