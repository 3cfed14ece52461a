"""AIR-PolSAR-Seg (Wang et al., JSTARS 2022): GF-3 quad-pol SAR, 8 m, 500
patches of 512 x 512 (HH/HV/VH/VV amplitude), 6 terrain classes.

Prepared by ``tools/dataset_converters/air_polsar_seg.py`` into the mmseg
layout::

    data/air-polsar-seg/
      img_dir/{train,test}/<id>.png    one SAR band (see the converter)
      ann_dir/{train,test}/<id>.png    class ids 0..5, 255 = unlabeled

Load the images with ``LoadImageFromFile(color_type='unchanged')`` so that
the 1-band image reaches RSVHeat's ``sar`` stem.
"""
from mmseg.datasets import BaseSegDataset

from rsvheat_mm.registry import DATASETS

# Class order and label colours of the released RGB label maps; the
# converter maps colours to these ids.
AIR_POLSAR_SEG_CLASSES = ('housing', 'industrial', 'natural', 'land_use', 'water', 'other')
AIR_POLSAR_SEG_PALETTE = [[255, 255, 0], [0, 0, 255], [0, 255, 0], [255, 0, 0],
                          [0, 255, 255], [255, 255, 255]]


@DATASETS.register_module()
class AIRPolSARSegDataset(BaseSegDataset):
    """AIR-PolSAR-Seg terrain segmentation dataset (prepared layout).

    Args:
        img_suffix (str): Defaults to '.png'.
        seg_map_suffix (str): Defaults to '.png'.
        **kwargs: Other arguments of :class:`mmseg.datasets.BaseSegDataset`.
    """

    METAINFO = dict(classes=AIR_POLSAR_SEG_CLASSES, palette=AIR_POLSAR_SEG_PALETTE)

    def __init__(self, img_suffix: str = '.png', seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
