"""Scene-classification datasets in AID / NWPU-RESISC45 on-disk format.

The bundled ``demo/data/scenes/*.png`` are real aerial scenes (RS-vHeat
repository samples) without labels; their classes were read off the images:
2, 3, 6 airports, 7, 8 baseball fields, 4 a port. Each scene gives five
600 px crops (four corners and the centre), stored like the releases: AID
as ``<Class>/<class>_<k>.jpg`` at 600 x 600, NWPU-RESISC45 as
``<class>/<class>_<kkk>.jpg`` at 256 x 256.
"""
import os
import os.path as osp

import cv2

from tests.helpers import DEMO_DATA

SCENES = {'airport': (2, 3, 6), 'baseball': (7, 8), 'port': (4, )}
AID_NAMES = {'airport': 'Airport', 'baseball': 'BaseballField', 'port': 'Port'}
NWPU_NAMES = {'airport': 'airport', 'baseball': 'baseball_diamond', 'port': 'harbor'}
OFFSETS = ((0, 0), (100, 0), (0, 100), (100, 100), (50, 50))


def make_scene_dataset(root, style='aid'):
    """Write the class folders under ``root``; returns ``{class: count}``."""
    names, size, fmt = ((AID_NAMES, 600, '{}_{}.jpg') if style == 'aid' else
                        (NWPU_NAMES, 256, '{}_{:03d}.jpg'))
    counts = {}
    for key, scenes in SCENES.items():
        cls = names[key]
        os.makedirs(osp.join(root, cls), exist_ok=True)
        k = 0
        for scene in scenes:
            img = cv2.imread(osp.join(DEMO_DATA, 'scenes', f'{scene}.png'), cv2.IMREAD_COLOR)
            for y, x in OFFSETS:
                k += 1
                crop = cv2.resize(img[y:y + 600, x:x + 600], (size, size),
                                  interpolation=cv2.INTER_AREA)
                assert cv2.imwrite(osp.join(root, cls, fmt.format(cls.lower(), k)), crop,
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
        counts[cls] = k
    return counts
