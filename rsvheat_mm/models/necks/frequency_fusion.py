"""``fuse_frequency``: fusion of low- and high-frequency-view features.

RS-vHeat's pretraining feeds the low-frequency and the high-frequency view
of an image through the shared encoder and fuses the two feature maps of
each stage (the released code only hints at it; the design is open in the
spec). Chosen here: a per-pixel, per-channel gate

    g = sigmoid(Conv1x1([low, high]))
    fused = g * low + (1 - g) * high

so the network decides, location by location and channel by channel, how
much global structure and how much detail to pass on. The gate starts at
0.5 everywhere (zero-initialised conv), i.e. the plain average of the two
views' features, and the module is cheap (one 1x1 conv per stage).
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from rsvheat_mm.registry import MODELS

__all__ = ['RSVHeatFrequencyFusion']


@MODELS.register_module()
class RSVHeatFrequencyFusion(BaseModule):
    """Gated fusion of each stage's low- and high-frequency features.

    Args:
        in_channels (Sequence[int]): Channels of each fused stage, in the
            order the features are passed (e.g. ``(4C, 8C)`` for stages 3
            and 4 of an RS-vHeat with ``embed_dims=C``).
        init_cfg (dict, optional): Initialisation config. The default
            zero-initialises the gates (g = 0.5).
    """

    def __init__(self, in_channels: Sequence[int], init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(in_channels, int):
            in_channels = [in_channels]
        if not in_channels or not all(isinstance(c, int) and c > 0 for c in in_channels):
            raise ValueError(f'{self.__class__.__name__}: in_channels must be positive ints, '
                             f'got {in_channels!r}')
        self.in_channels = list(in_channels)
        self.gates = nn.ModuleList(nn.Conv2d(2 * c, c, 1) for c in self.in_channels)

    def init_weights(self):
        super().init_weights()
        if self.init_cfg is None:
            for gate in self.gates:
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)

    def forward(self, low_feats: Sequence[Tensor],
                high_feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Fuse ``low_feats[i]`` and ``high_feats[i]``, both ``(B, C_i, H_i, W_i)``."""
        if len(low_feats) != len(self.gates) or len(high_feats) != len(self.gates):
            raise ValueError(f'{self.__class__.__name__}: built for {len(self.gates)} stages, '
                             f'got {len(low_feats)} low and {len(high_feats)} high features')
        outs = []
        for gate, low, high in zip(self.gates, low_feats, high_feats):
            if low.shape != high.shape:
                raise ValueError(f'{self.__class__.__name__}: low {tuple(low.shape)} and high '
                                 f'{tuple(high.shape)} features differ in shape')
            g = torch.sigmoid(gate(torch.cat([low, high], dim=1)))
            # high + g * (low - high) == g * low + (1 - g) * high, one op less.
            outs.append(high + g * (low - high))
        return tuple(outs)
