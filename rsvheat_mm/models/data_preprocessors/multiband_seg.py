"""Segmentation data preprocessor for any number of bands (mmseg)."""
from numbers import Number
from typing import Any, Dict, Optional, Sequence

import torch
from mmseg.models.data_preprocessor import SegDataPreProcessor

from rsvheat_mm.registry import MODELS


@MODELS.register_module()
class MultiBandSegDataPreProcessor(SegDataPreProcessor):
    """:class:`mmseg.models.SegDataPreProcessor` for 1..N-band images.

    Remote-sensing inputs have any number of bands (multispectral, SAR,
    optical + SAR stacks). mmseg 1.2's ``SegDataPreProcessor`` normalises
    them, but newer mmseg (the OneDL line) derives it from mmengine's
    ``ImgDataPreprocessor``, which accepts only 1 or 3 ``mean``/``std``
    values. This class normalises itself, so the same config runs on both:
    padding, batching, test-time padding and batch augmentations are the
    parent's.

    Args:
        mean (Sequence[Number], optional): Per-band mean, one value per
            input band (or one for all).
        std (Sequence[Number], optional): Per-band std, as ``mean``.
        bgr_to_rgb (bool): Reverse the channels of 3-band inputs.
        rgb_to_bgr (bool): Same as ``bgr_to_rgb`` (a reversal either way).
        **kwargs: ``size``, ``size_divisor``, ``pad_val``, ``seg_pad_val``,
            ``batch_augments``, ``test_cfg`` of ``SegDataPreProcessor``.
    """

    def __init__(self,
                 mean: Optional[Sequence[Number]] = None,
                 std: Optional[Sequence[Number]] = None,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 **kwargs) -> None:
        name = type(self).__name__
        if (mean is None) != (std is None):
            raise ValueError(f'{name}: give both mean and std, or neither')
        if mean is not None and len(mean) != len(std):
            raise ValueError(f'{name}: mean {list(mean)} and std {list(std)} differ in length')
        super().__init__(mean=None, std=None, bgr_to_rgb=bgr_to_rgb, rgb_to_bgr=rgb_to_bgr,
                         **kwargs)
        # mmseg 1.2 and the OneDL line name the flag differently; the parent's
        # forward reads its own, exporters read either.
        self.channel_conversion = self._channel_conversion = bool(bgr_to_rgb or rgb_to_bgr)
        self._enable_normalize = mean is not None
        if mean is not None:
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                                 False)
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                                 False)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        if self._enable_normalize and self.mean.numel() > 1:
            samples = data.get('data_samples') or [None] * len(data['inputs'])
            for x, sample in zip(data['inputs'], samples):
                if x.shape[0] != self.mean.numel():
                    path = sample.metainfo.get('img_path') if sample is not None else None
                    raise ValueError(
                        f'{type(self).__name__}: an input ({path or "a batch"}) has '
                        f'{x.shape[0]} bands but mean/std have {self.mean.numel()} values')
        return super().forward(data, training)
