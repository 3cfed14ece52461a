"""The HCO layer of an RS-vHeat block: correction learner + heat conduction.

::

    x = LN(ReLU(x + SCE))            # correction learner (RS-vHeat only)
    t = DWConv3x3(x)
    u, z = Linear_{C->2C}(t)
    u = IDCT2D(DCT2D(u) * exp(-K * lam))      # heat conduction, see heat_conduction.py
    y = Linear_{C->C}(LN(u) * SiLU(z))

with the conductivity ``K = ReLU(to_k(FVE))`` resized to the feature map.
``K`` depends only on the weights and the resolution, so the decay
``exp(-K * lam)`` can be reused between inference forwards (see
:meth:`HeatConduction2d.decay` and :mod:`.resolution_cache`); after
:meth:`switch_to_deploy` of the backbone ``to_k`` is gone altogether.

All tensors are channels-last ``(B, H, W, C)``: the linear layers are plain
GEMMs, the LayerNorms are fused kernels and the DCT runs on the spatial axes
without any permute.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules import module as nn_module
from torch.utils.module_tracker import ModuleTracker

from .embedding import GridRows, resize_embedding
from .fused_ops import capturing_graph, linear, operands_for
from .heat_conduction import heat_conduction, heat_decay, heat_frequencies, transform_
from .resolution_cache import ResolutionCache

__all__ = ['HeatConduction2d', 'lean_inference', 'cacheable', 'hooks_registered', 'DecayRows',
           'TensorRows']

#: Bytes of one band of rows when per-pixel work runs band by band in
#: inference (a 32-row band of a 256 px wide, C=128 map is 4 MiB).
BAND_BYTES = 4 << 20


def band_rows(row_bytes: int) -> int:
    return max(1, BAND_BYTES // max(1, row_bytes))


class TensorRows:
    """Row bands of a materialised ``(H, W, C)`` tensor (e.g. a cached decay)."""

    def __init__(self, t: Tensor):
        self.t = t

    def rows(self, r0: int, r1: int) -> Tensor:
        return self.t[r0:r1]


class DecayRows:
    """Row bands of the decay ``exp(-ReLU(resize(K)) * lam)`` at ``size``,
    computed band by band from the conductivity grid (see
    :class:`~.embedding.GridRows`): in inference on large maps the decay, one
    activation-sized tensor per block, is never built whole."""

    def __init__(self, k_pre: Tensor, size: Tuple[int, int], interp: str,
                 pad: Optional[Tensor] = None):
        self.k = GridRows(k_pre, size, interp, pad)
        self.lam = heat_frequencies(size[0], size[1], k_pre.device)

    def rows(self, r0: int, r1: int) -> Tensor:
        with torch.autocast(self.lam.device.type, enabled=False):
            return torch.exp(F.relu(self.k.rows(r0, r1)).mul_(self.lam[r0:r1]).neg_())


def lean_inference() -> bool:
    """Eager inference: intermediate buffers of a module may be reused in
    place (never tensors another module returned), and large per-pixel work
    may run in bands. Off while autograd records and while a graph is traced,
    exported or compiled."""
    return not (torch.is_grad_enabled() or capturing_graph())


def _observes(hooks) -> bool:
    # torch's ModuleTracker (used by FlopCounterMode) only records which
    # module runs; it never looks at tensors, so it needs no module calls.
    return any(not isinstance(getattr(h, '__self__', None), ModuleTracker)
               for h in hooks.values())


def hooks_registered(module: nn.Module) -> bool:
    """Whether a forward (pre-)hook is registered globally or on a submodule
    of ``module`` (not on ``module`` itself). Hook-based tools (feature
    extractors, visualisers) then need every submodule called with real
    tensors that are not modified afterwards, so the lean inference and
    fused training paths, which skip or reuse those, step aside."""
    if _observes(nn_module._global_forward_hooks) or _observes(
            nn_module._global_forward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks
               for m in module.modules() if m is not module)


def cacheable(module: nn.Module, sources) -> bool:
    """Whether a tensor computed from ``sources`` (weights) may be reused:
    eval mode, eager, and not part of a graph that differentiates them."""
    if module.training or capturing_graph():
        return False
    return not (torch.is_grad_enabled()
                and any(t is not None and t.requires_grad for t in sources))


class HeatConduction2d(BaseModule):
    """The HCO layer (``op`` of a block), see the module docstring.

    Args:
        dims (int): Channels ``C``.
        use_sce (bool): Correction learner on ``x + SCE`` (RS-vHeat); False
            gives vHeat's layer. Defaults to True.
        dct_impl (str): DCT implementation, see
            :func:`~rsvheat_mm.models.layers.heat_conduction.dct2d`.
            Defaults to ``'auto'``.
        deploy (bool): Hold the pre-activation conductivity ``to_k(FVE)`` on
            its grid (buffers ``k_pre``, ``k_pad``) instead of ``to_k``.
            Defaults to False.
        grid (tuple[int, int]): FVE grid, for the deploy buffers.
    """

    def __init__(self, dims: int, use_sce: bool = True, dct_impl: str = 'auto',
                 deploy: bool = False, grid: Tuple[int, int] = (56, 56),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.dims = dims
        self.use_sce = use_sce
        self.dct_impl = dct_impl
        if use_sce:
            self.norm1 = nn.LayerNorm(dims)
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)
        self.linear = nn.Linear(dims, 2 * dims)
        self.out_norm = nn.LayerNorm(dims)
        self.out_linear = nn.Linear(dims, dims)
        self.deploy = deploy
        if deploy:
            # Pre-activation K on the FVE grid (see k_preactivation) and
            # to_k(0) = its bias, the value of zero-padded FVE entries.
            self.register_buffer('k_pre', torch.zeros(grid[0], grid[1], dims))
            self.register_buffer('k_pad', torch.zeros(dims))
        else:
            self.to_k = nn.Linear(dims, dims)

    # -- conductivity ----------------------------------------------------------
    def k_preactivation(self, fve: Optional[Tensor]) -> Tensor:
        """``to_k(FVE)`` on the FVE's own grid (before ReLU and resizing).

        Bilinear/bicubic resizing is a convex combination of grid values and
        ``to_k`` is affine, so ``resize(to_k(FVE)) == to_k(resize(FVE))``
        exactly: running ``to_k`` on the small pretraining grid instead of
        the (possibly huge) feature map changes no output and saves
        ``H*W*C^2`` MACs per block and forward.
        """
        if self.deploy:
            return self.k_pre
        return self.to_k(fve)

    def k_sources(self, fve: Optional[Tensor]) -> list:
        """The tensors the decay is computed from."""
        if self.deploy:
            return [self.k_pre, self.k_pad]
        return [fve, self.to_k.weight, self.to_k.bias]

    def compute_decay(self, fve: Optional[Tensor], size: Tuple[int, int],
                      interp: str = 'bilinear') -> Tensor:
        """``exp(-K * lam)`` at ``size``, shape ``(H, W, C)``, float32."""
        k = self.k_preactivation(fve)
        pad = None
        if interp == 'zero_pad':
            # FVE zero-padding == padding to_k(FVE) with to_k's bias.
            pad = self.k_pad if self.deploy else self.to_k.bias
        return heat_decay(F.relu(resize_embedding(k, size, interp, pad)))

    def decay_rows(self, fve: Optional[Tensor], size: Tuple[int, int],
                   interp: str = 'bilinear') -> DecayRows:
        """The decay at ``size`` as row bands (inference on large maps)."""
        pad = None
        if interp == 'zero_pad':
            pad = self.k_pad if self.deploy else self.to_k.bias
        return DecayRows(self.k_preactivation(fve), size, interp, pad)

    def decay(self, fve: Optional[Tensor], size: Tuple[int, int], interp: str = 'bilinear',
              cache: Optional[ResolutionCache] = None) -> Tensor:
        """:meth:`compute_decay`, reused from ``cache`` where that is safe
        (eval mode, eager, no gradient wanted for the weights)."""
        sources = self.k_sources(fve)
        if cache is None or not cacheable(self, sources):
            return self.compute_decay(fve, size, interp)
        ref = sources[0]
        key = (id(self), 'decay', tuple(size), interp, ref.device, ref.dtype)
        return cache.get(key, sources, lambda: self.compute_decay(fve, size, interp))

    # -- forward ---------------------------------------------------------------
    def _mix(self, x: Tensor, sce: Optional[Tensor]) -> Tensor:
        """Correction learner (``LN(ReLU(x + SCE))``) and depth-wise conv."""
        if self.use_sce:
            x = x + sce
            x = self.norm1(F.relu(x, inplace=lean_inference()))  # x + sce is ours
        return self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _in_proj(self, t: Tensor, half: int) -> Tensor:
        # Two half-GEMMs give contiguous u and z (one C->2C GEMM plus a slice
        # would hand the DCT a strided tensor).
        c = self.dims
        sl = slice(0, c) if half == 0 else slice(c, 2 * c)
        return linear(t, self.linear.weight[sl], self.linear.bias[sl])

    def pre_heat(self, x: Tensor, sce: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Correction learner, depth-wise conv and in-projection: ``(u, z)``."""
        t = self._mix(x, sce)
        return self._in_proj(t, 0), self._in_proj(t, 1)

    def heat(self, u: Tensor, decay: Tensor) -> Tensor:
        """The heat conduction itself, ``IDCT(DCT(u) * decay)``."""
        return heat_conduction(u, decay, channels_last=True, impl=self.dct_impl)

    def post_heat(self, u: Tensor, z: Tensor) -> Tensor:
        """``Linear(LN(u) * SiLU(z))``."""
        return linear(self.out_norm(u) * F.silu(z), self.out_linear.weight, self.out_linear.bias)

    def forward(self, x: Tensor, decay: Tensor, sce: Optional[Tensor] = None) -> Tensor:
        """``x``: ``(B, H, W, C)``; ``decay``: ``(H, W, C)``; ``sce``: ``(H, W, C)``."""
        if lean_inference() and not hooks_registered(self):
            return self._forward_lean(x, decay, sce)
        u, z = self.pre_heat(x, sce)
        return self.post_heat(self.heat(u, decay), z)

    def _forward_lean(self, x: Tensor, decay, sce) -> Tensor:
        """Inference with no forward hooks registered (see
        :func:`hooks_registered`): the same maths with at most three
        ``C x H x W`` buffers alive besides the input. ``z`` is written into
        the depth-wise conv's output band by band once ``u`` is computed, the
        DCTs run in place where pocketfft does them, the correction learner
        and the gate's LayerNorm run band by band, and ``decay``/``sce`` may be
        row sources (:class:`DecayRows`, :class:`~.embedding.GridRows`) that
        never exist whole. Nothing here is visible to anyone: no hook is
        registered, and every reused buffer is this call's own."""
        decay = TensorRows(decay) if torch.is_tensor(decay) else decay
        sce = TensorRows(sce) if torch.is_tensor(sce) else sce
        h = x.shape[1]
        step = band_rows(x[0, 0].numel() * 4)
        bands = [(r, min(r + step, h)) for r in range(0, h, step)]
        dev = x.device.type
        if not self.use_sce:
            t = self._mix(x, None)
        elif torch.is_autocast_enabled(dev):
            # LN(ReLU(x + SCE)) band by band into the dtype the conv runs in:
            # the float32 norm output and autocast's copy of it never exist whole
            t = torch.empty_like(x, dtype=torch.get_autocast_dtype(dev))
            for r0, r1 in bands:
                t[:, r0:r1] = self.norm1(F.relu_(x[:, r0:r1] + sce.rows(r0, r1).to(x.dtype)))
            t = self.dwconv(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            t = torch.empty_like(x)
            for r0, r1 in bands:
                torch.add(x[:, r0:r1], sce.rows(r0, r1).to(x.dtype), out=t[:, r0:r1])
            t = self.norm1(F.relu_(t))
            t = self.dwconv(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        u = self._in_proj(t, 0)
        z = t  # z overwrites t band by band: each band of t is used once more
        del t
        c = self.dims
        wz, bz = operands_for(z, self.linear.weight[c:], self.linear.bias[c:])
        for r0, r1 in bands:
            z[:, r0:r1] = linear(z[:, r0:r1], wz, bz)
        spec = transform_(u, True, self.dct_impl)
        del u
        for r0, r1 in bands:
            spec[:, r0:r1].mul_(decay.rows(r0, r1).to(spec.dtype))
        v = transform_(spec, True, self.dct_impl, inverse=True)
        del spec
        norm = self.out_norm
        for r0, r1 in bands:
            zb = F.silu(z[:, r0:r1], inplace=True)
            zb.mul_(F.layer_norm(v[:, r0:r1], (c, ), norm.weight, norm.bias, norm.eps))
        del v
        return linear(z, self.out_linear.weight, self.out_linear.bias)
