"""A memory-lean training step for the RS-vHeat block: one autograd function.

Autograd, left to itself, saves about 25 activation-sized tensors per block
(every LayerNorm input, the DCT intermediates, the gate operands, the 4C-wide
MLP hidden twice, ...). This function computes the same block and saves only
what its backward cannot rebuild cheaply: with ``B`` the size of one
``(B, H, W, C)`` activation,

* ``x`` -- the block input (the previous block's output, shared),
* ``z`` -- the gate pre-activation,
* ``spec = DCT(u)`` -- the heat conduction input in the frequency domain,
* ``o`` -- the HCO layer output,
* ``m`` -- the MLP output (res-post-norm blocks only),

4-5 B per block. Everything else is recomputed in backward from these, in an
order that frees each buffer when used:

* the HCO is linear in ``u``: ``v = IDCT(spec * d)`` with the decay
  ``d = exp(-K * lam)``; given ``g = dL/dv`` and ``G = DCT(g)``,
  ``dL/du = IDCT(G * d)`` and ``dL/dd = sum_batch(spec * G)`` (orthonormal
  transforms: the adjoint of ``IDCT`` is ``DCT``);
* ``d`` is rebuilt from the small conductivity grid ``to_k(FVE)`` (its
  gradient flows back through the resize with a local autograd pass);
* the correction learner and depth-wise conv (element-wise + a 3x3
  depth-wise conv) are rerun from ``x`` for the in-projection's weight
  gradient;
* the MLP hidden ``h = fc1(x1)`` is recomputed (one GEMM, in bands of rows
  like the forward's, so no whole-map 4C-wide temporary exists) instead of keeping
  the 4C-wide ``h`` and ``GELU(h)`` (8 B);
* the residual stream ``x1 = x + gamma1 * LN(o)`` is rebuilt element-wise.

Gradients use PyTorch's native backward kernels (``native_layer_norm_backward``,
``gelu_backward``, ``silu_backward``, ``convolution_backward``) and GEMMs, so
outputs and gradients equal autograd's up to float rounding. Stochastic depth
masks are drawn by the caller exactly as ``DropPath`` would, and autocast is
honoured in backward as in forward.
"""
from typing import Callable, List, Optional

import torch
from torch import Tensor

from .heat_conduction import dct2d, idct2d

__all__ = ['fused_block', 'BlockConfig', 'residual_add', 'mlp_in_bands']

aten = torch.ops.aten


class BlockConfig:
    """Static facts of a block the function needs (not tensors)."""

    def __init__(self, post_norm: bool, use_sce: bool, dct_impl: str,
                 eps: dict, decay_fn: Callable[[Tensor, Optional[Tensor]], Tensor]):
        self.post_norm = post_norm
        self.use_sce = use_sce
        self.dct_impl = dct_impl
        self.eps = eps  # LayerNorm eps: 'b1', 'b2', 'op1', 'on'
        self.decay_fn = decay_fn


# weights, in the order fused_block takes them
WEIGHTS = ('b1_w', 'b1_b', 'op1_w', 'op1_b', 'dw_w', 'dw_b', 'in_w', 'in_b', 'on_w', 'on_b',
           'out_w', 'out_b', 'b2_w', 'b2_b', 'fc1_w', 'fc1_b', 'fc2_w', 'fc2_b', 'gamma1',
           'gamma2')


def _ln(x, w, b, eps):
    """LayerNorm with its statistics; under autocast in float32 (autocast's
    policy for layer norms)."""
    if torch.is_autocast_enabled(x.device.type):
        x = x.float()
    with torch.autocast(x.device.type, enabled=False):
        return aten.native_layer_norm(x, [x.shape[-1]], w, b, eps)


def _ln_bwd(g, x, mean, rstd, w, b):
    if torch.is_autocast_enabled(x.device.type):
        g, x = g.float(), x.float()
    with torch.autocast(x.device.type, enabled=False):
        return aten.native_layer_norm_backward(g.to(x.dtype), x, [x.shape[-1]], mean, rstd, w,
                                               b, [True, w is not None, b is not None])


def _ln_grads(grads: dict, name: str, w: dict, g, x, mean, rstd):
    """LayerNorm ``name``'s backward: stores its weight/bias gradients in
    ``grads`` and returns the input gradient."""
    gx, gw, gb = _ln_bwd(g, x, mean, rstd, w[f'{name}_w'], w[f'{name}_b'])
    grads[f'{name}_w'], grads[f'{name}_b'] = gw, gb
    return gx


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _linear(x, w, b):
    return torch.nn.functional.linear(x, w, b)


def _dwconv(x, w, b):
    y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w, b, 1, 1, 1, w.shape[0])
    return y.permute(0, 2, 3, 1)


def residual_add(x: Tensor, y: Tensor, scale: Optional[Tensor] = None,
                 inplace: bool = False) -> Tensor:
    """``x + scale * y`` in the promoted dtype of the three (under autocast:
    a bf16/fp16 branch output joins the fp32 residual stream, as autograd's
    path gives). The operands are brought to that dtype first, so the add
    runs as one vectorised same-dtype kernel (mixed-dtype element-wise
    kernels are several times slower on CPU). ``inplace``: ``y`` is a
    temporary that may receive the result."""
    dtype = torch.result_type(x, y)
    if scale is not None:
        dtype = torch.promote_types(dtype, scale.dtype)
    if y.dtype != dtype:
        y = y.to(dtype)
        inplace = inplace or not torch.is_grad_enabled()  # (out= has no autograd)
    if x.dtype != dtype:
        x = x.to(dtype)
    if scale is not None and scale.dtype != dtype:
        scale = scale.to(dtype)
    if scale is None:
        return torch.add(x, y, out=y) if inplace else x + y
    return torch.addcmul(x, y, scale, out=y) if inplace else torch.addcmul(x, y, scale)


def _scale(mask: Optional[Tensor], gamma: Optional[Tensor]):
    """The factor of a residual branch: drop-path mask x layer scale."""
    if mask is None:
        return gamma
    return mask if gamma is None else mask * gamma


def _sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Sum a (B, H, W, C) gradient down to the broadcast shape of ``like``."""
    dims = [i for i in range(g.dim()) if like.dim() - g.dim() + i < 0
            or like.shape[like.dim() - g.dim() + i] == 1 and g.shape[i] != 1]
    return g.sum(dims).reshape(like.shape) if dims else g.reshape(like.shape)


#: The MLP's 4C-wide hidden activations are made in bands of rows of at most
#: this many bytes (inference and the fused training step alike), so no
#: whole-map 4C-wide temporary exists: it lowers the step's tensor peak.
MLP_CHUNK_BYTES = 16 << 20


def _mlp_rows(x: Tensor, hidden: int) -> int:
    """Rows of the flattened ``(N, C)`` map per band of the MLP."""
    return max(1, MLP_CHUNK_BYTES // (hidden * x.element_size()))


def mlp_in_bands(x: Tensor, hidden: int, mlp: Callable[[Tensor], Tensor]) -> Tensor:
    """``mlp(x)`` for a per-pixel MLP with ``hidden`` channels, run on bands
    of rows of the flattened map (:data:`MLP_CHUNK_BYTES`) into one output."""
    flat = _flat(x)
    rows = _mlp_rows(flat, hidden)
    if flat.shape[0] <= rows:
        return mlp(flat).view(x.shape[:-1] + (-1, ))
    out = None
    for r in range(0, flat.shape[0], rows):
        part = mlp(flat[r:r + rows])
        if out is None:
            out = part.new_empty((flat.shape[0], part.shape[1]))
        out[r:r + rows] = part
    return out.view(x.shape[:-1] + (-1, ))


def _mlp_forward(p2: Tensor, w) -> Tensor:
    """``fc2(GELU(fc1(p2)))``, the hidden made band by band."""
    def mlp(t):
        return _linear(torch.nn.functional.gelu(_linear(t, w['fc1_w'], w['fc1_b'])),
                       w['fc2_w'], w['fc2_b'])
    return mlp_in_bands(p2, w['fc1_w'].shape[0], mlp)


def _mlp_backward(grads: dict, w, p2: Tensor, g_m: Tensor, g2: Optional[Tensor],
                  mask2: Optional[Tensor]) -> Tensor:
    """Gradients of ``m = fc2(GELU(fc1(p2)))`` band by band: the hidden is
    recomputed per band, the weight gradients summed over the bands (in
    float32). ``g2`` (pre-norm blocks with a layer scale): ``dL/dx2``, for the
    layer scale's gradient ``sum(g2 * m * mask2)``. Returns ``dL/dp2``."""
    flat, g_flat = _flat(p2), _flat(g_m)
    n, c = flat.shape
    rows = _mlp_rows(flat, w['fc1_w'].shape[0])
    g2_flat = None if g2 is None else _flat(g2)
    mask_rows = None
    if g2 is not None and mask2 is not None:  # (B, 1, 1, 1) -> one factor per row
        mask_rows = mask2.reshape(-1, 1).repeat_interleave(n // mask2.shape[0], 0)
    sums = dict.fromkeys(('fc2_w', 'fc2_b', 'fc1_w', 'fc1_b', 'gamma2'))
    g_p2 = None

    def add(name, value):
        value = value.float() if n > rows else value
        sums[name] = value if sums[name] is None else sums[name] + value

    for r in range(0, n, rows):
        x_r, g_r = flat[r:r + rows], g_flat[r:r + rows]
        hpre = _linear(x_r, w['fc1_w'], w['fc1_b'])
        h = torch.nn.functional.gelu(hpre)
        if g2_flat is not None:
            mm = _linear(h, w['fc2_w'], w['fc2_b'])
            if mask_rows is not None:
                mm = mm * mask_rows[r:r + rows]
            add('gamma2', (g2_flat[r:r + rows] * mm).sum(0))
            del mm
        add('fc2_w', g_r.t().mm(h.to(g_r.dtype)))
        add('fc2_b', g_r.sum(0))
        g_h = _linear(g_r, w['fc2_w'].t(), None)
        del h
        g_h = aten.gelu_backward(g_h, hpre)
        del hpre
        add('fc1_w', g_h.t().mm(x_r.to(g_h.dtype)))
        add('fc1_b', g_h.sum(0))
        part = _linear(g_h, w['fc1_w'].t(), None)
        del g_h
        if n <= rows:
            g_p2 = part
        else:
            if g_p2 is None:
                g_p2 = part.new_empty((n, c))
            g_p2[r:r + rows] = part
    for name, value in sums.items():
        if value is not None:
            grads[name] = value.reshape(w[name].shape) if name == 'gamma2' else value
    return g_p2.view(p2.shape)


class _FusedBlock(torch.autograd.Function):

    @staticmethod
    def forward(ctx, cfg: BlockConfig, x, sce, k_pre, k_pad, mask1, mask2, *weights):
        w = dict(zip(WEIGHTS, weights))
        post = cfg.post_norm
        dev = x.device.type
        ctx.autocast = (dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        # -- HCO branch
        p = x if post else _ln(x, w['b1_w'], w['b1_b'], cfg.eps['b1'])[0]
        t = _HCOForward.mix(cfg, w, p, sce)
        del p
        z = _linear(t, w['in_w'][x.shape[-1]:], w['in_b'][x.shape[-1]:])
        u = _linear(t, w['in_w'][:x.shape[-1]], w['in_b'][:x.shape[-1]])
        del t
        spec = dct2d(u, True, cfg.dct_impl)
        del u
        decay = cfg.decay_fn(k_pre, k_pad)
        v = idct2d(spec * decay.to(spec.dtype), True, cfg.dct_impl)
        del decay
        nv = _ln(v, w['on_w'], w['on_b'], cfg.eps['on'])[0]
        del v
        o = _linear(nv * torch.nn.functional.silu(z), w['out_w'], w['out_b'])
        del nv
        y1 = _ln(o, w['b1_w'], w['b1_b'], cfg.eps['b1'])[0] if post else o
        s1 = _scale(mask1, w['gamma1'])
        x1 = residual_add(x, y1, s1)
        del y1
        # -- MLP branch
        p2 = x1 if post else _ln(x1, w['b2_w'], w['b2_b'], cfg.eps['b2'])[0]
        m = _mlp_forward(p2, w)
        del p2
        y2 = _ln(m, w['b2_w'], w['b2_b'], cfg.eps['b2'])[0] if post else m
        s2 = _scale(mask2, w['gamma2'])
        x2 = residual_add(x1, y2, s2)
        ctx.cfg = cfg
        ctx.save_for_backward(x, sce, k_pre, k_pad, mask1, mask2, z, spec, o,
                              m if post else None, *weights)
        return x2

    @staticmethod
    def backward(ctx, g2):
        dev, enabled, dtype = ctx.autocast
        with torch.autocast(dev, dtype=dtype, enabled=enabled):
            return _FusedBlock._backward(ctx, g2)

    @staticmethod
    def _backward(ctx, g2):
        cfg = ctx.cfg
        post = cfg.post_norm
        x, sce, k_pre, k_pad, mask1, mask2, z, spec, o, m, *weights = ctx.saved_tensors
        w = dict(zip(WEIGHTS, weights))
        grads = dict.fromkeys(WEIGHTS)
        C = x.shape[-1]
        s1, s2 = _scale(mask1, w['gamma1']), _scale(mask2, w['gamma2'])

        # -- MLP branch: x2 = x1 + s2 * y2
        if post:
            y1, mean1, rstd1 = _ln(o, w['b1_w'], w['b1_b'], cfg.eps['b1'])
        else:
            y1 = o
        x1 = residual_add(x, y1, s1)
        if post:
            y2, mean2, rstd2 = _ln(m, w['b2_w'], w['b2_b'], cfg.eps['b2'])
        else:
            y2 = None  # = m, recomputed below
        if post:
            if w['gamma2'] is not None:
                grads['gamma2'] = _sum_to(g2 * (y2 if mask2 is None else y2 * mask2),
                                          w['gamma2'])
            g_y2 = g2 if s2 is None else g2 * s2
            g_m = _ln_grads(grads, 'b2', w, g_y2, m, mean2, rstd2)
            del g_y2, y2
            p2 = x1
        else:
            p2, mean2, rstd2 = _ln(x1, w['b2_w'], w['b2_b'], cfg.eps['b2'])
            g_m = g2 if s2 is None else g2 * s2
        g_p2 = _mlp_backward(grads, w, p2, g_m,
                             g2 if not post and w['gamma2'] is not None else None, mask2)
        del g_m
        if post:
            g_x1 = g2 + g_p2
        else:
            g_x1 = _ln_grads(grads, 'b2', w, g_p2, x1, mean2, rstd2)
            g_x1 = g_x1 + g2
        del g_p2, p2, x1

        # -- HCO branch: x1 = x + s1 * y1
        if w['gamma1'] is not None:
            grads['gamma1'] = _sum_to(g_x1 * (y1 if mask1 is None else y1 * mask1),
                                      w['gamma1'])
        g_y1 = g_x1 if s1 is None else g_x1 * s1
        if post:
            g_o = _ln_grads(grads, 'b1', w, g_y1, o, mean1, rstd1)
        else:
            g_o = g_y1
        del g_y1, y1
        # out-projection and gate, from v = IDCT(spec * decay)
        with torch.enable_grad():
            kp = k_pre.detach().requires_grad_(k_pre.requires_grad)
            kpad = None if k_pad is None else k_pad.detach().requires_grad_(k_pad.requires_grad)
            decay_graph = cfg.decay_fn(kp, kpad)
        decay = decay_graph.detach()
        v = idct2d(spec * decay.to(spec.dtype), True, cfg.dct_impl)
        nv, mean_on, rstd_on = _ln(v, w['on_w'], w['on_b'], cfg.eps['on'])
        sz = torch.nn.functional.silu(z)
        q = nv * sz
        grads['out_w'] = _flat(g_o).t().mm(_flat(q).to(g_o.dtype))
        grads['out_b'] = _flat(g_o).sum(0)
        del q
        g_q = _linear(g_o, w['out_w'].t(), None)
        del g_o
        g_z = aten.silu_backward(g_q * nv, z)
        g_nv = g_q * sz
        del g_q, nv, sz
        g_v = _ln_grads(grads, 'on', w, g_nv, v, mean_on, rstd_on)
        del g_nv, v
        # heat conduction: v = IDCT(DCT(u) * decay)
        G = dct2d(g_v, True, cfg.dct_impl)
        del g_v
        g_decay = (spec.float() * G.float()).sum(0)
        g_u = idct2d(G * decay.to(G.dtype), True, cfg.dct_impl)
        del G
        g_kpre = g_kpad = None
        wanted = [t for t in (kp, kpad) if t is not None and t.requires_grad]
        if wanted:
            got = iter(torch.autograd.grad(decay_graph, wanted, g_decay))
            g_kpre = next(got) if kp.requires_grad else None
            g_kpad = next(got) if kpad is not None and kpad.requires_grad else None
        del decay_graph, g_decay
        # in-projection and the correction learner, rerun from x
        if post:
            p = x
        else:
            p, mean_p, rstd_p = _ln(x, w['b1_w'], w['b1_b'], cfg.eps['b1'])
        if cfg.use_sce:
            a = p + sce
            r = torch.relu(a)
            del a
            n1, mean_r, rstd_r = _ln(r, w['op1_w'], w['op1_b'], cfg.eps['op1'])
        else:
            n1 = p
        t = _dwconv(n1, w['dw_w'], w['dw_b'])
        grads['in_w'] = torch.cat([_flat(g_u).t().mm(_flat(t).to(g_u.dtype)),
                                   _flat(g_z).t().mm(_flat(t).to(g_z.dtype))])
        grads['in_b'] = torch.cat([_flat(g_u).sum(0), _flat(g_z).sum(0)])
        del t
        g_t = _linear(g_u, w['in_w'][:C].t(), None)
        g_t = g_t + _linear(g_z, w['in_w'][C:].t(), None)
        del g_u, g_z
        g_n1, grads['dw_w'], grads['dw_b'] = aten.convolution_backward(
            g_t.permute(0, 3, 1, 2), n1.permute(0, 3, 1, 2).to(g_t.dtype),
            w['dw_w'].to(g_t.dtype), [C], [1, 1], [1, 1], [1, 1], False, [0, 0], C,
            [True, True, w['dw_b'] is not None])
        g_n1 = g_n1.permute(0, 2, 3, 1)
        del g_t, n1
        g_sce = None
        if cfg.use_sce:
            g_r = _ln_grads(grads, 'op1', w, g_n1, r, mean_r, rstd_r)
            g_p = aten.threshold_backward(g_r, r, 0)
            del g_r, r
            if sce is not None and sce.requires_grad:
                g_sce = _sum_to(g_p, sce)
        else:
            g_p = g_n1
        del g_n1
        if post:
            g_x = g_x1 + g_p
        else:
            g_x = _ln_grads(grads, 'b1', w, g_p, x, mean_p, rstd_p)
            g_x = g_x + g_x1
        out: List[Optional[Tensor]] = [None, g_x, g_sce, g_kpre, g_kpad, None, None]
        for name, weight in zip(WEIGHTS, weights):
            g = grads[name]
            out.append(None if weight is None or g is None or not weight.requires_grad
                       else g.to(weight.dtype))
        return tuple(out)


class _HCOForward:
    """The correction learner + depth-wise conv of the HCO layer."""

    @staticmethod
    def mix(cfg, w, p, sce):
        if cfg.use_sce:
            p = _ln(torch.relu(p + sce), w['op1_w'], w['op1_b'], cfg.eps['op1'])[0]
        return _dwconv(p, w['dw_w'], w['dw_b'])


def fused_block(cfg: BlockConfig, x: Tensor, sce: Optional[Tensor], k_pre: Tensor,
                k_pad: Optional[Tensor], mask1: Optional[Tensor], mask2: Optional[Tensor],
                weights: List[Optional[Tensor]]) -> Tensor:
    """Run one RS-vHeat block as a single autograd function (see module doc).

    Args:
        cfg (BlockConfig): Norm position, SCE use, DCT implementation, the
            LayerNorm eps values and ``decay_fn(k_pre, k_pad) -> decay``.
        x (Tensor): Block input ``(B, H, W, C)``.
        sce (Tensor, optional): The stage's SCE at ``(H, W, C)``.
        k_pre, k_pad (Tensor): ``to_k(FVE)`` on its grid and ``to_k``'s bias
            (for ``zero_pad``), the inputs of ``decay_fn``.
        mask1, mask2 (Tensor, optional): Stochastic depth masks ``(B, 1, 1,
            1)`` (0 or 1 / keep_prob), None when off.
        weights (list): In the order of ``WEIGHTS`` (None where absent).
    """
    return _FusedBlock.apply(cfg, x, sce, k_pre, k_pad, mask1, mask2, *weights)
