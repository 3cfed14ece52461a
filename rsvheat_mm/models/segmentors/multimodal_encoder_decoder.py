"""Encoder-decoder segmentation of co-registered modalities (optical + SAR)."""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from rsvheat_mm.models.backbones import RSVHeat
from rsvheat_mm.registry import MODELS


@MODELS.register_module()
class RSVHeatMultiModalEncoderDecoder(EncoderDecoder):
    """mmseg ``EncoderDecoder`` whose input stacks several modalities.

    The input ``(B, sum(bands), H, W)`` holds the modalities one after the
    other along the channels (as ``LoadOpticalSARPair`` produces them). Each
    modality goes through its own RSVHeat stem and the *shared* stages --
    all modalities in one backbone call, as one mixed batch -- and the
    ``neck`` (e.g. :class:`RSVHeatModalityFusionNeck`) fuses the per-stage
    features into the single pyramid that the decode/auxiliary heads see.
    Training, whole and sliding-window inference are mmseg's, unchanged.

    Args:
        backbone (dict): An :class:`RSVHeat` config with one stem per
            modality in ``in_channels``.
        neck (dict): The fusion neck; it receives one feature tuple per
            modality, in ``modalities`` order.
        modalities (Sequence[str], optional): Stems in input-channel order.
            Defaults to the order of the backbone's ``in_channels``.
        **kwargs: Other arguments of :class:`mmseg.models.EncoderDecoder`.
    """

    def __init__(self, backbone: dict, decode_head: dict, neck: Optional[dict] = None,
                 modalities: Optional[Sequence[str]] = None, **kwargs):
        if neck is None:
            raise ValueError(f'{type(self).__name__} needs a fusion `neck` that merges the '
                             'per-modality features, e.g. RSVHeatModalityFusionNeck')
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck, **kwargs)
        if not isinstance(self.backbone, RSVHeat):
            raise TypeError(f'{type(self).__name__} needs an RSVHeat backbone (one stem '
                            f'per modality), got {type(self.backbone).__name__}')
        stems = self.backbone.in_channels
        self.modalities = list(modalities or stems)
        missing = [m for m in self.modalities if m not in stems]
        if missing:
            raise KeyError(f'{type(self).__name__}: modalities {missing} have no stem in '
                           f'the backbone in_channels {stems}')
        if len(self.modalities) < 2:
            raise ValueError(f'{type(self).__name__} fuses >= 2 modalities, got '
                             f'{self.modalities}; use EncoderDecoder for one')
        self.modality_bands = [stems[m] for m in self.modalities]

    def split_modalities(self, inputs: Tensor) -> List[Tensor]:
        """Split ``(B, sum(bands), H, W)`` into one tensor per modality."""
        expected = sum(self.modality_bands)
        if inputs.shape[1] != expected:
            layout = ' + '.join(f'{m} {b}' for m, b in zip(self.modalities,
                                                           self.modality_bands))
            raise ValueError(f'{type(self).__name__}: input has {inputs.shape[1]} channels, '
                             f'expected {expected} ({layout})')
        return list(torch.split(inputs, self.modality_bands, dim=1))

    def extract_modality_feats(self, inputs: Tensor) -> List[tuple]:
        """Backbone features of each modality: ``[(stage0, ...), ...]``."""
        parts = self.split_modalities(inputs)
        width = max(self.modality_bands)
        # One backbone call over the modalities as a mixed batch (bands
        # zero-padded to the widest; each stem reads only its own bands).
        batch = torch.cat([F.pad(p, (0, 0, 0, 0, 0, width - p.shape[1])) for p in parts])
        names = [m for m in self.modalities for _ in range(inputs.shape[0])]
        feats = self.backbone(batch, modality=names)
        return [tuple(f.chunk(len(parts))[k] for f in feats) for k in range(len(parts))]

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        return self.neck(self.extract_modality_feats(inputs))
