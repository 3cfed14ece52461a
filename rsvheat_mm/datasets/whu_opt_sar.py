"""WHU-OPT-SAR (Li et al., MCANet, JAG 2022): co-registered GF-1 optical and
GF-3 SAR land-use segmentation, 5 m, 7 classes.

Prepared by ``tools/dataset_converters/whu_opt_sar.py`` into::

    data/whu-opt-sar/
      img_dir/{train,val,test}/<scene>_<y>_<x>.tif   optical tiles (all bands)
      sar_dir/{train,val,test}/<scene>_<y>_<x>.tif   SAR tiles (1 band)
      ann_dir/{train,val,test}/<scene>_<y>_<x>.png   labels 0 = unlabeled, 1..7

Load the pairs with ``LoadOpticalSARPair``; ``reduce_zero_label=True`` (the
default) turns label 0 into the ignore index and 1..7 into 0..6.
"""
import os.path as osp
from typing import List

import mmengine.fileio as fileio
from mmseg.datasets import BaseSegDataset

from rsvheat_mm.registry import DATASETS


@DATASETS.register_module()
class WHUOPTSARDataset(BaseSegDataset):
    """WHU-OPT-SAR optical + SAR segmentation dataset.

    Every sample carries ``img_path`` (optical), ``sar_path`` and
    ``seg_map_path``; the SAR tile has the optical tile's name with
    ``sar_suffix``.

    Args:
        data_prefix (dict): ``img_path``, ``sar_path`` and ``seg_map_path``
            folders (relative to ``data_root``).
        img_suffix (str): Optical suffix. Defaults to '.tif'.
        sar_suffix (str): SAR suffix. Defaults to '.tif'.
        seg_map_suffix (str): Label suffix. Defaults to '.png'.
        reduce_zero_label (bool): Defaults to True (0 is unlabeled).
        **kwargs: Other arguments of :class:`mmseg.datasets.BaseSegDataset`.
    """

    METAINFO = dict(
        classes=('farmland', 'city', 'village', 'water', 'forest', 'road', 'others'),
        palette=[[204, 102, 1], [254, 0, 0], [255, 255, 1], [0, 0, 254], [85, 166, 1],
                 [93, 255, 255], [152, 102, 153]])

    def __init__(self,
                 img_suffix: str = '.tif',
                 sar_suffix: str = '.tif',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True,
                 **kwargs) -> None:
        self.sar_suffix = sar_suffix
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)

    def load_data_list(self) -> List[dict]:
        sar_dir = self.data_prefix.get('sar_path')
        if not sar_dir:
            raise KeyError(f'{type(self).__name__}: data_prefix needs a `sar_path` '
                           f'folder next to img_path, got {self.data_prefix}')
        data_list = super().load_data_list()
        img_dir = self.data_prefix['img_path']
        for info in data_list:
            rel = osp.relpath(info['img_path'], img_dir)
            sar_path = osp.join(sar_dir, rel[:-len(self.img_suffix)] + self.sar_suffix)
            if not fileio.exists(sar_path, backend_args=self.backend_args):
                raise FileNotFoundError(f'{type(self).__name__}: no SAR tile {sar_path} '
                                        f'for the optical tile {info["img_path"]}')
            info['sar_path'] = sar_path
        return data_list
