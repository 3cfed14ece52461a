"""Siamese encoder-decoder for binary change detection (mmseg)."""
from typing import List, Optional

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from rsvheat_mm.registry import MODELS


@MODELS.register_module()
class CDSiameseEncoderDecoder(EncoderDecoder):
    """Shared backbone on both dates -> temporal fusion neck -> decoder.

    The input is the stacked pair ``(B, 2C, H, W)`` (date A first) produced by
    :class:`~rsvheat_mm.datasets.transforms.bitemporal.PackBitemporalInputs`
    and :class:`~rsvheat_mm.models.data_preprocessors.bitemporal_cd.BitemporalDataPreProcessor`.
    Both dates go through the **same** backbone in one batch of ``2B`` (the
    RS-vHeat backbone has no batch statistics, so this equals two separate
    passes), the fusion neck (e.g. :class:`~rsvheat_mm.models.necks.CDFusionNeck`)
    merges the two feature pyramids, an optional ``neck`` (e.g. FPN) follows,
    and any mmseg decode head predicts the change map -- ``num_classes=2``
    with softmax, or ``out_channels=1`` with a sigmoid and ``threshold``.
    Training, whole/sliding-window inference and post-processing are those
    of :class:`mmseg.models.EncoderDecoder`, which all go through
    :meth:`extract_feat`.

    Args:
        backbone (dict): Shared backbone, e.g. ``RSVHeat``.
        fusion_neck (dict): Neck called as ``fusion_neck(feats_a, feats_b)``.
        decode_head (dict): Decode head on the fused features.
        neck (dict, optional): Neck applied after the fusion.
        num_dates (int): Only 2 is supported (bi-temporal). Defaults to 2.
        modality (str, optional): Backbone stem for both dates (e.g.
            ``'sar'``); None lets the backbone pick by band count.
        Other args are those of :class:`mmseg.models.EncoderDecoder`.
    """

    def __init__(self,
                 backbone: ConfigType,
                 fusion_neck: ConfigType,
                 decode_head: ConfigType,
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 num_dates: int = 2,
                 modality: Optional[str] = None,
                 init_cfg: OptMultiConfig = None):
        if num_dates != 2:
            raise ValueError(f'CDSiameseEncoderDecoder is bi-temporal, got num_dates={num_dates}')
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=neck,
            auxiliary_head=auxiliary_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        self.fusion_neck = MODELS.build(fusion_neck)
        self.num_dates = num_dates
        self.modality = modality

    def extract_dates(self, inputs: Tensor):
        """Backbone features of each date: ``(feats_a, feats_b)``."""
        if inputs.dim() != 4 or inputs.shape[1] % 2:
            raise ValueError(
                f'CDSiameseEncoderDecoder expects stacked pairs (B, 2C, H, W), got '
                f'{tuple(inputs.shape)}; load pairs with LoadBitemporalImages and pack them '
                'with PackBitemporalInputs')
        batch = inputs.shape[0]
        img_a, img_b = inputs.chunk(2, dim=1)
        both = torch.cat([img_a, img_b], dim=0)
        if self.modality is None:
            feats = self.backbone(both)
        else:
            feats = self.backbone(both, modality=self.modality)
        return [f[:batch] for f in feats], [f[batch:] for f in feats]

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        feats_a, feats_b = self.extract_dates(inputs)
        x = self.fusion_neck(feats_a, feats_b)
        if self.with_neck:
            x = self.neck(x)
        return x
