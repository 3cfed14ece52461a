"""Stage-wise fusion of the feature pyramids of several co-registered modalities."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from rsvheat_mm.registry import MODELS


@MODELS.register_module()
class RSVHeatModalityFusionNeck(BaseModule):
    """Fuse one feature pyramid per modality into a single pyramid.

    The modalities (e.g. optical and SAR) went through the shared RS-vHeat
    encoder (each through its own stem), so stage ``i`` of every modality has
    ``in_channels[i]`` channels at the same stride. Stage by stage the maps
    are concatenated and mixed by a 1x1 conv + norm + activation, which
    learns per location and channel how much of each modality to keep; the
    result feeds a standard decode head (UperNet) unchanged.

    Args:
        in_channels (Sequence[int]): Channels of each stage (per modality).
        num_modalities (int): Number of pyramids to fuse. Defaults to 2.
        out_channels (Sequence[int], optional): Channels of each fused stage.
            Defaults to ``in_channels``.
        norm_cfg (dict): Norm of the fusion convs. Defaults to BN.
        act_cfg (dict): Activation. Defaults to ReLU.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 num_modalities: int = 2,
                 out_channels: Optional[Sequence[int]] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if num_modalities < 2:
            raise ValueError(f'{type(self).__name__}: num_modalities must be >= 2, '
                             f'got {num_modalities}')
        self.in_channels = list(in_channels)
        self.out_channels = list(out_channels or in_channels)
        if len(self.out_channels) != len(self.in_channels):
            raise ValueError(f'{type(self).__name__}: out_channels {self.out_channels} '
                             f'and in_channels {self.in_channels} differ in length')
        self.num_modalities = num_modalities
        self.fuse = nn.ModuleList([
            ConvModule(num_modalities * c_in, c_out, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for c_in, c_out in zip(self.in_channels, self.out_channels)
        ])

    def forward(self, inputs: Sequence[Sequence[Tensor]]) -> Tuple[Tensor, ...]:
        """Fuse ``inputs[m][i]`` (modality ``m``, stage ``i``) over ``m``."""
        if len(inputs) != self.num_modalities:
            raise ValueError(f'{type(self).__name__}: expected {self.num_modalities} '
                             f'feature pyramids, got {len(inputs)}')
        for m, feats in enumerate(inputs):
            if len(feats) != len(self.in_channels):
                raise ValueError(f'{type(self).__name__}: modality {m} has {len(feats)} '
                                 f'stages, expected {len(self.in_channels)}')
        return tuple(
            fuse(torch.cat([feats[i] for feats in inputs], dim=1))
            for i, fuse in enumerate(self.fuse))
