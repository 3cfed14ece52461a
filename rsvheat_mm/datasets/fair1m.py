"""FAIR1M-2.0 for mmrotate: 37 fine-grained classes on DOTA-format patches.

FAIR1M ships ``images/*.tif`` + ``labelXml/*.xml``. The pipeline is
``tools/dataset_converters/fair1m.py to-dota`` (XML -> DOTA label files, class
names with ``_`` for spaces), ``tools/dataset_converters/dota_split.py``
(1024 px patches with overlap) and this dataset on the patches. Validation
merges patch results back onto the scenes (``MergedDOTAMetric``); the test
split is formatted for the FAIR1M server (``fair1m.py task1-to-xml``).

Listed in ``TOOLBOX_PLUGINS['mmrotate']`` (imports mmrotate).
"""
import colorsys
import glob
import inspect
import os.path as osp
from typing import List, Tuple

from mmrotate.datasets import DOTADataset

from rsvheat_mm.registry import DATASETS
from .rs_det_formats import (FAIR1M_CLASSES, FAIR1M_DOTA_CLASSES, match_class,
                             read_dota_txt)


def _palette(n):
    # Evenly spaced hues, alternating brightness, so neighbours differ.
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / n, 0.8, 1.0 - 0.3 * (i % 2)))
            for i in range(n)]


@DATASETS.register_module()
class FAIR1MDataset(DOTADataset):
    """FAIR1M-1.0/2.0 patches in DOTA format (37 classes).

    Unlike mmrotate's ``DOTADataset`` it accepts DOTA's ``imagesource:``/
    ``gsd:`` header lines, either spelling of the class names ('Small_Car'
    or 'Small Car'), any patch image suffix, and names the file and line of
    a bad annotation.

    Args:
        img_suffix (str): Suffix of the patch images. Defaults to '.png'
            (what ``dota_split.py`` writes).
        img_shape (tuple[int, int]): Nominal patch size, recorded as
            ``height``/``width`` of each sample. Defaults to (1024, 1024).
        **kwargs: See :class:`mmrotate.datasets.DOTADataset` (``diff_thr``,
            ``ann_file`` = folder of label files or '' for
            unlabelled images, ``data_prefix=dict(img_path=...)``).
    """
    METAINFO = dict(classes=FAIR1M_DOTA_CLASSES, palette=_palette(len(FAIR1M_DOTA_CLASSES)))

    def __init__(self, img_suffix: str = '.png',
                 img_shape: Tuple[int, int] = (1024, 1024), **kwargs) -> None:
        # Official mmrotate 1.0.0rc1's DOTADataset takes `img_shape`; OneDL's
        # takes `img_suffix` without the dot instead and sets that attribute.
        base_args = inspect.signature(DOTADataset.__init__).parameters
        if 'img_shape' in base_args:
            kwargs['img_shape'] = img_shape
        if 'img_suffix' in base_args:
            kwargs['img_suffix'] = img_suffix.lstrip('.')
        self.img_ext = '.' + img_suffix.lstrip('.')
        self.img_shape = tuple(img_shape)
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        classes = self.metainfo['classes']
        aliases = dict(zip(FAIR1M_CLASSES, FAIR1M_DOTA_CLASSES))
        img_dir = self.data_prefix['img_path']
        data_list = []
        if self.ann_file == '':
            paths = sorted(glob.glob(osp.join(img_dir, '*' + self.img_ext)))
            if not paths:
                raise FileNotFoundError(f'no *{self.img_ext} images in {img_dir}')
            for img_path in paths:
                img_id = osp.basename(img_path)[:-len(self.img_ext)]
                data_list.append(self._info(img_id, img_dir, []))
            return data_list
        txt_files = sorted(glob.glob(osp.join(self.ann_file, '*.txt')))
        if not txt_files:
            raise FileNotFoundError(f'no label files (*.txt) in {self.ann_file}')
        for txt_file in txt_files:
            instances = []
            for obj in read_dota_txt(txt_file)['objects']:
                instances.append(dict(
                    bbox=obj['poly'],
                    bbox_label=match_class(obj['name'], classes, txt_file, aliases),
                    ignore_flag=int(obj['difficult'] > self.diff_thr)))
            img_id = osp.splitext(osp.basename(txt_file))[0]
            data_list.append(self._info(img_id, img_dir, instances))
        return data_list

    def _info(self, img_id: str, img_dir: str, instances: List[dict]) -> dict:
        file_name = img_id + self.img_ext
        return dict(img_id=img_id, file_name=file_name,
                    img_path=osp.join(img_dir, file_name), height=self.img_shape[0],
                    width=self.img_shape[1], instances=instances)
