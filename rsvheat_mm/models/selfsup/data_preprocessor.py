"""Data preprocessor of RS-vHeat pretraining (mixed modalities, paired views)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from rsvheat_mm.registry import MODELS

__all__ = ['RSVHeatPretrainDataPreprocessor']

_ANY = '_any'  # key of statistics that apply to every modality


@MODELS.register_module()
class RSVHeatPretrainDataPreprocessor(BaseDataPreprocessor):
    """Normalise per modality, pad bands and batch the frequency views.

    Takes what :class:`PackRSVHeatPretrainInputs` produced and the
    dataloader collated (``pseudo_collate``, which allows mixed band counts,
    or ``default_collate``): per sample a ``(3, C, H, W)`` stack of image,
    low-frequency view and high-frequency view in raw pixel units, and a
    data sample with ``modality`` (and, for a pair, ``partner_inputs`` /
    ``partner_modality``).

    Normalisation is ``(x - mean) / std`` with the statistics of the
    sample's modality. The views are split in the DCT domain and the DC
    coefficient belongs to the low view, so normalising the image before
    the split is the same as normalising ``low`` with ``(low - mean) / std``
    and ``high`` with ``high / std`` -- which is what is done here.

    Returns ``inputs = [image, low, high]``, each ``(B, C_max, H, W)``
    (bands zero-padded to the largest band count of the batch, as
    :class:`RSVHeat` expects for a mixed batch), and the data samples with
    their ``partner_inputs`` normalised in place.

    Args:
        mean (dict[str, Sequence[float]] | Sequence[float], optional): Band
            means per modality, or one sequence for all modalities (length
            1 broadcasts). None disables normalisation.
        std (same as ``mean``): Band standard deviations.
        non_blocking (bool): Non-blocking host-to-device copies.
    """

    def __init__(self,
                 mean: Optional[Union[Dict[str, Sequence[float]], Sequence[float]]] = None,
                 std: Optional[Union[Dict[str, Sequence[float]], Sequence[float]]] = None,
                 non_blocking: bool = False):
        super().__init__(non_blocking)
        name = self.__class__.__name__
        if (mean is None) != (std is None):
            raise ValueError(f'{name}: give both mean and std, or neither')
        self._modalities: List[str] = []
        if mean is None:
            return
        if not isinstance(mean, dict):
            mean, std = {_ANY: mean}, {_ANY: std}
        if not isinstance(std, dict) or set(mean) != set(std):
            raise ValueError(f'{name}: mean and std must name the same modalities, got '
                             f'{sorted(mean)} and {sorted(std) if isinstance(std, dict) else std}')
        for modality in mean:
            m = torch.tensor(mean[modality], dtype=torch.float32).flatten()
            s = torch.tensor(std[modality], dtype=torch.float32).flatten()
            if m.numel() != s.numel() or m.numel() == 0:
                raise ValueError(f'{name}: mean and std of {modality!r} must have one equal, '
                                 f'non-zero length, got {m.numel()} and {s.numel()}')
            if not (s > 0).all():
                raise ValueError(f'{name}: std of {modality!r} must be positive, got {s.tolist()}')
            # Not persistent: the statistics belong to the config, and keeping
            # them out of the checkpoint keeps it a clean backbone source.
            self.register_buffer(f'mean_{modality}', m.view(-1, 1, 1), persistent=False)
            self.register_buffer(f'std_{modality}', s.view(-1, 1, 1), persistent=False)
            self._modalities.append(modality)

    def _stats(self, modality: str, bands: int, where: str):
        if not self._modalities:
            return None
        key = modality if modality in self._modalities else _ANY
        if key not in self._modalities:
            raise KeyError(f'{self.__class__.__name__}: no mean/std for modality {modality!r} '
                           f'({where}); configured: {self._modalities}')
        mean, std = getattr(self, f'mean_{key}'), getattr(self, f'std_{key}')
        if mean.shape[0] not in (1, bands):
            raise ValueError(f'{self.__class__.__name__}: {mean.shape[0]} mean/std values for '
                             f'modality {modality!r} but the image has {bands} bands ({where})')
        return mean, std

    def normalize_views(self, views: Tensor, modality: str, where: str = '') -> Tensor:
        """Normalise a ``(3, C, H, W)`` stack of image, low view, high view."""
        if views.dim() != 4 or views.shape[0] != 3:
            raise ValueError(f'{self.__class__.__name__}: expected (3, C, H, W) views (image, '
                             f'low, high), got {tuple(views.shape)} ({where})')
        views = views.float()
        stats = self._stats(modality, views.shape[1], where)
        if stats is None:
            return views
        mean, std = stats
        img, low, high = views.unbind(0)
        # The mean is a DC-only signal: it lives in the low view alone.
        return torch.stack([(img - mean) / std, (low - mean) / std, high / std])

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs, samples = data['inputs'], data.get('data_samples')
        if isinstance(inputs, Tensor):
            inputs = list(inputs.unbind(0)) if inputs.dim() == 5 else [inputs]
        if samples is None or len(samples) != len(inputs):
            raise ValueError(f'{self.__class__.__name__}: need one data sample (with '
                             '`modality`) per input; pack with PackRSVHeatPretrainInputs')
        views = []
        for x, sample in zip(inputs, samples):
            where = f'img_path={sample.get("img_path")!r}'
            modality = sample.get('modality')
            if modality is None:
                raise KeyError(f'{self.__class__.__name__}: data sample without `modality` '
                               f'({where})')
            views.append(self.normalize_views(x, modality, where))
            if 'partner_inputs' in sample:
                sample.partner_inputs = self.normalize_views(
                    sample.partner_inputs, sample.get('partner_modality'),
                    f'partner of {where}, partner_path={sample.get("partner_path")!r}')
        sizes = {tuple(v.shape[-2:]) for v in views}
        if len(sizes) > 1:
            raise ValueError(f'{self.__class__.__name__}: a pretraining batch needs one image '
                             f'size, got {sorted(sizes)}; crop/resize to a fixed size in the '
                             'pipeline (e.g. RandomResizedCrop)')
        bands = max(v.shape[1] for v in views)
        batch = views[0].new_zeros((len(views), 3, bands) + views[0].shape[-2:])
        for i, v in enumerate(views):
            batch[i, :, :v.shape[1]] = v
        return dict(inputs=list(batch.unbind(1)), data_samples=samples)

    @staticmethod
    def pad_bands(x: Tensor, bands: int) -> Tensor:
        """Zero-pad the band axis (1) of ``x`` to ``bands``."""
        if x.shape[1] >= bands:
            return x
        pad = x.new_zeros((x.shape[0], bands - x.shape[1]) + x.shape[2:])
        return torch.cat([x, pad], dim=1)
