"""RS-vHeat backbone: heat conduction instead of attention.

One class serves mmpretrain, mmsegmentation, mmdetection and mmrotate: it
takes ``(B, bands, H, W)`` images of any (also non-square) size and returns
the stage features at strides 4/8/16/32 as ``(B, C_i, H_i, W_i)`` tensors.
"""
import contextlib
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from rsvheat_mm.registry import MODELS
from ..layers.fused_ops import capturing_graph, linear
from ..layers.heat_conduction import DCT_IMPLS, dct2d, heat_conduction, heat_decay, idct2d

_INTERP_MODES = ('bilinear', 'bicubic', 'zero_pad')


def _lean_inference() -> bool:
    """Eager inference, where buffers may be reused in place (not while
    autograd records, nor while tracing/exporting/compiling a graph)."""
    return not (torch.is_grad_enabled() or capturing_graph())


def _selective_checkpoint_context():
    """Context pair for selective activation checkpointing of a block.

    The outputs of the GEMMs and convolutions (the expensive ops) are kept;
    everything else -- norms, activations, the gating product, the residual
    arithmetic and the DCT, which are cheap to redo from the saved
    in-projection -- is recomputed in backward. Measured for RS-vHeat-B
    training steps at 512-1024 px (docs/benchmark.md): 56-59 % of the
    tensor peak for at most 3 % more time; full checkpointing 26-41 % for
    5-26 % more.
    """
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
    save = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
            torch.ops.aten.convolution.default}

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in save else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


_CP_MODES = {False: None, None: None, True: 'full', 'full': 'full', 'selective': 'selective'}


def _cp_mode(with_cp) -> Optional[str]:
    try:
        return _CP_MODES[with_cp]
    except (KeyError, TypeError):
        raise ValueError(f"RSVHeat: with_cp must be False, True ('full') or 'selective', "
                         f'got {with_cp!r}') from None


def resize_embedding(emb: Tensor, size: Tuple[int, int], mode: str = 'bilinear',
                     pad_value: Optional[Tensor] = None) -> Tensor:
    """Resize a stage embedding of shape ``(H0, W0, C)`` to ``size``.

    ``bilinear``/``bicubic`` interpolate (align_corners=False) as the official
    RS-vHeat checkpoint loader does. ``zero_pad`` treats the grid as
    frequencies (vHeat's offline script): it keeps the low-frequency corner
    and pads the high-frequency end with ``pad_value`` (default 0) or crops
    it when the target is smaller.
    """
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
        # stem's are the largest tensors of the network at stride 2).
        x = self.conv1(x.contiguous(memory_format=torch.channels_last))
        x = self.norm1(x.permute(0, 2, 3, 1))
        x = torch.ops.aten.gelu_(x) if _lean_inference() else F.gelu(x)
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


class HeatConduction2d(BaseModule):
    """The HCO layer of a block (``op``): correction learner + heat2d.

    ``x = LN(ReLU(x + SCE))`` (only with the SCE), depth-wise 3x3 conv,
    ``u, z = Linear_{C->2C}``, ``u = HCO(u, K)``, ``LN(u) * SiLU(z)``,
    ``Linear_{C->C}``. ``K = ReLU(to_k(FVE))`` depends only on the weights
    and the resolution, so in eval mode the decay ``exp(-K * lam)`` is cached
    per resolution (invalidated when the weights change or ``train()`` is
    called) and, after :meth:`switch_to_deploy`, ``to_k`` is gone altogether.

    All tensors are channels-last ``(B, H, W, C)``: the linear layers are
    plain GEMMs, the LayerNorms are fused kernels and the DCT runs on the
    spatial axes without any permute.
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
        self._decay_cache: Dict[tuple, Tensor] = {}

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

    def _decay_key(self, fve, size, device, dtype):
        src = [self.k_pre, self.k_pad] if self.deploy else [fve, self.to_k.weight, self.to_k.bias]
        # Tensor versions change on every in-place update (optimizer steps,
        # load_state_dict), which invalidates the cached decay.
        return (size, device, dtype) + tuple((t.data_ptr(), t._version) for t in src)

    def decay(self, fve: Optional[Tensor], size: Tuple[int, int],
              interp: str = 'bilinear') -> Tensor:
        """``exp(-K * lam)`` at ``size``, shape ``(H, W, C)``, float32."""

        def compute():
            k = self.k_preactivation(fve)
            pad = None
            if interp == 'zero_pad':
                # FVE zero-padding == padding to_k(FVE) with to_k's bias.
                pad = self.k_pad if self.deploy else self.to_k.bias
            k = F.relu(resize_embedding(k, size, interp, pad))
            return heat_decay(k)

        if self.training or torch.compiler.is_compiling() or torch.is_grad_enabled() and any(
                p.requires_grad for p in self._k_sources(fve)):
            # (torch.compile traces the computation into the graph instead)
            return compute()
        ref = self.k_pre if self.deploy else fve
        key = self._decay_key(fve, size, ref.device, ref.dtype) + (interp, )
        cached = self._decay_cache.get(key)
        if cached is None:
            # Outside inference mode: a frozen stage in eval mode may be part
            # of a graph that saves the decay for backward.
            with torch.inference_mode(False), torch.no_grad():
                cached = compute()
            # One entry per resolution; entries of outdated weights are dropped.
            self._decay_cache = {
                k: v for k, v in self._decay_cache.items() if k[3:] == key[3:]
            }
            self._decay_cache[key] = cached
        return cached

    def _k_sources(self, fve):
        if self.deploy:
            return []
        return [fve, self.to_k.weight, self.to_k.bias]

    def clear_cache(self):
        self._decay_cache = {}

    def train(self, mode: bool = True):
        self.clear_cache()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_cache()
        return super()._load_from_state_dict(*args, **kwargs)

    # -- forward ---------------------------------------------------------------
    def _mix(self, x: Tensor, sce: Optional[Tensor]) -> Tensor:
        """Correction learner (``LN(ReLU(x + SCE))``) and depth-wise conv."""
        if self.use_sce:
            x = x + sce
            x = self.norm1(F.relu(x, inplace=_lean_inference()))
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
        if _lean_inference():
            return self._forward_lean(x, decay, sce)
        u, z = self.pre_heat(x, sce)
        return self.post_heat(self.heat(u, decay), z)

    def _forward_lean(self, x: Tensor, decay: Tensor, sce: Optional[Tensor]) -> Tensor:
        """Inference: the same maths with every C x H x W buffer freed (or
        reused in place) as early as possible -- at 1024 px each one is 32 MiB
        in the first stage. ``u`` is never bound to a name here, so the DCT
        frees it after its first axis."""
        t = self._mix(x, sce)
        z = self._in_proj(t, 1)
        box = [self._in_proj(t, 0)]
        del t
        # pop(): dct2d holds the only reference to u and frees it early
        spec = dct2d(box.pop(), channels_last=True, impl=self.dct_impl)
        spec.mul_(decay.to(spec.dtype))
        box.append(spec)
        del spec
        u = idct2d(box.pop(), channels_last=True, impl=self.dct_impl)
        n = self.out_norm(u)
        del u
        n.mul_(F.silu(z, inplace=True))
        del z
        return linear(n, self.out_linear.weight, self.out_linear.bias)


class RSVHeatMlp(BaseModule):
    """Per-pixel MLP C -> 4C -> C (the 1x1 convs of the paper as Linears)."""

    def __init__(self, dims: int, hidden_dims: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        h = linear(x, self.fc1.weight, self.fc1.bias, activation='gelu')
        return linear(h, self.fc2.weight, self.fc2.bias)


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
        self.with_cp = _cp_mode(with_cp)
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

    def _residual(self, x: Tensor, y: Tensor, gamma: Optional[Tensor],
                  out: Optional[Tensor] = None) -> Tensor:
        """``x + DropPath(gamma * y)``; one fused pass when DropPath is off."""
        if isinstance(self.drop_path, nn.Identity) or not self.training:
            if out is None and _lean_inference():
                out = y  # inference: y is a temporary of this block, reuse it
            if gamma is None:
                return torch.add(x, y, out=out)
            return torch.addcmul(x, y, gamma, out=out)
        y = y if gamma is None else y * gamma
        return x + self.drop_path(y)

    def _mlp_branch(self, x: Tensor) -> Tensor:
        if self.norm_position == 'post':
            return self.norm2(self.mlp(x))
        return self.mlp(self.norm2(x))

    def _forward(self, x, decay: Tensor, sce: Optional[Tensor]) -> Tensor:
        if isinstance(x, list):
            x = x.pop()  # see RSVHeatStage.forward
        if self.norm_position == 'post':
            x = self._residual(x, self.norm1(self.op(x, decay, sce)), self.gamma1)
        else:
            x = self._residual(x, self.op(self.norm1(x), decay, sce), self.gamma1)
        hidden_row = x.shape[0] * x.shape[2] * self.mlp.fc1.out_features * x.element_size()
        if not _lean_inference() or hidden_row * x.shape[1] <= self.mlp_chunk_bytes:
            return self._residual(x, self._mlp_branch(x), self.gamma2)
        # Inference on large maps: the MLP is per pixel, so run it on bands of
        # rows. The 4C-wide hidden activations (the largest tensors of the
        # network) then never exist for the whole map at once.
        out = torch.empty_like(x)
        rows = max(1, self.mlp_chunk_bytes // hidden_row)
        for r in range(0, x.shape[1], rows):
            xs = x[:, r:r + rows]
            self._residual(xs, self._mlp_branch(xs), self.gamma2, out=out[:, r:r + rows])
        return out

    # Largest MLP hidden activation (bytes) built at once in inference;
    # larger maps run the MLP on bands of rows (16 MiB: e.g. 32 rows of a
    # 256 px wide, C=128 map).
    mlp_chunk_bytes = 16 << 20

    def forward(self, x, decay: Tensor, sce: Optional[Tensor] = None) -> Tensor:
        """``x``: (B, H, W, C), or a one-element list holding it (the block
        then holds the only reference and frees it after the first residual)."""
        if isinstance(x, list):
            if self.with_cp and x[-1].requires_grad:
                x = x.pop()
            else:
                return self._forward(x, decay, sce)
        if self.with_cp and x.requires_grad:
            if self.with_cp == 'selective':
                return cp.checkpoint(self._forward, x, decay, sce, use_reentrant=False,
                                     context_fn=_selective_checkpoint_context)
            return cp.checkpoint(self._forward, x, decay, sce, use_reentrant=False)
        return self._forward(x, decay, sce)


class RSVHeatStage(BaseModule):
    """Blocks of one stage sharing its FVE (and SCE), then the downsample.

    Args:
        depth (int): Number of blocks.
        dims (int): Channels.
        grid (tuple[int, int]): FVE/SCE grid, the feature size at
            ``pretrain_img_size``.
        downsample (bool): Append a stride-2 downsample (C -> 2C).
        drop_paths (Sequence[float]): Drop-path rate of each block.
        embed_interp (str): How FVE/SCE follow the run-time feature size:
            ``'bilinear'`` (default), ``'bicubic'`` or ``'zero_pad'`` (vHeat's
            high-frequency zero padding of the FVE; the spatial SCE is then
            resized bilinearly).
    """

    def __init__(self, depth: int, dims: int, grid: Tuple[int, int], downsample: bool,
                 drop_paths: Sequence[float], use_sce: bool = True,
                 norm_position: str = 'post', layer_scale_init_value=1e-5,
                 mlp_ratio: float = 4., with_cp: Union[bool, str] = False,
                 dct_impl: str = 'auto',
                 embed_interp: str = 'bilinear', deploy: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.grid = tuple(grid)
        self.embed_interp = embed_interp
        self.deploy = deploy
        if not deploy:
            self.fve = nn.Parameter(torch.zeros(grid[0], grid[1], dims))
        self.sce = nn.Parameter(torch.zeros(grid[0], grid[1], dims)) if use_sce else None
        self.blocks = nn.ModuleList([
            RSVHeatBlock(dims, use_sce, norm_position, layer_scale_init_value, mlp_ratio,
                         drop_paths[i], with_cp, dct_impl, deploy, grid) for i in range(depth)
        ])
        self.downsample = RSVHeatDownsample(dims, 2 * dims) if downsample else None
        self._sce_cache: Dict[tuple, Tensor] = {}

    def forward(self, x) -> Tuple[Tensor, Tensor]:
        """``x``: (B, H, W, C), or a one-element list holding it.

        Returns (stage output, downsampled or None). Activations are handed
        on in a list so that the callee holds the only reference (a module
        call keeps its arguments alive until it returns): each block's input
        is freed as soon as the block no longer needs it. In inference at
        1024 px that is 32 MiB per buffer in the first stage.
        """
        box = x if isinstance(x, list) else [x]
        del x
        size = (box[-1].shape[1], box[-1].shape[2])
        dtype = box[-1].dtype
        sce = self.resized_sce(size, dtype) if self.sce is not None else None
        fve = None if self.deploy else self.fve
        for block in self.blocks:
            decay = block.op.decay(fve, size, self.embed_interp)
            box.append(block(box, decay, sce))
        x = box.pop()
        down = self.downsample(x) if self.downsample is not None else None
        return x, down

    def resized_sce(self, size: Tuple[int, int], dtype: torch.dtype) -> Tensor:
        """The SCE at ``size``; cached in inference like the decay."""
        mode = 'bilinear' if self.embed_interp == 'zero_pad' else self.embed_interp

        def compute():
            return resize_embedding(self.sce, size, mode).to(dtype).contiguous()

        if self.training or torch.compiler.is_compiling() or (
                torch.is_grad_enabled() and self.sce.requires_grad):
            return compute()
        key = (size, dtype, self.sce.device, self.sce.data_ptr(), self.sce._version)
        cached = self._sce_cache.get(key)
        if cached is None:
            with torch.inference_mode(False), torch.no_grad():
                cached = compute()
            self._sce_cache = {k: v for k, v in self._sce_cache.items() if k[3:] == key[3:]}
            self._sce_cache[key] = cached
        return cached

    def train(self, mode: bool = True):
        self._sce_cache = {}
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._sce_cache = {}
        return super()._load_from_state_dict(*args, **kwargs)

    def switch_to_deploy(self):
        if self.deploy:
            return
        with torch.no_grad():
            for block in self.blocks:
                op = block.op
                k_pre = op.to_k(self.fve).detach().clone()
                k_pad = op.to_k.bias.detach().clone()
                del op.to_k
                op.register_buffer('k_pre', k_pre)
                op.register_buffer('k_pad', k_pad)
                op.deploy = True
                op.clear_cache()
        del self.fve
        self.deploy = True


@MODELS.register_module()
class RSVHeat(BaseModule):
    """RS-vHeat backbone (Hu et al., ICCV 2025), built on vHeat (CVPR 2025).

    Args:
        arch (str | dict): ``'tiny'`` (2-2-6-2, C=96), ``'small'``
            (2-2-18-2, C=96) or ``'base'`` (2-2-18-2, C=128, RS-vHeat-B), or a
            dict with ``depths`` and ``embed_dims``. Defaults to ``'base'``.
        in_channels (int | dict): Band count per modality, one stem each:
            ``dict(optical=3, sar=1)`` by default; an int means a single
            ``optical`` stem. Any band counts (e.g. ``dict(ms=13)``) work.
        pretrain_img_size (int | tuple): Image size the FVE/SCE grids are
            defined at (grid = size / 4 / 2^i per stage). Defaults to 224.
        default_modality (str, optional): Stem used when ``forward`` is not
            told one. If None, the modality is inferred from the band count
            when that is unambiguous.
        use_sce (bool): Spatial correction embedding + learner (RS-vHeat).
            False gives vHeat's block. Defaults to True.
        norm_position (str): ``'post'`` (res-post-norm, RS-vHeat) or
            ``'pre'`` (vHeat). Defaults to ``'post'``.
        layer_scale_init_value (float): Layer-scale init; 0/None disables.
            Defaults to 1e-5.
        mlp_ratio (float): MLP hidden ratio. Defaults to 4.
        drop_path_rate (float): Stochastic depth, rising linearly over all
            blocks. Defaults to 0.
        out_indices (Sequence[int]): Stages to output. Defaults to (0,1,2,3).
        out_norm (bool): Apply a LayerNorm to each output; False returns the
            raw stage features. Defaults to True.
        frozen_stages (int): -1 trains all; 0 freezes the stems; ``k`` also
            freezes stages ``0..k-1`` (with their embeddings, downsample and
            output norms). Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers (none by default; the
            model uses LayerNorm, which has no running statistics) in eval
            mode during training. Defaults to False.
        with_cp (bool | str): Activation checkpointing per block, for
            training on large images. ``True`` (or ``'full'``) keeps only
            each block's input and recomputes the block in backward (least
            memory: 26-41 % of the training activations for 5-26 % more time
            per step at 512-1024 px); ``'selective'`` keeps the GEMM and
            convolution outputs and recomputes only the cheap ops (56-59 %
            for at most 3 % more time). Outputs and gradients are unchanged.
            Defaults to False.
        embed_interp (str): ``'bilinear'``, ``'bicubic'`` or ``'zero_pad'``,
            see :class:`RSVHeatStage`. Defaults to ``'bilinear'``.
        dct_impl (str): How the DCTs run: ``'matmul'`` (GEMMs against
            cached bases), ``'scipy'`` (pocketfft, CPU), ``'fft'``
            (torch.fft) or ``'auto'``: pocketfft for long axes of CPU maps
            (3-5x faster than the GEMMs from 256 px feature maps), GEMMs on
            GPUs and in traced/exported graphs. Same results up to float
            rounding. Defaults to ``'auto'``.
        deploy (bool): Build in deploy mode (precomputed conductivity, no
            FVE/``to_k``), e.g. to load a deploy checkpoint. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...,
            prefix=...)`` also accepts official vHeat and RS-vHeat
            checkpoints (see :mod:`rsvheat_mm.models.backbones.convert`).

    Modality selection (which stem runs), in order of precedence:
    ``forward(x, modality=...)`` (a name, or one name per sample for a mixed
    batch whose images are zero-padded to the largest band count), the
    :meth:`use_modality` context manager, ``default_modality``, and finally
    the band count of ``x`` when exactly one stem has it. With the stock
    data preprocessors of the toolboxes the last rule does the work: load SAR
    as one band (``color_type='grayscale'``) and optical as three.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(depths=[2, 2, 6, 2], embed_dims=96)),
        **dict.fromkeys(['s', 'small'], dict(depths=[2, 2, 18, 2], embed_dims=96)),
        **dict.fromkeys(['b', 'base'], dict(depths=[2, 2, 18, 2], embed_dims=128)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 in_channels: Union[int, Dict[str, int]] = dict(optical=3, sar=1),
                 pretrain_img_size: Union[int, Tuple[int, int]] = 224,
                 default_modality: Optional[str] = None,
                 use_sce: bool = True,
                 norm_position: str = 'post',
                 layer_scale_init_value: Optional[float] = 1e-5,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: Union[bool, str] = False,
                 embed_interp: str = 'bilinear',
                 dct_impl: str = 'auto',
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'RSVHeat: arch {arch!r} is not one of '
                               f'{sorted(set(self.arch_zoo))}; pass a dict with '
                               '`depths` and `embed_dims` for a custom size.')
            arch = self.arch_zoo[arch.lower()]
        missing = {'depths', 'embed_dims'} - set(arch)
        if missing:
            raise KeyError(f'RSVHeat: custom arch needs keys {sorted(missing)}')
        self.depths = list(arch['depths'])
        self.num_stages = len(self.depths)
        base = arch['embed_dims']
        self.dims = [base * 2**i for i in range(self.num_stages)]
        self.embed_dims = base

        if isinstance(in_channels, int):
            in_channels = dict(optical=in_channels)
        if not isinstance(in_channels, dict) or not in_channels or not all(
                isinstance(v, int) and v > 0 for v in in_channels.values()):
            raise TypeError('RSVHeat: in_channels must be a positive int or a '
                            f'dict modality -> band count, got {in_channels!r}')
        self.in_channels = dict(in_channels)
        if default_modality is not None and default_modality not in self.in_channels:
            raise KeyError(f'RSVHeat: default_modality {default_modality!r} is '
                           f'not one of the stems {list(self.in_channels)}')
        self.default_modality = default_modality
        self._modality_override = None

        if embed_interp not in _INTERP_MODES:
            raise ValueError(f'RSVHeat: embed_interp must be one of {_INTERP_MODES}, '
                             f'got {embed_interp!r}')
        if dct_impl not in DCT_IMPLS:
            raise ValueError(f'RSVHeat: dct_impl must be one of {DCT_IMPLS}, got {dct_impl!r}')
        if isinstance(pretrain_img_size, int):
            pretrain_img_size = (pretrain_img_size, pretrain_img_size)
        self.pretrain_img_size = tuple(pretrain_img_size)
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        for i, idx in enumerate(out_indices):
            if idx < 0:
                out_indices[i] = self.num_stages + idx
            if not 0 <= out_indices[i] < self.num_stages:
                raise IndexError(f'RSVHeat: invalid out_indices {idx}')
        self.out_indices = out_indices
        self.out_norm = out_norm
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.use_sce = use_sce
        self.deploy = deploy

        self.stems = nn.ModuleDict(
            {m: RSVHeatStem(c, base) for m, c in self.in_channels.items()})

        total = sum(self.depths)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, total)] if total > 1 \
            else [drop_path_rate] * total
        h, w = self.pretrain_img_size
        grid = (math.ceil(h / 4), math.ceil(w / 4))
        self.stages = nn.ModuleList()
        cur = 0
        for i, depth in enumerate(self.depths):
            self.stages.append(
                RSVHeatStage(depth, self.dims[i], grid, i < self.num_stages - 1,
                             dpr[cur:cur + depth], use_sce, norm_position,
                             layer_scale_init_value, mlp_ratio, with_cp, dct_impl,
                             embed_interp, deploy))
            cur += depth
            grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.dims[i]) if out_norm else nn.Identity())
        self._freeze_stages()

    # -- weights -----------------------------------------------------------------
    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from .convert import load_pretrained_rsvheat
            load_pretrained_rsvheat(self, self.init_cfg)
            self._is_init = True
            return
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0)
        for stage in self.stages:
            if not stage.deploy:
                trunc_normal_(stage.fve, std=.02)
            if stage.sce is not None:
                trunc_normal_(stage.sce, std=.02)
            for block in stage.blocks:
                if block.gamma1 is not None:
                    nn.init.constant_(block.gamma1, block.layer_scale_init_value)
                    nn.init.constant_(block.gamma2, block.layer_scale_init_value)
                block.op.clear_cache()

    def switch_to_deploy(self):
        """Precompute each block's conductivity and drop FVE and ``to_k``.

        The SCE and everything else stay; outputs are unchanged at any
        resolution (the pre-activation ``to_k(FVE)`` is kept on its grid and
        resized as in training). The result is inference-only.
        """
        for stage in self.stages:
            stage.switch_to_deploy()
        self.deploy = True

    # -- modality ----------------------------------------------------------------
    @contextlib.contextmanager
    def use_modality(self, modality: str):
        """Run the stem of ``modality`` inside the ``with`` block."""
        if modality not in self.stems:
            raise KeyError(f'RSVHeat has no {modality!r} stem; stems: {list(self.stems)}')
        previous, self._modality_override = self._modality_override, modality
        try:
            yield self
        finally:
            self._modality_override = previous

    def _resolve_modality(self, x: Tensor, modality) -> Union[str, Sequence[str]]:
        if modality is None:
            modality = self._modality_override or self.default_modality
        if modality is None:
            bands = x.shape[1]
            matches = [m for m, c in self.in_channels.items() if c == bands]
            if len(matches) != 1:
                raise ValueError(
                    f'RSVHeat: cannot choose a stem for a {bands}-band input; stems '
                    f'{self.in_channels}. Set `default_modality`, use '
                    '`backbone.use_modality(name)` or pass `modality=`.')
            modality = matches[0]
        names = [modality] if isinstance(modality, str) else list(modality)
        for m in names:
            if m not in self.stems:
                raise KeyError(f'RSVHeat has no {m!r} stem; stems: {list(self.stems)}')
        return modality

    def _stem(self, x: Tensor, modality) -> Tensor:
        modality = self._resolve_modality(x, modality)
        if isinstance(modality, str):
            bands = self.in_channels[modality]
            if x.shape[1] < bands:
                raise ValueError(f'RSVHeat: the {modality!r} stem needs {bands} bands, '
                                 f'got an input with {x.shape[1]}')
            return self.stems[modality](x[:, :bands] if x.shape[1] != bands else x)
        if len(modality) != x.shape[0]:
            raise ValueError(f'RSVHeat: {len(modality)} modalities for a batch of {x.shape[0]}')
        out = None
        for m in dict.fromkeys(modality):
            idx = [i for i, name in enumerate(modality) if name == m]
            y = self._stem(x[idx], m)
            if out is None:
                out = y.new_empty((x.shape[0], ) + y.shape[1:])
            out[idx] = y
        return out

    # -- forward -----------------------------------------------------------------
    def _unused_stems_anchor(self, used) -> Union[Tensor, float]:
        """A zero that depends on every stem this batch does not use.

        Distributed training (DDP without ``find_unused_parameters``) fails
        when parameters get no gradient, e.g. the SAR stem while fine-tuning
        on optical images only. Adding ``0 * sum(params)`` gives them an
        exact zero gradient instead; outputs are unchanged.
        """
        used = {used} if isinstance(used, str) else set(used)
        params = [p for name, stem in self.stems.items() if name not in used
                  for p in stem.parameters() if p.requires_grad]
        if not params:
            return 0.
        return torch.stack([p.sum() for p in params]).sum() * 0.

    def forward(self, x: Tensor, modality=None) -> Tuple[Tensor, ...]:
        """Features of the stages in ``out_indices``, each ``(B, C_i, H_i, W_i)``.

        Args:
            x (Tensor): ``(B, bands, H, W)``, any H and W.
            modality (str | Sequence[str], optional): Stem to use, for the
                whole batch or per sample. See the class docstring.
        """
        modality = self._resolve_modality(x, modality)
        x = self._stem(x, modality)
        if self.training and torch.is_grad_enabled():
            x = x + self._unused_stems_anchor(modality)
        outs = []
        box = [x]
        del x
        for i, stage in enumerate(self.stages):
            y, x = stage(box)  # the stage pops its input from the list
            box.append(x)
            del x
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(y).permute(0, 3, 1, 2).contiguous())
            del y
        return tuple(outs)

    # -- training behaviour --------------------------------------------------------
    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            self.stems.eval()
            for p in self.stems.parameters():
                p.requires_grad = False
        for i in range(min(self.frozen_stages, self.num_stages)):
            modules = [self.stages[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
            for m in modules:
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
