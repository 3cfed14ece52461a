"""RS-vHeat backbone: heat conduction instead of attention.

One class serves mmpretrain, mmsegmentation, mmdetection and mmrotate: it
takes ``(B, bands, H, W)`` images of any (also non-square) size and returns
the stage features at strides 4/8/16/32 as ``(B, C_i, H_i, W_i)`` tensors.
This file holds the stages and the backbone; the blocks, the heat
conduction layer and its maths are in ``models/layers``.
"""
import contextlib
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake
from torch.nn.modules.batchnorm import _BatchNorm

from rsvheat_mm.registry import MODELS
from ..layers.embedding import INTERP_MODES, GridRows, resize_embedding
from ..layers.fused_ops import capturing_graph
from ..layers.hco_layer import cacheable, hooks_registered, lean_inference
from ..layers.heat_conduction import DCT_IMPLS
from ..layers.host_memory import trim_host_memory
from ..layers.resolution_cache import ResolutionCache
from ..layers.rsvheat_block import (RSVHeatBlock, RSVHeatDownsample, RSVHeatMlp,  # noqa: F401
                                    RSVHeatStem)
from .convert import load_pretrained_rsvheat


def _check_finite(x: Tensor) -> None:
    if not x.is_floating_point() or x.device.type == 'meta' or is_fake(x):
        return  # (fake/meta tensors: shape propagation has no values to check)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f'RSVHeat: the input has {bad} NaN/Inf values of {x.numel()} (shape '
            f'{tuple(x.shape)}). The heat conduction is global, so one non-finite pixel '
            'would make every output feature NaN. Fill or mask nodata before the model '
            '(e.g. the GeoTIFF loaders\' nodata handling, or tools/infer.py, which treats '
            'NaN as nodata), or pass check_finite=False to RSVHeat to skip this check.')


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
        cache (ResolutionCache, optional): Where the decays and the resized
            SCE of eval-mode forwards are kept (the backbone shares one among
            its stages). None: nothing is kept.
        fused_training (bool): Run each block as one autograd function when
            gradients are wanted, see :meth:`RSVHeatBlock.forward_fused`.
    """

    def __init__(self, depth: int, dims: int, grid: Tuple[int, int], downsample: bool,
                 drop_paths: Sequence[float], use_sce: bool = True,
                 norm_position: str = 'post', layer_scale_init_value=1e-5,
                 mlp_ratio: float = 4., with_cp: Union[bool, str] = False,
                 dct_impl: str = 'auto',
                 embed_interp: str = 'bilinear', deploy: bool = False,
                 cache: Optional[ResolutionCache] = None, fused_training: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.grid = tuple(grid)
        self.embed_interp = embed_interp
        self.deploy = deploy
        self.cache = cache
        self.fused_training = fused_training
        if not deploy:
            self.fve = nn.Parameter(torch.zeros(grid[0], grid[1], dims))
        self.sce = nn.Parameter(torch.zeros(grid[0], grid[1], dims)) if use_sce else None
        self.blocks = nn.ModuleList([
            RSVHeatBlock(dims, use_sce, norm_position, layer_scale_init_value, mlp_ratio,
                         drop_paths[i], with_cp, dct_impl, deploy, grid) for i in range(depth)
        ])
        self.downsample = RSVHeatDownsample(dims, 2 * dims) if downsample else None

    def forward(self, x: Tensor, reuse: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """``x``: ``(B, H, W, C)``. Returns (stage output, downsampled or None).

        ``reuse``: take eval-mode decays and the resized SCE from the cache
        (the backbone decides by size, see :meth:`RSVHeat.reuse_fits`)."""
        size = (x.shape[1], x.shape[2])
        cache = self.cache if reuse else None
        sce = self.resized_sce(size, x.dtype, cache) if self.sce is not None else None
        fve = None if self.deploy else self.fve
        fused = self._use_fused(x)
        for block in self.blocks:
            if fused:
                x = self._fused_block(block, x, fve, sce)
            else:
                x = block(x, block.op.decay(fve, size, self.embed_interp, cache), sce)
        down = self.downsample(x) if self.downsample is not None else None
        return x, down

    def _use_fused(self, x: Tensor) -> bool:
        """Train with the fused block function: gradients are wanted, no graph
        is being captured, the blocks are not checkpointed selectively, and no
        hook inside the stage expects its modules to be called."""
        if not (self.fused_training and torch.is_grad_enabled()) or capturing_graph():
            return False
        if any(b.with_cp == 'selective' for b in self.blocks) or hooks_registered(self):
            return False
        return x.requires_grad or any(p.requires_grad for p in self.parameters())

    def _fused_block(self, block, x: Tensor, fve: Optional[Tensor], sce: Optional[Tensor]):
        op = block.op
        k_pre = op.k_preactivation(fve)
        k_pad = None
        if self.embed_interp == 'zero_pad':
            k_pad = op.k_pad if op.deploy else op.to_k.bias
        if block.with_cp == 'full' and torch.is_grad_enabled():
            return cp.checkpoint(block.forward_fused, x, k_pre, k_pad, sce, self.embed_interp,
                                 use_reentrant=False)
        return block.forward_fused(x, k_pre, k_pad, sce, self.embed_interp)

    def forward_owned(self, owner: list, reuse: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """:meth:`forward` for lean inference with no hooks registered: the
        stage takes its input out of ``owner`` and hands each block the only
        reference to its input (see :meth:`RSVHeatBlock.forward_owned`).

        With ``reuse`` the decays and the resized SCE come whole from the
        cache; without, they are computed band by band inside each block and
        never exist whole (large inputs, see :meth:`RSVHeat.forward`)."""
        size = (owner[-1].shape[1], owner[-1].shape[2])
        fve = None if self.deploy else self.fve
        if reuse:
            sce = self.resized_sce(size, owner[-1].dtype, self.cache) \
                if self.sce is not None else None
        else:
            mode = 'bilinear' if self.embed_interp == 'zero_pad' else self.embed_interp
            sce = None if self.sce is None else GridRows(self.sce, size, mode)
        for block in self.blocks:
            if reuse:
                decay = block.op.decay(fve, size, self.embed_interp, self.cache)
            else:
                decay = block.op.decay_rows(fve, size, self.embed_interp)
            owner.append(block.forward_owned(owner, decay, sce))
        x = owner.pop()
        down = self.downsample(x) if self.downsample is not None else None
        return x, down

    def resized_sce(self, size: Tuple[int, int], dtype: torch.dtype,
                    cache: Optional[ResolutionCache] = None) -> Tensor:
        """The SCE at ``size``, reused from ``cache`` like the decay."""
        mode = 'bilinear' if self.embed_interp == 'zero_pad' else self.embed_interp

        def compute():
            return resize_embedding(self.sce, size, mode).to(dtype).contiguous()

        if cache is None or not cacheable(self, [self.sce]):
            return compute()
        key = (id(self), 'sce', tuple(size), dtype, self.sce.device)
        return cache.get(key, [self.sce], compute)

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
        del self.fve
        self.deploy = True
        if self.cache is not None:
            self.cache.clear()


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
            training on images too large even for the fused blocks (see
            ``fused_training``). ``True`` (or ``'full'``) keeps only each
            block's input and recomputes the block in backward (least memory,
            more time); ``'selective'`` runs plain autograd and keeps the GEMM
            and convolution outputs, recomputing only the cheap ops. Outputs
            and gradients are unchanged; docs/benchmark.md has the measured
            trade-offs. Defaults to False.
        embed_interp (str): ``'bilinear'``, ``'bicubic'`` or ``'zero_pad'``,
            see :class:`RSVHeatStage`. Defaults to ``'bilinear'``.
        dct_impl (str): How the DCTs run: ``'matmul'`` (GEMMs against
            cached bases), ``'scipy'`` (pocketfft, CPU), ``'fft'``
            (torch.fft) or ``'auto'``: pocketfft for long axes of CPU maps
            (where it beats the GEMMs, see docs/benchmark.md), GEMMs on GPUs
            and in traced/exported graphs. Same results up to float rounding.
            Defaults to ``'auto'``.
        deploy (bool): Build in deploy mode (precomputed conductivity, no
            FVE/``to_k``), e.g. to load a deploy checkpoint. Defaults to False.
        cache_mb (float): Memory budget (MiB) for reusing the weight-only
            tensors of eval-mode forwards -- each block's heat decay
            ``exp(-K * lam)`` and each stage's resized SCE -- from one
            forward to the next at the same input size. An input size is
            reused only if all its tensors fit the budget together (e.g.
            224-448 px for RS-vHeat-B at the default); least recently used
            sizes are dropped beyond it, so any stream of sizes holds at
            most this much. Larger inputs compute the decay and SCE band by
            band inside each block, an ``exp`` that is cheap next to the
            GEMMs, and never hold them whole. 0 disables reuse. See
            :meth:`set_cache_limit`, :meth:`clear_cache`. Defaults to 64.
        check_finite (bool): Refuse inputs with NaN/Inf values (the DCT is
            global: one NaN pixel would make every feature NaN). Skipped
            while a graph is traced or compiled. Defaults to True.
        fused_training (bool): When gradients are wanted, run each block as
            one autograd function that saves 4-5 activation-sized tensors
            for backward instead of about 25 and rebuilds the rest (see
            :mod:`~rsvheat_mm.models.layers.block_autograd`); same outputs
            and gradients. False uses plain autograd (e.g. for double
            backward). Blocks inside stages with forward hooks, or with
            ``with_cp='selective'``, use plain autograd. Defaults to True.
        release_memory (bool): After a CPU inference forward too large to
            reuse its decays (see ``cache_mb``), give the freed heap back to
            the OS (glibc ``malloc_trim``, see
            :mod:`~rsvheat_mm.models.layers.host_memory`), so the process
            holds what it uses, not the high-water mark of earlier large
            forwards. Defaults to True.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...,
            prefix=...)`` also accepts official vHeat and RS-vHeat
            checkpoints (see :mod:`rsvheat_mm.models.backbones.convert`).
            Checkpoints of another ``pretrain_img_size`` load on every path
            (``init_cfg``, ``load_from``, ``load_checkpoint``,
            ``load_state_dict``): the FVE/SCE grids are resized as they load.

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
                 cache_mb: float = 64,
                 check_finite: bool = True,
                 fused_training: bool = True,
                 release_memory: bool = True,
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

        if embed_interp not in INTERP_MODES:
            raise ValueError(f'RSVHeat: embed_interp must be one of {INTERP_MODES}, '
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
        self.check_finite = check_finite
        self.release_memory = release_memory
        if cache_mb < 0:
            raise ValueError(f'RSVHeat: cache_mb must be >= 0, got {cache_mb}')
        self.resolution_cache = ResolutionCache(int(cache_mb * 2**20))

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
                             embed_interp, deploy, cache=self.resolution_cache,
                             fused_training=fused_training))
            cur += depth
            grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.dims[i]) if out_norm else nn.Identity())
        self._freeze_stages()
        # Every loading path (init_cfg, load_from, mmengine.load_checkpoint,
        # load_state_dict) goes through _load_from_state_dict, which runs this.
        self._register_load_state_dict_pre_hook(self._resize_grids_on_load)

    # -- weights -----------------------------------------------------------------
    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
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
        self.clear_cache()

    def _resize_grids_on_load(self, state_dict, prefix, *args):
        """Resize checkpoint FVE/SCE grids (and a deploy model's ``k_pre``) to
        this model's grid, as mmpretrain's ViT resizes ``pos_embed``: a
        checkpoint built for another ``pretrain_img_size`` then loads
        correctly whichever way it is loaded."""
        for i, stage in enumerate(self.stages):
            mode = stage.embed_interp
            names = [('fve', mode), ('sce', 'bilinear' if mode == 'zero_pad' else mode)]
            names += [(f'blocks.{j}.op.k_pre', 'bilinear') for j in range(len(stage.blocks))]
            for name, interp in names:
                key = f'{prefix}stages.{i}.{name}'
                value = state_dict.get(key)
                if not torch.is_tensor(value) or value.dim() != 3:
                    continue
                grid = stage.grid
                if tuple(value.shape[:2]) != grid and value.shape[2] == self.dims[i]:
                    state_dict[key] = resize_embedding(value, grid, interp)
                    if not name.startswith('blocks'):
                        print_log(f'RSVHeat: resized {key} from {tuple(value.shape[:2])} to '
                                  f'{grid} ({interp})', logger='current')

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer depth of a parameter, for layer-wise learning-rate decay
        (mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` and
        :class:`RSVHeatLayerDecayOptimWrapperConstructor`).

        ``stems.*`` -> 0; ``stages.<i>.blocks.<j>.*`` -> ``sum(depths[:i]) + j
        + 1``; the stage's shared ``fve``/``sce`` take the depth of its first
        block (their earliest user); ``stages.<i>.downsample.*`` that of the
        stage's last block (as mmpretrain's Swin does); the output norms and
        anything outside the backbone the last depth, like the heads.

        Args:
            param_name (str): Parameter name, e.g. ``'backbone.stems.optical.conv1.weight'``.
            prefix (str): The backbone's prefix in ``param_name``, e.g. ``'backbone.'``.

        Returns:
            tuple[int, int]: ``(layer_depth, num_layers)`` with
            ``num_layers = sum(depths) + 2``.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stems':
            return 0, num_layers
        if parts[0] == 'stages' and len(parts) > 2:
            stage = int(parts[1])
            offset = sum(self.depths[:stage])
            if parts[2] == 'blocks':
                return offset + int(parts[3]) + 1, num_layers
            if parts[2] == 'downsample':
                return offset + self.depths[stage], num_layers
            if parts[2] in ('fve', 'sce'):
                return offset + 1, num_layers
        return num_layers - 1, num_layers

    # -- cost facts (benchmarks, FLOP tables) -------------------------------------
    def feature_sizes(self, img_size: Tuple[int, int]) -> list:
        """``(H_i, W_i)`` of each stage's feature map for an ``img_size`` input
        (every stride-2 3x3 convolution with padding 1 gives ``ceil(n / 2)``)."""
        h, w = img_size
        h, w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
        sizes = []
        for _ in self.stages:
            sizes.append((h, w))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return sizes

    def transform_flops(self, img_size: Tuple[int, int], batch: int = 1,
                        mode: str = 'infer', device='cpu',
                        dtype: torch.dtype = torch.float32) -> int:
        """FLOPs of the heat conduction's DCTs in one step, as the blocks run
        them: per transform and axis of length ``L`` on a ``(B, H, W, C)`` map,
        ``2*B*H*W*C*L`` on axes done as GEMMs and ``2.5*B*H*W*C*log2(L)`` on
        axes done by pocketfft (the formula registered for
        ``FlopCounterMode``), with each axis's implementation chosen as in
        :func:`~rsvheat_mm.models.layers.heat_conduction.axis_impl`.

        Transforms per block and step: ``'infer'`` 2 (DCT, IDCT);
        ``'train'`` with ``fused_training``: 5 (3 in backward: rebuilding
        ``v``, ``DCT(dL/dv)`` and the IDCT of the input gradient), 7 with
        ``with_cp=True``; with plain autograd: 4 (backward of a transform is
        its adjoint), plus a recomputed forward for pocketfft axes under
        ``with_cp='selective'`` (it keeps GEMM outputs only). ``dtype`` is
        the DCT input's (e.g. ``torch.bfloat16`` under CPU autocast, where
        pocketfft, fp32-only, gives way to GEMMs).
        """
        from ..layers.heat_conduction import axis_impl
        if mode not in ('infer', 'train'):
            raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
        probe = torch.empty(0, device=device, dtype=dtype)
        total = 0.
        for (h, w), stage, dims in zip(self.feature_sizes(img_size), self.stages, self.dims):
            for block in stage.blocks:
                kinds = {n: axis_impl(n, probe, block.op.dct_impl) for n in (h, w)}
                if mode == 'infer':
                    count = dict.fromkeys(('matmul', 'scipy', 'fft'), 2)
                elif stage.fused_training and block.with_cp != 'selective':
                    count = dict.fromkeys(('matmul', 'scipy', 'fft'),
                                          7 if block.with_cp == 'full' else 5)
                else:
                    count = dict(matmul=4, scipy=4, fft=4)
                    if block.with_cp == 'selective':
                        count.update(scipy=6, fft=6)
                points = batch * h * w * dims
                for n in (h, w):
                    kind = kinds[n]
                    if n < 2:
                        per = 2. * n
                    elif kind == 'matmul':
                        per = 2. * n
                    elif kind == 'scipy':
                        per = 2.5 * math.log2(n)
                    else:  # torch.fft: one complex FFT of length n per line
                        per = 5. * math.log2(n)
                    total += count[kind] * points * per
        return int(round(total))

    # -- reuse between forwards ---------------------------------------------------
    def reuse_bytes(self, feature_size: Tuple[int, int]) -> int:
        """Bytes of every decay and resized SCE for a stride-4 feature map of
        ``feature_size``: what reusing them between forwards would keep."""
        h, w = feature_size
        total = 0
        for stage, dims in zip(self.stages, self.dims):
            total += h * w * dims * 4 * (len(stage.blocks) + (stage.sce is not None))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return total

    def reuse_fits(self, feature_size: Tuple[int, int]) -> bool:
        """Whether the decays and SCE of this size are reused between
        inference forwards: only when all of them fit ``cache_mb`` together.
        Larger inputs compute them band by band inside the blocks instead, so
        they never exist whole (at 1024 px they would weigh as much again as
        the whole forward's activations)."""
        return self.reuse_bytes(tuple(feature_size)) <= self.resolution_cache.max_bytes

    def clear_cache(self):
        """Drop every decay and resized SCE kept from eval-mode forwards."""
        self.resolution_cache.clear()

    def set_cache_limit(self, mb: float):
        """Set the memory budget of :attr:`resolution_cache` in MiB (0: keep
        nothing); entries beyond it are dropped at once."""
        if mb < 0:
            raise ValueError(f'RSVHeat.set_cache_limit: mb must be >= 0, got {mb}')
        self.resolution_cache.max_bytes = int(mb * 2**20)

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
        if self.check_finite and not capturing_graph():
            _check_finite(x)
        modality = self._resolve_modality(x, modality)
        x = self._stem(x, modality)
        if self.training and torch.is_grad_enabled():
            x = x + self._unused_stems_anchor(modality)
        if lean_inference() and not hooks_registered(self):
            owner = [x]
            del x  # the stages free it as soon as it is used
            return self._forward_owned(owner)
        outs = []
        reuse = self.reuse_fits(x.shape[1:3])
        for i, stage in enumerate(self.stages):
            y, x = stage(x, reuse=reuse)
            if i in self.out_indices:
                outs.append(self._output(i, y))
        return tuple(outs)

    def _output(self, i: int, y: Tensor) -> Tensor:
        return getattr(self, f'norm{i}')(y).permute(0, 3, 1, 2).contiguous()

    def _forward_owned(self, owner: list) -> Tuple[Tensor, ...]:
        """Lean inference: each stage and block receives the only reference
        to its input and frees it as soon as it is used (a module call would
        keep its arguments alive until it returns), and residuals are added
        in place into the branch outputs. Used only when no forward hook is
        registered inside the backbone, where nothing can observe the reuse;
        same results as the module calls."""
        outs = []
        reuse = self.reuse_fits(owner[-1].shape[1:3])
        device = owner[-1].device
        for i, stage in enumerate(self.stages):
            y, down = stage.forward_owned(owner, reuse)
            owner.append(down)
            del down
            if i in self.out_indices:
                outs.append(self._output(i, y))
            del y
        if not reuse and self.release_memory and device.type == 'cpu':
            trim_host_memory()
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
        if mode:
            self.clear_cache()  # nothing is reused in training
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
