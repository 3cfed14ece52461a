"""Frequency-domain hierarchical masking for RS-vHeat pretraining.

RS-vHeat's pretraining (spec section 3) splits every image in the DCT
domain: a random *sector* -- a quarter disc around the DC corner of the
orthonormal DCT-II spectrum -- holds the low frequencies (global structure),
the rest the high frequencies (details). The inverse DCT of each part gives
a low-frequency and a high-frequency view of the same image; the encoder
sees both and the model reconstructs the original. Unlike patch masking, no
small object ever disappears entirely: every pixel keeps its details in one
view and its context in the other.

Geometry (documented choices where the paper is silent):

* Frequencies are normalised like the heat conduction operator's: the
  coefficient ``(n, m)`` of an ``H x W`` spectrum sits at
  ``(n / H, m / W)`` in the unit square, so a sector has the same meaning at
  every size and aspect ratio (a quarter ellipse in index space for
  non-square images).
* ``ratio_mode='area'`` (default): the sector holds the given fraction of
  the DCT coefficients, i.e. the ``round(ratio * H * W)`` coefficients of
  smallest normalised radius (ties broken in row-major order), so the
  fraction is exact on the discrete grid. ``ratio_mode='radius'``: the
  sector radius is the given fraction of the spectrum diagonal (``sqrt 2``
  in normalised units), as in the released utility's wording; its area is
  then about ``pi * ratio**2 / 2``. The paper's "masking ratio 20-30 %" is
  read as area by default (``ratio_range=(0.2, 0.3)``), the usual meaning
  of a masking ratio in masked image modelling.
* DC handling: the DC coefficient (each band's mean) always belongs to the
  low-frequency view (radius 0 lies in every sector). Hence
  ``low + high == image`` exactly and the high view has zero mean per band.
  A mean-and-scale normalisation ``(x - mean) / std`` therefore maps the
  views to ``(low - mean) / std`` and ``high / std``
  (see ``RSVHeatPretrainDataPreprocessor``).
* No power-of-two padding (the released utility pads before its DCT): the
  DCT here works at any size, so the views are exact and border-artefact
  free.

Co-registered pairs (optical + SAR, or any image keys listed in ``keys``)
share one random ratio and thus one sector geometry; images of the same size
get the identical mask.

Withholding a band (``drop_range``, off by default). With the split above
the encoder sees ``low + high == image``: the reconstruction target is
entirely in its input (the design risk discussed in the README and
``docs/pretraining.md``). ``drop_range`` removes the ring of coefficients
just outside the sector from *both* views (``low`` keeps the sector, ``high``
what lies beyond the ring), so the model must infer that band from context
to reconstruct the image. The ring's size is given like the sector's: a
fraction of the coefficients (``'area'``, the next ones by radius) or of the
diagonal (``'radius'``, added to the sector radius).
"""
import functools
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine.structures import BaseDataElement
from scipy import fft as sp_fft

from rsvheat_mm.registry import TRANSFORMS

__all__ = [
    'frequency_sector_mask', 'frequency_band_masks', 'split_frequency_views',
    'RSVHeatFrequencyMasking', 'PackRSVHeatPretrainInputs'
]

RATIO_MODES = ('area', 'radius')


@functools.lru_cache(maxsize=16)
def _normalised_radius(h: int, w: int) -> np.ndarray:
    """``sqrt((n/h)^2 + (m/w)^2)`` for the ``h x w`` DCT grid (read-only)."""
    r = np.sqrt((np.arange(h) / h)[:, None]**2 + (np.arange(w) / w)[None, :]**2)
    r.setflags(write=False)
    return r


@functools.lru_cache(maxsize=16)
def _radius_rank(h: int, w: int) -> np.ndarray:
    """Rank of each coefficient by normalised radius (stable, read-only).

    Cached: pretraining crops all have one size, and the argsort of a
    224 x 224 grid would otherwise dominate the transform's cost.
    """
    order = np.argsort(_normalised_radius(h, w), axis=None, kind='stable')
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    rank = rank.reshape(h, w)
    rank.setflags(write=False)
    return rank


def frequency_sector_mask(size: Tuple[int, int], ratio: float,
                          mode: str = 'area') -> np.ndarray:
    """Boolean ``(H, W)`` mask of the low-frequency sector of a DCT spectrum.

    Args:
        size (tuple[int, int]): Spectrum (= image) size ``(H, W)``.
        ratio (float): Sector size: the fraction of coefficients (``'area'``)
            or the radius as a fraction of the spectrum diagonal
            (``'radius'``).
        mode (str): ``'area'`` or ``'radius'``. See the module docstring.

    Returns:
        np.ndarray: True inside the sector (low frequencies, DC included).
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f'frequency_sector_mask: empty size {size}')
    if mode == 'area':
        # At least the DC coefficient: the low view always carries the mean.
        k = min(max(int(round(ratio * h * w)), 1), h * w)
        return _radius_rank(h, w) < k
    if mode == 'radius':
        return _normalised_radius(h, w) <= ratio * math.sqrt(2.0)
    raise ValueError(f'ratio_mode must be one of {RATIO_MODES}, got {mode!r}')


def frequency_band_masks(size: Tuple[int, int], ratio: float, drop: float = 0.,
                         mode: str = 'area') -> Tuple[np.ndarray, np.ndarray]:
    """Low-frequency sector and high-frequency remainder, minus a dropped ring.

    Args:
        size (tuple[int, int]): Spectrum (= image) size ``(H, W)``.
        ratio (float): Sector size, as in :func:`frequency_sector_mask`.
        drop (float): Size of the ring just outside the sector that neither
            view keeps, in the same unit as ``ratio`` (``'area'``: fraction
            of coefficients; ``'radius'``: fraction of the diagonal). 0 keeps
            every coefficient (``high == ~low``).
        mode (str): ``'area'`` or ``'radius'``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Boolean ``(low, high)`` masks,
        disjoint; their union misses exactly the dropped ring.
    """
    low = frequency_sector_mask(size, ratio, mode)
    if drop <= 0:
        return low, ~low
    if mode == 'area':
        h, w = int(size[0]), int(size[1])
        k = int(low.sum()) + int(round(drop * h * w))
        return low, _radius_rank(h, w) >= k
    return low, ~frequency_sector_mask(size, ratio + drop, mode)


def split_frequency_views(img: np.ndarray, mask: np.ndarray,
                          high_mask: Optional[np.ndarray] = None
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """Low- and high-frequency views of ``img`` for a sector ``mask``.

    Args:
        img (np.ndarray): ``(H, W)`` or ``(H, W, C)``, any band count.
        mask (np.ndarray): Boolean ``(H, W)`` sector, True = low frequency.
        high_mask (np.ndarray, optional): Boolean ``(H, W)`` coefficients of
            the high view, disjoint from ``mask``. Defaults to ``~mask``.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(low, high)`` in float32 (float64
        for float64 input), ``low = IDCT(DCT(img) * mask)``,
        ``high = IDCT(DCT(img) * high_mask)`` (``= img - low`` by default).
    """
    if img.dtype != np.float64:
        img = img.astype(np.float32, copy=False)
    spec = sp_fft.dctn(img, type=2, norm='ortho', axes=(0, 1))
    keep = mask if img.ndim == 2 else mask[..., None]
    low = sp_fft.idctn(spec * keep, type=2, norm='ortho', axes=(0, 1))
    low = low.astype(img.dtype, copy=False)
    if high_mask is None:
        # The DCT is linear and orthonormal, so the complement's view is the
        # residual: one inverse transform less, and low + high == img exactly.
        return low, img - low
    if (high_mask & mask).any():
        raise ValueError('split_frequency_views: the high mask overlaps the sector')
    keep = high_mask if img.ndim == 2 else high_mask[..., None]
    high = sp_fft.idctn(spec * keep, type=2, norm='ortho', axes=(0, 1))
    return low, high.astype(img.dtype, copy=False)


@TRANSFORMS.register_module()
class RSVHeatFrequencyMasking(BaseTransform):
    """Frequency-domain hierarchical masking (RS-vHeat pretraining).

    Draws one sector ratio per sample, builds the sector mask in the DCT
    domain and splits every image in ``keys`` into a low- and a
    high-frequency view (see the module docstring for the geometry and the
    DC handling). All listed images of a sample share the ratio, so a
    co-registered optical/SAR pair gets one sector geometry.

    **Required Keys:** ``keys[0]`` (default ``img``); the other ``keys``
    when present.

    **Added Keys:** ``{key}_low``, ``{key}_high`` (float32, the image's
    shape) for each present key; ``freq_mask`` (bool ``(H, W)``, True =
    low-frequency sector, for ``keys[0]``); ``freq_high_mask`` (bool
    ``(H, W)``, the high view's coefficients; ``~freq_mask`` unless a band
    is dropped); ``mask_ratio`` (the drawn ratio); ``mask_fraction`` (the
    fraction of coefficients in the sector); ``drop_fraction`` (the fraction
    in the dropped ring, 0 by default).

    Args:
        ratio_range (float | Sequence[float]): ``(low, high)`` of the
            uniformly drawn sector ratio, or one fixed value. Defaults to
            ``(0.2, 0.3)`` (the paper's 20-30 %).
        ratio_mode (str): ``'area'`` (fraction of coefficients, default) or
            ``'radius'`` (fraction of the spectrum diagonal).
        drop_range (float | Sequence[float], optional): ``(low, high)`` of
            the uniformly drawn size of the ring dropped from both views
            (same unit as the ratio), or one value. None (default) drops
            nothing: the paper's split, ``low + high == image``.
        keys (Sequence[str]): Image keys sharing the mask; the first is
            required, the others are skipped when absent (unpaired samples).
            Defaults to ``('img', 'partner_img')``.
    """

    def __init__(self,
                 ratio_range: Union[float, Sequence[float]] = (0.2, 0.3),
                 ratio_mode: str = 'area',
                 drop_range: Optional[Union[float, Sequence[float]]] = None,
                 keys: Sequence[str] = ('img', 'partner_img')):
        name = self.__class__.__name__
        if ratio_mode not in RATIO_MODES:
            raise ValueError(f'{name}: ratio_mode must be one of {RATIO_MODES}, got '
                             f'{ratio_mode!r}')
        ratio_range = self._range(ratio_range)
        # A radius beyond 1 diagonal already covers the whole spectrum.
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1] <= 1:
            raise ValueError(f'{name}: ratio_range must be (low, high) with '
                             f'0 < low <= high <= 1, got {ratio_range}')
        if drop_range is not None:
            drop_range = self._range(drop_range)
            if len(drop_range) != 2 or not 0 < drop_range[0] <= drop_range[1] or \
                    ratio_range[1] + drop_range[1] >= 1:
                raise ValueError(f'{name}: drop_range must be (low, high) with '
                                 f'0 < low <= high and ratio + drop < 1 (something must '
                                 f'remain for the high view), got {drop_range} with '
                                 f'ratio_range {ratio_range}')
        if isinstance(keys, str) or not keys:
            raise TypeError(f'{name}: keys must be a non-empty sequence of result keys, '
                            f'got {keys!r}')
        self.ratio_range = ratio_range
        self.ratio_mode = ratio_mode
        self.drop_range = drop_range
        self.keys = tuple(keys)

    @staticmethod
    def _range(value) -> tuple:
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        return tuple(float(r) for r in value)

    @cache_randomness
    def draw_ratio(self) -> float:
        low, high = self.ratio_range
        return float(np.random.uniform(low, high)) if high > low else low

    @cache_randomness
    def draw_drop(self) -> float:
        if self.drop_range is None:
            return 0.
        low, high = self.drop_range
        return float(np.random.uniform(low, high)) if high > low else low

    def transform(self, results: dict) -> dict:
        first = self.keys[0]
        if results.get(first) is None:
            raise KeyError(f'{self.__class__.__name__}: the sample has no {first!r} '
                           f'(img_path={results.get("img_path")!r}); load the image first.')
        ratio = self.draw_ratio()
        drop = self.draw_drop()
        masks = {}
        for key in self.keys:
            img = results.get(key)
            if img is None:
                continue
            img = np.asarray(img)
            if img.ndim not in (2, 3):
                raise ValueError(f'{self.__class__.__name__}: {key!r} must be (H, W) or '
                                 f'(H, W, C), got shape {img.shape} '
                                 f'(img_path={results.get("img_path")!r})')
            size = img.shape[:2]
            if size not in masks:
                masks[size] = frequency_band_masks(size, ratio, drop, self.ratio_mode)
            low_mask, high_mask = masks[size]
            results[f'{key}_low'], results[f'{key}_high'] = split_frequency_views(
                img, low_mask, high_mask if drop > 0 else None)
            if key == first:
                results['freq_mask'], results['freq_high_mask'] = low_mask, high_mask
        results['mask_ratio'] = ratio
        results['mask_fraction'] = float(results['freq_mask'].mean())
        results['drop_fraction'] = float(
            (~(results['freq_mask'] | results['freq_high_mask'])).mean())
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ratio_range={self.ratio_range}, '
                f'ratio_mode={self.ratio_mode!r}, drop_range={self.drop_range}, '
                f'keys={self.keys})')


def _to_chw(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:  # cv2 drops the band axis of one-band images
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


@TRANSFORMS.register_module()
class PackRSVHeatPretrainInputs(BaseTransform):
    """Pack a masked sample for :class:`RSVHeatPretrain`.

    **Required Keys:** ``img``, ``img_low``, ``img_high`` (from
    :class:`RSVHeatFrequencyMasking`), ``modality``; for a pair also
    ``partner_img``, ``partner_img_low``, ``partner_img_high`` and
    ``partner_modality``.

    **Output:** ``inputs``: float32 tensor ``(3, C, H, W)`` = image, low
    view, high view (raw pixel units; normalised by the data preprocessor).
    ``data_samples``: a :class:`mmengine.structures.BaseDataElement` with
    metainfo ``modality``, ``partner_modality`` (None when unpaired),
    ``mask_ratio``, ``mask_fraction``, ``drop_fraction`` and ``meta_keys``;
    data fields ``freq_mask`` and ``freq_high_mask`` (bool ``(H, W)``) and,
    for a pair, ``partner_inputs``
    (``(3, C_partner, H, W)``). Samples without a partner are fine in the
    same batch: the contrastive term skips them.

    Args:
        meta_keys (Sequence[str]): Result keys copied into the metainfo when
            present.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('sample_idx', 'img_path', 'partner_path',
                                             'ori_shape', 'img_shape', 'flip',
                                             'flip_direction')):
        self.meta_keys = tuple(meta_keys)

    def _views(self, results, key):
        missing = [k for k in (key, f'{key}_low', f'{key}_high') if results.get(k) is None]
        if missing:
            raise KeyError(f'{self.__class__.__name__}: the sample lacks {missing} '
                           f'(img_path={results.get("img_path")!r}); put '
                           'RSVHeatFrequencyMasking before it in the pipeline.')
        return torch.stack([_to_chw(results[k]) for k in (key, f'{key}_low', f'{key}_high')])

    def transform(self, results: dict) -> dict:
        modality = results.get('modality')
        if modality is None:
            raise KeyError(f'{self.__class__.__name__}: the sample has no `modality` '
                           f'(img_path={results.get("img_path")!r}); the pretraining '
                           'datasets set it from their `modality` argument.')
        sample = BaseDataElement()
        partner_modality: Optional[str] = None
        if results.get('partner_img') is not None:
            partner_modality = results.get('partner_modality')
            if partner_modality is None:
                raise KeyError(f'{self.__class__.__name__}: a partner image without '
                               f'`partner_modality` (img_path={results.get("img_path")!r})')
            sample.partner_inputs = self._views(results, 'partner_img')
        inputs = self._views(results, 'img')
        for key in ('freq_mask', 'freq_high_mask'):
            if key in results:
                sample.set_field(torch.from_numpy(np.array(results[key], dtype=bool)), key)
        meta = dict(modality=modality, partner_modality=partner_modality,
                    mask_ratio=results.get('mask_ratio'),
                    mask_fraction=results.get('mask_fraction'),
                    drop_fraction=results.get('drop_fraction', 0.))
        meta.update({k: results[k] for k in self.meta_keys if k in results})
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
