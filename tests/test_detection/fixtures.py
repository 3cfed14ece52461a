"""Detection fixtures in the datasets' real on-disk formats, built from the
bundled real samples (demo/data, see demo/data/SOURCES.md) under tmp_path.

* DIOR: demo/data/dior (one 800 x 800 image, DIOR-R XML with one golffield);
  the horizontal XML is made by the converter under test.
* DOTA: demo/data/dota, a 170 px thumbnail of a 1024 px DOTA patch with 4
  planes whose coordinates are scaled into the thumbnail frame
  (tools/dataset_converters/prepare_det_demo_data.py).
* SAR-AIRcraft-1.0: there is no real SAR sample. The DOTA planes are turned
  into a SAR-like image by a documented transformation: luminance ->
  intensity (squared), multiplied by 4-look speckle (Gamma(4, 1/4), seeded),
  back to amplitude (square root), 8-bit single-band JPEG. Annotations are
  the planes' enclosing boxes in SAR-AIRcraft's VOC XML; the aircraft types
  are assigned (the thumbnail does not show them).
* FAIR1M: the DOTA planes as a .tif scene with a label XML written from
  FAIR1M's published schema (types assigned as above).
"""
import os
import os.path as osp
import shutil

import cv2
import numpy as np

from tests.helpers import DEMO_DATA, load_tool  # noqa: F401 (load_tool: used by importers)


def write(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


# -- DOTA ---------------------------------------------------------------------------
def make_dota_scene(root):
    """``root/{images,labelTxt}`` with scene P2805 (170 x 170, 4 planes)."""
    demo = load_tool('dataset_converters/prepare_det_demo_data.py')
    return demo.build_dota_demo_scene(root)


# -- DIOR ---------------------------------------------------------------------------
def make_dior(root):
    """DIOR release layout with the bundled image in every split."""
    src = osp.join(DEMO_DATA, 'dior')
    for sub in ('JPEGImages-trainval', 'JPEGImages-test'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
        shutil.copy(osp.join(src, 'JPEGImages', '00001.jpg'), osp.join(root, sub))
    obb = osp.join(root, 'Annotations', 'Oriented Bounding Boxes')
    os.makedirs(obb, exist_ok=True)
    shutil.copy(osp.join(src, 'Annotations', 'Oriented Bounding Boxes', '00001.xml'), obb)
    for split in ('train', 'val', 'test'):
        write(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), '00001\n')
    return root


DIOR_HBB_XML = """<annotation>
\t<filename>{img_id}.jpg</filename>
\t<source>
\t\t<database>DIOR</database>
\t</source>
\t<size>
\t\t<width>800</width>
\t\t<height>800</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
DIOR_HBB_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<bndbox>
\t\t\t<xmin>{box[0]}</xmin>
\t\t\t<ymin>{box[1]}</ymin>
\t\t\t<xmax>{box[2]}</xmax>
\t\t\t<ymax>{box[3]}</ymax>
\t\t</bndbox>
\t</object>
"""


def dior_hbb_xml(img_id, objects):
    """DIOR's horizontal-box XML as released (no truncated/difficult tags)."""
    return DIOR_HBB_XML.format(img_id=img_id, objects=''.join(
        DIOR_HBB_OBJECT.format(name=n, box=b) for n, b in objects))


# -- SAR-AIRcraft-1.0 ------------------------------------------------------------------
SAR_TYPES = ('Boeing737', 'A220', 'A320/321', 'other')


def speckled_sar(bgr, seed=0, looks=4):
    """Optical BGR -> SAR-like 8-bit amplitude (see the module docstring)."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    intensity = gray ** 2 * rng.gamma(looks, 1.0 / looks, size=gray.shape)
    return np.clip(np.sqrt(intensity) * 255.0, 0, 255).astype(np.uint8)


SAR_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
    <folder>JPEGImages</folder>
    <filename>{img_id}.jpg</filename>
    <size>
        <width>{width}</width>
        <height>{height}</height>
        <depth>1</depth>
    </size>
    <segmented>0</segmented>
{objects}</annotation>
"""
SAR_OBJECT = """    <object>
        <name>{name}</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <difficult>0</difficult>
        <bndbox>
            <xmin>{box[0]:.0f}</xmin>
            <ymin>{box[1]:.0f}</ymin>
            <xmax>{box[2]:.0f}</xmax>
            <ymax>{box[3]:.0f}</ymax>
        </bndbox>
    </object>
"""


def make_sar_aircraft(root, tmp):
    """SAR-AIRcraft-1.0 layout: JPEGImages/1.jpg, Annotations/1.xml, ImageSets/Main."""
    from rsvheat_mm.datasets.rs_det_formats import poly_to_hbb
    scene = make_dota_scene(osp.join(tmp, 'dota_for_sar'))
    sar = speckled_sar(cv2.imread(scene['img_path']))
    os.makedirs(osp.join(root, 'JPEGImages'), exist_ok=True)
    assert cv2.imwrite(osp.join(root, 'JPEGImages', '1.jpg'), sar)
    boxes = [poly_to_hbb(o['poly']) for o in scene['objects']]
    objects = ''.join(SAR_OBJECT.format(name=SAR_TYPES[i % len(SAR_TYPES)], box=b)
                      for i, b in enumerate(boxes))
    write(osp.join(root, 'Annotations', '1.xml'),
          SAR_XML.format(img_id='1', width=sar.shape[1], height=sar.shape[0], objects=objects))
    for split in ('train', 'val', 'trainval', 'test'):
        write(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), '1\n')
    return dict(boxes=boxes, names=[SAR_TYPES[i % len(SAR_TYPES)] for i in range(len(boxes))])


# -- FAIR1M ---------------------------------------------------------------------------
FAIR1M_TYPES = ('Boeing737', 'A220', 'Boeing787', 'other-airplane')
FAIR1M_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
\t<source>
\t\t<filename>{img_id}.tif</filename>
\t\t<origin>GF2/GF3</origin>
\t</source>
\t<research>
\t\t<version>1.0</version>
\t\t<provider>Company/School of team</provider>
\t\t<author>team name</author>
\t\t<pluginname>FAIR1M</pluginname>
\t\t<pluginclass>object detection</pluginclass>
\t\t<time>2021-07-21</time>
\t</research>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<objects>
{objects}\t</objects>
</annotation>
"""
FAIR1M_OBJECT = """\t\t<object>
\t\t\t<coordinate>pixel</coordinate>
\t\t\t<type>rectangle</type>
\t\t\t<description>None</description>
\t\t\t<possibleresult>
\t\t\t\t<name>{name}</name>
\t\t\t</possibleresult>
\t\t\t<points>
{points}\t\t\t</points>
\t\t</object>
"""


def fair1m_xml(img_id, width, height, objects):
    """FAIR1M label XML: per object 5 points (the first one repeated)."""
    body = ''
    for name, poly in objects:
        pts = [(poly[2 * i], poly[2 * i + 1]) for i in (0, 1, 2, 3, 0)]
        points = ''.join(f'\t\t\t\t<point>{x:.6f},{y:.6f}</point>\n' for x, y in pts)
        body += FAIR1M_OBJECT.format(name=name, points=points)
    return FAIR1M_XML.format(img_id=img_id, width=width, height=height, objects=body)


def make_fair1m(root, tmp, splits=('train', 'validation')):
    """FAIR1M-2.0 layout: <split>/images/1.tif + <split>/labelXml/1.xml."""
    scene = make_dota_scene(osp.join(tmp, 'dota_for_fair1m'))
    img = cv2.imread(scene['img_path'])
    objects = [(FAIR1M_TYPES[i % len(FAIR1M_TYPES)], o['poly'])
               for i, o in enumerate(scene['objects'])]
    for split in splits:
        os.makedirs(osp.join(root, split, 'images'), exist_ok=True)
        assert cv2.imwrite(osp.join(root, split, 'images', '1.tif'), img)
        write(osp.join(root, split, 'labelXml', '1.xml'),
              fair1m_xml('1', img.shape[1], img.shape[0], objects))
    return dict(objects=objects, height=img.shape[0], width=img.shape[1])


# -- configs ----------------------------------------------------------------------------
def _walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _walk(v, fn)


def tiny_det_cfg(cfg, work_dir, scale, iters=2):
    """Shrink a detection config for CPU: tiny backbone/FPN/heads, few
    proposals, ``scale`` px images, ``iters`` iterations then validation."""
    m = cfg.model
    m.backbone.arch = dict(depths=[1, 1, 1, 1], embed_dims=16)
    m.backbone.pretrain_img_size = scale
    m.backbone.drop_path_rate = 0.
    m.backbone.init_cfg = None  # no pretraining checkpoint in tests
    m.neck.in_channels = [16, 32, 64, 128]
    m.neck.out_channels = 32
    m.rpn_head.in_channels = m.rpn_head.feat_channels = 32
    m.roi_head.bbox_roi_extractor.out_channels = 32
    m.roi_head.bbox_head.in_channels = 32
    m.roi_head.bbox_head.fc_out_channels = 64
    m.train_cfg.rpn_proposal.update(nms_pre=300, max_per_img=100)
    m.train_cfg.rcnn.sampler.num = 64
    m.test_cfg.rpn.update(nms_pre=300, max_per_img=100)
    m.test_cfg.rcnn.max_per_img = 100

    def fix(d):
        if d.get('type', '').split('.')[-1] == 'Resize':
            d['scale'] = (scale, scale)
        if 'num_workers' in d:
            d.update(num_workers=0, persistent_workers=False)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _walk(cfg[key], fix)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.param_scheduler = []
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=iters)
    cfg.log_processor = dict(by_epoch=False)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = osp.basename(str(work_dir))
    return cfg
