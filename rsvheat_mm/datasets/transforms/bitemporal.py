"""Bi-temporal (change detection) transforms for mmseg pipelines.

The image pair travels through the pipeline as **one** array,
``results['img']`` of shape ``(H, W, 2 * C)``: date A in the first ``C``
channels, date B in the last ``C`` (``results['date_channels'] = C``). With
this layout every numpy-based mmseg/mmcv geometric transform -- ``RandomCrop``
(one crop box), ``RandomFlip`` (one flip), ``RandomRotFlip``, ``Pad`` -- moves
both dates and the change label together by construction, so they are used
as they are. Only the operations that are channel-limited or must differ per
date get a bi-temporal version here:

* :class:`LoadBitemporalImages` reads ``img_path`` (A) and ``img_path2`` (B,
  the key mmseg's ``BaseCDDataset`` uses) and stacks them.
* :class:`LoadBitemporalChangeLabel` reads a change map (LEVIR-CD's 0/255 or
  0/1 masks, also 3-channel masks) as 0 = unchanged, 1 = changed.
* :class:`BitemporalResize` (also usable as ``RandomResize(resize_type=...)``)
  and :class:`BitemporalRandomRotate` resize/rotate each date on its own with
  the same parameters: OpenCV's resize/warp have channel limits (``area``
  interpolation fails above 4 channels, others round differently).
* :class:`BitemporalPhotoMetricDistortion` distorts each date (HSV needs 3
  channels), independently by default -- two acquisitions differ in
  illumination -- or identically with ``consistent=True``.
* :class:`BitemporalExchangeTime` swaps A and B (the change label of a
  symmetric "changed/unchanged" task is the same).
* :class:`PackBitemporalInputs` packs the ``(2C, H, W)`` pair for
  :class:`~rsvheat_mm.models.data_preprocessors.bitemporal_cd.BitemporalDataPreProcessor`.
"""
import copy
from typing import Optional, Sequence

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile, Resize
from mmcv.transforms.utils import cache_randomness
from mmengine import fileio
from mmseg.datasets.transforms import (LoadAnnotations, PackSegInputs,
                                       PhotoMetricDistortion, RandomRotate)

from rsvheat_mm.registry import TRANSFORMS


def split_dates(results: dict):
    """Return ``(img_a, img_b)`` views of the stacked pair in ``results``."""
    img = results['img']
    if img.ndim != 3:
        raise ValueError(f'expected a stacked (H, W, 2*C) image pair, got shape '
                         f'{img.shape} for {results.get("img_path")!r}')
    c = results.get('date_channels', img.shape[2] // 2)
    if img.shape[2] != 2 * c:
        raise ValueError(
            f'the image pair of {results.get("img_path")!r} has {img.shape[2]} '
            f'channels, expected 2 x date_channels = {2 * c}; load it with '
            'LoadBitemporalImages')
    return img[..., :c], img[..., c:]


def stack_dates(results: dict, img_a: np.ndarray, img_b: np.ndarray) -> None:
    """Store a pair of ``(H, W[, C])`` arrays as the stacked ``results['img']``."""
    if img_a.ndim == 2:
        img_a = img_a[..., None]
    if img_b.ndim == 2:
        img_b = img_b[..., None]
    if img_a.shape != img_b.shape:
        raise ValueError(f'the two dates differ in shape after a transform: '
                         f'{img_a.shape} vs {img_b.shape}')
    results['img'] = np.concatenate([img_a, img_b], axis=2)
    results['date_channels'] = img_a.shape[2]
    results['img_shape'] = img_a.shape[:2]


@TRANSFORMS.register_module()
class LoadBitemporalImages(LoadImageFromFile):
    """Load the images of both dates and stack them channel-wise.

    Required keys: ``img_path`` (date A), ``img_path2`` (date B).
    Added keys: ``img`` (``(H, W, 2C)``, A then B), ``date_channels`` (C),
    ``img_shape``, ``ori_shape``.

    Args are those of :class:`mmcv.transforms.LoadImageFromFile` (both dates
    are decoded the same way, e.g. BGR for ``color_type='color'``).
    """

    def transform(self, results: dict) -> Optional[dict]:
        for key in ('img_path', 'img_path2'):
            if key not in results:
                raise KeyError(f'LoadBitemporalImages needs `{key}` in the data info '
                               f'(got keys {sorted(results)}); use BitemporalCDDataset')
        dates = []
        for key in ('img_path', 'img_path2'):
            single = super().transform({'img_path': results[key]})
            if single is None:  # ignore_empty
                return None
            img = single['img']
            dates.append(img[..., None] if img.ndim == 2 else img)
        if dates[0].shape != dates[1].shape:
            raise ValueError(
                f'the two dates of a pair must have the same size and bands: '
                f'{results["img_path"]} is {dates[0].shape}, '
                f'{results["img_path2"]} is {dates[1].shape}')
        stack_dates(results, *dates)
        results['ori_shape'] = dates[0].shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadBitemporalChangeLabel(LoadAnnotations):
    """Load a binary change map: 0 = unchanged, 1 = changed, 255 = ignored.

    Change-detection sets store the change as 255 (LEVIR-CD, WHU-CD,
    S2Looking) or 1; some as white RGB. Every value above ``threshold`` is
    "changed" (for multi-channel masks the per-pixel maximum is used),
    except the raw values listed in ``ignore_values``, which become the
    ignore index 255.

    Args:
        threshold (int): Raw values ``> threshold`` are changes. Defaults to 0.
        ignore_values (Sequence[int]): Raw values to ignore. Defaults to ().
        imdecode_backend (str): See :class:`LoadAnnotations`.
        backend_args (dict, optional): See :class:`LoadAnnotations`.
    """

    def __init__(self, threshold: int = 0, ignore_values: Sequence[int] = (),
                 imdecode_backend: str = 'pillow', backend_args=None) -> None:
        # (reduce_zero_label=None: no label shifting, and no deprecation warning)
        super().__init__(reduce_zero_label=None, imdecode_backend=imdecode_backend,
                         backend_args=backend_args)
        self.threshold = threshold
        self.ignore_values = tuple(ignore_values)

    def _load_seg_map(self, results: dict) -> None:
        path = results.get('seg_map_path')
        if path is None:
            raise KeyError('LoadBitemporalChangeLabel: the data info has no '
                           '`seg_map_path` (dataset built without a label folder?)')
        raw = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args),
                               flag='unchanged', backend=self.imdecode_backend)
        if raw is None:
            raise ValueError(f'could not decode the change label {path}')
        if raw.ndim == 3:
            raw = raw.max(axis=2)
        label = (raw > self.threshold).astype(np.uint8)
        for value in self.ignore_values:
            label[raw == value] = 255
        if 'ori_shape' in results and tuple(label.shape) != tuple(results['ori_shape'][:2]):
            raise ValueError(f'change label {path} is {label.shape[1]}x{label.shape[0]} '
                             f'but the images {results.get("img_path")} are '
                             f'{results["ori_shape"][1]}x{results["ori_shape"][0]}')
        results['gt_seg_map'] = label
        results.setdefault('seg_fields', []).append('gt_seg_map')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(threshold={self.threshold}, '
                f'ignore_values={self.ignore_values})')


@TRANSFORMS.register_module()
class BitemporalResize(Resize):
    """:class:`mmcv.transforms.Resize` applied to each date with one scale.

    Takes the arguments of ``Resize``; also the ``resize_type`` of mmcv's
    ``RandomResize`` / ``RandomChoiceResize`` for multi-scale training.
    """

    def _resize_img(self, results: dict) -> None:
        if results.get('img', None) is None:
            return
        dates, info = [], {}
        for img in split_dates(results):
            single = {'img': np.ascontiguousarray(img), 'scale': results['scale']}
            super()._resize_img(single)
            dates.append(single['img'])
            info = single
        stack_dates(results, *dates)
        results['scale_factor'] = info['scale_factor']
        results['keep_ratio'] = info['keep_ratio']


@TRANSFORMS.register_module()
class BitemporalRandomRotate(RandomRotate):
    """mmseg's ``RandomRotate`` with one angle for both dates and the label.

    Args are those of :class:`mmseg.datasets.transforms.RandomRotate`.
    """

    def transform(self, results: dict) -> dict:
        rotate, degree = self.generate_degree()
        if not rotate:
            return results
        kwargs = dict(angle=degree, center=self.center, auto_bound=self.auto_bound)
        dates = [mmcv.imrotate(np.ascontiguousarray(img), border_value=self.pal_val, **kwargs)
                 for img in split_dates(results)]
        stack_dates(results, *dates)
        for key in results.get('seg_fields', []):
            results[key] = mmcv.imrotate(results[key], border_value=self.seg_pad_val,
                                         interpolation='nearest', **kwargs)
        return results


@TRANSFORMS.register_module()
class BitemporalPhotoMetricDistortion(PhotoMetricDistortion):
    """mmseg's ``PhotoMetricDistortion`` applied to each date.

    Args:
        consistent (bool): Use the same random distortion for both dates
            (default False: two acquisitions have independent illumination,
            which is what the model has to learn to ignore).
        Other args are those of
        :class:`mmseg.datasets.transforms.PhotoMetricDistortion`.
    """

    def __init__(self, consistent: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.consistent = consistent

    def transform(self, results: dict) -> dict:
        state = np.random.get_state()
        dates = []
        for img in split_dates(results):
            if self.consistent:
                # PhotoMetricDistortion draws from numpy's global RNG: replaying
                # the state gives date B exactly the draws of date A.
                np.random.set_state(state)
            dates.append(super().transform({'img': np.ascontiguousarray(img)})['img'])
        stack_dates(results, *dates)
        return results

    def __repr__(self) -> str:
        return super().__repr__() + f'(consistent={self.consistent})'


@TRANSFORMS.register_module()
class BitemporalExchangeTime(BaseTransform):
    """Swap the two dates with probability ``prob``.

    For a binary "changed / unchanged" label the swap leaves the label as it
    is and teaches the model that appearing and disappearing objects are both
    changes. ``img_path``/``img_path2`` are swapped too, so the metadata keep
    describing the content; ``exchanged`` records what happened.
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'BitemporalExchangeTime: prob must be in [0, 1], got {prob}')
        self.prob = prob

    @cache_randomness
    def _do_exchange(self) -> bool:
        return np.random.rand() < self.prob

    def transform(self, results: dict) -> dict:
        exchange = self._do_exchange()
        results['exchanged'] = bool(exchange) ^ bool(results.get('exchanged', False))
        if exchange:
            img_a, img_b = split_dates(results)
            stack_dates(results, img_b, img_a)
            if 'img_path2' in results:
                results['img_path'], results['img_path2'] = (results['img_path2'],
                                                             results['img_path'])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class PackBitemporalInputs(PackSegInputs):
    """``PackSegInputs`` for a stacked pair: ``inputs`` is ``(2C, H, W)``.

    Also packs ``img_path2``, ``date_channels`` and ``exchanged`` into the
    data sample's metainfo, and checks that the image is a pair.
    """

    def __init__(self, meta_keys=('img_path', 'img_path2', 'seg_map_path', 'ori_shape',
                                  'img_shape', 'pad_shape', 'scale_factor', 'flip',
                                  'flip_direction', 'reduce_zero_label', 'date_channels',
                                  'exchanged')):
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        split_dates(results)  # validates the stacked layout
        results = copy.copy(results)
        results.setdefault('exchanged', False)
        return super().transform(results)
