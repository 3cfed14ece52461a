"""Temporal fusion neck: one multi-level feature pyramid from two dates."""
from typing import List, Optional, Sequence, Union

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from rsvheat_mm.registry import MODELS

_POLICIES = ('concat', 'diff', 'abs_diff')


@MODELS.register_module()
class CDFusionNeck(BaseModule):
    """Fuse the siamese features of dates A and B level by level.

    Policies (one for all levels or one per level):

    * ``'concat'``: ``cat([f_a, f_b])`` -- ``2C`` channels, keeps everything
      and lets the decoder learn the comparison (order-aware).
    * ``'diff'``: ``f_b - f_a`` -- ``C`` channels, signed (appear vs vanish).
    * ``'abs_diff'``: ``|f_a - f_b|`` -- ``C`` channels, symmetric in time.

    An optional ``3x3 conv -> norm -> act`` per level (``out_channels``)
    projects the fused map, e.g. back to ``C`` after ``concat`` so that a
    decode head configured for a single image can be reused unchanged.

    Args:
        in_channels (Sequence[int]): Channels of each input level (per date).
        policy (str | Sequence[str]): Fusion policy. Defaults to 'concat'.
        out_channels (int | Sequence[int], optional): Projection channels per
            level; None returns the fused maps as they are. Defaults to None.
        norm_cfg (dict): Norm of the projection. Defaults to BN.
        act_cfg (dict): Activation of the projection. Defaults to ReLU.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 policy: Union[str, Sequence[str]] = 'concat',
                 out_channels: Optional[Union[int, Sequence[int]]] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        levels = len(self.in_channels)
        policies = [policy] * levels if isinstance(policy, str) else list(policy)
        if len(policies) != levels:
            raise ValueError(f'CDFusionNeck: {len(policies)} policies for {levels} levels')
        for p in policies:
            if p not in _POLICIES:
                raise ValueError(f'CDFusionNeck: unknown policy {p!r}; choose from {_POLICIES}')
        self.policies = policies
        self.fused_channels = [c * 2 if p == 'concat' else c
                               for c, p in zip(self.in_channels, policies)]
        if out_channels is None:
            self.out_channels = list(self.fused_channels)
            self.projections = None
        else:
            outs = [out_channels] * levels if isinstance(out_channels, int) else list(out_channels)
            if len(outs) != levels:
                raise ValueError(f'CDFusionNeck: {len(outs)} out_channels for {levels} levels')
            self.out_channels = outs
            self.projections = nn.ModuleList(
                ConvModule(cin, cout, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
                for cin, cout in zip(self.fused_channels, outs))

    @staticmethod
    def fuse(feat_a: Tensor, feat_b: Tensor, policy: str) -> Tensor:
        if policy == 'concat':
            return torch.cat([feat_a, feat_b], dim=1)
        if policy == 'diff':
            return feat_b - feat_a
        return (feat_a - feat_b).abs()

    def forward(self, feats_a: Sequence[Tensor], feats_b: Sequence[Tensor]) -> List[Tensor]:
        if not len(feats_a) == len(feats_b) == len(self.in_channels):
            raise ValueError(f'CDFusionNeck: expected {len(self.in_channels)} levels per '
                             f'date, got {len(feats_a)} and {len(feats_b)}')
        outs = []
        for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
            if fa.shape != fb.shape or fa.shape[1] != self.in_channels[i]:
                raise ValueError(f'CDFusionNeck: level {i} features {tuple(fa.shape)} / '
                                 f'{tuple(fb.shape)}, expected {self.in_channels[i]} channels '
                                 'for both dates')
            x = self.fuse(fa, fb, self.policies[i])
            if self.projections is not None:
                x = self.projections[i](x)
            outs.append(x)
        return outs
