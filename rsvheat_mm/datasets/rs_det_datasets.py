"""mmdet datasets for DIOR (horizontal boxes) and SAR-AIRcraft-1.0.

Both ship VOC-style XML, so both are mmdet ``XMLDataset`` s; what differs
from plain VOC:

* class names are matched case-insensitively (DIOR's own files write
  'Expressway-Service-area' while DIOR-R and mmrotate use lower case) and an
  unknown name is an error naming the file, not a silently dropped box;
* coordinates are read as floats and not shifted by VOC's ``-1`` (DIOR-R's
  corner points and DIOR's boxes share one pixel frame, as in mmrotate);
* DIOR-R's ``<robndbox>`` files are accepted too: the horizontal box is the
  one enclosing the four corners, so ``Annotations/Oriented Bounding Boxes``
  can stand in for the horizontal annotations.

Listed in ``TOOLBOX_PLUGINS['mmdet']`` (imports mmdet).
"""
import os.path as osp
from typing import List

import mmcv
from mmdet.datasets import XMLDataset
from mmengine.fileio import get, get_local_path

from rsvheat_mm.registry import DATASETS
from .rs_det_formats import (DIOR_CLASSES, SAR_AIRCRAFT_CLASSES,
                             match_class, read_voc_xml)


class _RSXMLDataset(XMLDataset):
    """XMLDataset with strict, case-insensitive classes and float boxes."""

    def parse_data_info(self, img_info: dict) -> dict:
        xml_path = img_info['xml_path']
        with get_local_path(xml_path, backend_args=self.backend_args) as local_path:
            ann = read_voc_xml(local_path)
        data_info = dict(img_path=osp.join(self.sub_data_root, img_info['file_name']),
                         img_id=img_info['img_id'], xml_path=xml_path)
        if ann['width'] is None:
            img = mmcv.imfrombytes(get(data_info['img_path'],
                                       backend_args=self.backend_args))
            ann['height'], ann['width'] = img.shape[:2]
        data_info['height'], data_info['width'] = ann['height'], ann['width']
        data_info['instances'] = self._instances(ann, xml_path)
        return data_info

    def _instances(self, ann: dict, xml_path: str) -> List[dict]:
        classes = [c.lower() for c in self._metainfo['classes']]
        min_size = self.bbox_min_size
        instances = []
        for obj in ann['objects']:
            # A name outside the dataset's classes is an error; one outside a
            # user-chosen subset (metainfo=dict(classes=...)) is skipped.
            name = self.METAINFO['classes'][match_class(
                obj['name'], self.METAINFO['classes'], xml_path)].lower()
            if name not in classes:
                continue
            label = classes.index(name)
            x1, y1, x2, y2 = obj['bbox']
            ignore = bool(obj['difficult'])
            if min_size is not None and not self.test_mode:
                ignore |= (x2 - x1) < min_size or (y2 - y1) < min_size
            instances.append(dict(bbox=[x1, y1, x2, y2], bbox_label=label,
                                  ignore_flag=int(ignore)))
        return instances


@DATASETS.register_module()
class DIORHBBDataset(_RSXMLDataset):
    """DIOR with horizontal boxes (20 classes, 800 x 800 images).

    Layout (DIOR / DIOR-R release)::

        DIOR/
        ├── JPEGImages-trainval/ JPEGImages-test/
        ├── Annotations/Horizontal Bounding Boxes/*.xml  (or Oriented ...)
        └── ImageSets/Main/{train,val,test}.txt

    Use ``data_prefix=dict(sub_data_root='')``, ``img_subdir`` the image
    folder of the split and ``ann_file`` its id list.
    """
    METAINFO = dict(
        classes=DIOR_CLASSES,
        palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230),
                 (106, 0, 228), (0, 60, 100), (0, 80, 100), (0, 0, 70),
                 (0, 0, 192), (250, 170, 30), (100, 170, 30), (220, 220, 0),
                 (175, 116, 175), (250, 0, 30), (165, 42, 42), (255, 77, 255),
                 (0, 226, 252), (182, 182, 255), (0, 82, 0), (120, 166, 157)])

    def __init__(self, img_subdir: str = 'JPEGImages-trainval',
                 ann_subdir: str = 'Annotations/Horizontal Bounding Boxes',
                 **kwargs) -> None:
        super().__init__(img_subdir=img_subdir, ann_subdir=ann_subdir, **kwargs)


@DATASETS.register_module()
class SARAircraftDataset(_RSXMLDataset):
    """SAR-AIRcraft-1.0 (Gaofen-3, 1 m, 7 aircraft types, 4368 images).

    Layout::

        SAR-AIRcraft-1.0/
        ├── JPEGImages/*.jpg
        ├── Annotations/*.xml
        └── ImageSets/Main/{train,val,trainval,test}.txt
    """
    METAINFO = dict(
        classes=SAR_AIRCRAFT_CLASSES,
        palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230),
                 (106, 0, 228), (0, 60, 100), (0, 80, 100)])

    def __init__(self, img_subdir: str = 'JPEGImages', ann_subdir: str = 'Annotations',
                 **kwargs) -> None:
        super().__init__(img_subdir=img_subdir, ann_subdir=ann_subdir, **kwargs)
