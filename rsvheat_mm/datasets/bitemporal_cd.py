"""Bi-temporal change-detection dataset in the common ``A/B/label`` layout.

LEVIR-CD, LEVIR-CD+, WHU-CD, S2Looking, SYSU-CD, CDD and most other
binary change-detection sets ship as::

    data_root/
      train/A/xxx.png    date-1 image
      train/B/xxx.png    date-2 image (same name, same size, co-registered)
      train/label/xxx.png  change mask (0 = unchanged, 255 or 1 = changed)
      val/...  test/...

:class:`BitemporalCDDataset` reads any such split (``data_prefix`` points
at its three folders) and checks up front that every pair is complete, so a
broken download fails at start-up with the file's name, not after hours of
training. Labels are read by
:class:`~rsvheat_mm.datasets.transforms.bitemporal.LoadBitemporalChangeLabel`.
"""
import os.path as osp
from typing import List

import mmengine
from mmengine import fileio
from mmseg.datasets import BaseCDDataset

from rsvheat_mm.registry import DATASETS


@DATASETS.register_module()
class BitemporalCDDataset(BaseCDDataset):
    """Binary change detection on co-registered A/B image pairs.

    Args:
        data_prefix (dict): Folders of date A (``img_path``), date B
            (``img_path2``) and the change masks (``seg_map_path``; leave the
            key out for an unlabeled set). Relative to ``data_root``.
            Defaults to ``dict(img_path='A', img_path2='B',
            seg_map_path='label')``.
        ann_file (str): Optional text file with one pair name per line (with
            or without the image suffix); otherwise every ``img_suffix`` file
            under ``img_path`` (recursively) is a pair. Defaults to ''.
        img_suffix (str): Suffix of date-A images. Defaults to '.png'.
        img_suffix2 (str, optional): Suffix of date-B images; None means
            ``img_suffix``.
        seg_map_suffix (str): Suffix of change masks. Defaults to '.png'.
        **kwargs: Other arguments of :class:`mmseg.datasets.BaseCDDataset`.
    """

    METAINFO = dict(classes=('unchanged', 'changed'),
                    palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self,
                 data_prefix: dict = dict(img_path='A', img_path2='B', seg_map_path='label'),
                 ann_file: str = '',
                 img_suffix: str = '.png',
                 img_suffix2: str = None,
                 seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        for key in ('img_path', 'img_path2'):
            if key not in data_prefix:
                raise KeyError(f'BitemporalCDDataset: data_prefix needs `{key}` '
                               f'(got {data_prefix})')
        super().__init__(
            data_prefix=data_prefix,
            ann_file=ann_file,
            img_suffix=img_suffix,
            img_suffix2=img_suffix if img_suffix2 is None else img_suffix2,
            seg_map_suffix=seg_map_suffix,
            **kwargs)

    def _pair_names(self, dir_a: str) -> List[str]:
        if self.ann_file:
            if not fileio.exists(self.ann_file, backend_args=self.backend_args):
                raise FileNotFoundError(f'BitemporalCDDataset: ann_file {self.ann_file} '
                                        'does not exist')
            names = []
            for line in mmengine.list_from_file(self.ann_file, backend_args=self.backend_args):
                name = line.strip()
                if not name:
                    continue
                if name.endswith(self.img_suffix):
                    name = name[:-len(self.img_suffix)]
                names.append(name)
            return names
        if not fileio.isdir(dir_a, backend_args=self.backend_args):
            raise FileNotFoundError(f'BitemporalCDDataset: the date-A folder {dir_a} '
                                    'does not exist (check data_root / data_prefix.img_path)')
        files = fileio.list_dir_or_file(dir_a, list_dir=False, suffix=self.img_suffix,
                                        recursive=True, backend_args=self.backend_args)
        return sorted(f[:-len(self.img_suffix)] for f in files)

    def load_data_list(self) -> List[dict]:
        dir_a = self.data_prefix['img_path']
        dir_b = self.data_prefix['img_path2']
        dir_label = self.data_prefix.get('seg_map_path')
        names = self._pair_names(dir_a)
        if not names:
            raise FileNotFoundError(
                f'BitemporalCDDataset: no `*{self.img_suffix}` pairs in {dir_a}'
                + (f' listed by {self.ann_file}' if self.ann_file else ''))
        data_list, missing = [], []
        for name in names:
            info = dict(img_path=osp.join(dir_a, name + self.img_suffix),
                        img_path2=osp.join(dir_b, name + self.img_suffix2),
                        label_map=self.label_map,
                        reduce_zero_label=self.reduce_zero_label,
                        seg_fields=[])
            if dir_label:
                info['seg_map_path'] = osp.join(dir_label, name + self.seg_map_suffix)
            for key in ('img_path', 'img_path2', 'seg_map_path'):
                if key in info and not fileio.exists(info[key], backend_args=self.backend_args):
                    missing.append(info[key])
            data_list.append(info)
        if missing:
            shown = '\n  '.join(missing[:10])
            more = f'\n  ... and {len(missing) - 10} more' if len(missing) > 10 else ''
            raise FileNotFoundError(
                f'BitemporalCDDataset: {len(missing)} file(s) of the pairs in {dir_a} '
                f'are missing:\n  {shown}{more}')
        return data_list
