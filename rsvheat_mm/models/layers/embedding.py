"""Resizing RS-vHeat's per-stage grids (FVE, SCE, deploy conductivity).

The frequency value embedding (FVE), the spatial correction embedding (SCE)
and a deploy model's pre-activation conductivity are ``(H0, W0, C)`` grids
defined at the pretraining size. They follow other sizes in two places with
the same rule: at run time (to the feature map's size) and when a checkpoint
built for another ``pretrain_img_size`` is loaded (to the model's grid).
"""
from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ['resize_embedding', 'INTERP_MODES']

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
