"""Pixel decoder of RS-vHeat pretraining: stage-3 + stage-4 features -> image.

The spec's L_spa reconstructs the input from the (fused) stage-3 and stage-4
features "upsampled to the input size". Concatenating two deep maps at full
resolution would cost ``(4C + 8C) * H * W`` channels of activations; instead
the decoder merges them at stride 16 (FPN-style lateral 1x1 convs and a
bilinear upsample of stage 4) and then doubles the resolution step by step
(bilinear x2 + 3x3 conv, channels halved) up to stride 1, with a final
resize to the exact input size (any H, W). One 1x1 output conv per
modality maps to that modality's band count, so optical, SAR (or any other
stem) share the decoder body in a mixed batch.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from rsvheat_mm.registry import MODELS

__all__ = ['RSVHeatReconstructionDecoder']


@MODELS.register_module()
class RSVHeatReconstructionDecoder(BaseModule):
    """Reconstruct the input image from coarse (fused) features.

    Args:
        in_channels (Sequence[int]): Channels of the input features, finest
            first (e.g. ``(4C, 8C)`` for stages 3 and 4).
        out_channels (int | dict[str, int]): Bands to predict, per modality
            (e.g. ``dict(optical=3, sar=1)``); an int means one
            ``'optical'`` head.
        in_stride (int): Stride of the finest input feature (16 for stage
            3); sets the number of x2 upsampling steps (log2). Defaults to 16.
        channels (int): Channels after merging the inputs. Defaults to 256.
        min_channels (int): Floor of the halved channels. Defaults to 32.
        norm_cfg (dict, optional): Norm of the conv blocks. Defaults to
            GroupNorm with 8 groups (batch-independent: pretraining batches
            mix modalities and pairs of varying count).
        act_cfg (dict): Activation. Defaults to GELU.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Union[int, Dict[str, int]] = dict(optical=3, sar=1),
                 in_stride: int = 16,
                 channels: int = 256,
                 min_channels: int = 32,
                 norm_cfg: Optional[dict] = dict(type='GN', num_groups=8),
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        name = self.__class__.__name__
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        if not in_channels:
            raise ValueError(f'{name}: in_channels is empty')
        if isinstance(out_channels, int):
            out_channels = dict(optical=out_channels)
        if not out_channels or not all(isinstance(v, int) and v > 0
                                       for v in out_channels.values()):
            raise ValueError(f'{name}: out_channels must map modality -> band count, '
                             f'got {out_channels!r}')
        steps = math.log2(in_stride)
        if in_stride < 1 or steps != int(steps):
            raise ValueError(f'{name}: in_stride must be a power of two, got {in_stride}')
        widths = [max(channels // 2**i, min_channels) for i in range(int(steps) + 1)]
        if norm_cfg is not None and norm_cfg.get('type') == 'GN':
            bad = [w for w in widths if w % norm_cfg.get('num_groups', 1)]
            if bad:
                raise ValueError(f'{name}: GroupNorm num_groups={norm_cfg["num_groups"]} does '
                                 f'not divide the decoder widths {bad}; change channels, '
                                 'min_channels or norm_cfg.num_groups')
        self.in_channels = list(in_channels)
        self.out_channels = dict(out_channels)

        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in self.in_channels)
        self.merge = ConvModule(channels, widths[0], 3, padding=1, norm_cfg=norm_cfg,
                                act_cfg=act_cfg)
        self.ups = nn.ModuleList(
            ConvModule(widths[i], widths[i + 1], 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for i in range(len(widths) - 1))
        self.heads = nn.ModuleDict(
            {m: nn.Conv2d(widths[-1], bands, 1) for m, bands in self.out_channels.items()})

    def forward(self, feats: Sequence[Tensor], size: Tuple[int, int],
                modality: Union[str, Sequence[str]] = 'optical') -> Tensor:
        """Reconstruct images of ``size``.

        Args:
            feats (Sequence[Tensor]): ``(B, C_i, H_i, W_i)``, finest first.
            size (tuple[int, int]): Output height and width.
            modality (str | Sequence[str]): One name, or one per sample.

        Returns:
            Tensor: ``(B, max_bands, H, W)``; a sample whose modality has
            fewer bands than ``max_bands`` has zeros in the remaining ones.
        """
        if len(feats) != len(self.laterals):
            raise ValueError(f'{self.__class__.__name__}: built for {len(self.laterals)} '
                             f'inputs, got {len(feats)}')
        x = self.laterals[0](feats[0])
        for lateral, feat in zip(self.laterals[1:], feats[1:]):
            x = x + F.interpolate(lateral(feat), size=x.shape[-2:], mode='bilinear',
                                  align_corners=False)
        x = self.merge(x)
        for up in self.ups:
            x = up(F.interpolate(x, scale_factor=2., mode='bilinear', align_corners=False))
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)

        names = [modality] * x.shape[0] if isinstance(modality, str) else list(modality)
        if len(names) != x.shape[0]:
            raise ValueError(f'{self.__class__.__name__}: {len(names)} modalities for a '
                             f'batch of {x.shape[0]}')
        unknown = sorted(set(names) - set(self.heads))
        if unknown:
            raise KeyError(f'{self.__class__.__name__}: no output head for {unknown}; '
                           f'heads: {list(self.heads)}')
        if len(set(names)) == 1:
            return self.heads[names[0]](x)
        bands = max(self.out_channels[m] for m in names)
        out = x.new_zeros((x.shape[0], bands) + x.shape[-2:])
        for m in dict.fromkeys(names):
            idx = torch.tensor([i for i, n in enumerate(names) if n == m], device=x.device)
            out[idx, :self.out_channels[m]] = self.heads[m](x[idx])
        return out
