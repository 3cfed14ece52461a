"""A literal, unoptimised transcription of the spec's RS-vHeat forward pass.

Used only by the tests as the ground truth for every optimisation of the
real backbone (channels-last blocks, cached decay, pre-activation resizing
of K, chunked MLP, deploy mode, FFT DCT ...). It reads the parameters of an
:class:`RSVHeat` but computes everything the obvious way, channels-first,
with scipy-built DCT matrices in float64 and K = ReLU(to_k(resize(FVE))) at
the feature resolution for every block.
"""
import math

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F


def _ln2d(x, ln):
    """LayerNorm over channels of (B, C, H, W)."""
    return F.layer_norm(x.permute(0, 2, 3, 1), ln.normalized_shape, ln.weight, ln.bias,
                        ln.eps).permute(0, 3, 1, 2)


def _resize(emb, h, w):
    """(H0, W0, C) -> (C, h, w), bilinear, align_corners=False."""
    grid = emb.permute(2, 0, 1)[None].double()
    return F.interpolate(grid, size=(h, w), mode='bilinear', align_corners=False)[0]


def _dct_mat(n):
    return torch.from_numpy(scipy.fft.dct(np.eye(n), axis=0, norm='ortho'))


def _hco(u, k):
    """u: (B, C, H, W), k: (C, H, W) -> IDCT(DCT(u) * exp(-k * lam))."""
    _, _, h, w = u.shape
    ch, cw = _dct_mat(h), _dct_mat(w)
    lam = (torch.arange(h, dtype=torch.float64)[:, None] * math.pi / h)**2 + \
        (torch.arange(w, dtype=torch.float64)[None, :] * math.pi / w)**2
    spec = ch @ u.double() @ cw.T
    spec = spec * torch.exp(-k.double() * lam)
    return (ch.T @ spec @ cw).to(u.dtype)


def _linear_cf(x, weight, bias):
    """Per-pixel linear on (B, C, H, W) as a 1x1 convolution."""
    return F.conv2d(x, weight[:, :, None, None], bias)


@torch.no_grad()
def reference_forward(model, x, modality='optical'):
    stem = model.stems[modality]
    y = F.conv2d(x, stem.conv1.weight, stem.conv1.bias, stride=2, padding=1)
    y = F.gelu(_ln2d(y, stem.norm1))
    y = F.conv2d(y, stem.conv2.weight, stem.conv2.bias, stride=2, padding=1)
    y = _ln2d(y, stem.norm2)
    outs = []
    for i, stage in enumerate(model.stages):
        _, c, h, w = y.shape
        fve = _resize(stage.fve, h, w).float()  # (C, h, w)
        sce = _resize(stage.sce, h, w).float() if stage.sce is not None else None
        for blk in stage.blocks:
            op = blk.op
            k = F.relu(_linear_cf(fve[None], op.to_k.weight, op.to_k.bias))[0]

            def heat2d(t):
                if sce is not None:
                    t = _ln2d(F.relu(t + sce[None]), op.norm1)
                t = F.conv2d(t, op.dwconv.weight, op.dwconv.bias, padding=1, groups=c)
                uz = _linear_cf(t, op.linear.weight, op.linear.bias)
                u, z = uz[:, :c], uz[:, c:]
                u = _hco(u, k)
                u = _ln2d(u, op.out_norm) * F.silu(z)
                return _linear_cf(u, op.out_linear.weight, op.out_linear.bias)

            def mlp(t):
                t = F.gelu(_linear_cf(t, blk.mlp.fc1.weight, blk.mlp.fc1.bias))
                return _linear_cf(t, blk.mlp.fc2.weight, blk.mlp.fc2.bias)

            g1 = 1 if blk.gamma1 is None else blk.gamma1[:, None, None]
            g2 = 1 if blk.gamma2 is None else blk.gamma2[:, None, None]
            if blk.norm_position == 'post':
                y = y + g1 * _ln2d(heat2d(y), blk.norm1)
                y = y + g2 * _ln2d(mlp(y), blk.norm2)
            else:
                y = y + g1 * heat2d(_ln2d(y, blk.norm1))
                y = y + g2 * mlp(_ln2d(y, blk.norm2))
        if i in model.out_indices:
            norm = getattr(model, f'norm{i}')
            outs.append(_ln2d(y, norm) if isinstance(norm, torch.nn.LayerNorm) else y)
        if stage.downsample is not None:
            y = F.conv2d(y, stage.downsample.conv.weight, None, stride=2, padding=1)
            y = _ln2d(y, stage.downsample.norm)
    return tuple(outs)
