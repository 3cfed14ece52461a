"""Change detection: change maps of co-registered pairs of any size.

A change detector is a segmentor of a two-image scene: its inputs are
``(img_a, img_b)`` pairs (or a folder with ``A/`` and ``B/``), read and
stacked channel-wise like the config's bi-temporal loader does, and tiled,
blended and written by the same engine as segmentation (``0`` = unchanged,
``1`` = changed, ``255`` = nodata in either date). Drawings show date A and
date B with the change overlaid.
"""
import os
import os.path as osp

import numpy as np

from .base import IMAGE_SUFFIXES
from .segmentation import SegmentationInferencer

__all__ = ['ChangeDetectionInferencer', 'PAIR_DIRS']

#: Sub-folder names of the two dates in a change-detection folder.
PAIR_DIRS = (('A', 'B'), ('a', 'b'), ('im1', 'im2'), ('t1', 't2'), ('T1', 'T2'),
             ('time1', 'time2'), ('before', 'after'))


class ChangeDetectionInferencer(SegmentationInferencer):
    """Change detection with any rsvheat_mm bi-temporal config (see
    :class:`~rsvheat_mm.apis.RSVHeatInferencer`)."""

    tasks = ('change_detection', )

    def _inputs_to_list(self, inputs) -> list:
        if isinstance(inputs, tuple) and len(inputs) == 2 and \
                all(isinstance(p, (str, os.PathLike)) for p in inputs):
            return [inputs]  # one pair
        return super()._inputs_to_list(inputs)

    def _scenes_in(self, folder: str) -> list:
        for a, b in PAIR_DIRS:
            dir_a, dir_b = osp.join(folder, a), osp.join(folder, b)
            if osp.isdir(dir_a) and osp.isdir(dir_b):
                names = sorted(f for f in os.listdir(dir_a) if f.lower().endswith(IMAGE_SUFFIXES))
                missing = [n for n in names if not osp.isfile(osp.join(dir_b, n))]
                if missing:
                    raise FileNotFoundError(f'{dir_b} lacks the date-B images of {missing[:5]}')
                if not names:
                    raise FileNotFoundError(f'no images in {dir_a}')
                return [(osp.join(dir_a, n), osp.join(dir_b, n)) for n in names]
        raise FileNotFoundError(f'{folder}: a change-detection folder holds the two dates in '
                                f'sub-folders, one of {[f"{a}/ {b}/" for a, b in PAIR_DIRS]}')

    def _reader(self, item, index: int):
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] % 2:
                raise ValueError('change-detection array inputs are (H, W, 2C) stacks of '
                                 f'both dates, got {item.shape}')
            reader = self.window_pipeline.reader(item)
            reader.extra['date_channels'] = item.shape[2] // 2
            return reader
        if isinstance(item, dict):
            if 'img_path2' not in item:
                raise ValueError(f'change detection takes dicts with img_path and img_path2, '
                                 f'got keys {sorted(item)}')
            return self.window_pipeline.reader(item)
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError('change detection takes (img_a, img_b) pairs, a dict with '
                             f'img_path/img_path2, or a folder with A/ and B/; got {item!r}')
        return self.window_pipeline.reader(tuple(item))

    def _to_rgb(self, img, info, valid):
        # date A | date B side by side
        c = img.shape[2] // 2
        return np.concatenate([super(ChangeDetectionInferencer, self)._to_rgb(d, info, valid)
                               for d in (img[..., :c], img[..., c:])], axis=1)

    def _draw(self, rgb, pred, info, draw_pred, score_thr, opacity, show, wait_time):
        # the change is overlaid on date B
        w = rgb.shape[1] // 2
        drawn = super()._draw(np.ascontiguousarray(rgb[:, w:]), pred, info, draw_pred,
                              score_thr, opacity, show, wait_time)
        return np.concatenate([rgb[:, :w], drawn], axis=1)
