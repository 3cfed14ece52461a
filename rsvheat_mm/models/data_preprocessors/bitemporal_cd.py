"""Data preprocessor for stacked bi-temporal image pairs (mmseg)."""
from typing import Any, Dict, Optional, Sequence

import torch

from rsvheat_mm.models.data_preprocessors.multiband_seg import MultiBandSegDataPreProcessor
from rsvheat_mm.registry import MODELS


@MODELS.register_module()
class BitemporalDataPreProcessor(MultiBandSegDataPreProcessor):
    """``SegDataPreProcessor`` for ``(num_dates * C, H, W)`` image pairs.

    ``mean``/``std`` are given for **one** date (as for a single image) and
    applied to every date; ``bgr_to_rgb``/``rgb_to_bgr`` reverse the channels
    of each date, not of the whole stack. Padding, batching and test-time
    padding are those of :class:`mmseg.models.SegDataPreProcessor`.

    Args:
        mean (Sequence[float], optional): Per-channel mean of one date.
        std (Sequence[float], optional): Per-channel std of one date.
        num_dates (int): Dates stacked in each input. Defaults to 2.
        bgr_to_rgb (bool): Reverse the 3 channels of each date.
        rgb_to_bgr (bool): Same as ``bgr_to_rgb`` (a reversal either way).
        **kwargs: ``size``, ``size_divisor``, ``pad_val``, ``seg_pad_val``,
            ``batch_augments``, ``test_cfg`` of ``SegDataPreProcessor``.
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 num_dates: int = 2,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 **kwargs) -> None:
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError('BitemporalDataPreProcessor: set only one of bgr_to_rgb '
                             'and rgb_to_bgr')
        if (mean is None) != (std is None):
            raise ValueError('BitemporalDataPreProcessor: give both mean and std, or neither')
        if mean is not None and len(mean) != len(std):
            raise ValueError(f'BitemporalDataPreProcessor: mean {mean} and std {std} '
                             'differ in length')
        self.num_dates = num_dates
        self.date_channels = None if mean is None else len(mean)
        super().__init__(
            mean=None if mean is None else list(mean) * num_dates,
            std=None if std is None else list(std) * num_dates,
            bgr_to_rgb=False, rgb_to_bgr=False, **kwargs)
        # Handled here, per date; the parent would only flip 3-channel inputs.
        self.swap_rb = bgr_to_rgb or rgb_to_bgr

    def _per_date_order(self, channels: int, path) -> Optional[torch.Tensor]:
        if channels % self.num_dates:
            raise ValueError(f'BitemporalDataPreProcessor: an input of {path} has '
                             f'{channels} channels, not a multiple of num_dates='
                             f'{self.num_dates}; pack pairs with PackBitemporalInputs')
        c = channels // self.num_dates
        if self.date_channels is not None and c != self.date_channels:
            raise ValueError(f'BitemporalDataPreProcessor: {path} has {c} channels per '
                             f'date but mean/std have {self.date_channels}')
        if not self.swap_rb or c != 3:
            return None
        return torch.tensor([d * c + i for d in range(self.num_dates) for i in (2, 1, 0)])

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        samples = data.get('data_samples') or [None] * len(data['inputs'])
        inputs = []
        for x, sample in zip(data['inputs'], samples):
            path = sample.metainfo.get('img_path') if sample is not None else 'a batch'
            order = self._per_date_order(x.shape[0], path)
            inputs.append(x if order is None else x[order.to(x.device)])
        return super().forward(dict(data, inputs=inputs), training)
