"""The building blocks of the RS-vHeat backbone: stem, downsample, MLP and the
block that joins the HCO layer (:mod:`.hco_layer`) and the MLP with
residuals, in three execution paths with the same maths:

* :meth:`RSVHeatBlock.forward` -- module calls (autograd, hooks, tracing);
* :meth:`RSVHeatBlock.forward_owned` -- lean inference, used only when no
  forward hook is registered: the block frees its input early and adds
  residuals in place into its own temporaries;
* :meth:`RSVHeatBlock.forward_fused` -- training as one autograd function
  (:mod:`.block_autograd`) that saves 4-5 activations instead of ~25.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch import Tensor

from .block_autograd import BlockConfig, fused_block, mlp_in_bands, residual_add
from .embedding import resize_embedding
from .fused_ops import linear, operands_for
from .hco_layer import HeatConduction2d, band_rows, hooks_registered, lean_inference
from .heat_conduction import heat_decay

__all__ = ['RSVHeatStem', 'RSVHeatDownsample', 'RSVHeatMlp', 'RSVHeatBlock', 'cp_mode']


def _selective_checkpoint_context():
    """Context pair for selective activation checkpointing of a block.

    The outputs of the GEMMs and convolutions (the expensive ops) are kept;
    everything else -- norms, activations, the gating product, the residual
    arithmetic and the DCT, which are cheap to redo from the saved
    in-projection -- is recomputed in backward (trade-offs measured in
    docs/benchmark.md).
    """
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
    save = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
            torch.ops.aten.convolution.default}

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in save else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


_CP_MODES = {False: None, None: None, True: 'full', 'full': 'full', 'selective': 'selective'}


def cp_mode(with_cp) -> Optional[str]:
    try:
        return _CP_MODES[with_cp]
    except (KeyError, TypeError):
        raise ValueError(f"RSVHeat: with_cp must be False, True ('full') or 'selective', "
                         f'got {with_cp!r}') from None


class RSVHeatStem(BaseModule):
    """Stride-4 stem for one modality.

    conv3x3 s2 (bands -> C/2) -> LN -> GELU -> conv3x3 s2 (C/2 -> C) -> LN,
    LayerNorms with eps 1e-6 (as in vHeat). Returns channels-last features.
    """

    def __init__(self, in_channels: int, embed_dims: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, embed_dims // 2, 3, 2, 1)
        self.norm1 = nn.LayerNorm(embed_dims // 2, eps=1e-6)
        self.conv2 = nn.Conv2d(embed_dims // 2, embed_dims, 3, 2, 1)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        # channels_last convolutions: the permutes to (B, H, W, C) are free
        # views, and no full-resolution intermediate outlives its use (the
        # stem's are the largest tensors of the network, at stride 2).
        x = self.conv1(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        if lean_inference() and not hooks_registered(self):
            # Nobody observes norm1: normalise and activate the conv output
            # in place, band by band (LayerNorm is per pixel).
            step = band_rows(x[0, 0].numel() * 4)
            for r in range(0, x.shape[1], step):
                band = x[:, r:r + step]
                band.copy_(F.gelu(self.norm1(band)))
        else:
            x = F.gelu(self.norm1(x))  # (the conv output is freed when norm1 returns)
        x = self.conv2(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm2(x)


class RSVHeatDownsample(BaseModule):
    """conv3x3 s2 (C -> 2C, no bias) -> LN; channels-last in and out."""

    def __init__(self, in_dims: int, out_dims: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(in_dims, out_dims, 3, 2, 1, bias=False)
        self.norm = nn.LayerNorm(out_dims)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm(x)


class RSVHeatMlp(BaseModule):
    """Per-pixel MLP C -> 4C -> C (the 1x1 convs of the paper as Linears).

    In inference the MLP runs on bands of rows (:func:`~.block_autograd.mlp_in_bands`,
    as the fused training step does), so the 4C-wide hidden activations (the
    largest tensors of a block) never exist for the whole map at once; the
    output is the same full tensor.
    """

    def __init__(self, dims: int, hidden_dims: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, dims)

    def _mlp(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        return linear(linear(x, w1, b1, activation='gelu'), w2, b2)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, H, W, C)``."""
        params = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        if not lean_inference() or not x.is_contiguous():
            return self._mlp(x, *params)
        params = operands_for(x, *params)
        return mlp_in_bands(x, self.fc1.out_features, lambda t: self._mlp(t, *params))


class RSVHeatBlock(BaseModule):
    """An RS-vHeat block.

    ``norm_position='post'`` (RS-vHeat, Swin-V2 style res-post-norm)::

        x = x + DropPath(gamma1 * LN(op(x)))
        x = x + DropPath(gamma2 * LN(MLP(x)))

    ``norm_position='pre'`` (vHeat)::

        x = x + DropPath(gamma1 * op(LN(x)))
        x = x + DropPath(gamma2 * MLP(LN(x)))

    ``gamma`` is a layer scale (disabled when ``layer_scale_init_value`` is
    0 or None).
    """

    def __init__(self, dims: int, use_sce: bool = True, norm_position: str = 'post',
                 layer_scale_init_value: Optional[float] = 1e-5, mlp_ratio: float = 4.,
                 drop_path: float = 0., with_cp: Union[bool, str] = False,
                 dct_impl: str = 'auto',
                 deploy: bool = False, grid: Tuple[int, int] = (56, 56), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        assert norm_position in ('pre', 'post'), \
            f"norm_position must be 'pre' or 'post', got {norm_position!r}"
        self.norm_position = norm_position
        self.with_cp = cp_mode(with_cp)
        self.norm1 = nn.LayerNorm(dims)
        self.op = HeatConduction2d(dims, use_sce, dct_impl, deploy, grid)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = RSVHeatMlp(dims, int(dims * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if layer_scale_init_value:
            self.gamma1 = nn.Parameter(torch.full((dims, ), float(layer_scale_init_value)))
            self.gamma2 = nn.Parameter(torch.full((dims, ), float(layer_scale_init_value)))
        else:
            self.gamma1 = self.gamma2 = None
        self.layer_scale_init_value = layer_scale_init_value

    def _residual(self, x: Tensor, y: Tensor, gamma: Optional[Tensor]) -> Tensor:
        """``x + DropPath(gamma * y)``; one fused pass when DropPath is off."""
        if isinstance(self.drop_path, nn.Identity) or not self.training:
            return residual_add(x, y, gamma)
        y = y if gamma is None else y * gamma
        return x + self.drop_path(y)

    def _forward(self, x: Tensor, decay: Tensor, sce: Optional[Tensor]) -> Tensor:
        if self.norm_position == 'post':
            x = self._residual(x, self.norm1(self.op(x, decay, sce)), self.gamma1)
            return self._residual(x, self.norm2(self.mlp(x)), self.gamma2)
        x = self._residual(x, self.op(self.norm1(x), decay, sce), self.gamma1)
        return self._residual(x, self.mlp(self.norm2(x)), self.gamma2)

    def forward(self, x: Tensor, decay: Tensor, sce: Optional[Tensor] = None) -> Tensor:
        """``x``: ``(B, H, W, C)``; ``decay``: ``exp(-K * lam)`` at its size,
        ``(H, W, C)``; ``sce``: the stage's SCE at its size (or None)."""
        if self.with_cp and x.requires_grad:
            if self.with_cp == 'selective':
                return cp.checkpoint(self._forward, x, decay, sce, use_reentrant=False,
                                     context_fn=_selective_checkpoint_context)
            return cp.checkpoint(self._forward, x, decay, sce, use_reentrant=False)
        return self._forward(x, decay, sce)

    def forward_owned(self, owner: list, decay: Tensor, sce: Optional[Tensor]) -> Tensor:
        """:meth:`forward` for lean inference with no hooks registered (see
        :meth:`RSVHeat.forward`): takes its input out of ``owner``, the only
        reference, so the input is freed after the first residual, and adds
        each residual into the branch output, which nothing else can see."""
        x = owner.pop()
        if self.norm_position == 'post':
            y = self.norm1(self.op(x, decay, sce))
        else:
            y = self.op(self.norm1(x), decay, sce)
        x = self._residual_into(x, y, self.gamma1)
        del y
        y = self.norm2(self.mlp(x)) if self.norm_position == 'post' else self.mlp(self.norm2(x))
        return self._residual_into(x, y, self.gamma2)

    @staticmethod
    def _residual_into(x: Tensor, y: Tensor, gamma: Optional[Tensor]) -> Tensor:
        return residual_add(x, y, gamma, inplace=True)

    def forward_fused(self, x: Tensor, k_pre: Tensor, k_pad: Optional[Tensor],
                      sce: Optional[Tensor], interp: str) -> Tensor:
        """:meth:`forward` as one autograd function for training (see
        :mod:`~rsvheat_mm.models.layers.block_autograd`): same outputs and
        gradients, 4-5 activation-sized tensors saved instead of ~25. Takes
        the conductivity grid ``to_k(FVE)`` instead of the decay, which it
        rebuilds in backward."""
        size = (x.shape[1], x.shape[2])

        def decay_fn(k, pad):
            return heat_decay(F.relu(resize_embedding(k, size, interp, pad)))

        op = self.op
        cfg = BlockConfig(self.norm_position == 'post', op.use_sce, op.dct_impl,
                          dict(b1=self.norm1.eps, b2=self.norm2.eps,
                               op1=op.norm1.eps if op.use_sce else 0., on=op.out_norm.eps),
                          decay_fn)
        weights = [self.norm1.weight, self.norm1.bias,
                   op.norm1.weight if op.use_sce else None,
                   op.norm1.bias if op.use_sce else None,
                   op.dwconv.weight, op.dwconv.bias, op.linear.weight, op.linear.bias,
                   op.out_norm.weight, op.out_norm.bias, op.out_linear.weight,
                   op.out_linear.bias, self.norm2.weight, self.norm2.bias,
                   self.mlp.fc1.weight, self.mlp.fc1.bias, self.mlp.fc2.weight,
                   self.mlp.fc2.bias, self.gamma1, self.gamma2]
        return fused_block(cfg, x, sce, k_pre, k_pad, self._drop_mask(x), self._drop_mask(x),
                           weights)

    def _drop_mask(self, x: Tensor) -> Optional[Tensor]:
        """The per-sample stochastic-depth factor ``DropPath`` would apply."""
        if isinstance(self.drop_path, nn.Identity) or not self.training:
            return None
        keep = 1 - self.drop_path.drop_prob
        if keep == 1:
            return None
        rand = keep + torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device)
        return rand.floor_().div_(keep)
